/*
 * test_plugins_real.c - the bundled http, exec and email plugins against
 * real local servers started here: an HTTP server (libmicrohttpd, in this
 * process), real programs, and a small SMTP sink thread, all on 127.0.0.1
 * with ephemeral ports.
 *
 * Most cases load a plugin with tq_plugin_load_file() and a libconfig block
 * parsed from a string and call its handler and validator directly with
 * tq_host and a struct taskq_job, exactly as a worker does.  The last case
 * runs a real taskqd (against the private PostgreSQL and Redis) whose plugin
 * directory holds the three plugins and whose config has their blocks.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libconfig.h>
#include <microhttpd.h>

#include "job.h"
#include "plugin_host.h"

#define JOB_ID "0b8e5c3a-4d2f-4e1a-9c7b-2f6d8a1e3b5c"
#define SLOW_MS 3000
#define DAEMON_JOB_WAIT_MS 30000

extern char **environ;

/* ---- the HTTP server ------------------------------------------------- */

static struct MHD_Daemon *web;
static int web_port;
static atomic_int flaky_hits;
static atomic_int flaky_daemon_hits;

struct web_req {
	char *body;
	size_t len;
};

static enum MHD_Result web_reply(struct MHD_Connection *conn,
				 unsigned int status, const char *body,
				 const char *hname, const char *hvalue)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(body), (void *)body,
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (hname)
		MHD_add_response_header(r, hname, hvalue);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result web_handler(void *cls, struct MHD_Connection *conn,
				   const char *url, const char *method,
				   const char *version, const char *upload,
				   size_t *upload_size, void **con_cls)
{
	struct web_req *wr = *con_cls;
	char text[512];
	const char *h;

	(void)cls;
	(void)version;
	if (!wr) {
		wr = calloc(1, sizeof(*wr));
		if (!wr)
			return MHD_NO;
		*con_cls = wr;
		return MHD_YES;
	}
	if (*upload_size) {
		char *p = realloc(wr->body, wr->len + *upload_size + 1);

		if (!p)
			return MHD_NO;
		wr->body = p;
		memcpy(wr->body + wr->len, upload, *upload_size);
		wr->len += *upload_size;
		wr->body[wr->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}

	if (!strcmp(url, "/ok"))
		return web_reply(conn, 200, "hello from the test server", NULL, NULL);
	if (!strcmp(url, "/flaky"))
		return atomic_fetch_add(&flaky_hits, 1) == 0 ?
			       web_reply(conn, 500, "try again", NULL, NULL) :
			       web_reply(conn, 200, "recovered", NULL, NULL);
	if (!strcmp(url, "/flaky-daemon"))
		return atomic_fetch_add(&flaky_daemon_hits, 1) == 0 ?
			       web_reply(conn, 500, "try again", NULL, NULL) :
			       web_reply(conn, 200, "recovered", NULL, NULL);
	if (!strcmp(url, "/missing"))
		return web_reply(conn, 404, "no such thing", NULL, NULL);
	if (!strcmp(url, "/busy"))
		return web_reply(conn, 429, "slow down", "Retry-After", "2");
	if (!strcmp(url, "/redirect"))
		return web_reply(conn, 302, "", "Location", "http://example.org/");
	if (!strcmp(url, "/big")) {
		static char big[100000];

		memset(big, 'x', sizeof(big) - 1);
		return web_reply(conn, 200, big, NULL, NULL);
	}
	if (!strcmp(url, "/slow")) {
		th_sleep_ms(SLOW_MS);
		return web_reply(conn, 200, "late", NULL, NULL);
	}
	if (!strcmp(url, "/echo")) {
		h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Test");
		snprintf(text, sizeof(text), "%s %s %s", method, h ? h : "-",
			 wr->body ? wr->body : "");
		return web_reply(conn, 200, text, NULL, NULL);
	}
	return web_reply(conn, 404, "unknown path", NULL, NULL);
}

static void web_completed(void *cls, struct MHD_Connection *conn,
			  void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct web_req *wr = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (wr) {
		free(wr->body);
		free(wr);
	}
	*con_cls = NULL;
}

static int web_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const union MHD_DaemonInfo *info;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	web = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				       MHD_USE_THREAD_PER_CONNECTION,
			       0, NULL, NULL, web_handler, NULL,
			       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			       MHD_OPTION_NOTIFY_COMPLETED, web_completed, NULL,
			       MHD_OPTION_END);
	if (!web)
		return -1;
	info = MHD_get_daemon_info(web, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port)
		return -1;
	web_port = info->port;
	return 0;
}

/* ---- the SMTP sink --------------------------------------------------- */

enum sink_mode { SINK_OK, SINK_REJECT_RCPT, SINK_TEMPFAIL_RCPT };

struct sink {
	int fd;
	int port;
	pthread_t thread;
	atomic_int stop;
	enum sink_mode mode;
	pthread_mutex_t lock;
	char mail_from[256];
	char rcpts[1024];
	char *data; /* the message, dot-stuffing undone */
	size_t data_len;
	int messages;
};

static struct sink smtp;

struct sink_conn {
	int fd;
	char buf[4096];
	size_t len;
};

