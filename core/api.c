/*
 * api.c - the REST API on libmicrohttpd.
 *
 * libmicrohttpd runs its own pool of threads (one epoll loop each) and
 * keeps HTTP/1.1 connections alive.  A request is handled in three steps
 * on its connection's thread:
 *
 *   first call     route it; answer at once what needs no body (GET, 404,
 *                  405) and what can be refused from the headers alone
 *                  (415, 413 from Content-Length)
 *   data calls     append the body to a buffer bounded by max_body_bytes
 *   last call      parse, validate, queue it for the group commit and
 *                  suspend the connection; the committer dispatches the
 *                  job and resumes it, and a call after the last answers
 *                  201
 *
 * The thread serves its other connections while one waits for the disk.
 * A batch, a listing and a lookup run in the thread itself.
 *
 * Every error path answers before tq_store_insert() or instead of it, so a
 * refused request changes nothing.
 */
#include "api.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "dispatch.h"
#include "json_int.h"
#include "log.h"
#include "plugin_host.h"
#include "queue.h"
#include "request.h"
#include "scheduler.h"
#include "store.h"
#include "submit.h"
#include "utf8.h"

/* Idle time after which a connection is closed (seconds). */
#define API_CONNECTION_TIMEOUT_S 30
/* Body limit when the configuration gives none. */
#define API_DEFAULT_MAX_BODY (1024 * 1024)
/* Once a too-large chunked body passed the limit by this much more, stop
 * reading it and drop the connection. */
#define API_DISCARD_SLACK (1024 * 1024)
/* At shutdown, how long committed submissions may take to send their
 * answers (seconds). */
#define API_STOP_ANSWER_S 2
#define API_LIST_LIMIT_DEFAULT 50
#define API_LIST_LIMIT_MAX 1000

#define CONTENT_TYPE_JSON "application/json"

static const char ALLOW_COLLECTION[] = "GET, HEAD, POST";
static const char ALLOW_ITEM[] = "GET, HEAD";
static const char ALLOW_POST[] = "POST";

struct tq_api {
	struct MHD_Daemon *mhd;
	struct tq_api_deps deps;
	size_t max_body;
	pthread_mutex_t redis_lock; /* guards redis, for /readyz */
	struct tq_queue *redis;
	pthread_mutex_t lock;   /* guards the three below */
	pthread_cond_t settled; /* suspended or unanswered fell */
	unsigned int suspended; /* connections waiting for a commit */
	unsigned int unanswered; /* submissions queued, answer not yet sent */
	bool stopping;          /* no more submissions */
};

/* A single submission's way through the group commit. */
enum submit_state {
	SUBMIT_NONE,
	SUBMIT_WAITING, /* queued; the connection is suspended */
	SUBMIT_DONE,    /* committed or failed; the connection resumed */
};

/* One request, from its first call to MHD_OPTION_NOTIFY_COMPLETED. */
struct api_request {
	struct tq_api_route route;
	struct timespec start;
	char *body;
	size_t len;
	size_t cap;
	uint64_t discarded; /* bytes dropped after the body passed the limit */
	const char *method; /* libmicrohttpd's, valid for the request */
	const char *url;
	bool too_large;
	bool responded;
	char job_id[37]; /* of the created job, for the log line */
	/* POST /v1/jobs, while its connection waits for the commit */
	struct tq_api *api;
	struct MHD_Connection *conn;
	enum submit_state state;
	struct tq_job_spec spec; /* owned from SUBMIT_WAITING on */
	struct tq_inserted ins;
	struct tq_submission sub;
	int rc; /* the commit's, from SUBMIT_DONE on */
};

/* --- routing (pure) ----------------------------------------------------- */

static bool method_is(const char *method, const char *name)
{
	return strcmp(method, name) == 0;
}

static bool method_is_get(const char *method)
{
	return method_is(method, MHD_HTTP_METHOD_GET) ||
	       method_is(method, MHD_HTTP_METHOD_HEAD);
}

/* 8-4-4-4-12 hexadecimal digits. */
static bool uuid_text_valid(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return s[36] == '\0';
}

void tq_api_route(const char *method, const char *path,
		  struct tq_api_route *out)
{
	const char *rest;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->id = TQ_ROUTE_NOT_FOUND;
	if (!method || !path)
		return;

