/*
 * store.h - the job store: PostgreSQL, the source of truth.
 *
 * A fixed pool of libpq connections (tq_store_open), each with the
 * prepared statements of this module.  Every state change is one
 * conditional UPDATE that names the state it leaves; outcome writes are
 * fenced by the attempt number, so a stale worker cannot overwrite a newer
 * attempt.  A broken connection is reset with capped backoff on next use.
 *
 * Errors: 0 on success; -ENOENT (no such row / nothing to claim), -ESTALE
 * (fenced out: the job left the state or attempt the caller held),
 * -EAGAIN (PostgreSQL unreachable: the caller answers 503 or retries),
 * -EIO (any other database error; the reason is logged once).
 * All functions are thread-safe.
 */
#ifndef TQ_STORE_H
#define TQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

struct tq_store;

/* Open pool_size connections (at least one must succeed). */
int tq_store_open(struct tq_store **out, const char *conninfo, int pool_size,
		  char *err, size_t errlen);
void tq_store_close(struct tq_store *store);

/* Seconds after its hand-off to Redis that an open job is first looked at
 * by the periodic statements: a job still pending by tq_store_reconcile(),
 * one running by tq_store_rescue() (30 until set; the daemon sets the
 * shorter of scheduler.pending_redispatch_s and workers.lease_s).  Set
 * before the store is shared between threads. */
void tq_store_set_recheck_s(struct tq_store *store, int seconds);

/* Apply the embedded migrations not yet recorded in schema_migrations, in
 * order, each in its own transaction.  *applied = how many ran. */
int tq_store_migrate(struct tq_store *store, int *applied, char *err,
		     size_t errlen);

/* 0 when a connection answers, else -EAGAIN. */
int tq_store_ping(struct tq_store *store);

/*
 * Insert a job from a validated spec whose max_attempts and timeout_s are
 * already resolved (non-zero).  Status is "pending", or "scheduled" with
 * delay/run_at in the future.  Returns only after COMMIT.  On success (0)
 * *job_json (malloc'd, caller frees) is the job as GET shows it, and
 * *is_pending tells whether to dispatch it now.
 *
 * With spec->idempotency_key, when a job already holds the key nothing is
 * inserted: 1 with that job's id and *job_json when it was submitted with
 * the same type and payload (a retry), -EEXIST with its id when not.
 */
int tq_store_insert(struct tq_store *store, const struct tq_job_spec *spec,
		    char id_out[37], char **job_json, int *is_pending);

/* The job as JSON text (malloc'd), or -ENOENT. */
int tq_store_get_json(struct tq_store *store, const char *id, char **job_json);

/* {"jobs":[...]} newest first; status/type may be NULL; 1 <= limit <= 1000. */
int tq_store_list_json(struct tq_store *store, const char *status,
		       const char *type, int limit, char **json);

/* What a worker needs to run an attempt.  Owns its strings. */
struct tq_claim {
	char id[37];
	char *type;
	char *payload;
	char *queue;
	int attempt; /* this attempt's number (attempts after the claim) */
	int64_t token; /* names this claim in the outcome fence */
	int max_attempts;
	int timeout_s;
};
void tq_claim_free(struct tq_claim *c);

/* pending -> running (attempts+1, started_at, lease from the database's
 * clock: now() + timeout_s + lease_s).  -ENOENT when the job is not
 * pending (claimed elsewhere, cancelled, unknown id). */
int tq_store_claim(struct tq_store *store, const char *id, int lease_s,
		   struct tq_claim *out);

/*
 * Outcomes are fenced by the claim: they land only while the job is
 * running the attempt and token of that claim (-ESTALE otherwise).
 */
/* running(attempt, token) -> completed with result (JSON text or NULL). */
int tq_store_complete(struct tq_store *store, const char *id, int attempt,
		      int64_t token, const char *result_json);
/* running(attempt, token) -> scheduled at now() + delay_ms with error_message. */
int tq_store_retry(struct tq_store *store, const char *id, int attempt,
		   int64_t token, int64_t delay_ms, const char *error);
/* running(attempt, token) -> failed with error_message. */
int tq_store_fail(struct tq_store *store, const char *id, int attempt,
		  int64_t token, const char *error);

/* Called for each job made ready (queue, priority, id). */
typedef void (*tq_store_ready_fn)(void *arg, const char *queue, int priority,
				  const char *id);

/* scheduled -> pending for up to limit jobs whose run_at has come;
 * cb for each.  Returns the number promoted (>= 0) or an error. */
int tq_store_promote_due(struct tq_store *store, int limit,
			 tq_store_ready_fn cb, void *arg);

/* Milliseconds until the earliest scheduled job is due (0 if one is due
 * now), or -ENOENT when none is scheduled. */
int tq_store_next_due_ms(struct tq_store *store, int64_t *ms);

/* --- recovery ------------------------------------------------------- */

/* One running attempt of this node, for the heartbeat. */
struct tq_lease {
	const char *id;
	int attempt;
	int64_t token;
	int progress;                 /* 0-100, or -1: unchanged */
	const char *progress_message; /* with progress; may be NULL */
};

/* Called for each lease renewed; cancel_requested when the job should
 * stop. */
typedef void (*tq_store_lease_fn)(void *arg, const char *id, bool cancel_requested);

/* Renew the leases of n running attempts (one statement) and store their
 * progress.  An attempt whose job moved on (rescued, fenced) is not
 * renewed and gets no callback.  Returns the number renewed. */
int tq_store_heartbeat(struct tq_store *store, const struct tq_lease *leases,
		       size_t n, int lease_s, tq_store_lease_fn cb, void *arg);

