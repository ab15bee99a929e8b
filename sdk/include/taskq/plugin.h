/*
 * taskq/plugin.h - the TaskQ plugin SDK.
 *
 * A TaskQ plugin is a shared object that exports exactly one function,
 * taskq_plugin_describe(), returning a pointer to a constant struct
 * taskq_plugin.  The daemon (the "host") dlopen()s every regular *.so file
 * in its plugin directory, calls that function, and checks the ABI stamp at
 * the start of the returned descriptor before it reads anything else.
 *
 * This header is the documentation of the SDK.  Everything a plugin may use
 * is declared here; a plugin never links against symbols of the daemon, so a
 * plugin built out of tree works with every daemon of the same major ABI.
 *
 * Build a plugin (the pkg-config flags include -fvisibility=hidden):
 *
 *     cc -shared -fPIC $(pkg-config --cflags taskq-plugin) my.c -o my.so
 *
 * or with CMake:
 *
 *     find_package(TaskQPlugin REQUIRED)
 *     taskq_add_plugin(my my.c)     # my.so, hidden visibility
 *
 * The guide is PLUGINS.md (docs/ of TaskQ, or /usr/share/doc/taskq-dev/);
 * a complete plugin to copy, with a Makefile, a CMakeLists.txt and a test
 * that runs its handler without a daemon, is sdk/examples/template (or
 * /usr/share/doc/taskq-dev/examples/template).
 *
 * Minimal plugin:
 *
 *     #include <taskq/plugin.h>
 *
 *     static enum taskq_outcome hello(const struct taskq_host *host,
 *                                     struct taskq_job *job, void *user_data)
 *     {
 *         (void)user_data;
 *         host->log(job, TASKQ_LOG_INFO, "hello from %s", host->job_id(job));
 *         host->set_result(job, host->job_payload(job));
 *         return TASKQ_DONE;
 *     }
 *
 *     static const struct taskq_job_type types[] = {
 *         { .name = "hello", .handler = hello },
 *     };
 *
 *     TASKQ_PLUGIN("hello", "1.0.0", types, NULL, NULL);
 *
 * ABI rules (what the host promises, what a plugin must do):
 *  - Structs only grow at their end.  Every struct that may grow starts with
 *    or carries a struct_size; the host reads a field only when struct_size
 *    says the plugin's copy has it, and a plugin reads a host service only
 *    when host->struct_size says it exists (see TASKQ_HOST_HAS()).
 *  - Enum values are never renumbered.
 *  - A change of TASKQ_ABI_MAJOR means old plugins are refused.  A change of
 *    TASKQ_ABI_MINOR only adds; plugins built against an older minor load.
 *
 * Threading: unless a job type sets TASKQ_TYPE_SERIAL, its handler may be
 * called concurrently from several worker threads (isolation "thread") or
 * several worker processes (isolation "process"), each call with its own
 * struct taskq_job.  init() and fini() are never called concurrently with
 * anything else of the same plugin.
 *
 * Memory: every const char * the host hands out is borrowed and valid until
 * the handler (or validator) returns, unless said otherwise.  Strings a
 * plugin passes to the host are copied by the host before the call returns.
 */
#ifndef TASKQ_PLUGIN_H
#define TASKQ_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes.  Since 1.0. */
#define TASKQ_ABI_MAJOR 1
#define TASKQ_ABI_MINOR 0

/* The one symbol a plugin exports.  Since 1.0. */
#define TASKQ_PLUGIN_SYMBOL "taskq_plugin_describe"

#if defined(__GNUC__)
#define TASKQ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define TASKQ_EXPORT __attribute__((visibility("default")))
#else
#define TASKQ_PRINTF(fmt, args)
#define TASKQ_EXPORT
#endif

/* What a handler says happened to its attempt.  Since 1.0. */
enum taskq_outcome {
	TASKQ_DONE = 0,  /* completed; the result set with set_result() is kept */
	TASKQ_RETRY = 1, /* this attempt failed; retry with backoff while attempts remain */
	TASKQ_FAIL = 2,  /* permanent failure: the job ends "failed" without retry */
};

/* Levels for host->log().  Since 1.0. */
enum taskq_log_level {
	TASKQ_LOG_ERROR = 0,
	TASKQ_LOG_WARN = 1,
	TASKQ_LOG_INFO = 2,
	TASKQ_LOG_DEBUG = 3,
};