	static const struct {
		const char *path;
		enum tq_api_route_id id;
		bool post;
	} fixed[] = {
		{"/healthz", TQ_ROUTE_HEALTH, false},
		{"/readyz", TQ_ROUTE_READY, false},
		{"/v1/job-types", TQ_ROUTE_JOB_TYPES, false},
		{"/v1/plugins/reload", TQ_ROUTE_PLUGINS_RELOAD, true},
	};

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (strcmp(path, fixed[i].path) != 0)
			continue;
		if (fixed[i].post ? method_is(method, MHD_HTTP_METHOD_POST)
				  : method_is_get(method)) {
			out->id = fixed[i].id;
		} else {
			out->id = TQ_ROUTE_METHOD_NOT_ALLOWED;
			out->allow = fixed[i].post ? ALLOW_POST : ALLOW_ITEM;
		}
		return;
	}

	if (strncmp(path, "/v1/jobs", 8) == 0)
		rest = path + 8;
	else if (strncmp(path, "/jobs", 5) == 0)
		rest = path + 5;
	else
		return;

	if (*rest == '\0') {
		if (method_is(method, MHD_HTTP_METHOD_POST)) {
			out->id = TQ_ROUTE_JOB_SUBMIT;
		} else if (method_is_get(method)) {
			out->id = TQ_ROUTE_JOB_LIST;
		} else {
			out->id = TQ_ROUTE_METHOD_NOT_ALLOWED;
			out->allow = ALLOW_COLLECTION;
		}
		return;
	}
	if (strcmp(rest, "/batch") == 0) {
		if (method_is(method, MHD_HTTP_METHOD_POST)) {
			out->id = TQ_ROUTE_JOB_BATCH;
		} else {
			out->id = TQ_ROUTE_METHOD_NOT_ALLOWED;
			out->allow = ALLOW_POST;
		}
		return;
	}
	if (*rest != '/' || strlen(rest + 1) < 36)
		return;
	{
		char idbuf[37];

		memcpy(idbuf, rest + 1, 36);
		idbuf[36] = '\0';
		if (!uuid_text_valid(idbuf))
			return;
	}
	if (rest[37] == '\0') {
		if (!method_is_get(method)) {
			out->id = TQ_ROUTE_METHOD_NOT_ALLOWED;
			out->allow = ALLOW_ITEM;
			return;
		}
		out->id = TQ_ROUTE_JOB_GET;
	} else if (strcmp(rest + 37, "/cancel") == 0) {
		if (!method_is(method, MHD_HTTP_METHOD_POST)) {
			out->id = TQ_ROUTE_METHOD_NOT_ALLOWED;
			out->allow = ALLOW_POST;
			return;
		}
		out->id = TQ_ROUTE_JOB_CANCEL;
	} else {
		return;
	}
	for (i = 0; i < 36; i++) {
		char c = rest[1 + i];

		out->job_id[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
	}
	out->job_id[36] = '\0';
}

bool tq_api_is_json_content_type(const char *value)
{
	const size_t n = sizeof(CONTENT_TYPE_JSON) - 1;

	if (!value)
		return false;
	while (*value == ' ' || *value == '\t')
		value++;
	if (strncasecmp(value, CONTENT_TYPE_JSON, n) != 0)
		return false;
	value += n;
	while (*value == ' ' || *value == '\t')
		value++;
	return *value == '\0' || *value == ';';
}

/* --- responses ---------------------------------------------------------- */

static int64_t elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - start->tv_sec) * 1000 +
	       (now.tv_nsec - start->tv_nsec) / 1000000;
}

static int64_t realtime_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void log_request(const struct api_request *req, unsigned int status)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;

	if (!tq_log_enabled(TQ_LOG_DEBUG))
		return;
	f.duration_ms = elapsed_ms(&req->start);
	if (req->job_id[0])
		f.job_id = req->job_id;
	else if (req->route.job_id[0])
		f.job_id = req->route.job_id;
	tq_logf(TQ_LOG_DEBUG, &f, "http %s %.200s %u", req->method, req->url,
		status);
}

/* Queue body (malloc'd, taken over) as the JSON answer. */
static enum MHD_Result respond(struct MHD_Connection *conn,
			       struct api_request *req, unsigned int status,
			       char *body, const char *location,
			       const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	req->responded = true;
	resp = MHD_create_response_from_buffer(strlen(body), body,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				    CONTENT_TYPE_JSON) == MHD_NO ||
	    (location && MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION,
						 location) == MHD_NO) ||
	    (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					      allow) == MHD_NO)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	log_request(req, status);
	return ret;
}

static enum MHD_Result respond_error(struct MHD_Connection *conn,
				     struct api_request *req,
				     const struct tq_api_error *e,
				     const char *allow)
{
	unsigned int status = (unsigned int)e->status;
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddStringToObject(o, "error", e->message) &&
	    cJSON_AddStringToObject(o, "code", e->code))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text) {
		text = strdup("{\"error\":\"out of memory\",\"code\":\"" TQ_ERR_INTERNAL
			      "\"}");
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		if (!text)
			return MHD_NO;
	}
	return respond(conn, req, status, text, NULL, allow);
}

