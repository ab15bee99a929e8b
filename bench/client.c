/*
 * client.c - the benchmark's HTTP client (see client.h).
 *
 * One thread, one epoll set, one state per connection:
 *
 *   FREE -> (next() says later) WAITING -> SENDING -> RECEIVING -> FREE
 *
 * A request is written with one sendmsg() of its header and body (the
 * rest when the socket takes more); its answer is fed to http-parser as
 * it arrives.  Sockets are non-blocking, connects are blocking (the
 * server is on loopback or near).
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <http_parser.h>

#include "bench.h"

#define CLIENT_HDR_MAX 1024
#define CLIENT_RECV_BUF 65536
#define CLIENT_EVENTS 64

enum conn_state { C_FREE, C_WAITING, C_SENDING, C_RECEIVING, C_FINISHED };

struct conn {
	int k;
	int fd;
	enum conn_state state;
	bool want_out;     /* EPOLLOUT in the set */
	struct tq_client_req req;
	double start, deadline;
	char hdr[CLIENT_HDR_MAX];
	size_t hdr_len, sent;
	http_parser parser;
	bool complete;
};

struct client {
	const struct tq_client_opts *o;
	const struct tq_client_ops *ops;
	void *arg;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];    /* Host: header */
	char path[512];    /* request target */
	double timeout_s;
	int ep;
	int live;          /* connections not FINISHED */
	struct conn *conns;
	char buf[CLIENT_RECV_BUF];
};

static int on_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->complete = true;
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_complete = on_complete,
};

/* URL into host, port and path prefix (libcurl's parser), then the
 * address. */
static int resolve(struct client *cl, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *path = NULL;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int rc = -EINVAL, r;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, cl->o->url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		snprintf(err, errlen, "not an http URL: %s", cl->o->url);
		goto out;
	}
	r = snprintf(cl->host, sizeof(cl->host), "%s:%s", host, port);
	if (r < 0 || (size_t)r >= sizeof(cl->host)) {
		snprintf(err, errlen, "host name too long: %s", host);
		goto out;
	}
	/* a URL without a path says "/" */
	r = snprintf(cl->path, sizeof(cl->path), "%s%s",
		     strcmp(path, "/") == 0 ? "" : path, cl->o->path);
	if (r < 0 || (size_t)r >= sizeof(cl->path)) {
		snprintf(err, errlen, "path too long: %s%s", path, cl->o->path);
		goto out;
	}
	/* [::1] comes back with its brackets, which getaddrinfo() refuses */
	if (host[0] == '[') {
		size_t n = strlen(host);

		memmove(host, host + 1, n - 1);
		host[n - 2] = '\0';
	}
	r = getaddrinfo(host, port, &hints, &ai);
	if (r) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(r));
		goto out;
	}
	memcpy(&cl->addr, ai->ai_addr, ai->ai_addrlen);
	cl->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	rc = 0;