static int sink_send(int fd, const char *s)
{
	size_t n = strlen(s);

	return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* One line without its CRLF into line; -1 on EOF or error. */
static int sink_line(struct sink_conn *c, char *line, size_t max)
{
	char *nl;
	size_t n;
	ssize_t r;

	for (;;) {
		nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			n = (size_t)(nl - c->buf) + 1;
			if (n - 1 >= max)
				return -1;
			memcpy(line, c->buf, n - 1);
			line[n - 1] = '\0';
			if (n >= 2 && line[n - 2] == '\r')
				line[n - 2] = '\0';
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static void sink_append(struct sink *s, const char *line)
{
	size_t n = strlen(line);
	char *p = realloc(s->data, s->data_len + n + 3);

	if (!p)
		return;
	s->data = p;
	memcpy(s->data + s->data_len, line, n);
	memcpy(s->data + s->data_len + n, "\r\n", 3);
	s->data_len += n + 2;
}

static void sink_session(struct sink *s, int fd)
{
	struct sink_conn c = { .fd = fd };
	char line[2048];
	int in_data = 0;

	if (sink_send(fd, "220 sink ESMTP test\r\n") < 0)
		return;
	while (sink_line(&c, line, sizeof(line)) == 0) {
		pthread_mutex_lock(&s->lock);
		if (in_data) {
			if (!strcmp(line, ".")) {
				in_data = 0;
				s->messages++;
				pthread_mutex_unlock(&s->lock);
				sink_send(fd, "250 queued\r\n");
				continue;
			}
			sink_append(s, line[0] == '.' ? line + 1 : line);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "HELO", 4)) {
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "250 sink\r\n");
		} else if (!strncasecmp(line, "MAIL FROM:", 10)) {
			snprintf(s->mail_from, sizeof(s->mail_from), "%.200s", line + 10);
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "250 ok\r\n");
		} else if (!strncasecmp(line, "RCPT TO:", 8)) {
			enum sink_mode mode = s->mode;
			size_t used = strlen(s->rcpts);

			if (mode == SINK_OK)
				snprintf(s->rcpts + used, sizeof(s->rcpts) - used,
					 "%.200s;", line + 8);
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, mode == SINK_OK ? "250 ok\r\n" :
				      mode == SINK_REJECT_RCPT ?
							"550 no such user here\r\n" :
							"451 try again later\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			in_data = 1;
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "354 go ahead\r\n");
		} else if (!strncasecmp(line, "RSET", 4) ||
			   !strncasecmp(line, "NOOP", 4)) {
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "250 ok\r\n");
		} else if (!strncasecmp(line, "QUIT", 4)) {
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "221 bye\r\n");
			return;
		} else {
			pthread_mutex_unlock(&s->lock);
			sink_send(fd, "502 not implemented\r\n");
		}
	}
}

static void *sink_main(void *arg)
{
	struct sink *s = arg;
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	int fd;

	while (!atomic_load(&s->stop)) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		sink_session(s, fd);
		close(fd);
	}
	return NULL;
}

static int sink_start(struct sink *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->fd, 8) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	s->port = ntohs(sa.sin_port);
	return pthread_create(&s->thread, NULL, sink_main, s) ? -1 : 0;
}

static void sink_stop(struct sink *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->thread, NULL);
	close(s->fd);
	free(s->data);
	pthread_mutex_destroy(&s->lock);
}

static void sink_reset(struct sink *s, enum sink_mode mode)
{
	pthread_mutex_lock(&s->lock);
	s->mode = mode;
	s->mail_from[0] = '\0';
	s->rcpts[0] = '\0';
	free(s->data);
	s->data = NULL;
	s->data_len = 0;
	s->messages = 0;
	pthread_mutex_unlock(&s->lock);
}

/* ---- loading a plugin with its config block ------------------------- */

struct loaded {
	config_t lc;
	struct tq_plugin *pl;
	const struct taskq_job_type *type;
};

static void fmt(char *buf, size_t len, const char *f, ...)
	__attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < len);
}

/* Load <name>.so of the bundled plugins with the block plugin.<name> of
 * conf (libconfig text; may be "" for none). */
static struct loaded *load(const char *name, const char *conf)
{
	struct loaded *l = calloc(1, sizeof(*l));
	char path[TH_PATH_MAX], block[64], err[256];
	const config_setting_t *b;

	assert_non_null(l);
	config_init(&l->lc);
	if (config_read_string(&l->lc, conf) != CONFIG_TRUE)
		fail_msg("bad test config: %s line %d", config_error_text(&l->lc),
			 config_error_line(&l->lc));
	fmt(block, sizeof(block), "plugin.%s", name);
	b = config_lookup(&l->lc, block);
	fmt(path, sizeof(path), "%s/%s.so", th_env("TASKQ_TEST_BUNDLED_PLUGIN_DIR"),
	    name);
	if (tq_plugin_load_file(path, b, &l->pl, err, sizeof(err)) != 0)
		fail_msg("cannot load %s: %s", path, err);
	assert_int_equal(l->pl->desc->n_types, 1);
	l->type = &l->pl->desc->types[0];
	assert_string_equal(l->type->name, name);
	assert_non_null(l->type->validate);
	return l;
}

static void unload(struct loaded *l)
{
	tq_plugin_free(l->pl);
	config_destroy(&l->lc);
	free(l);
}

/* Run one attempt with timeout_ms to go. */
static enum taskq_outcome run(struct loaded *l, struct taskq_job *job,
			      const char *payload, int attempt, int timeout_ms)
{
	tq_job_init(job, JOB_ID, l->type->name, payload, attempt,
		    tq_now_ms() + timeout_ms);
	return l->type->handler(&tq_host, job, l->pl->user_data);
}