/* Called for each rescued job with its new status. */
typedef void (*tq_store_rescued_fn)(void *arg, const char *id, const char *status);

/* Due running attempts, up to limit: those whose lease expired ->
 * scheduled (backoff with full jitter from base_ms/cap_ms), failed
 * (attempts exhausted), or cancelled (cancel requested); the others are
 * looked at again when their lease expires.  Returns how many were
 * rescued. */
int tq_store_rescue(struct tq_store *store, int limit, int base_ms, int cap_ms,
		    tq_store_rescued_fn cb, void *arg);

/* Due pending jobs of queue (not claimed within the recheck seconds of
 * their hand-off), oldest first, up to limit: the first `again` are handed
 * again (cb) and rechecked after the recheck seconds; the others, still in
 * Redis's backlog, are rechecked later.  Returns how many were handed. */
int tq_store_reconcile(struct tq_store *store, const char *queue, int again,
		       int limit, tq_store_ready_fn cb, void *arg);

/* Called for each queue that has pending jobs: how many, and how many of
 * them are due for a recheck. */
typedef void (*tq_store_count_fn)(void *arg, const char *queue, long count,
				  long due);

/* Pending jobs per queue (cb for each).  Returns the number of queues. */
int tq_store_pending_counts(struct tq_store *store, tq_store_count_fn cb, void *arg);

/*
 * Cancel a job: pending or scheduled ones become cancelled at once; a
 * running one gets cancel_requested (its node stops it at the next
 * heartbeat, and whatever outcome it writes but "completed" ends it
 * cancelled).  0 with the job's JSON; -EALREADY with the JSON of a job that
 * already finished; -ENOENT.
 */
int tq_store_cancel(struct tq_store *store, const char *id, char **job_json);

/* Hand a running attempt back at shutdown: pending at once (cb so the
 * caller dispatches it), or failed/cancelled as a lease expiry would.
 * -ESTALE when the attempt is no longer this node's. */
int tq_store_release(struct tq_store *store, const char *id, int attempt,
		     int64_t token, tq_store_ready_fn cb, void *arg);

/* --- the hot path in batches ---------------------------------------- */

/* What the store says of a job it inserted. */
struct tq_inserted {
	char id[37];
	bool pending;        /* to dispatch now */
	bool running;        /* inserted claimed (neither: scheduled) */
	char created_at[32]; /* RFC 3339 UTC, the database's clock */
	char run_at[32];
	char lease_expires_at[32]; /* "" unless running */
};

/* Insert n validated, resolved specs in one statement and one
 * transaction: all or nothing.  0 with out[i] filled, or an error. */
int tq_store_insert_many(struct tq_store *store, const struct tq_job_spec *specs,
			 size_t n, struct tq_inserted *out);

/* tq_store_insert() for a submission: out->id and out->pending filled as
 * tq_store_insert_many() fills them (never out->running: a job inserted
 * this way is not claimed), and its answers (0, 1, -EEXIST) the same. */
int tq_store_insert_one(struct tq_store *store, const struct tq_job_spec *spec,
			struct tq_inserted *out, char **job_json);

/* One completed attempt. */
struct tq_done {
	const char *id;
	int attempt;
	int64_t token;
	const char *result; /* JSON text or NULL */
};

/*
 * One transaction of the hot path: n jobs inserted, and ndone outcomes
 * written in the same commit (COMPLETE_MANY's, fenced the same way).
 * Each job with claim[i] set that is due now (no delay_s or run_at) is
 * inserted claimed for the caller: running, attempt 1, a lease of
 * lease_s seconds, as tq_store_claim_many() would leave it, so that it
 * needs no hand-off through Redis and no claim statement.  All or
 * nothing: 0 with out, claims and written filled, or an error and
 * nothing written.
 */
struct tq_write {
	const struct tq_job_spec *specs; /* n validated, resolved specs */
	size_t n;
	const bool *claim;         /* n flags, or NULL */
	int lease_s;
	const struct tq_done *done; /* ndone outcomes, or none */
	size_t ndone;
	struct tq_inserted *out;   /* n: what was inserted; .running: claimed */
	struct tq_claim *claims;   /* room for n, or NULL: nclaimed filled
				    * (free each with tq_claim_free(); a job
				    * whose claim could not be filled, out of
				    * memory, runs again after its lease) */
	size_t nclaimed;
	bool *written;             /* ndone: which outcomes were written */
};
int tq_store_write(struct tq_store *store, struct tq_write *w);

/* Claim the pending jobs among n ids in one statement and one commit
 * that does not wait for the disk (a lost claim costs a re-run; its token
 * keeps that run's outcome out).
 * out has room for n; *nclaimed of them are filled (free each with
 * tq_claim_free()). */
int tq_store_claim_many(struct tq_store *store, char (*ids)[37], size_t n,
			int lease_s, struct tq_claim *out, size_t *nclaimed);

/* running(attempt) -> completed for n attempts in one statement;
 * written[i] tells which were (the others were fenced out).  Returns how
 * many were written, or an error (then none was). */
int tq_store_complete_many(struct tq_store *store, const struct tq_done *done,
			   size_t n, bool *written);

/* For tests and diagnosis: the plan PostgreSQL uses for the store's
 * statement name (e.g. "tq_claim_many") on one pooled connection, as
 * EXPLAIN (COSTS OFF) prints it (malloc'd).  -ENOENT for an unknown name. */
int tq_store_explain(struct tq_store *store, const char *name, char **plan);

#endif
