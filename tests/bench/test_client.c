/* Unit tests: the benchmark's HTTP client against a scripted server on
 * loopback: keep-alive, answers split over writes, chunked answers,
 * "Connection: close", a connection lost, a timeout, pacing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench.h"
#include "client.h"

#define MAX_REQS 16

/* What the server does with request i (in the order they arrive). */
enum act {
	A_201,     /* 201 with a body, header and body in two writes */
	A_CHUNKED, /* 200, chunked, in three writes */
	A_CLOSE,   /* 200 with "Connection: close", then closes */
	A_DROP,    /* closes without an answer */
	A_SILENT,  /* answers nothing; waits for the client to close */
	A_GARBAGE, /* answers what is not HTTP, and keeps the connection */
};

struct server {
	int fd;
	int port;
	enum act acts[MAX_REQS];
	int n_acts;
	pthread_t th;
	bool close_after; /* stop listening once the script is done */
	/* seen by the server */
	int accepted;
	int reqs;
	char first_line[MAX_REQS][128];
	size_t body_len[MAX_REQS];
};

static void write_all(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;

	while (off < n) {
		ssize_t w = write(fd, s + off, n - off);

		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* One request off fd: its first line and the length of its body, which
 * is read and dropped; false at EOF. */
static bool read_request(struct server *sv, int fd, int i)
{
	char buf[8192];
	size_t len = 0, need = 0, body = 0;
	char *end = NULL, *cl;

	while (!end) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	cl = strcasestr(buf, "Content-Length:");
	need = cl ? strtoul(cl + 15, NULL, 10) : 0;
	sscanf(buf, "%127[^\r]", sv->first_line[i]);
	body = len - (size_t)(end + 4 - buf);
	while (body < need) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			return false;
		body += (size_t)n;
	}
	sv->body_len[i] = body;
	return true;
}

static void *serve(void *arg)
{
	struct server *sv = arg;

	while (sv->reqs < sv->n_acts) {
		int c = accept(sv->fd, NULL, NULL);
		bool open = true;

		if (c < 0)
			return NULL;
		sv->accepted++;
		while (open && sv->reqs < sv->n_acts) {
			int i = sv->reqs;

			if (!read_request(sv, c, i))
				break;
			sv->reqs++;
			switch (sv->acts[i]) {
			case A_201:
				write_all(c, "HTTP/1.1 201 Created\r\nContent-Length: 9\r\n"
					     "Content-Type: application/json\r\n\r\n");
				usleep(20000);
				write_all(c, "{\"id\":1}\n");
				break;
			case A_CHUNKED:
				write_all(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
				usleep(10000);
				write_all(c, "5\r\nhello\r\n");
				usleep(10000);
				write_all(c, "0\r\n\r\n");
				break;
			case A_CLOSE:
				write_all(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
					     "Content-Length: 2\r\n\r\nok");
				open = false;
				break;
			case A_DROP:
				open = false;
				break;
			case A_GARBAGE:
				write_all(c, "hello, this is not HTTP\r\n\r\n");
				break;
			case A_SILENT: {
				char b[64];

				while (read(c, b, sizeof(b)) > 0)
					;
				open = false;
				break;
			}
			}
		}
		close(c);
	}
	if (sv->close_after) {
		close(sv->fd);
		sv->fd = -1;
	}
	return NULL;
}

static void server_start(struct server *sv, const enum act *acts, int n, bool close_after)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);

	memset(sv, 0, sizeof(*sv));
	sv->close_after = close_after;
	memcpy(sv->acts, acts, (size_t)n * sizeof(*acts));
	sv->n_acts = n;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sv->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(sv->fd >= 0);
	assert_int_equal(bind(sv->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(sv->fd, 16), 0);
	assert_int_equal(getsockname(sv->fd, (struct sockaddr *)&sa, &sl), 0);
	sv->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&sv->th, NULL, serve, sv), 0);
}

