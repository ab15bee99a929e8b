/*
 * config.c - the configuration table, the libconfig file and the
 * environment (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type { OPT_STRING, OPT_INT, OPT_BOOL, OPT_LEVEL, OPT_LIST };

/* One core setting: "group.name", its environment variable, type, range
 * and default (as text, parsed like the environment). */
struct opt {
	const char *path;
	const char *env;
	enum opt_type type;
	size_t offset;
	long long min, max;
	const char *def;
};

#define O(field) offsetof(struct tq_config, field)

static const struct opt opts[] = {
	{"database.url", "TASKQ_DATABASE_URL", OPT_STRING, O(database_url), 0, 0,
	 "postgresql://taskq@127.0.0.1:5432/taskq"},
	{"database.pool_size", "TASKQ_DB_POOL_SIZE", OPT_INT, O(db_pool_size), 1, 256, "8"},
	{"database.auto_migrate", "TASKQ_AUTO_MIGRATE", OPT_BOOL, O(auto_migrate), 0, 0, "true"},
	{"redis.url", "TASKQ_REDIS_URL", OPT_STRING, O(redis_url), 0, 0,
	 "redis://127.0.0.1:6379/0"},
	{"redis.prefix", "TASKQ_REDIS_PREFIX", OPT_STRING, O(redis_prefix), 0, 0, "taskq"},
	{"api.listen", "TASKQ_LISTEN", OPT_STRING, O(listen), 0, 0, "127.0.0.1:8080"},
	{"api.threads", "TASKQ_API_THREADS", OPT_INT, O(api_threads), 1, 256, "4"},
	{"api.max_body_bytes", "TASKQ_MAX_BODY_BYTES", OPT_INT, O(max_body_bytes), 256,
	 64LL * 1024 * 1024, "1048576"},
	{"workers.count", "TASKQ_WORKERS", OPT_INT, O(workers), 1, 1024, "4"},
	{"workers.prefetch", "TASKQ_PREFETCH", OPT_INT, O(prefetch), 0, 1024, "0"},
	{"workers.claim_on_submit", "TASKQ_CLAIM_ON_SUBMIT", OPT_BOOL, O(claim_on_submit), 0,
	 0, "true"},
	{"workers.queues", "TASKQ_QUEUES", OPT_LIST, O(queues), 0, 0, "default"},
	{"workers.lease_s", "TASKQ_LEASE_S", OPT_INT, O(lease_s), 1, 86400, "30"},
	{"workers.heartbeat_s", "TASKQ_HEARTBEAT_S", OPT_INT, O(heartbeat_s), 1, 3600, "10"},
	{"workers.shutdown_grace_s", "TASKQ_SHUTDOWN_GRACE_S", OPT_INT, O(shutdown_grace_s),
	 0, 86400, "30"},
	{"jobs.max_attempts", "TASKQ_MAX_ATTEMPTS", OPT_INT, O(max_attempts), 1, 100, "5"},
	{"jobs.timeout_s", "TASKQ_TIMEOUT_S", OPT_INT, O(timeout_s), 1, 86400, "300"},
	{"jobs.backoff_base_ms", "TASKQ_BACKOFF_BASE_MS", OPT_INT, O(backoff_base_ms), 0,
	 86400000, "1000"},
	{"jobs.backoff_cap_ms", "TASKQ_BACKOFF_CAP_MS", OPT_INT, O(backoff_cap_ms), 0,
	 86400000, "300000"},
	{"scheduler.interval_s", "TASKQ_SCHEDULER_INTERVAL_S", OPT_INT,
	 O(reconcile_interval_s), 1, 3600, "10"},
	{"scheduler.pending_redispatch_s", "TASKQ_PENDING_REDISPATCH_S", OPT_INT,
	 O(pending_redispatch_s), 1, 86400, "30"},
	{"plugins.dir", "TASKQ_PLUGIN_DIR", OPT_STRING, O(plugin_dir), 0, 0, "/usr/lib/taskq"},
	{"plugins.allow_insecure", "TASKQ_PLUGIN_ALLOW_INSECURE", OPT_BOOL,
	 O(plugin_allow_insecure), 0, 0, "false"},
	{"log.level", "TASKQ_LOG_LEVEL", OPT_LEVEL, O(log_level), 0, 0, "info"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Groups whose members are the core settings above; "plugin" holds one
 * free-form block per plugin. */
static const char *const core_groups[] = {
	"database", "redis", "api", "workers", "jobs", "scheduler", "plugins", "log",
};

static void *field(struct tq_config *cfg, const struct opt *o)
{
	return (char *)cfg + o->offset;
}

static void free_list(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

static int set_string(char **dst, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/* Split "a, b,c" into a NULL-terminated list of non-empty names. */
static int parse_list(const char *text, char ***out)
{
	size_t n = 0, cap = 4;
	char **list = calloc(cap + 1, sizeof(*list));
	const char *p = text;

	if (!list)
		return -ENOMEM;
	while (*p) {
		const char *end;
		size_t len;

		while (*p == ' ' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		len = (size_t)(end - p);
		while (len && p[len - 1] == ' ')
			len--;
		if (len) {
			if (n == cap) {
				char **grown = realloc(list, (cap * 2 + 1) * sizeof(*list));

				if (!grown)
					goto nomem;
				list = grown;
				cap *= 2;
			}
			list[n] = strndup(p, len);
			if (!list[n])
				goto nomem;
			list[++n] = NULL;
		}
		p = end;
	}
	if (n == 0) {
		free(list);
		return -EINVAL;
	}
	*out = list;
	return 0;
nomem:
	free_list(list);
	return -ENOMEM;
}

static int parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int check_int(const struct opt *o, long long v, char *why, size_t whylen)
{
	if (v < o->min || v > o->max) {
		snprintf(why, whylen, "%s must be an integer from %lld to %lld", o->path,
			 o->min, o->max);
		return -EINVAL;
	}
	return 0;
}

static void store_int(struct tq_config *cfg, const struct opt *o, long long v)
{
	if (o->offset == O(max_body_bytes))
		*(long long *)field(cfg, o) = v;
	else
		*(int *)field(cfg, o) = (int)v;
}

/* Apply a value given as text (defaults and environment). */
static int apply_text(struct tq_config *cfg, const struct opt *o, const char *text,
		      char *why, size_t whylen)
{
	long long v;
	char *end;
	bool b;
	int r;

	switch (o->type) {
	case OPT_STRING:
		if (!*text) {
			snprintf(why, whylen, "%s must not be empty", o->path);
			return -EINVAL;
		}
		return set_string(field(cfg, o), text);
	case OPT_INT:
		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno || end == text || *end) {
			snprintf(why, whylen, "%s must be an integer from %lld to %lld",
				 o->path, o->min, o->max);
			return -EINVAL;
		}
		r = check_int(o, v, why, whylen);
		if (r == 0)
			store_int(cfg, o, v);
		return r;
	case OPT_BOOL:
		if (parse_bool(text, &b)) {
			snprintf(why, whylen, "%s must be true or false", o->path);
			return -EINVAL;
		}
		*(bool *)field(cfg, o) = b;
		return 0;
	case OPT_LEVEL:
		if (tq_log_level_parse(text, field(cfg, o))) {
			snprintf(why, whylen, "%s must be one of error, warn, info, debug",
				 o->path);
			return -EINVAL;
		}
		return 0;
	case OPT_LIST: {
		char **list;

		r = parse_list(text, &list);
		if (r == -EINVAL)
			snprintf(why, whylen, "%s must name at least one queue", o->path);
		if (r)
			return r;
		free_list(*(char ***)field(cfg, o));
		*(char ***)field(cfg, o) = list;
		return 0;
	}
	}
	return -EINVAL;
}

static const struct opt *find_opt(const char *path)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strcmp(opts[i].path, path) == 0)
			return &opts[i];
	return NULL;
}

static const char *type_word(enum opt_type t)
{
	switch (t) {
	case OPT_STRING:
	case OPT_LEVEL:
		return "a string";
	case OPT_INT:
		return "an integer";
	case OPT_BOOL:
		return "true or false";
	case OPT_LIST:
		return "a list of strings";
	}
	return "?";
}

/* Apply one setting of the file. */
static int apply_setting(struct tq_config *cfg, const struct opt *o,
			 const config_setting_t *s, char *why, size_t whylen)
{
	int t = config_setting_type(s);

	switch (o->type) {
	case OPT_STRING:
	case OPT_LEVEL:
		if (t != CONFIG_TYPE_STRING)
			break;
		return apply_text(cfg, o, config_setting_get_string(s), why, whylen);
	case OPT_INT:
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			break;
		{
			long long v = config_setting_get_int64(s);
			int r = check_int(o, v, why, whylen);

			if (r == 0)
				store_int(cfg, o, v);
			return r;
		}
	case OPT_BOOL:
		if (t != CONFIG_TYPE_BOOL)
			break;
		*(bool *)field(cfg, o) = config_setting_get_bool(s) != 0;
		return 0;
	case OPT_LIST: {
		int n = config_setting_length(s);
		char **list;

		if (t == CONFIG_TYPE_STRING)
			return apply_text(cfg, o, config_setting_get_string(s), why, whylen);
		if ((t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST))
			break;
		if (n <= 0) {
			snprintf(why, whylen, "%s must name at least one queue", o->path);
			return -EINVAL;
		}
		list = calloc((size_t)n + 1, sizeof(*list));
		if (!list)
			return -ENOMEM;
		for (int i = 0; i < n; i++) {
			const char *name = config_setting_get_string_elem(s, i);

			if (!name || !*name || !(list[i] = strdup(name))) {
				free_list(list);
				snprintf(why, whylen, "%s must be a list of non-empty strings",
					 o->path);
				return -EINVAL;
			}
		}
		free_list(*(char ***)field(cfg, o));
		*(char ***)field(cfg, o) = list;
		return 0;
	}
	}
	snprintf(why, whylen, "%s must be %s", o->path, type_word(o->type));
	return -EINVAL;
}

static bool is_core_group(const char *name)
{
	for (size_t i = 0; i < sizeof(core_groups) / sizeof(core_groups[0]); i++)
		if (strcmp(core_groups[i], name) == 0)
			return true;
	return false;
}

static int where(char *err, size_t errlen, const char *path,
		 const config_setting_t *s, const char *why)
{
	snprintf(err, errlen, "%s:%d: %s", path, config_setting_source_line(s), why);
	return -EINVAL;
}

static int load_file(struct tq_config *cfg, const char *path, char *err, size_t errlen)
{
	config_setting_t *root;
	char why[256];

	if (!config_read_file(&cfg->lc, path)) {
		if (config_error_type(&cfg->lc) == CONFIG_ERR_FILE_IO) {
			snprintf(err, errlen, "%s: cannot read the file: %s", path,
				 strerror(errno ? errno : ENOENT));
		} else {
			snprintf(err, errlen, "%s:%d: %s",
				 config_error_file(&cfg->lc) ? config_error_file(&cfg->lc) : path,
				 config_error_line(&cfg->lc), config_error_text(&cfg->lc));
		}
		return -EINVAL;
	}
	cfg->have_file = true;
	root = config_root_setting(&cfg->lc);
	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *group = config_setting_get_elem(root, (unsigned)i);
		const char *gname = config_setting_name(group);

		if (strcmp(gname, "plugin") == 0) {
			if (!config_setting_is_group(group))
				return where(err, errlen, path, group,
					     "plugin must be a group of per-plugin blocks");
			continue;
		}
		if (!is_core_group(gname)) {
			snprintf(why, sizeof(why), "unknown setting '%s'", gname);
			return where(err, errlen, path, group, why);
		}
		if (!config_setting_is_group(group)) {
			snprintf(why, sizeof(why), "%s must be a group { ... }", gname);
			return where(err, errlen, path, group, why);
		}
		for (int j = 0; j < config_setting_length(group); j++) {
			config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
			char key[128];
			const struct opt *o;

			snprintf(key, sizeof(key), "%s.%s", gname, config_setting_name(s));
			o = find_opt(key);
			if (!o) {
				snprintf(why, sizeof(why), "unknown setting '%s'", key);
				return where(err, errlen, path, s, why);
			}
			if (apply_setting(cfg, o, s, why, sizeof(why)))
				return where(err, errlen, path, s, why);
		}
	}
	return 0;
}

static int parse_listen(struct tq_config *cfg, char *why, size_t whylen)
{
	const char *colon = strrchr(cfg->listen, ':');
	char *end;
	long port;

	if (!colon || colon == cfg->listen)
		goto bad;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
		goto bad;
	free(cfg->listen_host);
	cfg->listen_host = strndup(cfg->listen, (size_t)(colon - cfg->listen));
	if (!cfg->listen_host)
		return -ENOMEM;
	cfg->listen_port = (int)port;
	return 0;
bad:
	snprintf(why, whylen, "api.listen must be host:port with a port from 1 to 65535, not '%s'",
		 cfg->listen);
	return -EINVAL;
}

int tq_config_load(struct tq_config *cfg, const char *path, char *err, size_t errlen)
{
	char why[256];
	int r = 0;

	memset(cfg, 0, sizeof(*cfg));
	config_init(&cfg->lc);

	for (size_t i = 0; i < N_OPTS; i++) {
		r = apply_text(cfg, &opts[i], opts[i].def, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "default of %s: %s", opts[i].path, why);
			goto fail;
		}
	}
	if (path) {
		r = load_file(cfg, path, err, errlen);
		if (r)
			goto fail;
	}
	for (size_t i = 0; i < N_OPTS; i++) {
		const char *v = getenv(opts[i].env);

		if (!v)
			continue;
		r = apply_text(cfg, &opts[i], v, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "%s: %s", opts[i].env, why);
			goto fail;
		}
	}
	r = parse_listen(cfg, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "%s: %s", path ? path : "configuration", why);
		goto fail;
	}
	if (cfg->backoff_base_ms > cfg->backoff_cap_ms) {
		snprintf(err, errlen,
			 "%s: jobs.backoff_base_ms (%d) must not exceed jobs.backoff_cap_ms (%d)",
			 path ? path : "configuration", cfg->backoff_base_ms,
			 cfg->backoff_cap_ms);
		r = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	tq_config_free(cfg);
	return r == -ENOMEM ? -ENOMEM : -EINVAL;
}