/* The validator's verdict: 0 accepted, else refused with the reason. */
static int validate(struct loaded *l, const char *payload, char *err,
		    size_t errlen)
{
	err[0] = '\0';
	return l->type->validate(&tq_host, payload, err, errlen,
				 l->pl->user_data);
}

static void expect_refused(struct loaded *l, const char *payload,
			   const char *reason_part)
{
	char err[256];

	if (validate(l, payload, err, sizeof(err)) == 0)
		fail_msg("payload %s was accepted", payload);
	if (!strstr(err, reason_part))
		fail_msg("payload %s refused with \"%s\", wanted \"%s\" in it",
			 payload, err, reason_part);
}

static void expect_accepted(struct loaded *l, const char *payload)
{
	char err[256];

	if (validate(l, payload, err, sizeof(err)) != 0)
		fail_msg("payload %s refused: %s", payload, err);
}

static void expect_error(const struct taskq_job *job, const char *part)
{
	if (!job->error || !strstr(job->error, part))
		fail_msg("error \"%s\" does not contain \"%s\"",
			 job->error ? job->error : "(none)", part);
}

static cJSON *result_json(const struct taskq_job *job)
{
	cJSON *r;

	assert_non_null(job->result);
	r = cJSON_Parse(job->result);
	assert_non_null(r);
	return r;
}

/* ---- http -------------------------------------------------------------- */

static struct loaded *load_http(size_t max_response)
{
	char conf[512];

	fmt(conf, sizeof(conf),
	    "plugin = { http = { allow_hosts = [\"example.org\", \"127.0.0.1\"];"
	    " max_response_bytes = %zu; user_agent = \"taskq-test\"; }; };",
	    max_response);
	return load("http", conf);
}

static void http_payload(char *buf, size_t len, const char *path,
			 const char *extra)
{
	fmt(buf, len, "{\"url\":\"http://127.0.0.1:%d%s\"%s%s}", web_port, path,
	    extra ? "," : "", extra ? extra : "");
}

static void test_http_ok(void **state)
{
	struct loaded *l = load_http(65536);
	struct taskq_job job;
	char p[512];
	cJSON *r;

	(void)state;
	http_payload(p, sizeof(p), "/ok", NULL);
	expect_accepted(l, p);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "status"), 200);
	assert_string_equal(th_json_str(r, "body"), "hello from the test server");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r, "truncated")));
	cJSON_Delete(r);
	tq_job_clear(&job);

	/* method, header and body reach the server */
	http_payload(p, sizeof(p), "/echo",
		     "\"method\":\"PUT\",\"headers\":{\"X-Test\":\"yes\"},"
		     "\"body\":\"some data\",\"timeout_s\":5");
	expect_accepted(l, p);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_DONE);
	r = result_json(&job);
	assert_string_equal(th_json_str(r, "body"), "PUT yes some data");
	cJSON_Delete(r);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_http_500_then_200(void **state)
{
	struct loaded *l = load_http(65536);
	struct taskq_job job;
	char p[512];
	cJSON *r;

	(void)state;
	atomic_store(&flaky_hits, 0);
	http_payload(p, sizeof(p), "/flaky", NULL);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_RETRY);
	expect_error(&job, "HTTP status 500");
	assert_false(job.has_retry_after);
	tq_job_clear(&job);

	assert_int_equal(run(l, &job, p, 2, 10000), TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "status"), 200);
	assert_string_equal(th_json_str(r, "body"), "recovered");
	cJSON_Delete(r);
	tq_job_clear(&job);
	assert_int_equal(atomic_load(&flaky_hits), 2);
	unload(l);
	th_case_passed();
}

static void test_http_404_fails(void **state)
{
	struct loaded *l = load_http(65536);
	struct taskq_job job;
	char p[512];

	(void)state;
	http_payload(p, sizeof(p), "/missing", NULL);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_FAIL);
	expect_error(&job, "HTTP status 404");
	tq_job_clear(&job);

	/* redirects are not followed, even to an allowed host */
	http_payload(p, sizeof(p), "/redirect", NULL);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_FAIL);
	expect_error(&job, "redirects are not followed");
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_http_429_retry_after(void **state)
{
	struct loaded *l = load_http(65536);
	struct taskq_job job;
	char p[512];

	(void)state;
	http_payload(p, sizeof(p), "/busy", NULL);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_RETRY);
	expect_error(&job, "HTTP status 429");
	assert_true(job.has_retry_after);
	assert_int_equal(job.retry_after_s, 2);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_http_truncated(void **state)
{
	struct loaded *l = load_http(1000);
	struct taskq_job job;
	char p[512];
	cJSON *r;

	(void)state;
	http_payload(p, sizeof(p), "/big", NULL);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "status"), 200);
	assert_int_equal(strlen(th_json_str(r, "body")), 1000);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "truncated")));
	cJSON_Delete(r);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_http_host_refused(void **state)
{
	struct loaded *l = load_http(65536), *none;
	struct taskq_job job;
	char p[512];

	(void)state;
	expect_refused(l, "{\"url\":\"http://10.20.30.40/\"}",
		       "not in plugin.http.allow_hosts");
	fmt(p, sizeof(p), "{\"url\":\"http://localhost:%d/ok\"}", web_port);
	expect_refused(l, p, "not in plugin.http.allow_hosts");
	/* userinfo does not fool the host check */
	expect_refused(l, "{\"url\":\"http://127.0.0.1@10.20.30.40/\"}",
		       "not in plugin.http.allow_hosts");
	expect_refused(l, "{\"url\":\"ftp://127.0.0.1/x\"}", "http or https");
	expect_refused(l, "{\"url\":\"file:///etc/passwd\"}", "http or https");
	expect_refused(l, "{\"url\":\"http://127.0.0.1/\",\"method\":\"TRACE\"}",
		       "\"method\"");
	expect_refused(l, "{\"url\":\"http://127.0.0.1/\",\"headers\":{\"X\":\"a\\r\\nB: c\"}}",
		       "control characters");
	expect_refused(l, "{\"url\":\"http://127.0.0.1/\",\"timeout_s\":0}",
		       "timeout_s");
	expect_refused(l, "[1]", "JSON object");
	expect_accepted(l, "{\"url\":\"https://EXAMPLE.org/path\"}");

	/* the handler checks again */
	assert_int_equal(run(l, &job, "{\"url\":\"http://10.20.30.40/\"}", 1, 10000),
			 TASKQ_FAIL);
	expect_error(&job, "not in plugin.http.allow_hosts");
	tq_job_clear(&job);
	unload(l);

	/* without allow_hosts nothing is allowed */
	none = load("http", "");
	http_payload(p, sizeof(p), "/ok", NULL);
	expect_refused(none, p, "allow_hosts is empty");
	unload(none);
	th_case_passed();
}