/* Answer {"error": <formatted>, "code": code} with status. */
static enum MHD_Result respond_fail(struct MHD_Connection *conn,
				    struct api_request *req, unsigned int status,
				    const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result respond_fail(struct MHD_Connection *conn,
				    struct api_request *req, unsigned int status,
				    const char *code, const char *fmt, ...)
{
	struct tq_api_error e;
	va_list ap;

	e.status = (int)status;
	e.code = code;
	va_start(ap, fmt);
	if (vsnprintf(e.message, sizeof(e.message), fmt, ap) < 0)
		e.message[0] = '\0';
	va_end(ap);
	return respond_error(conn, req, &e, NULL);
}

/* Length of the valid UTF-8 sequence at p, or 0. */

/* A plugin's message may be cut mid-character or be any bytes: make it
 * valid UTF-8 before it goes into JSON. */

/* --- handlers ----------------------------------------------------------- */

static enum MHD_Result store_error(struct MHD_Connection *conn,
				   struct api_request *req, int rc)
{
	if (rc == -EAGAIN)
		return respond_fail(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE,
				    TQ_ERR_UNAVAILABLE, "database unavailable");
	return respond_fail(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			    TQ_ERR_INTERNAL, "internal error");
}

static enum MHD_Result job_not_found(struct MHD_Connection *conn,
				     struct api_request *req)
{
	return respond_fail(conn, req, MHD_HTTP_NOT_FOUND, TQ_ERR_NOT_FOUND,
			    "no job with id \"%s\"", req->route.job_id);
}

static enum MHD_Result handle_health(struct MHD_Connection *conn,
				     struct api_request *req)
{
	char *body = strdup("{\"status\":\"ok\"}");

	if (!body)
		return MHD_NO;
	return respond(conn, req, MHD_HTTP_OK, body, NULL, NULL);
}

static enum MHD_Result handle_ready(struct tq_api *api,
				    struct MHD_Connection *conn,
				    struct api_request *req)
{
	bool db = tq_store_ping(api->deps.store) == 0;
	bool redis;
	char *body;

	pthread_mutex_lock(&api->redis_lock);
	redis = api->redis && tq_queue_ping(api->redis) == 0;
	pthread_mutex_unlock(&api->redis_lock);
	if (asprintf(&body, "{\"status\":\"%s\",\"postgresql\":\"%s\",\"redis\":\"%s\"}",
		     db && redis ? "ready" : "unavailable", db ? "up" : "down",
		     redis ? "up" : "down") < 0)
		return MHD_NO;
	return respond(conn, req, db && redis ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		       body, NULL, NULL);
}

static enum MHD_Result handle_cancel(struct tq_api *api,
				     struct MHD_Connection *conn,
				     struct api_request *req)
{
	char *json = NULL;
	int rc;

	rc = tq_store_cancel(api->deps.store, req->route.job_id, &json);
	if (rc == -ENOENT)
		return job_not_found(conn, req);
	if (rc == -EALREADY) {
		free(json);
		return respond_fail(conn, req, MHD_HTTP_CONFLICT, TQ_ERR_CONFLICT,
				    "job \"%s\" has already finished",
				    req->route.job_id);
	}
	if (rc < 0)
		return store_error(conn, req, rc);
	return respond(conn, req, MHD_HTTP_OK, json, NULL, NULL);
}

static enum MHD_Result handle_job_types(struct tq_api *api,
					struct MHD_Connection *conn,
					struct api_request *req)
{
	char *json = NULL;

	if (tq_plugins_types_json(api->deps.plugins, &json) < 0)
		return respond_fail(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    TQ_ERR_INTERNAL, "out of memory");
	return respond(conn, req, MHD_HTTP_OK, json, NULL, NULL);
}

static enum MHD_Result handle_reload(struct tq_api *api,
				     struct MHD_Connection *conn,
				     struct api_request *req)
{
	char *body;
	int n;

	tq_info("plugin reload requested over the API");
	n = tq_plugins_load(api->deps.plugins);
	if (n < 0)
		return respond_fail(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    TQ_ERR_INTERNAL, "cannot read the plugin directory: %s",
				    strerror(-n));
	if (asprintf(&body, "{\"status\":\"reloaded\",\"job_types\":%d}", n) < 0)
		return MHD_NO;
	return respond(conn, req, MHD_HTTP_OK, body, NULL, NULL);
}

static enum MHD_Result handle_get(struct tq_api *api,
				  struct MHD_Connection *conn,
				  struct api_request *req)
{
	char *json = NULL;
	int rc;

	rc = tq_store_get_json(api->deps.store, req->route.job_id, &json);
	if (rc == -ENOENT)
		return job_not_found(conn, req);
	if (rc < 0)
		return store_error(conn, req, rc);
	return respond(conn, req, MHD_HTTP_OK, json, NULL, NULL);
}

struct list_query {
	const char *status;
	const char *type;
	const char *limit;
	char bad[65]; /* the unknown or repeated parameter, quotable */
	bool unknown;
	bool repeated;
};

static enum MHD_Result list_query_arg(void *cls, enum MHD_ValueKind kind,
				      const char *key, const char *value)
{
	struct list_query *q = cls;
	const char **slot = NULL;

	if (strcmp(key, "status") == 0)
		slot = &q->status;
	else if (strcmp(key, "type") == 0)
		slot = &q->type;
	else if (strcmp(key, "limit") == 0)
		slot = &q->limit;

	if (!slot || *slot) {
		size_t i;

		q->repeated = slot != NULL;
		q->unknown = slot == NULL;
		for (i = 0; key[i] && i + 1 < sizeof(q->bad); i++) {
			unsigned char c = (unsigned char)key[i];

			q->bad[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
		}
		q->bad[i] = '\0';
		return MHD_NO; /* stop iterating */
	}
	*slot = value ? value : "";
	return MHD_YES;
}

static bool status_valid(const char *s)
{
	static const char *const names[] = {"pending",   "scheduled",
					    "running",   "completed",
					    "failed",    "cancelled"};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

static bool type_filter_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (i >= TQ_TYPE_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return i > 0;
}

static enum MHD_Result handle_list(struct tq_api *api,
				   struct MHD_Connection *conn,
				   struct api_request *req)
{
	struct list_query q;
	long limit = API_LIST_LIMIT_DEFAULT;
	char *json = NULL;
	int rc;

	memset(&q, 0, sizeof(q));
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, list_query_arg,
				  &q);
	if (q.repeated)
		return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST,
				    TQ_ERR_INVALID_REQUEST,
				    "query parameter \"%s\" given more than once",
				    q.bad);
	if (q.unknown)
		return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST,
				    TQ_ERR_INVALID_REQUEST,
				    "unknown query parameter \"%s\" (allowed: status, type, limit)",
				    q.bad);
	if (q.status && !status_valid(q.status))
		return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST,
				    TQ_ERR_INVALID_REQUEST,
				    "\"status\" must be one of pending, scheduled, running, completed, failed, cancelled");
	if (q.type && !type_filter_valid(q.type))
		return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST,
				    TQ_ERR_INVALID_REQUEST,
				    "\"type\" must be 1 to %d characters a-z, 0-9, \"_\", \".\" or \"-\"",
				    TQ_TYPE_NAME_MAX);
	if (q.limit) {
		char *end = NULL;

		errno = 0;
		limit = strtol(q.limit, &end, 10);
		/* digits only: strtol() would also take " +5" */
		if (q.limit[0] < '0' || q.limit[0] > '9' || errno ||
		    *end != '\0' || limit < 1 || limit > API_LIST_LIMIT_MAX)
			return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST,
					    TQ_ERR_INVALID_REQUEST,
					    "\"limit\" must be an integer from 1 to %d",
					    API_LIST_LIMIT_MAX);
	}

	rc = tq_store_list_json(api->deps.store, q.status, q.type, (int)limit,
				&json);
	if (rc < 0)
		return store_error(conn, req, rc);
	return respond(conn, req, MHD_HTTP_OK, json, NULL, NULL);
}

