/*
 * procpool.h - a pool of pre-forked worker processes that run the handlers
 * of one plugin (isolation "process").
 *
 * The pool forks its processes from the daemon right after the plugin was
 * loaded and initialised, so every process inherits the plugin's code and
 * its user_data.  A process runs nothing but a loop: read an attempt from
 * its socket, call the handler with a process-side struct taskq_job, send
 * back the outcome.  Progress goes to the parent as it happens; log lines
 * go straight to stderr.
 *
 * The parent supervises each attempt: a process that dies costs the
 * attempt ("handler crashed: SIGSEGV", "handler exited with status 3"),
 * a deadline that passes gets SIGTERM then SIGKILL ("timeout after N s"),
 * a cancelled job gets a cancel message, then SIGTERM, then SIGKILL.  A
 * dead process is replaced; a process is recycled after recycle_after
 * jobs.  Processes die with the daemon (PR_SET_PDEATHSIG).
 *
 * The wire between parent and process is a private AF_UNIX stream of
 * frames: u32 body length (host order), u8 kind, body.  Both ends are the
 * same binary, so the layout is not versioned.
 */
#ifndef TQ_PROCPOOL_H
#define TQ_PROCPOOL_H

#include <stddef.h>
#include <sys/types.h>
#include <taskq/plugin.h>

/* Most processes one pool may have. */
#define TQ_PROCPOOL_MAX 64
/* Most descriptors of the plugin a process keeps open. */
#define TQ_PROCPOOL_KEEP_FDS_MAX 64

struct tq_procpool_opts {
	const char *name;        /* plugin name, for logs (copied) */
	int processes;           /* 1..TQ_PROCPOOL_MAX */
	int recycle_after;       /* jobs per process; 0 = never recycle */
	long long max_memory_mb; /* address space a process may add; 0 = no limit */
	long long max_cpu_s;     /* CPU seconds per attempt; 0 = no limit */
	int cancel_grace_ms;     /* cancel message -> SIGTERM; 0 = 2000 */
	int kill_grace_ms;       /* SIGTERM -> SIGKILL; 0 = 2000 */
	/* descriptors the plugin opened (in init()) that its processes keep;
	 * every other descriptor but 0-2 is closed in a new process
	 * (copied; at most TQ_PROCPOOL_KEEP_FDS_MAX) */
	const int *keep_fds;
	size_t n_keep_fds;
};

struct tq_procpool;

/*
 * Create the pool for the job types types[0..n_types) of one plugin and
 * fork its processes.  types and user_data are borrowed and must stay
 * valid (and mapped) until tq_procpool_close().  Call from a thread that
 * lives as long as the pool (a process dies with the thread that forked
 * it).  0, or -errno with the reason in err.
 */
int tq_procpool_open(struct tq_procpool **out, const struct tq_procpool_opts *o,
		     const struct taskq_job_type *types, size_t n_types,
		     void *user_data, char *err, size_t errlen);

/*
 * Run one attempt of job with the handler types[def - types] in a process
 * of the pool: waits for a free process, sends the attempt, relays progress
 * into job, and copies the outcome, result, error and retry_after into job.
 * Watches job->deadline_ms and job->cancelled (set from other threads).
 * Returns the handler's outcome, or TASKQ_RETRY with job's error set when
 * the process died, timed out, was cancelled or could not be started.
 * Thread-safe.
 */
enum taskq_outcome tq_procpool_run(struct tq_procpool *pp,
				   const struct taskq_job_type *def,
				   struct taskq_job *job);

/* Retire the pool: idle processes stop now, busy ones after their current
 * attempt; a late attempt still gets a process, which stops after it.
 * Thread-safe; accepts NULL. */
void tq_procpool_drain(struct tq_procpool *pp);

/* Stop every process and free the pool; no attempt may be running.
 * Accepts NULL. */
void tq_procpool_close(struct tq_procpool *pp);

/* The pids of the live processes (at most max) into pids; returns how
 * many there are.  For tests and diagnostics.  Thread-safe. */
size_t tq_procpool_pids(struct tq_procpool *pp, pid_t *pids, size_t max);

#endif