static void test_http_network_errors(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct loaded *l = load_http(65536);
	struct taskq_job job;
	char p[512];
	int64_t t0;
	int fd, port;

	(void)state;
	/* a port nobody listens on */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	fmt(p, sizeof(p), "{\"url\":\"http://127.0.0.1:%d/\"}", port);
	assert_int_equal(run(l, &job, p, 1, 10000), TASKQ_RETRY);
	expect_error(&job, "connect");
	tq_job_clear(&job);

	/* the job's time runs out during a slow answer */
	http_payload(p, sizeof(p), "/slow", NULL);
	t0 = th_now_ms();
	assert_int_equal(run(l, &job, p, 1, 500), TASKQ_RETRY);
	assert_true(th_now_ms() - t0 < SLOW_MS - 500);
	assert_non_null(job.error);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

/* ---- exec -------------------------------------------------------------- */

static struct loaded *load_exec(void)
{
	return load("exec", "plugin = { exec = { commands = {"
			    " echo = \"/bin/echo\"; sh = \"/bin/sh\";"
			    " cat = \"/bin/cat\"; ls = \"/bin/ls\"; };"
			    " max_output_bytes = 1000; }; };");
}

static void test_exec_echo(void **state)
{
	struct loaded *l = load_exec();
	struct taskq_job job;
	cJSON *r;
	int stray;

	(void)state;
	expect_accepted(l, "{\"command\":\"echo\",\"args\":[\"hello\",\"world\"]}");
	assert_int_equal(run(l, &job, "{\"command\":\"echo\",\"args\":[\"hello\",\"world\"]}",
			     1, 10000),
			 TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "exit_status"), 0);
	assert_string_equal(th_json_str(r, "stdout"), "hello world\n");
	assert_string_equal(th_json_str(r, "stderr"), "");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r, "truncated")));
	cJSON_Delete(r);
	tq_job_clear(&job);

	/* stdin in, stderr captured; no shell expands the arguments */
	assert_int_equal(run(l, &job, "{\"command\":\"cat\",\"stdin\":\"line1\\nline2\\n\"}",
			     1, 10000),
			 TASKQ_DONE);
	r = result_json(&job);
	assert_string_equal(th_json_str(r, "stdout"), "line1\nline2\n");
	cJSON_Delete(r);
	tq_job_clear(&job);
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\",\"echo oops >&2\"]}",
			     1, 10000),
			 TASKQ_DONE);
	r = result_json(&job);
	assert_string_equal(th_json_str(r, "stderr"), "oops\n");
	cJSON_Delete(r);
	tq_job_clear(&job);
	assert_int_equal(run(l, &job, "{\"command\":\"echo\",\"args\":[\"$HOME\",\"*\"]}",
			     1, 10000),
			 TASKQ_DONE);
	r = result_json(&job);
	assert_string_equal(th_json_str(r, "stdout"), "$HOME *\n");
	cJSON_Delete(r);
	tq_job_clear(&job);

	/* the program inherits only 0, 1 and 2, even of a descriptor
	 * opened without close-on-exec */
	stray = open("/dev/null", O_RDONLY);
	assert_true(stray > 2);
	assert_int_equal(run(l, &job, "{\"command\":\"ls\",\"args\":[\"/proc/self/fd\"]}",
			     1, 10000),
			 TASKQ_DONE);
	close(stray);
	r = result_json(&job);
	/* 3 is the directory ls reads */
	assert_string_equal(th_json_str(r, "stdout"), "0\n1\n2\n3\n");
	cJSON_Delete(r);
	tq_job_clear(&job);

	/* output beyond max_output_bytes is dropped and marked */
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\","
				      "\"i=0; while [ $i -lt 500 ]; do echo 0123456789;"
				      " i=$((i+1)); done\"]}",
			     1, 10000),
			 TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(strlen(th_json_str(r, "stdout")), 1000);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "truncated")));
	cJSON_Delete(r);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_exec_exit_status(void **state)
{
	struct loaded *l = load_exec();
	struct taskq_job job;
	cJSON *r;

	(void)state;
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\",\"echo partial; exit 3\"]}",
			     1, 10000),
			 TASKQ_RETRY);
	assert_string_equal(job.error, "command exited with status 3");
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "exit_status"), 3);
	assert_string_equal(th_json_str(r, "stdout"), "partial\n");
	cJSON_Delete(r);
	tq_job_clear(&job);

	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\",\"kill -USR1 $$\"]}",
			     1, 10000),
			 TASKQ_RETRY);
	expect_error(&job, "SIGUSR1");
	r = result_json(&job);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "exit_status")));
	assert_string_equal(th_json_str(r, "signal"), "SIGUSR1");
	cJSON_Delete(r);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