static void server_stop(struct server *sv)
{
	if (!sv->close_after)
		shutdown(sv->fd, SHUT_RDWR);
	pthread_join(sv->th, NULL);
	if (sv->fd >= 0)
		close(sv->fd);
}

/* The caller's side: n requests on connection 0, not before their time. */
struct run {
	int n, sent, answered;
	double not_before[MAX_REQS];
	long status[MAX_REQS];
	double start[MAX_REQS], end[MAX_REQS];
	const char *body;
};

static bool next(void *arg, int k, struct tq_client_req *r)
{
	struct run *rn = arg;

	assert_int_equal(k, 0);
	if (rn->sent >= rn->n)
		return false;
	*r = (struct tq_client_req){.body = rn->body, .len = strlen(rn->body),
				    .not_before = rn->not_before[rn->sent],
				    .tag = rn->sent};
	rn->sent++;
	return true;
}

static void done(void *arg, int k, const struct tq_client_req *r, long status,
		 double start, double end)
{
	struct run *rn = arg;

	assert_int_equal(k, 0);
	assert_int_equal(r->tag, rn->answered); /* one at a time, in order */
	rn->status[r->tag] = status;
	rn->start[r->tag] = start;
	rn->end[r->tag] = end;
	rn->answered++;
}

static const struct tq_client_ops ops = {.next = next, .done = done};

static int run(struct server *sv, struct run *rn, double timeout_s, char *err, size_t errlen)
{
	char url[64];
	struct tq_client_opts o = {.url = url, .path = "/v1/jobs", .conns = 1,
				   .timeout_s = timeout_s};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api", sv->port);
	if (!rn->body)
		rn->body = "{\"type\":\"noop\"}";
	return tq_client_run(&o, &ops, rn, err, errlen);
}

/* Serve acts, one per request, to as many requests of rn. */
static void scripted(struct server *sv, const enum act *acts, int n, struct run *rn,
		     double timeout_s)
{
	char err[256];

	rn->n = n;
	server_start(sv, acts, n, false);
	assert_int_equal(run(sv, rn, timeout_s, err, sizeof(err)), 0);
	server_stop(sv);
}

static void test_keep_alive_and_split_answers(void **state)
{
	enum act acts[] = {A_201, A_201, A_CHUNKED};
	struct server sv;
	struct run rn = {0};

	(void)state;
	scripted(&sv, acts, 3, &rn, 5);
	assert_int_equal(rn.answered, 3);
	assert_int_equal(rn.status[0], 201);
	assert_int_equal(rn.status[1], 201);
	assert_int_equal(rn.status[2], 200);
	/* the body's second half came 20 ms after the header */
	assert_true(rn.end[0] - rn.start[0] >= 0.015);
	assert_int_equal(sv.accepted, 1);
	assert_string_equal(sv.first_line[0], "POST /api/v1/jobs HTTP/1.1");
	assert_int_equal(sv.body_len[0], strlen(rn.body));
}

static void test_long_body_in_parts(void **state)
{
	enum act acts[] = {A_201, A_201};
	struct server sv;
	struct run rn = {0};
	size_t n = 8u << 20;
	char *body = malloc(n + 1);

	(void)state;
	assert_non_null(body);
	memset(body, 'x', n);
	body[n] = '\0';
	/* 8 MiB do not fit in a loopback socket at once: the rest goes out as
	 * the server reads (EPOLLOUT) */
	rn.body = body;
	scripted(&sv, acts, 2, &rn, 30);
	assert_int_equal(rn.status[0], 201);
	assert_int_equal(rn.status[1], 201);
	assert_int_equal(sv.body_len[0], n);
	assert_int_equal(sv.body_len[1], n);
	assert_int_equal(sv.accepted, 1);
	free(body);
}