/* Milliseconds from now until a scheduled spec is due, at least 0. */
static int64_t spec_due_in_ms(const struct tq_job_spec *spec)
{
	int64_t ms = 0;

	if (spec->has_delay)
		ms = spec->delay_ms;
	else if (spec->has_run_at)
		ms = spec->run_at_ms - realtime_ms();
	return ms > 0 ? ms : 0;
}

/*
 * Parse a submission, look its type up, run the plugin's validator and
 * resolve max_attempts and timeout_s.  0, or -1 with *e filled.  On
 * success the caller frees spec with tq_job_spec_free().
 */
static int prepare_spec(struct tq_api *api, const char *body, size_t len,
			struct tq_job_spec *spec, struct tq_api_error *e)
{
	const struct tq_config *cfg = api->deps.cfg;
	struct tq_registry *reg = NULL;
	const struct tq_type *t = NULL;
	int def_attempts = 0, def_timeout = 0;
	char verr[256];

	memset(e, 0, sizeof(*e));
	if (tq_request_parse_job(body, len, spec, e) < 0)
		return -1;
	if (api->deps.plugins)
		reg = tq_plugins_acquire(api->deps.plugins);
	if (reg)
		t = tq_registry_find(reg, spec->type);
	if (!t) {
		tq_api_error_set(e, MHD_HTTP_BAD_REQUEST, TQ_ERR_UNKNOWN_JOB_TYPE,
				 "unknown job type \"%s\"", spec->type);
		goto refuse;
	}
	verr[0] = '\0';
	if (tq_type_validate(t, spec->payload, verr, sizeof(verr)) != 0) {
		verr[sizeof(verr) - 1] = '\0';
		tq_utf8_sanitize(verr);
		if (verr[0])
			tq_api_error_set(e, MHD_HTTP_BAD_REQUEST,
					 TQ_ERR_INVALID_PAYLOAD, "%s", verr);
		else
			tq_api_error_set(e, MHD_HTTP_BAD_REQUEST,
					 TQ_ERR_INVALID_PAYLOAD,
					 "payload rejected by the validator of \"%s\"",
					 spec->type);
		goto refuse;
	}
	if (t->def) {
		def_attempts = t->def->max_attempts;
		def_timeout = t->def->timeout_s;
	}
	tq_registry_release(reg);
	if (spec->max_attempts <= 0)
		spec->max_attempts = def_attempts > 0 ? def_attempts : cfg->max_attempts;
	if (spec->timeout_s <= 0)
		spec->timeout_s = def_timeout > 0 ? def_timeout : cfg->timeout_s;
	return 0;
refuse:
	tq_registry_release(reg);
	tq_job_spec_free(spec);
	return -1;
}

/* Committed: hand the job to Redis, or tell the scheduler when it is due;
 * one claimed at submission is with this node's workers already. */
static void after_commit(struct tq_api *api, const struct tq_job_spec *spec,
			 const struct tq_inserted *ins)
{
	if (ins->running)
		return;
	if (ins->pending) {
		if (api->deps.dispatch)
			tq_dispatch_push(api->deps.dispatch, spec->queue, spec->priority,
					 ins->id);
	} else if (api->deps.scheduler) {
		tq_scheduler_notify(api->deps.scheduler, spec_due_in_ms(spec));
	}
}

/* A string JSON carries as it is: no quote, backslash or control
 * character. */
static bool json_plain(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return false;
	return true;
}

/*
 * The new job as GET shows it, built from what was committed, printed in
 * one pass: as a cJSON tree it took some 60 allocations per request, 11 %
 * of taskqd's CPU in a burst of single submissions.  Every string is
 * plain (an id, timestamps printed by PostgreSQL, names request.c limits
 * to letters, digits, "_", "." and "-"), and the payload is the request's
 * own JSON text; a string that is not plain is a bug, answered with the
 * id alone (NULL).
 */