void tq_config_free(struct tq_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_OPTS; i++) {
		if (opts[i].type == OPT_STRING) {
			free(*(char **)field(cfg, &opts[i]));
			*(char **)field(cfg, &opts[i]) = NULL;
		} else if (opts[i].type == OPT_LIST) {
			free_list(*(char ***)field(cfg, &opts[i]));
			*(char ***)field(cfg, &opts[i]) = NULL;
		}
	}
	free(cfg->listen_host);
	cfg->listen_host = NULL;
	config_destroy(&cfg->lc);
	cfg->have_file = false;
}

const config_setting_t *tq_config_plugin_block(const struct tq_config *cfg,
					       const char *name)
{
	const config_setting_t *group, *block;

	if (!cfg->have_file)
		return NULL;
	group = config_lookup(&cfg->lc, "plugin");
	if (!group || !config_setting_is_group(group))
		return NULL;
	block = config_setting_get_member(group, name);
	return block && config_setting_is_group(block) ? block : NULL;
}

void tq_config_dump(const struct tq_config *cfg, FILE *out)
{
	const char *group = "";

	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *o = &opts[i];
		const char *dot = strchr(o->path, '.');
		size_t glen = (size_t)(dot - o->path);
		const void *f = (const char *)cfg + o->offset;

		if (strncmp(group, o->path, glen) != 0 || group[glen] != '.') {
			if (*group)
				fprintf(out, "};\n");
			fprintf(out, "%.*s = {\n", (int)glen, o->path);
			group = o->path;
		}
		fprintf(out, "  %s = ", dot + 1);
		switch (o->type) {
		case OPT_STRING:
			fprintf(out, "\"%s\"", *(char *const *)f);
			break;
		case OPT_INT:
			fprintf(out, "%lld", o->offset == O(max_body_bytes)
						     ? *(const long long *)f
						     : (long long)*(const int *)f);
			break;
		case OPT_BOOL:
			fprintf(out, "%s", *(const bool *)f ? "true" : "false");
			break;
		case OPT_LEVEL:
			fprintf(out, "\"%s\"", tq_log_level_name(*(const enum tq_log_level *)f));
			break;
		case OPT_LIST: {
			char *const *list = *(char **const *)f;

			fprintf(out, "[");
			for (size_t k = 0; list && list[k]; k++)
				fprintf(out, "%s\"%s\"", k ? ", " : "", list[k]);
			fprintf(out, "]");
			break;
		}
		}
		fprintf(out, ";  # %s\n", o->env);
	}
	fprintf(out, "};\n");
}