static void test_exec_refused(void **state)
{
	struct loaded *l = load_exec(), *none;
	struct taskq_job job;

	(void)state;
	expect_refused(l, "{\"command\":\"rm\",\"args\":[\"-rf\",\"/\"]}",
		       "not in plugin.exec.commands");
	expect_refused(l, "{\"command\":\"/bin/sh\"}", "not in plugin.exec.commands");
	expect_refused(l, "{\"command\":\"commands.sh\"}", "not in plugin.exec.commands");
	expect_refused(l, "{\"command\":\"[0]\"}", "not in plugin.exec.commands");
	expect_refused(l, "{\"command\":\"echo\",\"args\":[1]}", "\"args\"");
	expect_refused(l, "{\"command\":\"echo\",\"args\":\"x\"}", "\"args\"");
	expect_refused(l, "{\"command\":\"echo\",\"stdin\":3}", "\"stdin\"");
	expect_refused(l, "{}", "\"command\" is required");

	assert_int_equal(run(l, &job, "{\"command\":\"rm\"}", 1, 10000), TASKQ_FAIL);
	expect_error(&job, "not in plugin.exec.commands");
	tq_job_clear(&job);
	unload(l);

	none = load("exec", "");
	expect_refused(none, "{\"command\":\"echo\"}", "not in plugin.exec.commands");
	unload(none);
	th_case_passed();
}

static pid_t parse_pid(const char *s)
{
	char *end;
	long v;

	assert_non_null(s);
	errno = 0;
	v = strtol(s, &end, 10);
	assert_true(errno == 0 && end != s && (*end == '\n' || !*end) && v > 0);
	return (pid_t)v;
}

/* true once pid no longer exists or is a zombie (waiting for its reaper) */
static bool process_gone(pid_t pid, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	char path[64], buf[512], *close_paren;
	FILE *f;

	fmt(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (;;) {
		f = fopen(path, "re");
		if (!f)
			return true;
		buf[0] = '\0';
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
		close_paren = strrchr(buf, ')');
		if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z')
			return true;
		if (th_now_ms() >= deadline)
			return false;
		th_sleep_ms(20);
	}
}

static void test_exec_timeout_kills(void **state)
{
	struct loaded *l = load_exec();
	struct taskq_job job;
	int64_t t0;
	cJSON *r;

	(void)state;
	t0 = th_now_ms();
	/* the sleep is a grandchild: the whole group goes */
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\",\"sleep 30; echo never\"]}",
			     1, 700),
			 TASKQ_RETRY);
	assert_true(th_now_ms() - t0 < 5000);
	expect_error(&job, "timed out");
	expect_error(&job, "SIGTERM");
	r = result_json(&job);
	assert_string_equal(th_json_str(r, "signal"), "SIGTERM");
	cJSON_Delete(r);
	tq_job_clear(&job);

	/* a program that ignores SIGTERM gets SIGKILL */
	t0 = th_now_ms();
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\","
				      "\"trap '' TERM; while :; do sleep 0.1; done\"]}",
			     1, 500),
			 TASKQ_RETRY);
	assert_true(th_now_ms() - t0 < 8000);
	expect_error(&job, "SIGKILL");
	tq_job_clear(&job);

	/* a background child that keeps stdout open does not hold the job
	 * past the drain time, and it is killed */
	t0 = th_now_ms();
	assert_int_equal(run(l, &job, "{\"command\":\"sh\",\"args\":[\"-c\","
				      "\"sleep 30 & echo $!\"]}",
			     1, 20000),
			 TASKQ_DONE);
	assert_true(th_now_ms() - t0 < 5000);
	r = result_json(&job);
	assert_true(process_gone(parse_pid(th_json_str(r, "stdout")), 3000));
	cJSON_Delete(r);
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

struct canceller {
	struct taskq_job *job;
	int after_ms;
};

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;

	th_sleep_ms(c->after_ms);
	atomic_store(&c->job->cancelled, 1);
	return NULL;
}

static void test_exec_cancel(void **state)
{
	struct loaded *l = load_exec();
	struct taskq_job job;
	struct canceller c = { &job, 300 };
	pthread_t t;
	int64_t t0;

	(void)state;
	tq_job_init(&job, JOB_ID, "exec", "{\"command\":\"sh\",\"args\":[\"-c\",\"sleep 30\"]}",
		    1, tq_now_ms() + 60000);
	t0 = th_now_ms();
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
	assert_int_equal(l->type->handler(&tq_host, &job, l->pl->user_data),
			 TASKQ_RETRY);
	pthread_join(t, NULL);
	assert_true(th_now_ms() - t0 < 5000);
	expect_error(&job, "cancelled");
	tq_job_clear(&job);
	unload(l);
	th_case_passed();
}