static char *new_job_json(const struct tq_job_spec *spec, const struct tq_inserted *ins)
{
	char lease[sizeof(ins->lease_expires_at) + 2] = "null";
	char started[sizeof(ins->created_at) + 2] = "null";
	char *text;

	if (!json_plain(spec->type) || !json_plain(spec->queue) ||
	    !json_plain(ins->run_at) || !json_plain(ins->created_at) ||
	    !json_plain(ins->lease_expires_at)) {
		tq_warn("job %s: a field of the 201 body needs escaping", ins->id);
		return NULL;
	}
	if (ins->running) {
		/* claimed in the insert's transaction: started at its now() */
		snprintf(lease, sizeof(lease), "\"%s\"", ins->lease_expires_at);
		snprintf(started, sizeof(started), "\"%s\"", ins->created_at);
	}
	if (asprintf(&text,
		     "{\"id\":\"%s\",\"type\":\"%s\",\"payload\":%s,\"status\":\"%s\","
		     "\"queue\":\"%s\",\"priority\":%d,\"attempts\":%d,\"max_attempts\":%d,"
		     "\"timeout_s\":%d,\"error\":null,\"result\":null,\"progress\":null,"
		     "\"progress_message\":null,\"run_at\":\"%s\",\"lease_expires_at\":%s,"
		     "\"created_at\":\"%s\",\"updated_at\":\"%s\",\"started_at\":%s,"
		     "\"completed_at\":null,\"idempotency_key\":null}",
		     ins->id, spec->type, spec->payload,
		     ins->running ? "running" : ins->pending ? "pending" : "scheduled",
		     spec->queue, spec->priority, ins->running ? 1 : 0, spec->max_attempts,
		     spec->timeout_s, ins->run_at, lease, ins->created_at, ins->created_at,
		     started) < 0)
		return NULL;
	return text;
}

/* The submission is committed (rc 0: after_commit() was called) or
 * failed: answer it. */
static enum MHD_Result answer_submit(struct MHD_Connection *conn, struct api_request *req,
				     int rc)
{
	const struct tq_inserted *ins = &req->ins;
	char location[64];
	char *job_json;

	if (rc == -EEXIST && req->spec.idempotency_key)
		return respond_fail(conn, req, MHD_HTTP_CONFLICT, TQ_ERR_IDEMPOTENCY_KEY_REUSED,
				    "job %s holds this idempotency key and was submitted with "
				    "another type or payload (key \"%.100s\")",
				    ins->id, req->spec.idempotency_key);
	if (rc < 0)
		return store_error(conn, req, rc == -ESHUTDOWN ? -EAGAIN : rc);
	/* Committed (or, rc 1, committed before under the same key): from
	 * here on the job exists whatever happens. */
	memcpy(req->job_id, ins->id, sizeof(req->job_id));
	snprintf(location, sizeof(location), "/v1/jobs/%s", ins->id);
	if (req->sub.job_json) {
		/* keyed: the job as the database holds it */
		job_json = req->sub.job_json;
		req->sub.job_json = NULL;
		return respond(conn, req, rc == 1 ? MHD_HTTP_OK : MHD_HTTP_CREATED, job_json,
			       location, NULL);
	}
	job_json = new_job_json(&req->spec, ins);
	if (!job_json && asprintf(&job_json, "{\"id\":\"%s\"}", ins->id) < 0)
		return MHD_NO;
	return respond(conn, req, MHD_HTTP_CREATED, job_json, location, NULL);
}

/* On a committer thread: hand the job on at once (its dispatch does not
 * wait for the answer's turn on the HTTP thread), then wake the
 * connection.  req is libmicrohttpd's again as soon as it is resumed. */
static void submit_done(struct tq_submission *s, int rc)
{
	struct api_request *req = s->arg;
	struct tq_api *api = req->api;

	if (rc == 0)
		after_commit(api, &req->spec, &req->ins);
	req->rc = rc;
	req->state = SUBMIT_DONE;
	MHD_resume_connection(req->conn);
	pthread_mutex_lock(&api->lock);
	if (--api->suspended == 0)
		pthread_cond_broadcast(&api->settled);
	pthread_mutex_unlock(&api->lock);
}

/* The Idempotency-Key header, as the body's "idempotency_key" (either,
 * or both when they agree).  0, or -1 with *e filled. */
static int key_from_header(struct MHD_Connection *conn, struct tq_job_spec *spec,
			   struct tq_api_error *e)
{
	const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      "Idempotency-Key");

	if (!key)
		return 0;
	if (!tq_idempotency_key_valid(key)) {
		tq_api_error_set(e, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
				 "the Idempotency-Key header must be 1 to %d printable ASCII "
				 "characters", TQ_IDEMPOTENCY_KEY_MAX);
		return -1;
	}
	if (spec->idempotency_key) {
		if (strcmp(spec->idempotency_key, key) == 0)
			return 0;
		tq_api_error_set(e, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
				 "the Idempotency-Key header and \"idempotency_key\" differ");
		return -1;
	}
	spec->idempotency_key = strdup(key);
	if (!spec->idempotency_key) {
		tq_api_error_set(e, MHD_HTTP_INTERNAL_SERVER_ERROR, TQ_ERR_INTERNAL,
				 "out of memory");
		return -1;
	}
	return 0;
}

/*
 * POST /v1/jobs.  The connection is suspended while its job waits for the
 * group commit, so that this thread serves its other connections
 * meanwhile; submit_done() resumes it and libmicrohttpd calls again.
 */