out:
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Open c's connection and add it to the set: 0 or -errno. */
static int conn_open(struct client *cl, struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	int one = 1, fd;

	fd = socket(cl->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&cl->addr, cl->addrlen) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (set_nonblock(fd) < 0 || epoll_ctl(cl->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	c->fd = fd;
	c->want_out = false;
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* leaves the epoll set with it */
	c->fd = -1;
}

static void want_out(struct client *cl, struct conn *c, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};

	if (c->want_out == on)
		return;
	if (epoll_ctl(cl->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = on;
}

/* The request of c ends with status (-1: failed); c is free again, and
 * its caller advances it. */
static void finish(struct client *cl, struct conn *c, long status, bool keep)
{
	double end = tq_bench_mono();

	if (!keep)
		conn_close(c);
	c->state = C_FREE;
	cl->ops->done(cl->arg, c->k, &c->req, status, c->start, end);
}

/* Write what the socket takes; 0, or -1 when the connection failed. */
static int send_some(struct client *cl, struct conn *c)
{
	size_t total = c->hdr_len + c->req.len;

	while (c->sent < total) {
		struct iovec iov[2];
		struct msghdr m = {.msg_iov = iov};
		ssize_t n;

		if (c->sent < c->hdr_len) {
			iov[0] = (struct iovec){c->hdr + c->sent, c->hdr_len - c->sent};
			iov[1] = (struct iovec){(void *)c->req.body, c->req.len};
			m.msg_iovlen = 2;
		} else {
			iov[0] = (struct iovec){(char *)c->req.body + (c->sent - c->hdr_len),
						total - c->sent};
			m.msg_iovlen = 1;
		}
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			want_out(cl, c, true);
			return 0;
		}
		if (n < 0)
			return -1;
		c->sent += (size_t)n;
	}
	want_out(cl, c, false);
	c->state = C_RECEIVING;
	return 0;
}

/* Send c's request now. */
static void start(struct client *cl, struct conn *c)
{
	int r;

	c->start = tq_bench_mono();
	c->deadline = c->start + cl->timeout_s;
	if (c->fd < 0 && conn_open(cl, c) < 0) {
		finish(cl, c, -1, false);
		return;
	}
	r = snprintf(c->hdr, sizeof(c->hdr),
		     "POST %s HTTP/1.1\r\nHost: %s\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		     cl->path, cl->host, c->req.len);
	if (r < 0 || (size_t)r >= sizeof(c->hdr)) {
		finish(cl, c, -1, true);
		return;
	}
	c->hdr_len = (size_t)r;
	c->sent = 0;
	c->complete = false;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->state = C_SENDING;
	if (send_some(cl, c) < 0)
		finish(cl, c, -1, false);
}

/* While c is free: take its next request, if any, and send it when due.
 * A request that fails at once (nothing to connect to) makes c free
 * again: the loop, not a recursion, takes the next. */
static void advance(struct client *cl, struct conn *c, double now)
{
	while (c->state == C_FREE) {
		if (!cl->ops->next(cl->arg, c->k, &c->req)) {
			c->state = C_FINISHED;
			conn_close(c);
			cl->live--;
			return;
		}
		if (c->req.not_before > now) {
			c->state = C_WAITING;
			return;
		}
		start(cl, c);
		now = tq_bench_mono();
	}
}

/* Bytes (or the end of the stream, n == 0) arrived on c. */
static void received(struct client *cl, struct conn *c, const char *p, size_t n)
{
	size_t used;

	if (c->state != C_SENDING && c->state != C_RECEIVING) {
		/* nothing was asked: the server closes, or talks out of turn */
		conn_close(c);
		return;
	}
	used = http_parser_execute(&c->parser, &parser_settings, p, n);
	if (c->complete) {
		/* an answer before the whole request went out (413, say)
		 * leaves the stream out of step: start afresh */
		bool keep = n > 0 && used == n && c->state == C_RECEIVING &&
			    http_should_keep_alive(&c->parser);

		finish(cl, c, (long)c->parser.status_code, keep);
	} else if (n == 0 || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != n) {
		finish(cl, c, -1, false);
	}
}

static void on_event(struct client *cl, struct conn *c, uint32_t events)
{
	if (c->fd < 0)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		ssize_t n = recv(c->fd, cl->buf, sizeof(cl->buf), 0);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0 && (c->state == C_SENDING || c->state == C_RECEIVING))
			finish(cl, c, -1, false);
		else if (n < 0)
			conn_close(c);
		else
			received(cl, c, cl->buf, (size_t)n);
	}
	if ((events & EPOLLOUT) && c->fd >= 0 && c->state == C_SENDING &&
	    send_some(cl, c) < 0)
		finish(cl, c, -1, false);
	advance(cl, c, tq_bench_mono());
}

/* Start the requests that are due, fail the ones past their deadline;
 * the seconds until the next of either (-1: none). */
static double tick(struct client *cl, double now)
{
	double next = -1;

	for (int i = 0; i < cl->o->conns; i++) {
		struct conn *c = &cl->conns[i];
		double at;

		if (c->state == C_WAITING && c->req.not_before <= now)
			start(cl, c);
		else if ((c->state == C_SENDING || c->state == C_RECEIVING) &&
			 c->deadline <= now)
			finish(cl, c, -1, false);
		advance(cl, c, now);
		if (c->state == C_WAITING)
			at = c->req.not_before;
		else if (c->state == C_SENDING || c->state == C_RECEIVING)
			at = c->deadline;
		else
			continue;
		if (next < 0 || at < next)
			next = at;
	}
	if (next < 0)
		return -1;
	return next <= now ? 0 : next - now;
}

/* epoll_wait() to the nanosecond (a paced request leaves on time), or to
 * the millisecond, rounded up, where the kernel lacks epoll_pwait2(). */
static int wait_events(int ep, struct epoll_event *evs, int max, double secs)
{
	struct timespec ts;
	int n;

	if (secs < 0)
		return epoll_wait(ep, evs, max, -1);
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	n = epoll_pwait2(ep, evs, max, &ts, NULL);
	if (n < 0 && errno == ENOSYS)
		n = epoll_wait(ep, evs, max, (int)(secs * 1e3) + 1);
	return n;
}

int tq_client_run(const struct tq_client_opts *o, const struct tq_client_ops *ops,
		  void *arg, char *err, size_t errlen)
{
	struct client *cl;
	struct epoll_event evs[CLIENT_EVENTS];
	int rc;

	if (o->conns < 1 || o->conns > TQ_CLIENT_MAX_CONNS) {
		snprintf(err, errlen, "connections must be 1..%d", TQ_CLIENT_MAX_CONNS);
		return -EINVAL;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl || !(cl->conns = calloc((size_t)o->conns, sizeof(*cl->conns)))) {
		free(cl);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	cl->o = o;
	cl->ops = ops;
	cl->arg = arg;
	cl->timeout_s = o->timeout_s > 0 ? o->timeout_s : 60;
	cl->ep = epoll_create1(EPOLL_CLOEXEC);
	rc = cl->ep < 0 ? -errno : resolve(cl, err, errlen);
	if (cl->ep < 0)
		snprintf(err, errlen, "epoll_create1: %s", strerror(-rc));
	for (int i = 0; i < o->conns; i++)
		cl->conns[i] = (struct conn){.k = i, .fd = -1, .state = C_FREE};
	for (int i = 0; rc == 0 && i < o->conns; i++) {
		rc = conn_open(cl, &cl->conns[i]);
		if (rc)
			snprintf(err, errlen, "cannot connect to %s: %s", cl->host,
				 strerror(-rc));
	}
	if (rc == 0) {
		double now = tq_bench_mono();

		cl->live = o->conns;
		for (int i = 0; i < o->conns; i++)
			advance(cl, &cl->conns[i], now);
	}
	while (rc == 0 && cl->live > 0) {
		int n = wait_events(cl->ep, evs, CLIENT_EVENTS, tick(cl, tq_bench_mono()));

		if (n < 0 && errno != EINTR) {
			rc = -errno;
			snprintf(err, errlen, "epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++)
			on_event(cl, evs[i].data.ptr, evs[i].events);
	}
	for (int i = 0; i < o->conns; i++)
		conn_close(&cl->conns[i]);
	if (cl->ep >= 0)
		close(cl->ep);
	free(cl->conns);
	free(cl);
	return rc;
}