static void test_reopens_after_close_drop_and_garbage(void **state)
{
	enum act acts[] = {A_CLOSE, A_DROP, A_GARBAGE, A_201};
	struct server sv;
	struct run rn = {0};

	(void)state;
	scripted(&sv, acts, 4, &rn, 5);
	assert_int_equal(rn.status[0], 200);
	assert_int_equal(rn.status[1], -1); /* closed without an answer */
	/* not HTTP: failed at once (not at the timeout), connection dropped */
	assert_int_equal(rn.status[2], -1);
	assert_true(rn.end[2] - rn.start[2] < 2);
	assert_int_equal(rn.status[3], 201);
	assert_int_equal(sv.accepted, 4);
}

static void test_timeout(void **state)
{
	enum act acts[] = {A_SILENT, A_201};
	struct server sv;
	struct run rn = {0};

	(void)state;
	scripted(&sv, acts, 2, &rn, 0.2);
	assert_int_equal(rn.status[0], -1);
	assert_true(rn.end[0] - rn.start[0] >= 0.19);
	assert_true(rn.end[0] - rn.start[0] < 2);
	assert_int_equal(rn.status[1], 201);
}

static void test_paced(void **state)
{
	enum act acts[] = {A_201, A_201};
	struct server sv;
	struct run rn = {0};
	double t0 = tq_bench_mono();

	(void)state;
	rn.not_before[0] = t0 + 0.1;
	rn.not_before[1] = t0 + 0.3;
	scripted(&sv, acts, 2, &rn, 5);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rn.status[i], 201);
		assert_true(rn.start[i] >= rn.not_before[i]);
		assert_true(rn.start[i] < rn.not_before[i] + 0.05);
	}
}

/* Many requests, answered or not, without an answer to wait for. */
struct tally {
	long left, ok, failed;
};

static bool tally_next(void *arg, int k, struct tq_client_req *r)
{
	struct tally *t = arg;

	(void)k;
	if (t->left == 0)
		return false;
	t->left--;
	*r = (struct tq_client_req){.body = "{}", .len = 2};
	return true;
}

static void tally_done(void *arg, int k, const struct tq_client_req *r, long status,
		       double start, double end)
{
	struct tally *t = arg;

	(void)k, (void)r, (void)start, (void)end;
	if (status == 200)
		t->ok++;
	else
		t->failed++;
}

static void test_server_gone_fails_the_rest(void **state)
{
	static const struct tq_client_ops tally_ops = {.next = tally_next,
						       .done = tally_done};
	enum act acts[] = {A_CLOSE};
	struct server sv;
	struct tally t = {.left = 50000};
	char url[64], err[256];
	struct tq_client_opts o = {.url = url, .path = "/", .conns = 1, .timeout_s = 30};
	double t0;

	(void)state;
	server_start(&sv, acts, 1, true);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", sv.port);
	/* the first is answered; the server then stops listening, and each
	 * of the others fails at its connect at once, none waits for the
	 * timeout */
	t0 = tq_bench_mono();
	assert_int_equal(tq_client_run(&o, &tally_ops, &t, err, sizeof(err)), 0);
	assert_true(tq_bench_mono() - t0 < 25);
	server_stop(&sv);
	assert_int_equal(t.ok, 1);
	assert_int_equal(t.failed, 49999);
	assert_int_equal(t.left, 0);
}

static void test_nothing_listening(void **state)
{
	struct server sv = {.port = 0};
	struct run rn = {.n = 1};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	char err[256] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	/* a port that was free a moment ago */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	sv.port = ntohs(sa.sin_port);
	close(fd);
	assert_int_equal(run(&sv, &rn, 1, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "cannot connect to 127.0.0.1:"));
	assert_int_equal(rn.sent, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keep_alive_and_split_answers),
		cmocka_unit_test(test_long_body_in_parts),
		cmocka_unit_test(test_reopens_after_close_drop_and_garbage),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_paced),
		cmocka_unit_test(test_server_gone_fails_the_rest),
		cmocka_unit_test(test_nothing_listening),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