static enum MHD_Result handle_submit(struct tq_api *api,
				     struct MHD_Connection *conn,
				     struct api_request *req)
{
	struct tq_api_error e;
	bool stopping;
	int rc;

	if (req->state == SUBMIT_DONE)
		return answer_submit(conn, req, req->rc);
	if (req->state == SUBMIT_WAITING)
		return MHD_YES;
	if (prepare_spec(api, req->body ? req->body : "", req->len, &req->spec, &e) < 0)
		return respond_error(conn, req, &e, NULL);
	if (key_from_header(conn, &req->spec, &e) < 0) {
		tq_job_spec_free(&req->spec);
		return respond_error(conn, req, &e, NULL);
	}
	if (!api->deps.submit) {
		req->state = SUBMIT_DONE;
		if (req->spec.idempotency_key)
			rc = tq_store_insert_one(api->deps.store, &req->spec, &req->ins,
						 &req->sub.job_json);
		else
			rc = tq_store_insert_many(api->deps.store, &req->spec, 1, &req->ins);
		if (rc == 0)
			after_commit(api, &req->spec, &req->ins);
		return answer_submit(conn, req, rc);
	}
	pthread_mutex_lock(&api->lock);
	stopping = api->stopping;
	if (!stopping) {
		api->suspended++;
		api->unanswered++;
	}
	pthread_mutex_unlock(&api->lock);
	if (stopping) {
		req->state = SUBMIT_DONE;
		return answer_submit(conn, req, -ESHUTDOWN);
	}
	req->api = api;
	req->conn = conn;
	req->sub = (struct tq_submission){.spec = &req->spec, .out = &req->ins,
					  .done = submit_done, .arg = req};
	req->state = SUBMIT_WAITING;
	MHD_suspend_connection(conn);
	rc = tq_submit_async(api->deps.submit, &req->sub);
	if (rc < 0)
		submit_done(&req->sub, rc);
	return MHD_YES;
}

/*
 * POST /v1/jobs/batch {"jobs": [job, ...]}: up to TQ_BATCH_MAX jobs, all
 * or nothing, in one transaction.  201 {"ids": [...]} in the order given.
 */
static enum MHD_Result handle_batch(struct tq_api *api, struct MHD_Connection *conn,
				    struct api_request *req)
{
	struct tq_job_spec *specs = NULL;
	struct tq_inserted *ins = NULL;
	struct tq_api_error e;
	cJSON *root, *jobs, *item, *out = NULL, *ids;
	enum MHD_Result ret;
	size_t n = 0, ready = 0;
	char *text;
	int rc;

	root = cJSON_ParseWithLength(req->body ? req->body : "", req->len);
	if (!root)
		return respond_fail(conn, req, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_JSON,
				    "request body is not valid JSON");
	jobs = cJSON_GetObjectItemCaseSensitive(root, "jobs");
	if (!cJSON_IsObject(root) || !cJSON_IsArray(jobs) || cJSON_GetArraySize(root) != 1) {
		ret = respond_fail(conn, req, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
				   "body must be {\"jobs\": [...]} and nothing else");
		goto out;
	}
	if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key")) {
		ret = respond_fail(conn, req, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
				   "the Idempotency-Key header is not taken by a batch; submit "
				   "such a job alone (POST /v1/jobs)");
		goto out;
	}
	n = (size_t)cJSON_GetArraySize(jobs);
	if (n < 1 || n > TQ_BATCH_MAX) {
		ret = respond_fail(conn, req, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
				   "\"jobs\" must hold from 1 to %d jobs", TQ_BATCH_MAX);
		goto out;
	}
	specs = calloc(n, sizeof(*specs));
	ins = calloc(n, sizeof(*ins));
	if (!specs || !ins) {
		ret = MHD_NO;
		goto out;
	}
	cJSON_ArrayForEach(item, jobs) {
		char *one = cJSON_PrintUnformatted(item);

		rc = one ? prepare_spec(api, one, strlen(one), &specs[ready], &e) : -1;
		if (!one)
			tq_api_error_set(&e, MHD_HTTP_INTERNAL_SERVER_ERROR, TQ_ERR_INTERNAL,
					 "out of memory");
		cJSON_free(one);
		if (rc == 0 && specs[ready].idempotency_key) {
			tq_job_spec_free(&specs[ready]);
			tq_api_error_set(&e, MHD_HTTP_BAD_REQUEST, TQ_ERR_INVALID_REQUEST,
					 "\"idempotency_key\" is not taken in a batch; submit "
					 "such a job alone (POST /v1/jobs)");
			rc = -EINVAL;
		}
		if (rc < 0) {
			char msg[sizeof(e.message) + 32];

			snprintf(msg, sizeof(msg), "jobs[%zu]: %s", ready, e.message);
			snprintf(e.message, sizeof(e.message), "%.*s",
				 (int)sizeof(e.message) - 1, msg);
			ret = respond_error(conn, req, &e, NULL);
			goto out;
		}
		ready++;
	}
	rc = api->deps.submit ? tq_submit_many(api->deps.submit, specs, n, ins)
			      : tq_store_insert_many(api->deps.store, specs, n, ins);
	if (rc < 0) {
		ret = store_error(conn, req, rc);
		goto out;
	}
	out = cJSON_CreateObject();
	ids = out ? cJSON_AddArrayToObject(out, "ids") : NULL;
	for (size_t i = 0; i < n; i++) {
		after_commit(api, &specs[i], &ins[i]);
		if (ids)
			cJSON_AddItemToArray(ids, cJSON_CreateString(ins[i].id));
	}
	if (out)
		tq_json_add_int(out, "count", (long long)n);
	text = out ? cJSON_PrintUnformatted(out) : NULL;
	if (!text) {
		ret = MHD_NO;
		goto out;
	}
	ret = respond(conn, req, MHD_HTTP_CREATED, text, NULL, NULL);