/* ---- email ------------------------------------------------------------- */

static struct loaded *load_email(int port)
{
	char conf[512];

	fmt(conf, sizeof(conf),
	    "plugin = { email = { smtp_url = \"smtp://127.0.0.1:%d\";"
	    " from = \"taskq@example.org\"; timeout_s = 10; }; };",
	    port);
	return load("email", conf);
}

static void expect_data(const char *part)
{
	pthread_mutex_lock(&smtp.lock);
	if (!smtp.data || !strstr(smtp.data, part)) {
		fprintf(stderr, "message received:\n%s\n", smtp.data ? smtp.data : "(none)");
		pthread_mutex_unlock(&smtp.lock);
		fail_msg("the message lacks \"%s\"", part);
	}
	pthread_mutex_unlock(&smtp.lock);
}

static void test_email_sent(void **state)
{
	struct loaded *l = load_email(smtp.port);
	struct taskq_job job;
	const char *p = "{\"to\":[\"a@example.org\",\"b@example.net\"],"
			"\"subject\":\"Hello sink\","
			"\"text\":\"line one\\n.leading dot\\nline three\"}";
	cJSON *r;

	(void)state;
	sink_reset(&smtp, SINK_OK);
	expect_accepted(l, p);
	assert_int_equal(run(l, &job, p, 1, 15000), TASKQ_DONE);
	r = result_json(&job);
	assert_int_equal(th_json_int(r, "accepted"), 2);
	cJSON_Delete(r);
	tq_job_clear(&job);

	pthread_mutex_lock(&smtp.lock);
	assert_int_equal(smtp.messages, 1);
	assert_string_equal(smtp.mail_from, "<taskq@example.org>");
	assert_string_equal(smtp.rcpts, "<a@example.org>;<b@example.net>;");
	pthread_mutex_unlock(&smtp.lock);
	expect_data("From: taskq@example.org\r\n");
	expect_data("To: a@example.org,\r\n b@example.net\r\n");
	expect_data("Subject: Hello sink\r\n");
	expect_data("Message-ID: <" JOB_ID "@example.org>\r\n");
	expect_data("Date: ");
	expect_data("\r\n\r\nline one\r\n.leading dot\r\nline three\r\n");

	/* a subject that is not ASCII is encoded */
	sink_reset(&smtp, SINK_OK);
	assert_int_equal(run(l, &job, "{\"to\":\"c@example.org\",\"subject\":\"Gr\\u00fc\\u00dfe\","
				      "\"text\":\"hi\"}",
			     1, 15000),
			 TASKQ_DONE);
	tq_job_clear(&job);
	expect_data("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n");
	unload(l);
	th_case_passed();
}

static void test_email_rejected(void **state)
{
	struct loaded *l = load_email(smtp.port);
	struct taskq_job job;
	const char *p = "{\"to\":\"nobody@example.org\",\"subject\":\"s\",\"text\":\"t\"}";

	(void)state;
	sink_reset(&smtp, SINK_REJECT_RCPT);
	assert_int_equal(run(l, &job, p, 1, 15000), TASKQ_FAIL);
	expect_error(&job, "550");
	tq_job_clear(&job);

	sink_reset(&smtp, SINK_TEMPFAIL_RCPT);
	assert_int_equal(run(l, &job, p, 1, 15000), TASKQ_RETRY);
	expect_error(&job, "451");
	tq_job_clear(&job);
	pthread_mutex_lock(&smtp.lock);
	assert_int_equal(smtp.messages, 0);
	pthread_mutex_unlock(&smtp.lock);
	sink_reset(&smtp, SINK_OK);
	unload(l);
	th_case_passed();
}

static void test_email_refused(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct loaded *l = load_email(smtp.port), *closed, *none;
	struct taskq_job job;
	int fd, port;

	(void)state;
	expect_refused(l, "{\"to\":\"not-an-address\",\"subject\":\"s\",\"text\":\"t\"}",
		       "does not look like an address");
	expect_refused(l, "{\"to\":\"a@b.org\\r\\nBcc: x@y.org\",\"subject\":\"s\",\"text\":\"t\"}",
		       "does not look like an address");
	expect_refused(l, "{\"to\":\"a@b.org>\",\"subject\":\"s\",\"text\":\"t\"}",
		       "does not look like an address");
	expect_refused(l, "{\"to\":\"a@b.org\",\"subject\":\"s\\r\\nBcc: x@y.org\",\"text\":\"t\"}",
		       "\"subject\"");
	expect_refused(l, "{\"to\":[],\"subject\":\"s\",\"text\":\"t\"}", "\"to\"");
	expect_refused(l, "{\"to\":\"a@b.org\",\"subject\":\"s\"}", "\"text\"");
	expect_accepted(l, "{\"to\":\"a.b+c@d.example\",\"subject\":\"s\",\"text\":\"\"}");
	unload(l);

	/* nobody listens: retry */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	closed = load_email(port);
	assert_int_equal(run(closed, &job, "{\"to\":\"a@b.org\",\"subject\":\"s\",\"text\":\"t\"}",
			     1, 10000),
			 TASKQ_RETRY);
	expect_error(&job, "connect");
	tq_job_clear(&job);
	unload(closed);

	none = load("email", "");
	expect_refused(none, "{\"to\":\"a@b.org\",\"subject\":\"s\",\"text\":\"t\"}",
		       "smtp_url");
	unload(none);
	th_case_passed();
}

