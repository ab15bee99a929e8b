/*
 * config.h - taskqd's configuration: a libconfig file, then TASKQ_*
 * environment variables over it.
 *
 * Every core key is one row of a declarative table in config.c (name,
 * type, range, default, environment variable); unknown core keys are
 * errors.  Each plugin's block ("plugin" group, one sub-group per plugin)
 * is kept as it is and handed to that plugin read-only.
 */
#ifndef TQ_CONFIG_H
#define TQ_CONFIG_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>

#include "log.h"

struct tq_config {
	/* database */
	char *database_url;
	int db_pool_size;
	bool auto_migrate;
	/* redis */
	char *redis_url;
	char *redis_prefix;
	/* api */
	char *listen;      /* "host:port" as given */
	char *listen_host; /* parsed from listen */
	int listen_port;
	int api_threads;
	long long max_body_bytes;
	/* workers */
	int workers;
	int prefetch; /* claims held beyond the running ones */
	bool claim_on_submit; /* free slots take this node's submissions */
	char **queues; /* NULL-terminated; default {"default"} */
	int lease_s;
	int heartbeat_s;
	int shutdown_grace_s;
	/* jobs */
	int max_attempts;
	int timeout_s;
	int backoff_base_ms;
	int backoff_cap_ms;
	/* scheduler */
	int reconcile_interval_s;
	int pending_redispatch_s;
	/* plugins */
	char *plugin_dir;
	bool plugin_allow_insecure;
	/* log */
	enum tq_log_level log_level;

	/* The parsed file, kept for the plugin blocks. */
	config_t lc;
	bool have_file;
};

/*
 * Load defaults, then FILE (when path is not NULL), then the environment.
 * On error returns -EINVAL and writes "file:line: reason" (or
 * "TASKQ_X: reason" for the environment) into err; cfg is then empty and
 * needs no tq_config_free().
 */
int tq_config_load(struct tq_config *cfg, const char *path, char *err,
		   size_t errlen);
void tq_config_free(struct tq_config *cfg);

/* The "plugin.<name>" group, or NULL.  Borrowed from cfg. */
const config_setting_t *tq_config_plugin_block(const struct tq_config *cfg,
					       const char *name);

/* Print the effective configuration (libconfig syntax) to stream. */
#include <stdio.h>
void tq_config_dump(const struct tq_config *cfg, FILE *out);

#endif