out:
	for (size_t i = 0; i < ready; i++)
		tq_job_spec_free(&specs[i]);
	free(specs);
	free(ins);
	cJSON_Delete(out);
	cJSON_Delete(root);
	return ret;
}

static enum MHD_Result begin_submit(struct tq_api *api,
				    struct MHD_Connection *conn,
				    struct api_request *req)
{
	const char *value;

	value = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!tq_api_is_json_content_type(value))
		return respond_fail(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
				    TQ_ERR_UNSUPPORTED_MEDIA_TYPE,
				    "Content-Type must be application/json");

	value = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (value) {
		char *end = NULL;
		unsigned long long n;

		errno = 0;
		n = strtoull(value, &end, 10);
		/* libmicrohttpd refuses a malformed length itself; whatever
		 * is left and too large is refused here, before any byte. */
		if (value[0] != '-' && end != value &&
		    (errno == ERANGE || n > api->max_body))
			return respond_fail(conn, req,
					    MHD_HTTP_CONTENT_TOO_LARGE,
					    TQ_ERR_PAYLOAD_TOO_LARGE,
					    "request body exceeds %zu bytes",
					    api->max_body);
	}
	return MHD_YES;
}

/* The last call: the whole request is in. */
static enum MHD_Result finish_request(struct tq_api *api,
				      struct MHD_Connection *conn,
				      struct api_request *req)
{
	struct tq_api_error e;

	switch (req->route.id) {
	case TQ_ROUTE_NOT_FOUND:
		break;
	case TQ_ROUTE_METHOD_NOT_ALLOWED:
		tq_api_error_set(&e, MHD_HTTP_METHOD_NOT_ALLOWED,
				 TQ_ERR_METHOD_NOT_ALLOWED,
				 "method %.16s not allowed here (allowed: %s)",
				 req->method, req->route.allow);
		return respond_error(conn, req, &e, req->route.allow);
	case TQ_ROUTE_HEALTH:
		return handle_health(conn, req);
	case TQ_ROUTE_READY:
		return handle_ready(api, conn, req);
	case TQ_ROUTE_JOB_CANCEL:
		return handle_cancel(api, conn, req);
	case TQ_ROUTE_JOB_TYPES:
		return handle_job_types(api, conn, req);
	case TQ_ROUTE_PLUGINS_RELOAD:
		return handle_reload(api, conn, req);
	case TQ_ROUTE_JOB_GET:
		return handle_get(api, conn, req);
	case TQ_ROUTE_JOB_LIST:
		return handle_list(api, conn, req);
	case TQ_ROUTE_JOB_SUBMIT:
		if (req->too_large)
			return respond_fail(conn, req,
					    MHD_HTTP_CONTENT_TOO_LARGE,
					    TQ_ERR_PAYLOAD_TOO_LARGE,
					    "request body exceeds %zu bytes",
					    api->max_body);
		return handle_submit(api, conn, req);
	case TQ_ROUTE_JOB_BATCH:
		if (req->too_large)
			return respond_fail(conn, req,
					    MHD_HTTP_CONTENT_TOO_LARGE,
					    TQ_ERR_PAYLOAD_TOO_LARGE,
					    "request body exceeds %zu bytes",
					    api->max_body);
		return handle_batch(api, conn, req);
	}
	return respond_fail(conn, req, MHD_HTTP_NOT_FOUND, TQ_ERR_NOT_FOUND,
			    "no such resource");
}

static enum MHD_Result add_body(struct tq_api *api, struct api_request *req,
				const char *data, size_t n)
{
	size_t need, cap;
	char *p;

	if (req->too_large) {
		req->discarded += n;
		/* Someone streaming without end: stop listening. */
		return req->discarded > API_DISCARD_SLACK ? MHD_NO : MHD_YES;
	}
	if (n > api->max_body - req->len) {
		req->too_large = true;
		req->discarded = n;
		free(req->body);
		req->body = NULL;
		req->len = req->cap = 0;
		return MHD_YES;
	}
	need = req->len + n + 1; /* keep it NUL-terminated */
	if (need > req->cap) {
		cap = req->cap ? req->cap : 4096;
		while (cap < need)
			cap *= 2;
		if (cap > api->max_body + 1)
			cap = api->max_body + 1;
		p = realloc(req->body, cap);
		if (!p)
			return MHD_NO;
		req->body = p;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, n);
	req->len += n;
	req->body[req->len] = '\0';
	return MHD_YES;
}