/* ---- through a real taskqd -------------------------------------------- */

struct own_daemon {
	struct th_daemon d;
	char dir[TH_PATH_MAX];
};

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * Start taskqd with a plugin directory of the three plugins and their
 * config blocks (the harness's daemons know only echo, sleep, flaky and
 * record).
 */
static void own_daemon_start(struct own_daemon *od)
{
	static const char *const plugins[] = { "http", "exec", "email" };
	const char *tmp = getenv("TMPDIR");
	char path[TH_PATH_MAX], src[TH_PATH_MAX], pdir[TH_PATH_MAX];
	char **envp;
	size_t i, n = 0;
	pid_t pid;
	FILE *f;
	int64_t deadline;
	int fd;

	memset(od, 0, sizeof(*od));
	fmt(od->dir, sizeof(od->dir), "%s/tq_plugins_real_XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(od->dir));
	fmt(pdir, sizeof(pdir), "%s/plugins", od->dir);
	assert_int_equal(mkdir(pdir, 0700), 0);
	for (i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
		fmt(src, sizeof(src), "%s/%s.so",
		    th_env("TASKQ_TEST_BUNDLED_PLUGIN_DIR"), plugins[i]);
		fmt(path, sizeof(path), "%s/%s.so", pdir, plugins[i]);
		assert_int_equal(symlink(src, path), 0);
	}

	od->d.port = free_port();
	assert_true(od->d.port > 0);
	fmt(od->d.url, sizeof(od->d.url), "http://127.0.0.1:%d", od->d.port);
	fmt(od->d.prefix, sizeof(od->d.prefix), "tq_plugins_real_%d", (int)getpid());
	fmt(od->d.conf_path, sizeof(od->d.conf_path), "%s/taskqd.conf", od->dir);
	fmt(od->d.log_path, sizeof(od->d.log_path), "%s/taskqd.log", od->dir);
	f = fopen(od->d.conf_path, "we");
	assert_non_null(f);
	fprintf(f,
		"database = { url = \"%s\"; pool_size = 4; auto_migrate = true; };\n"
		"redis = { url = \"%s\"; prefix = \"%s\"; };\n"
		"api = { listen = \"127.0.0.1:%d\"; threads = 2; };\n"
		"workers = { count = 2; lease_s = 30; shutdown_grace_s = 5; };\n"
		"jobs = { max_attempts = 3; timeout_s = 30; backoff_base_ms = 200;"
		" backoff_cap_ms = 1000; };\n"
		"scheduler = { interval_s = 1; pending_redispatch_s = 5; };\n"
		"plugins = { dir = \"%s\"; allow_insecure = true; };\n"
		"log = { level = \"debug\"; };\n"
		"plugin = {\n"
		"  http = { allow_hosts = [\"127.0.0.1\"]; };\n"
		"  exec = { commands = { echo = \"/bin/echo\"; }; };\n"
		"  email = { smtp_url = \"smtp://127.0.0.1:%d\"; from = \"taskq@example.org\"; };\n"
		"};\n",
		th_db_url(), th_env("TASKQ_TEST_REDIS_URL"), od->d.prefix,
		od->d.port, pdir, smtp.port);
	assert_int_equal(fclose(f), 0);

	for (i = 0; environ[i]; i++)
		n++;
	envp = calloc(n + 1, sizeof(*envp));
	assert_non_null(envp);
	n = 0;
	for (i = 0; environ[i]; i++)
		if (strncmp(environ[i], "TASKQ_", 6) != 0)
			envp[n++] = environ[i];
	envp[n] = NULL;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { (char *)th_env("TASKQ_TEST_TASKQD"), (char *)"-c",
				 od->d.conf_path, NULL };

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		fd = open(od->d.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	free(envp);
	od->d.pid = pid;

	deadline = th_now_ms() + 20000;
	for (;;) {
		struct th_resp resp;
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			od->d.pid = 0;
			th_daemon_log_tail(&od->d, 40);
			fail_msg("taskqd exited during start-up (status 0x%x)", st);
		}
		th_http(&od->d, "GET", "/healthz", NULL, NULL, &resp);
		st = (int)resp.status;
		th_resp_free(&resp);
		if (st == 200)
			break;
		if (th_now_ms() >= deadline) {
			th_daemon_log_tail(&od->d, 40);
			fail_msg("taskqd did not become healthy");
		}
		th_sleep_ms(50);
	}
}

/* Stop the daemon and remove its files.  Returns a reason when it did not
 * stop cleanly (exit status, sanitizer report), else NULL. */
static const char *own_daemon_stop(struct own_daemon *od, bool show_log)
{
	char path[TH_PATH_MAX];
	int64_t deadline = th_now_ms() + 10000;
	const char *bad = NULL;
	int st = 0;

	if (show_log)
		th_daemon_log_tail(&od->d, 60);
	if (od->d.pid > 0) {
		kill(od->d.pid, SIGTERM);
		while (waitpid(od->d.pid, &st, WNOHANG) == 0) {
			if (th_now_ms() >= deadline) {
				kill(od->d.pid, SIGKILL);
				waitpid(od->d.pid, &st, 0);
				bad = "taskqd did not stop on SIGTERM";
				break;
			}
			th_sleep_ms(20);
		}
		od->d.pid = 0;
		if (!bad && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
			bad = "taskqd did not exit with status 0";
	}
	if (!bad && (th_daemon_log_count(&od->d, "runtime error") > 0 ||
		     th_daemon_log_count(&od->d, "Sanitizer") > 0))
		bad = "sanitizer report in the taskqd log";
	if (bad && !show_log)
		th_daemon_log_tail(&od->d, 60);
	fmt(path, sizeof(path), "%s/plugins/http.so", od->dir);
	unlink(path);
	fmt(path, sizeof(path), "%s/plugins/exec.so", od->dir);
	unlink(path);
	fmt(path, sizeof(path), "%s/plugins/email.so", od->dir);
	unlink(path);
	fmt(path, sizeof(path), "%s/plugins", od->dir);
	rmdir(path);
	unlink(od->d.conf_path);
	unlink(od->d.log_path);
	rmdir(od->dir);
	return bad;
}

static struct own_daemon *running;

static void test_daemon_runs_plugins(void **state)
{
	static struct own_daemon od;
	struct th_resp resp;
	const char *why;
	char body[512], id[TH_ID_LEN];
	const cJSON *res;
	cJSON *job;

	(void)state;
	own_daemon_start(&od);
	running = &od;
	atomic_store(&flaky_daemon_hits, 0);
	sink_reset(&smtp, SINK_OK);

	/* 500 then 200: the job is retried once, then completes */
	fmt(body, sizeof(body),
	    "{\"type\":\"http\",\"max_attempts\":3,"
	    "\"payload\":{\"url\":\"http://127.0.0.1:%d/flaky-daemon\"}}",
	    web_port);
	th_submit(&od.d, body, id);
	job = th_wait_status(&od.d, id, "completed", DAEMON_JOB_WAIT_MS);
	assert_int_equal(th_json_int(job, "attempts"), 2);
	res = cJSON_GetObjectItemCaseSensitive(job, "result");
	assert_int_equal(th_json_int(res, "status"), 200);
	assert_string_equal(th_json_str(res, "body"), "recovered");
	cJSON_Delete(job);
	assert_int_equal(atomic_load(&flaky_daemon_hits), 2);

	/* a host outside allow_hosts is refused at submission */
	th_http(&od.d, "POST", "/v1/jobs",
		"{\"type\":\"http\",\"payload\":{\"url\":\"http://10.20.30.40/\"}}",
		"application/json", &resp);
	assert_int_equal(resp.status, 400);
	assert_string_equal(th_resp_code(&resp), "INVALID_PAYLOAD");
	th_resp_free(&resp);
	th_http(&od.d, "POST", "/v1/jobs",
		"{\"type\":\"exec\",\"payload\":{\"command\":\"sh\"}}",
		"application/json", &resp);
	assert_int_equal(resp.status, 400);
	assert_string_equal(th_resp_code(&resp), "INVALID_PAYLOAD");
	th_resp_free(&resp);

	/* exec and email run in the daemon too */
	th_submit(&od.d, "{\"type\":\"exec\",\"payload\":{\"command\":\"echo\","
			 "\"args\":[\"from\",\"taskqd\"]}}", id);
	job = th_wait_status(&od.d, id, "completed", DAEMON_JOB_WAIT_MS);
	res = cJSON_GetObjectItemCaseSensitive(job, "result");
	assert_string_equal(th_json_str(res, "stdout"), "from taskqd\n");
	cJSON_Delete(job);

	th_submit(&od.d, "{\"type\":\"email\",\"payload\":{\"to\":\"ops@example.org\","
			 "\"subject\":\"From the daemon\",\"text\":\"it works\"}}", id);
	job = th_wait_status(&od.d, id, "completed", DAEMON_JOB_WAIT_MS);
	res = cJSON_GetObjectItemCaseSensitive(job, "result");
	assert_int_equal(th_json_int(res, "accepted"), 1);
	cJSON_Delete(job);
	expect_data("To: ops@example.org\r\n");
	expect_data("Subject: From the daemon\r\n");
	expect_data("\r\n\r\nit works\r\n");

	running = NULL;
	why = own_daemon_stop(&od, false);
	if (why)
		fail_msg("%s", why);
	th_case_passed();
}

/* Stop our own daemon when a case failed before it could. */
static int own_teardown(void **state)
{
	if (running) {
		own_daemon_stop(running, true);
		running = NULL;
	}
	return th_case_teardown(state);
}

/* ---- fixtures -------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	if (th_group_setup("plugins_real") < 0)
		return -1;
	if (web_start() < 0) {
		fprintf(stderr, "cannot start the test HTTP server\n");
		return -1;
	}
	if (sink_start(&smtp) < 0) {
		fprintf(stderr, "cannot start the SMTP sink: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (web)
		MHD_stop_daemon(web);
	web = NULL;
	sink_stop(&smtp);
	return th_group_teardown();
}

#define CASE(f) cmocka_unit_test_setup_teardown(f, th_case_setup, own_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		CASE(test_http_ok),
		CASE(test_http_500_then_200),
		CASE(test_http_404_fails),
		CASE(test_http_429_retry_after),
		CASE(test_http_truncated),
		CASE(test_http_host_refused),
		CASE(test_http_network_errors),
		CASE(test_exec_echo),
		CASE(test_exec_exit_status),
		CASE(test_exec_refused),
		CASE(test_exec_timeout_kills),
		CASE(test_exec_cancel),
		CASE(test_email_sent),
		CASE(test_email_rejected),
		CASE(test_email_refused),
		CASE(test_daemon_runs_plugins),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
