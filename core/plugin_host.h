/*
 * plugin_host.h - loads plugins from plugin_dir and keeps the registry of
 * job types.
 *
 * Each regular *.so in the directory is dlopen()ed (RTLD_NOW|RTLD_LOCAL),
 * its taskq_plugin_describe() called, and the ABI stamp checked before any
 * other field is read.  A file that fails to load, has another ABI major,
 * lacks the symbol, has a malformed descriptor, fails init(), or claims a
 * type already taken is skipped with one log line naming the file and the
 * reason; loading goes on.
 *
 * The registry is an immutable, reference-counted snapshot: workers and
 * API threads take one with tq_plugins_acquire() and keep using it while a
 * reload builds the next.  A plugin's code is never dlclose()d while the
 * daemon runs.
 */
#ifndef TQ_PLUGIN_HOST_H
#define TQ_PLUGIN_HOST_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include <taskq/plugin.h>

#include "config.h"

/* Where a plugin's handlers run (its block: isolation = "process" or
 * "thread"; "process" is the default). */
enum tq_isolation {
	TQ_ISOLATION_PROCESS = 0, /* pre-forked worker processes (procpool.h) */
	TQ_ISOLATION_THREAD = 1,  /* on the worker thread itself */
};

struct tq_procpool;

/* One loaded plugin file. */
struct tq_plugin {
	char *path;
	char *name;
	char *version;
	void *dl;
	const struct taskq_plugin *desc;
	void *user_data;
	bool inited;
	/* isolation: the pool is set when it is "process" and the plugin
	 * came from tq_plugins_load(); tq_type_run() calls the handler on the
	 * calling thread when it is NULL */
	enum tq_isolation isolation;
	struct tq_procpool *pool;
	/* the private copy that was dlopen()ed (-1: none); kept open while
	 * the code may be mapped */
	int memfd;
	/* the file as it was loaded: a reload keeps a plugin whose file still
	 * has the same device, inode, size and mtime */
	dev_t file_dev;
	ino_t file_ino;
	off_t file_size;
	struct timespec file_mtime;
	/* replaced or removed by a reload: its types take no new jobs and its
	 * processes stop after their current attempt */
	bool retired;
	/* one lock per job type (desc->types order), held around each
	 * attempt of a type flagged TASKQ_TYPE_SERIAL */
	pthread_mutex_t *serial;
	size_t n_serial;
};

/* One registered job type. */
struct tq_type {
	const char *name; /* == def->name */
	const struct taskq_job_type *def;
	struct tq_plugin *plugin;
};

struct tq_registry; /* snapshot of the types */
struct tq_plugins;  /* the host */

/* Create the host with an empty registry; tq_plugins_load() fills it.
 * cfg is borrowed and must outlive the host.  0 or -ENOMEM. */
int tq_plugins_open(struct tq_plugins **out, const struct tq_config *cfg);
/* Finalise every plugin (fini) and free the host; call after every
 * worker stopped.  Does not dlclose. */
void tq_plugins_close(struct tq_plugins *p);

/* Scan cfg->plugin_dir and publish a new registry.  Returns the number of
 * types registered (>= 0), or -errno when the directory cannot be read
 * (or, -EPERM, is writable by its group or by everyone, or owned by
 * another user, without plugin_allow_insecure); the current registry then
 * stays.  Loads are serialised.  A reload (every call after the first)
 * keeps a plugin whose file did not change (same struct tq_plugin, no new
 * init()), loads new and changed files (a changed file from a private
 * copy, so the new code really loads), and retires the plugins whose file
 * changed or went away: their types take no new jobs, running attempts
 * finish with the old code, their worker processes stop after their
 * current attempt.  Nothing is dlclose()d or freed before close. */
int tq_plugins_load(struct tq_plugins *p);

/* Take a reference to the current registry (never NULL); thread-safe.
 * Release it with tq_registry_release() (accepts NULL). */
struct tq_registry *tq_plugins_acquire(struct tq_plugins *p);
void tq_registry_release(struct tq_registry *r);

const struct tq_type *tq_registry_find(const struct tq_registry *r,
				       const char *name);
size_t tq_registry_count(const struct tq_registry *r);
const struct tq_type *tq_registry_at(const struct tq_registry *r, size_t i);

/*
 * Run one attempt of a job of type t: the handler, in this thread
 * (isolation "thread") or in a supervised worker process (isolation
 * "process").  Returns the handler's outcome; the reason of a failure is in
 * job->error.  In process isolation a crash, an exit, a passed deadline or
 * a cancellation that the handler ignores cost the attempt: TASKQ_RETRY
 * with error "handler crashed: SIGSEGV", "handler exited with status 3",
 * "timeout after N s" or "cancelled".  Thread-safe.
 */
enum taskq_outcome tq_type_run(const struct tq_type *t, struct taskq_job *job);

/* The registered types as JSON text (malloc'd):
 * {"job_types":[{"name","plugin","version","file","isolation",
 * "max_attempts","timeout_s"},...]}, isolation "process" or "thread".
 * 0 or -ENOMEM. */
int tq_plugins_types_json(struct tq_plugins *p, char **json);

/*
 * Load and check one plugin file without registering it, then call its
 * init() with block.  0, or -errno with the reason in err (e.g. "ABI 2.0,
 * taskqd supports 1.x", "no taskq_plugin_describe symbol (not a TaskQ
 * plugin? build it with TASKQ_PLUGIN())").  block may be NULL.  A file
 * refused before init() is dlclose()d; after init() ran it never is.  On
 * success *out is owned by the caller (tq_plugin_free()).
 */
int tq_plugin_load_file(const char *path, const config_setting_t *block,
			struct tq_plugin **out, char *err, size_t errlen);
/* Calls fini when inited; never dlclose()s. */
void tq_plugin_free(struct tq_plugin *pl);

/* Run the type's validator: 0 when it has none or it accepts, -EINVAL
 * with the plugin's reason (never empty) in err when it refuses. */
int tq_type_validate(const struct tq_type *t, const char *payload, char *err,
		     size_t errlen);

#endif