/* Error codes returned by host services.  Stable numbers.  Since 1.0. */
enum taskq_error {
	TASKQ_OK = 0,
	TASKQ_EINVAL = 1,    /* an argument is out of range or malformed */
	TASKQ_ENOENT = 2,    /* no such configuration setting */
	TASKQ_ETYPE = 3,     /* the setting exists with another type */
	TASKQ_ENOMEM = 4,    /* out of memory */
	TASKQ_ETOOLARGE = 5, /* a value exceeds a host limit */
};

/* One attempt of one job, owned by the host.  Opaque.  Since 1.0. */
struct taskq_job;

/* The plugin's own configuration block, owned by the host, read-only.
 * Opaque.  Since 1.0. */
struct taskq_config;

/*
 * Services the host offers to plugins.  A pointer to it is passed to
 * init() and to every handler and validator call; it stays valid for the
 * life of the plugin.  All functions are thread-safe.
 */
struct taskq_host {
	uint32_t struct_size; /* sizeof(struct taskq_host) of the host */
	uint16_t abi_major;   /* TASKQ_ABI_MAJOR of the host */
	uint16_t abi_minor;   /* TASKQ_ABI_MINOR of the host */

	/* Log a line tied to the job (job_id, type and attempt are added).
	 * job may be NULL (in init/fini/validate): the line is tied to the
	 * plugin only.  Since 1.0. */
	void (*log)(struct taskq_job *job, enum taskq_log_level level,
		    const char *fmt, ...) TASKQ_PRINTF(3, 4);

	/* The job's id (36-character UUID text), type, attempt number
	 * (1 on the first attempt) and payload (JSON text, never NULL).
	 * Borrowed; valid until the handler returns.  Since 1.0. */
	const char *(*job_id)(const struct taskq_job *job);
	const char *(*job_type)(const struct taskq_job *job);
	int (*job_attempt)(const struct taskq_job *job);
	const char *(*job_payload)(const struct taskq_job *job);

	/* Milliseconds left before the attempt's timeout; 0 or negative once
	 * it has passed.  Since 1.0. */
	int64_t (*job_remaining_ms)(const struct taskq_job *job);

	/* Set the job's result, which must be valid JSON text (copied).
	 * Replaces an earlier result.  Returns TASKQ_OK, TASKQ_EINVAL for text
	 * that is not JSON, TASKQ_ETOOLARGE past the host's limit.  Since 1.0. */
	int (*set_result)(struct taskq_job *job, const char *json);

	/* Set the reason this attempt failed; it becomes the job's
	 * error_message.  Returns TASKQ_OK.  Since 1.0. */
	int (*set_error)(struct taskq_job *job, const char *fmt, ...) TASKQ_PRINTF(2, 3);

	/* Non-zero once the job was cancelled or its timeout passed: the
	 * handler should stop as soon as it can.  Since 1.0. */
	int (*is_cancelled)(const struct taskq_job *job);

	/* Report progress, 0-100, with an optional message (may be NULL).
	 * Visible in GET /v1/jobs/{id}.  Returns TASKQ_EINVAL outside 0-100.
	 * Since 1.0. */
	int (*set_progress)(struct taskq_job *job, int percent, const char *message);

	/* With TASKQ_RETRY: retry no earlier than this many seconds from now
	 * instead of the computed backoff.  Since 1.0. */
	void (*retry_after)(struct taskq_job *job, unsigned int seconds);

	/* Read a setting of the plugin's own configuration block (the group
	 * named after the plugin under "plugin" in taskq.conf).  cfg may be
	 * NULL (no block): every lookup then returns TASKQ_ENOENT.  name is a
	 * path below the block: "timeout_s", "smtp.host" (a nested group),
	 * "allow_hosts.[0]" (an element of a list or array), so lists and
	 * groups are read element by element.  cfg and every string read
	 * through it stay valid for the life of the plugin (until fini()).
	 * Since 1.0. */
	int (*config_string)(const struct taskq_config *cfg, const char *name,
			     const char **out);
	int (*config_int)(const struct taskq_config *cfg, const char *name,
			  long long *out);
	int (*config_bool)(const struct taskq_config *cfg, const char *name,
			   int *out);
};

