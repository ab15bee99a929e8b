/*
 * api.h - the REST API (libmicrohttpd, its own thread pool, keep-alive).
 *
 *   POST /v1/jobs            submit; 201 + Location only after COMMIT
 *   POST /v1/jobs/batch      up to TQ_BATCH_MAX jobs, all or nothing
 *   GET  /v1/jobs/{id}       one job
 *   GET  /v1/jobs?status=&type=&limit=
 *   POST /v1/jobs/{id}/cancel
 *   GET  /v1/job-types       the registered job types
 *   POST /v1/plugins/reload  rescan the plugin directory
 *   GET  /healthz            the process is up
 *   GET  /readyz             PostgreSQL and Redis both answer
 * The unversioned /jobs paths are aliases.  Errors are
 * {"error": "...", "code": "..."} (codes in request.h).
 */
#ifndef TQ_API_H
#define TQ_API_H

#include <stdbool.h>
#include <stddef.h>

struct tq_config;
struct tq_store;
struct tq_plugins;
struct tq_dispatch;
struct tq_scheduler;
struct tq_submit;
struct tq_api;

struct tq_api_deps {
	const struct tq_config *cfg;
	struct tq_store *store;
	struct tq_plugins *plugins;
	struct tq_dispatch *dispatch;
	struct tq_scheduler *scheduler;
	struct tq_submit *submit; /* group commit; NULL: insert directly */
};

/*
 * Routing, kept pure so that it can be tested without a server.
 * tq_api_route() maps a method and a decoded path (no query string) to a
 * route; a job id must be UUID text (any case; handed on in lower case),
 * anything else under /v1/jobs/ is TQ_ROUTE_NOT_FOUND.  A known path with
 * another method is TQ_ROUTE_METHOD_NOT_ALLOWED with the Allow header value
 * (a static string) in allow.
 */
enum tq_api_route_id {
	TQ_ROUTE_NOT_FOUND = 0,
	TQ_ROUTE_METHOD_NOT_ALLOWED,
	TQ_ROUTE_JOB_SUBMIT, /* POST /v1/jobs */
	TQ_ROUTE_JOB_LIST,   /* GET /v1/jobs */
	TQ_ROUTE_JOB_GET,    /* GET /v1/jobs/{id} */
	TQ_ROUTE_HEALTH,     /* GET /healthz */
	TQ_ROUTE_READY,      /* GET /readyz */
	TQ_ROUTE_JOB_CANCEL, /* POST /v1/jobs/{id}/cancel */
	TQ_ROUTE_JOB_TYPES,  /* GET /v1/job-types */
	TQ_ROUTE_PLUGINS_RELOAD, /* POST /v1/plugins/reload */
	TQ_ROUTE_JOB_BATCH,  /* POST /v1/jobs/batch */
};

/* Most jobs one POST /v1/jobs/batch may carry. */
#define TQ_BATCH_MAX 1000

struct tq_api_route {
	enum tq_api_route_id id;
	const char *allow; /* with TQ_ROUTE_METHOD_NOT_ALLOWED */
	char job_id[37];   /* with TQ_ROUTE_JOB_GET and TQ_ROUTE_JOB_CANCEL */
};

void tq_api_route(const char *method, const char *path,
		  struct tq_api_route *out);

/* Whether a Content-Type header value is application/json (any case,
 * parameters such as charset allowed).  NULL is not. */
bool tq_api_is_json_content_type(const char *value);

int tq_api_start(struct tq_api **out, const struct tq_api_deps *deps,
		 char *err, size_t errlen);
/* Stop accepting connections and free the API. */
void tq_api_stop(struct tq_api *api);

#endif
