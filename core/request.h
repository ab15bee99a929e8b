/*
 * request.h - parsing and validation of API request bodies.
 *
 * No I/O: turns JSON text into a struct tq_job_spec or a struct
 * tq_api_error that says which field is wrong and why.
 */
#ifndef TQ_REQUEST_H
#define TQ_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Machine-readable error codes of the API (wire strings; never change). */
#define TQ_ERR_INVALID_JSON "INVALID_JSON"
#define TQ_ERR_INVALID_REQUEST "INVALID_REQUEST"
#define TQ_ERR_UNKNOWN_JOB_TYPE "UNKNOWN_JOB_TYPE"
#define TQ_ERR_INVALID_PAYLOAD "INVALID_PAYLOAD"
#define TQ_ERR_PAYLOAD_TOO_LARGE "PAYLOAD_TOO_LARGE"
#define TQ_ERR_UNSUPPORTED_MEDIA_TYPE "UNSUPPORTED_MEDIA_TYPE"
#define TQ_ERR_NOT_FOUND "NOT_FOUND"
#define TQ_ERR_METHOD_NOT_ALLOWED "METHOD_NOT_ALLOWED"
#define TQ_ERR_UNAVAILABLE "UNAVAILABLE"
#define TQ_ERR_CONFLICT "CONFLICT"
#define TQ_ERR_IDEMPOTENCY_KEY_REUSED "IDEMPOTENCY_KEY_REUSED"
#define TQ_ERR_INTERNAL "INTERNAL"

struct tq_api_error {
	int status;       /* HTTP status */
	const char *code; /* one of TQ_ERR_* */
	char message[256];
};

/* Limits of a submission. */
#define TQ_TYPE_NAME_MAX 64
#define TQ_QUEUE_NAME_MAX 64
#define TQ_PRIORITY_MIN 0
#define TQ_PRIORITY_MAX 9
#define TQ_MAX_ATTEMPTS_LIMIT 100
#define TQ_TIMEOUT_LIMIT_S 86400
#define TQ_DELAY_LIMIT_S (366LL * 86400)
#define TQ_IDEMPOTENCY_KEY_MAX 200

/* A job as submitted.  Owns its strings. */
struct tq_job_spec {
	char *type;        /* [a-z0-9_.-]{1,64} */
	char *payload;     /* compact JSON text; "{}" when absent */
	char *queue;       /* [A-Za-z0-9_.-]{1,64}; "default" when absent */
	int priority;      /* 0-9, higher runs first; default 0 */
	int max_attempts;  /* 1-100, or 0 = the type's / global default */
	int timeout_s;     /* 1-86400, or 0 = the type's / global default */
	bool has_delay;    /* delay_s given: run at the database's now() + delay_ms */
	int64_t delay_ms;
	bool has_run_at;   /* run_at given: run at this absolute time */
	int64_t run_at_ms; /* Unix epoch, milliseconds */
	char *idempotency_key; /* NULL, or 1-200 printable ASCII characters */
};

/*
 * Parse a POST /v1/jobs body:
 *   {"type": str, "payload"?: any JSON, "queue"?: str, "priority"?: int,
 *    "max_attempts"?: int, "timeout_s"?: int, "delay_s"?: number | "run_at"?: RFC 3339 str,
 *    "idempotency_key"?: str}
 * Unknown fields are refused.  Returns 0, or -EINVAL with *err filled
 * (INVALID_JSON or INVALID_REQUEST naming the field).  On error spec is
 * left empty; on success free it with tq_job_spec_free().
 */
int tq_request_parse_job(const char *body, size_t len, struct tq_job_spec *spec,
			 struct tq_api_error *err);
void tq_job_spec_free(struct tq_job_spec *spec);

/* An idempotency key: 1 to TQ_IDEMPOTENCY_KEY_MAX characters from space
 * to "~", so that it prints in a log line and a message as it is. */
bool tq_idempotency_key_valid(const char *s);

/* Parse an RFC 3339 timestamp ("2026-11-28T20:49:29Z", optional fraction,
 * "Z" or "+hh:mm") into Unix milliseconds.  0 or -EINVAL. */
int tq_parse_rfc3339_ms(const char *s, int64_t *out_ms);

/* Fill *err. */
void tq_api_error_set(struct tq_api_error *err, int status, const char *code,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