/* Non-zero when the host table has the member (for plugins built against a
 * newer minor than the host they run in).  Since 1.0. */
#define TASKQ_HOST_HAS(host, member)                                           \
	((host)->struct_size >= offsetof(struct taskq_host, member) +          \
				       sizeof((host)->member))

/*
 * Run one attempt of a job.  Called on a worker thread or in a worker
 * process.  Return TASKQ_DONE, TASKQ_RETRY or TASKQ_FAIL; set the result or
 * the error through the host before returning.
 */
typedef enum taskq_outcome (*taskq_handler_fn)(const struct taskq_host *host,
						struct taskq_job *job,
						void *user_data);

/*
 * Check a payload when the job is submitted, before it is stored.  Return 0
 * to accept it; return non-zero and write a short reason (NUL-terminated,
 * at most errlen bytes) into err to reject it with 400 INVALID_PAYLOAD.
 * Called on an API thread; must be fast and must not block.
 */
typedef int (*taskq_validate_fn)(const struct taskq_host *host,
				 const char *payload_json, char *err,
				 size_t errlen, void *user_data);

/* Flags of a job type.  Since 1.0. */
#define TASKQ_TYPE_SERIAL 0x1u /* never run two jobs of this type at once in one worker pool */

/*
 * One job type a plugin handles.  Plugins hand the host an array of these,
 * so its size is part of the ABI: this struct never grows within a major
 * ABI (a minor that needs more per-type data adds a parallel array at the
 * end of struct taskq_plugin instead).  Since 1.0.
 */
struct taskq_job_type {
	const char *name;           /* [a-z0-9_.-]{1,64}; unique among loaded plugins */
	taskq_handler_fn handler;   /* required */
	taskq_validate_fn validate; /* optional */
	int max_attempts;           /* default for jobs of this type; 0 = host default */
	int timeout_s;              /* default timeout; 0 = host default */
	uint32_t flags;             /* TASKQ_TYPE_* */
};

/*
 * Called once after the plugin is loaded and its ABI checked, before any
 * handler.  cfg is the plugin's block (may be NULL).  Store per-plugin state
 * in *user_data; it is passed to every handler and validator and to fini().
 * Return 0, or non-zero with a reason in err to refuse to load.
 */
typedef int (*taskq_init_fn)(const struct taskq_host *host,
			     const struct taskq_config *cfg, void **user_data,
			     char *err, size_t errlen);
/* Called once when the plugin is retired, after its last handler returned. */
typedef void (*taskq_fini_fn)(void *user_data);

/*
 * The descriptor a plugin returns.  The first three fields are the ABI
 * stamp and never move.  Since 1.0.
 */
struct taskq_plugin {
	uint16_t abi_major;  /* TASKQ_ABI_MAJOR the plugin was built with */
	uint16_t abi_minor;  /* TASKQ_ABI_MINOR the plugin was built with */
	uint32_t struct_size; /* sizeof(struct taskq_plugin) the plugin was built with */
	const char *name;    /* [a-z0-9_-]{1,64}: names the config block too */
	const char *version; /* free text, e.g. "1.2.0" */
	const struct taskq_job_type *types;
	size_t n_types;
	taskq_init_fn init; /* optional */
	taskq_fini_fn fini; /* optional */
};

typedef const struct taskq_plugin *(*taskq_describe_fn)(void);

/*
 * Define the exported descriptor function of a plugin.  types must be an
 * array (its length is taken with sizeof).
 */
#define TASKQ_PLUGIN(name_, version_, types_, init_, fini_)                   \
	TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void);   \
	TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void)    \
	{                                                                      \
		static const struct taskq_plugin desc = {                      \
			.abi_major = TASKQ_ABI_MAJOR,                          \
			.abi_minor = TASKQ_ABI_MINOR,                          \
			.struct_size = sizeof(struct taskq_plugin),            \
			.name = (name_),                                       \
			.version = (version_),                                 \
			.types = (types_),                                     \
			.n_types = sizeof(types_) / sizeof((types_)[0]),       \
			.init = (init_),                                       \
			.fini = (fini_),                                       \
		};                                                             \
		return &desc;                                                  \
	}

#ifdef __cplusplus
}
#endif

#endif /* TASKQ_PLUGIN_H */