/*
 * libmicrohttpd calls this once with the headers, once per piece of body,
 * and once more when the request is complete.  Answers wait for that last
 * call (so that the connection stays alive), except the early refusals of
 * begin_submit().
 */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn,
				      const char *url, const char *method,
				      const char *version,
				      const char *upload_data,
				      size_t *upload_data_size, void **con_cls)
{
	struct tq_api *api = cls;
	struct api_request *req = *con_cls;

	if (req) {
		req->method = method;
		req->url = url;
	} else {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &req->start);
		req->method = method;
		req->url = url;
		tq_api_route(method, url, &req->route);
		*con_cls = req;
		if (req->route.id == TQ_ROUTE_JOB_SUBMIT ||
		    req->route.id == TQ_ROUTE_JOB_BATCH)
			return begin_submit(api, conn, req);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (req->responded)
			return MHD_YES;
		if (req->route.id != TQ_ROUTE_JOB_SUBMIT &&
		    req->route.id != TQ_ROUTE_JOB_BATCH) {
			/* A body nobody asked for: drop it, within reason. */
			req->discarded += n;
			return req->discarded > api->max_body + API_DISCARD_SLACK ?
				       MHD_NO : MHD_YES;
		}
		return add_body(api, req, upload_data, n);
	}
	if (req->responded)
		return MHD_YES;
	return finish_request(api, conn, req);
}

static void request_completed(void *cls, struct MHD_Connection *conn,
			      void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct api_request *req = *con_cls;

	if (!req)
		return;
	if (req->state != SUBMIT_NONE)
		tq_job_spec_free(&req->spec);
	free(req->sub.job_json);
	if (req->api) {
		/* its answer is sent, or the connection is gone */
		pthread_mutex_lock(&req->api->lock);
		if (--req->api->unanswered == 0)
			pthread_cond_broadcast(&req->api->settled);
		pthread_mutex_unlock(&req->api->lock);
	}
	free(req->body);
	free(req);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	int n;

	if (!tq_log_enabled(TQ_LOG_WARN))
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	n = (int)strnlen(line, sizeof(line));
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '.' ||
			 line[n - 1] == ' '))
		line[--n] = '\0';
	tq_warn("http server: %s", line);
}

/* --- start / stop ------------------------------------------------------- */

static int resolve_ipv4(const char *host, int port, struct sockaddr_in *sa,
			char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!host || !host[0] || strcmp(host, "*") == 0) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
		return 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "cannot resolve listen host \"%s\": %s",
			 host, rc ? gai_strerror(rc) : "no address");
		if (res)
			freeaddrinfo(res);
		return -EINVAL;
	}
	sa->sin_addr = ((const struct sockaddr_in *)res->ai_addr)->sin_addr;
	freeaddrinfo(res);
	return 0;
}

static void api_free(struct tq_api *api)
{
	tq_queue_close(api->redis);
	pthread_cond_destroy(&api->settled);
	pthread_mutex_destroy(&api->lock);
	pthread_mutex_destroy(&api->redis_lock);
	free(api);
}

int tq_api_start(struct tq_api **out, const struct tq_api_deps *deps,
		 char *err, size_t errlen)
{
	const struct tq_config *cfg = deps->cfg;
	struct sockaddr_in sa;
	struct tq_api *api = NULL;
	unsigned int flags;
	unsigned int threads;
	int ret;

	*out = NULL;
	if (cfg->listen_port < 0 || cfg->listen_port > 65535) {
		snprintf(err, errlen, "listen port %d out of range",
			 cfg->listen_port);
		return -EINVAL;
	}
	ret = resolve_ipv4(cfg->listen_host, cfg->listen_port, &sa, err, errlen);
	if (ret < 0)
		return ret;

	api = calloc(1, sizeof(*api));
	if (!api) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	api->deps = *deps;
	pthread_mutex_init(&api->redis_lock, NULL);
	pthread_mutex_init(&api->lock, NULL);
	pthread_cond_init(&api->settled, NULL);
	if (tq_queue_open(&api->redis, cfg->redis_url, cfg->redis_prefix, err, errlen) < 0) {
		api_free(api);
		return -EINVAL;
	}
	api->max_body = cfg->max_body_bytes > 0 ?
				(size_t)cfg->max_body_bytes : API_DEFAULT_MAX_BODY;
	threads = cfg->api_threads > 0 ? (unsigned int)cfg->api_threads : 1;

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
		MHD_USE_ERROR_LOG | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;
	api->mhd = MHD_start_daemon(
		flags, (uint16_t)cfg->listen_port, NULL, NULL, handle_request,
		api,
		/* the logger first, so that it sees the other options */
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, api,
		MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&sa,
		MHD_OPTION_THREAD_POOL_SIZE, threads,
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)API_CONNECTION_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, request_completed, api,
		MHD_OPTION_END);
	if (!api->mhd) {
		char addr[INET_ADDRSTRLEN] = "?";

		inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr));
		snprintf(err, errlen,
			 "cannot listen on %s:%d (address in use or not permitted?)",
			 addr, cfg->listen_port);
		api_free(api);
		return -EADDRNOTAVAIL;
	}
	*out = api;
	return 0;
}

void tq_api_stop(struct tq_api *api)
{
	struct timespec until;

	if (!api)
		return;
	/* No suspended connection may outlive the daemon: refuse new
	 * submissions, let the queued ones commit, give their answers a
	 * moment to go out, then stop. */
	pthread_mutex_lock(&api->lock);
	api->stopping = true;
	while (api->suspended > 0)
		pthread_cond_wait(&api->settled, &api->lock);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += API_STOP_ANSWER_S;
	while (api->unanswered > 0 &&
	       pthread_cond_timedwait(&api->settled, &api->lock, &until) == 0)
		;
	pthread_mutex_unlock(&api->lock);
	if (api->mhd)
		MHD_stop_daemon(api->mhd);
	api_free(api);
}
