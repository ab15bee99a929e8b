/*
 * client.h - the benchmark's HTTP client: N keep-alive connections to one
 * server, driven by a single thread.
 *
 * Each connection carries one request at a time (HTTP/1.1, no
 * pipelining), as an application's connection pool does.  The caller
 * says what each connection sends next (next) and hears every answer
 * (done); the client sends, waits on all connections at once (epoll) and
 * parses the answers (http-parser).  A connection the server closes, or
 * answers with "Connection: close", is opened again for its next request.
 *
 * Why not libcurl: on the benchmark's two CPUs, which the client shares
 * with taskqd and PostgreSQL, libcurl's work per transfer (and its five
 * poll() calls a request) cost 38 µs of CPU a request, a fifth of the
 * machine in the burst; this client costs about 8 (docs/PERFORMANCE.md).
 */
#ifndef TQ_BENCH_CLIENT_H
#define TQ_BENCH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/* One request of one connection. */
struct tq_client_req {
	const char *body;  /* JSON body; borrowed until done() returns */
	size_t len;
	double not_before; /* monotonic seconds (tq_bench_mono()); 0: now */
	long tag;          /* the caller's, handed back to done() */
};

struct tq_client_ops {
	/* The next request of connection k into *r; false when k has none
	 * left.  Called when k is free, and again until it returns false. */
	bool (*next)(void *arg, int k, struct tq_client_req *r);
	/* The answer to r on connection k: the HTTP status, or -1 when the
	 * request failed (connection refused or lost, timed out, an answer
	 * that is not HTTP); start and end on the monotonic clock. */
	void (*done)(void *arg, int k, const struct tq_client_req *r, long status,
		     double start, double end);
};

struct tq_client_opts {
	const char *url;   /* http://HOST[:PORT][/PREFIX]: the server */
	const char *path;  /* appended to the URL: "/v1/jobs" */
	int conns;         /* 1..TQ_CLIENT_MAX_CONNS */
	double timeout_s;  /* per request; 0: 60 s */
};

#define TQ_CLIENT_MAX_CONNS 1024

/*
 * POST requests on o->conns connections until every connection's next()
 * returned false and its last answer came.  The connections are opened
 * before the first next() call.  0; or -errno with the reason in err when
 * the run could not start (bad URL, nothing listening): failures of single
 * requests go to done().
 */
int tq_client_run(const struct tq_client_opts *o, const struct tq_client_ops *ops,
		  void *arg, char *err, size_t errlen);

#endif
