/*
 * plugin_host.c - load job-type plugins from plugin_dir and publish the
 * registry of their types.
 *
 * Loading one file happens in two stages:
 *
 *  1. open: stat (regular files only), dlopen(RTLD_NOW | RTLD_LOCAL), dlsym
 *     the describe function, call it, check the ABI stamp (major and
 *     struct_size) before reading any other field, then check the rest of
 *     the descriptor.  Only describe() (and the object's constructors) ran,
 *     so a file refused here is dlclose()d.
 *  2. init: call the plugin's init() with its configuration block.  From
 *     here on the plugin's code may have left threads, handlers or atexit
 *     hooks behind, so the object is never dlclose()d again, even when
 *     init() refuses.
 *
 * Stage 1 dlopen()s a private copy of the file (a memfd holding its
 * bytes, opened through /proc/self/fd), never the file itself: the dynamic
 * loader would hand back the object already loaded from the same path or
 * inode, so a new build copied over an old one would not load, and a file
 * rewritten in place would change the code under the running daemon.
 *
 * After init() a plugin with isolation "process" gets its pool of worker
 * processes (procpool.h), forked from the loading thread.
 *
 * tq_plugins_load() runs stage 1 for every *.so of the directory in name
 * order, refuses duplicate plugin names and types already taken before
 * stage 2 (a refused plugin is never initialised), and publishes a new
 * immutable registry.  On a reload a file whose identity (device, inode,
 * size, mtime) did not change keeps its plugin as it is.  Plugins stay
 * allocated until tq_plugins_close() even when a later load replaces the
 * registry that names them, because a worker may still be running one of
 * their handlers; replaced ones are retired (their pools drained).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "plugin_host.h"
#include "procpool.h"

/* Size of struct taskq_plugin in ABI 1.0: the host reads no further. */
#define TQ_PLUGIN_DESC_SIZE_1_0                                                \
	(offsetof(struct taskq_plugin, fini) + sizeof(taskq_fini_fn))

#define TQ_PLUGIN_NAME_MAX 64
#define TQ_TYPE_NAME_MAX 64
#define TQ_PLUGIN_VERSION_MAX 64
#define TQ_PLUGIN_TYPES_MAX 256
/* Plugin files considered in one directory scan. */
#define TQ_PLUGIN_FILES_MAX 256
/* Reason text of a plugin's own init() error. */
#define TQ_PLUGIN_INIT_ERR_MAX 256
/* Largest plugin file copied for loading. */
#define TQ_PLUGIN_FILE_MAX (256LL * 1024 * 1024)
/* Descriptors looked at to find the ones a plugin's init() opened. */
#define TQ_PLUGIN_FDS_MAX 1024
/* Largest max_memory_mb / max_cpu_s a block may ask for. */
#define TQ_PLUGIN_LIMIT_MAX (1LL << 30)

struct tq_registry {
	atomic_long refs;
	size_t n;
	struct tq_type types[]; /* sorted by name */
};

struct tq_plugins {
	const struct tq_config *cfg; /* borrowed */
	pthread_mutex_t lock;        /* guards current */
	pthread_mutex_t load_lock;   /* serialises loads; guards plugins */
	struct tq_registry *current; /* holds one reference */
	/* every plugin any load accepted, in load order, until close */
	struct tq_plugin **plugins;
	size_t n_plugins;
	size_t cap_plugins;
	/* the plugins of the current registry (guarded by load_lock) */
	struct tq_plugin **active;
	size_t n_active;
};

/* One load's plugins and types while they are being checked. */
struct host_load {
	struct tq_plugin **plugins; /* kept and new ones */
	size_t n_plugins;
	struct tq_plugin **fresh; /* the new ones, owned until kept */
	size_t n_fresh;
	struct tq_type *types; /* sorted by name */
	size_t n_types;
};

/* The isolation settings of a plugin's block. */
struct host_isolation {
	enum tq_isolation mode;
	struct tq_procpool_opts pool;
};

static bool host_name_ok(const char *s, size_t max, const char *extra)
{
	size_t len, i;

	if (!s)
		return false;
	len = strnlen(s, max + 1);
	if (len == 0 || len > max)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (!strchr(extra, c))
			return false;
	}
	return true;
}

static bool host_version_ok(const char *s)
{
	size_t len, i;

	if (!s)
		return false;
	len = strnlen(s, TQ_PLUGIN_VERSION_MAX + 1);
	if (len == 0 || len > TQ_PLUGIN_VERSION_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

/* Check a descriptor whose ABI stamp was already accepted. */
static int host_check_desc(const struct taskq_plugin *d, char *err,
			   size_t errlen)
{
	size_t i, j;

	if (!host_name_ok(d->name, TQ_PLUGIN_NAME_MAX, "_-")) {
		snprintf(err, errlen, "plugin name %s%.64s%s is not [a-z0-9_-]{1,64}",
			 d->name ? "\"" : "", d->name ? d->name : "(null)",
			 d->name ? "\"" : "");
		return -EINVAL;
	}
	if (!host_version_ok(d->version)) {
		snprintf(err, errlen,
			 "plugin \"%s\": version missing or not 1-%d printable characters",
			 d->name, TQ_PLUGIN_VERSION_MAX);
		return -EINVAL;
	}
	if (!d->types || d->n_types < 1 || d->n_types > TQ_PLUGIN_TYPES_MAX) {
		snprintf(err, errlen,
			 "plugin \"%s\": %zu job types, expected 1 to %d",
			 d->name, d->types ? d->n_types : 0,
			 TQ_PLUGIN_TYPES_MAX);
		return -EINVAL;
	}
	for (i = 0; i < d->n_types; i++) {
		const struct taskq_job_type *t = &d->types[i];

		if (!host_name_ok(t->name, TQ_TYPE_NAME_MAX, "_.-")) {
			snprintf(err, errlen,
				 "plugin \"%s\": type %zu: name %s%.64s%s is not [a-z0-9_.-]{1,64}",
				 d->name, i, t->name ? "\"" : "",
				 t->name ? t->name : "(null)",
				 t->name ? "\"" : "");
			return -EINVAL;
		}
		if (!t->handler) {
			snprintf(err, errlen,
				 "plugin \"%s\": type \"%s\" has no handler",
				 d->name, t->name);
			return -EINVAL;
		}
		if (t->max_attempts < 0 || t->timeout_s < 0) {
			snprintf(err, errlen,
				 "plugin \"%s\": type \"%s\": negative max_attempts or timeout_s",
				 d->name, t->name);
			return -EINVAL;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(d->types[j].name, t->name) == 0) {
				snprintf(err, errlen,
					 "plugin \"%s\": type \"%s\" listed twice",
					 d->name, t->name);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Free the host's copy of a plugin without touching its code. */
static void host_plugin_free_struct(struct tq_plugin *pl)
{
	if (!pl)
		return;
	if (pl->serial) {
		for (size_t i = 0; i < pl->n_serial; i++)
			pthread_mutex_destroy(&pl->serial[i]);
		free(pl->serial);
	}
	free(pl->path);
	free(pl->name);
	free(pl->version);
	free(pl);
}

/*
 * dlclose() an object that was never initialised.  Its private copy may
 * be closed only when the object is really gone: the loader matches
 * /proc/self/fd/N by name, so a descriptor number must never be reused
 * while an object loaded through it is mapped.
 */
static void host_dlclose(void *dl, int memfd)
{
	char dlpath[64];
	void *again;

	if (dl)
		dlclose(dl);
	if (memfd < 0)
		return;
	snprintf(dlpath, sizeof(dlpath), "/proc/self/fd/%d", memfd);
	again = dlopen(dlpath, RTLD_NOW | RTLD_NOLOAD);
	if (again) {
		dlclose(again);
		return; /* still mapped: the descriptor stays open */
	}
	close(memfd);
}

/* Drop a plugin whose init() never ran: its object can be unmapped. */
static void host_plugin_discard(struct tq_plugin *pl)
{
	if (!pl)
		return;
	host_dlclose(pl->dl, pl->memfd);
	host_plugin_free_struct(pl);
}

/*
 * Copy the file open on fd into a new memfd; its descriptor or -errno.
 * st is the file's fstat().
 */
static int host_private_copy(int fd, const struct stat *st, char *err,
			     size_t errlen)
{
	char buf[65536];
	ssize_t r, w, off;
	int mfd, rc;

	if (st->st_size > TQ_PLUGIN_FILE_MAX) {
		snprintf(err, errlen, "file larger than %lld bytes",
			 TQ_PLUGIN_FILE_MAX);
		return -EFBIG;
	}
	mfd = memfd_create("taskq-plugin", MFD_CLOEXEC);
	if (mfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot make a private copy: %s",
			 strerror(-rc));
		return rc;
	}
	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			snprintf(err, errlen, "cannot read: %s", strerror(-rc));
			goto fail;
		}
		for (off = 0; off < r; off += w) {
			w = write(mfd, buf + off, (size_t)(r - off));
			if (w < 0) {
				if (errno == EINTR) {
					w = 0;
					continue;
				}
				rc = -errno;
				snprintf(err, errlen, "cannot make a private copy: %s",
					 strerror(-rc));
				goto fail;
			}
		}
	}
	return mfd;
fail:
	close(mfd);
	return rc;
}

/* Stage 1: dlopen, describe, check.  No plugin code but describe() runs. */
static int host_plugin_open(const char *path, struct tq_plugin **out,
			    char *err, size_t errlen)
{
	const struct taskq_plugin *d;
	struct tq_plugin *pl = NULL;
	taskq_describe_fn describe;
	char dlpath[64];
	struct stat st;
	void *dl = NULL;
	const char *why;
	size_t dllen;
	int rc, fd = -1, memfd = -1;

	*out = NULL;
	if (stat(path, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot stat: %s", strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "not a regular file");
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open: %s", strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "not a regular file");
		goto out;
	}
	memfd = host_private_copy(fd, &st, err, errlen);
	if (memfd < 0) {
		rc = memfd;
		memfd = -1;
		goto out;
	}
	snprintf(dlpath, sizeof(dlpath), "/proc/self/fd/%d", memfd);

	dlerror();
	dl = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		why = dlerror();
		rc = -ENOEXEC;
		/* name the file, not its private copy */
		dllen = strlen(dlpath);
		if (why && strncmp(why, dlpath, dllen) == 0)
			snprintf(err, errlen, "cannot load: %s%s", path, why + dllen);
		else
			snprintf(err, errlen, "cannot load: %s",
				 why ? why : "dlopen failed");
		goto out;
	}
	describe = (taskq_describe_fn)dlsym(dl, TASKQ_PLUGIN_SYMBOL);
	if (!describe) {
		rc = -ENOEXEC;
		snprintf(err, errlen,
			 "no " TASKQ_PLUGIN_SYMBOL " symbol (not a TaskQ plugin? build it with TASKQ_PLUGIN())");
		goto out;
	}
	d = describe();
	if (!d) {
		rc = -EINVAL;
		snprintf(err, errlen, TASKQ_PLUGIN_SYMBOL "() returned NULL");
		goto out;
	}
	/* the stamp first: nothing else is read from another major ABI */
	if (d->abi_major != TASKQ_ABI_MAJOR) {
		rc = -ENOEXEC;
		snprintf(err, errlen, "ABI %u.%u, taskqd supports %d.x",
			 (unsigned int)d->abi_major, (unsigned int)d->abi_minor,
			 TASKQ_ABI_MAJOR);
		goto out;
	}
	if (d->struct_size < TQ_PLUGIN_DESC_SIZE_1_0) {
		rc = -ENOEXEC;
		snprintf(err, errlen,
			 "ABI %u.%u descriptor of %u bytes, taskqd needs at least %zu (ABI %d.0)",
			 (unsigned int)d->abi_major, (unsigned int)d->abi_minor,
			 (unsigned int)d->struct_size,
			 (size_t)TQ_PLUGIN_DESC_SIZE_1_0, TASKQ_ABI_MAJOR);
		goto out;
	}
	rc = host_check_desc(d, err, errlen);
	if (rc < 0)
		goto out;

	pl = calloc(1, sizeof(*pl));
	if (!pl)
		goto nomem;
	pl->path = strdup(path);
	pl->name = strdup(d->name);
	pl->version = strdup(d->version);
	if (!pl->path || !pl->name || !pl->version)
		goto nomem;
	pl->dl = dl;
	pl->desc = d;
	pl->serial = calloc(d->n_types, sizeof(*pl->serial));
	if (!pl->serial)
		goto nomem;
	for (size_t i = 0; i < d->n_types; i++)
		pthread_mutex_init(&pl->serial[i], NULL);
	pl->n_serial = d->n_types;
	pl->memfd = memfd;
	pl->isolation = TQ_ISOLATION_THREAD; /* until a load gives it a pool */
	pl->file_dev = st.st_dev;
	pl->file_ino = st.st_ino;
	pl->file_size = st.st_size;
	pl->file_mtime = st.st_mtim;
	close(fd);
	*out = pl;
	return 0;

nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "out of memory");
out:
	host_plugin_free_struct(pl);
	if (dl || memfd >= 0)
		host_dlclose(dl, memfd);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * Stage 2: init().  On failure pl is freed but its object stays mapped:
 * init() ran and may have left anything behind.
 */
static int host_plugin_init(struct tq_plugin *pl,
			    const config_setting_t *block, char *err,
			    size_t errlen)
{
	char perr[TQ_PLUGIN_INIT_ERR_MAX] = "";
	const char *prev;
	int rc;

	if (!pl->desc->init) {
		pl->inited = true;
		return 0;
	}
	prev = tq_job_set_log_plugin(pl->name);
	rc = pl->desc->init(&tq_host, (const struct taskq_config *)(const void *)block,
			    &pl->user_data, perr, sizeof(perr));
	tq_job_set_log_plugin(prev);
	if (rc == 0) {
		pl->inited = true;
		return 0;
	}
	perr[sizeof(perr) - 1] = '\0';
	snprintf(err, errlen, "plugin \"%s\": init failed: %s", pl->name,
		 perr[0] ? perr : "no reason given");
	host_plugin_free_struct(pl);
	return -ECANCELED;
}

int tq_plugin_load_file(const char *path, const config_setting_t *block,
			struct tq_plugin **out, char *err, size_t errlen)
{
	struct tq_plugin *pl;
	int rc;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	rc = host_plugin_open(path, &pl, err, errlen);
	if (rc < 0)
		return rc;
	rc = host_plugin_init(pl, block, err, errlen);
	if (rc < 0)
		return rc;
	*out = pl;
	return 0;
}

void tq_plugin_free(struct tq_plugin *pl)
{
	const char *prev;

	if (!pl)
		return;
	tq_procpool_close(pl->pool);
	pl->pool = NULL;
	if (pl->inited && pl->desc->fini) {
		prev = tq_job_set_log_plugin(pl->name);
		pl->desc->fini(pl->user_data);
		tq_job_set_log_plugin(prev);
	}
	host_plugin_free_struct(pl);
}

int tq_type_validate(const struct tq_type *t, const char *payload, char *err,
		     size_t errlen)
{
	const char *prev;
	int rc;

	if (!t->def->validate)
		return 0;
	if (errlen)
		err[0] = '\0';
	prev = tq_job_set_log_plugin(t->plugin->name);
	rc = t->def->validate(&tq_host, payload ? payload : "null", err, errlen,
			      t->plugin->user_data);
	tq_job_set_log_plugin(prev);
	if (rc == 0)
		return 0;
	if (errlen) {
		err[errlen - 1] = '\0';
		if (!err[0])
			snprintf(err, errlen, "payload rejected by type \"%s\"",
				 t->name);
	}
	return -EINVAL;
}

static int host_type_cmp(const void *a, const void *b)
{
	const struct tq_type *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static int host_type_key_cmp(const void *key, const void *elem)
{
	const struct tq_type *t = elem;

	return strcmp(key, t->name);
}

static struct tq_registry *host_registry_new(const struct tq_type *types,
					     size_t n)
{
	struct tq_registry *r;

	r = malloc(sizeof(*r) + n * sizeof(r->types[0]));
	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->n = n;
	if (n)
		memcpy(r->types, types, n * sizeof(r->types[0]));
	return r;
}

int tq_plugins_open(struct tq_plugins **out, const struct tq_config *cfg)
{
	struct tq_plugins *p;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = cfg;
	p->current = host_registry_new(NULL, 0);
	if (!p->current) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->load_lock, NULL);
	*out = p;
	return 0;
}

void tq_plugins_close(struct tq_plugins *p)
{
	size_t i;

	if (!p)
		return;
	tq_registry_release(p->current);
	/* retire in reverse load order */
	for (i = p->n_plugins; i > 0; i--)
		tq_plugin_free(p->plugins[i - 1]);
	free(p->plugins);
	free(p->active);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->load_lock);
	free(p);
}

struct tq_registry *tq_plugins_acquire(struct tq_plugins *p)
{
	struct tq_registry *r;

	pthread_mutex_lock(&p->lock);
	r = p->current;
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&p->lock);
	return r;
}

void tq_registry_release(struct tq_registry *r)
{
	if (!r)
		return;
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		free(r);
}

const struct tq_type *tq_registry_find(const struct tq_registry *r,
				       const char *name)
{
	if (!r || !name || !r->n)
		return NULL;
	return bsearch(name, r->types, r->n, sizeof(r->types[0]),
		       host_type_key_cmp);
}

size_t tq_registry_count(const struct tq_registry *r)
{
	return r ? r->n : 0;
}

const struct tq_type *tq_registry_at(const struct tq_registry *r, size_t i)
{
	if (!r || i >= r->n)
		return NULL;
	return &r->types[i];
}

/*
 * Unless plugin_allow_insecure: a plugin file or directory must belong to
 * root or to the daemon's user and must not be writable by its group or
 * by everyone, or others could make the daemon run their code.
 */
static int host_check_owner(const struct tq_config *cfg, const struct stat *st,
			    char *err, size_t errlen)
{
	if (cfg->plugin_allow_insecure)
		return 0;
	if (st->st_mode & S_IWOTH) {
		snprintf(err, errlen,
			 "writable by everyone (set plugin_allow_insecure to load it anyway)");
		return -EPERM;
	}
	if (st->st_mode & S_IWGRP) {
		snprintf(err, errlen,
			 "writable by its group (gid %u) (set plugin_allow_insecure to load it anyway)",
			 (unsigned int)st->st_gid);
		return -EPERM;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		snprintf(err, errlen,
			 "owned by uid %u, neither root nor the daemon's user (set plugin_allow_insecure to load it anyway)",
			 (unsigned int)st->st_uid);
		return -EPERM;
	}
	return 0;
}

static bool host_is_plugin_file(const char *name)
{
	size_t len = strlen(name);

	return name[0] != '.' && len > 3 && strcmp(name + len - 3, ".so") == 0;
}

static int host_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void host_free_names(char **names, size_t n)
{
	size_t i;

	if (!names)
		return;
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The *.so names of dir, sorted.  -errno when dir cannot be read. */
static int host_scan_dir(const struct tq_config *cfg, char ***out,
			 size_t *n_out)
{
	const char *dir = cfg->plugin_dir;
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	char **names = NULL;
	size_t n = 0, skipped = 0;
	struct dirent *de;
	char err[256];
	struct stat st;
	DIR *d = NULL;
	int rc;

	*out = NULL;
	*n_out = 0;
	f.file = dir;
	if (!dir || !*dir)
		return -ENOENT;
	d = opendir(dir); /* O_CLOEXEC in glibc */
	if (!d)
		return -errno;
	if (fstat(dirfd(d), &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = host_check_owner(cfg, &st, err, sizeof(err));
	if (rc < 0) {
		tq_logf(TQ_LOG_ERROR, &f, "plugin directory refused: %s", err);
		goto out;
	}
	names = calloc(TQ_PLUGIN_FILES_MAX, sizeof(*names));
	if (!names) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				rc = -errno;
				goto out;
			}
			break;
		}
		if (!host_is_plugin_file(de->d_name))
			continue;
		if (n == TQ_PLUGIN_FILES_MAX) {
			skipped++;
			continue;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (skipped)
		tq_logf(TQ_LOG_WARN, &f,
			"more than %d plugin files, %zu ignored",
			TQ_PLUGIN_FILES_MAX, skipped);
	qsort(names, n, sizeof(*names), host_str_cmp);
	*out = names;
	*n_out = n;
	names = NULL;
	n = 0;
	rc = 0;
out:
	host_free_names(names, n);
	if (d)
		closedir(d);
	return rc;
}

/* Who in this load already owns the plugin's name or one of its types. */
static int host_check_clash(const struct host_load *ld,
			    const struct tq_plugin *pl, char *err,
			    size_t errlen)
{
	const struct taskq_plugin *d = pl->desc;
	const struct tq_type *owner;
	size_t i;

	for (i = 0; i < ld->n_plugins; i++) {
		if (strcmp(ld->plugins[i]->name, pl->name) == 0) {
			snprintf(err, errlen,
				 "plugin \"%s\" already loaded from %s",
				 pl->name, ld->plugins[i]->path);
			return -EEXIST;
		}
	}
	for (i = 0; i < d->n_types && ld->n_types; i++) {
		owner = bsearch(d->types[i].name, ld->types, ld->n_types,
				sizeof(ld->types[0]), host_type_key_cmp);
		if (owner) {
			snprintf(err, errlen,
				 "plugin \"%s\": type \"%s\" already registered by plugin \"%s\" (%s)",
				 pl->name, owner->name, owner->plugin->name,
				 owner->plugin->path);
			return -EEXIST;
		}
	}
	return 0;
}

static int host_load_add(struct host_load *ld, struct tq_plugin *pl)
{
	const struct taskq_plugin *d = pl->desc;
	struct tq_plugin **plugins;
	struct tq_type *types;
	size_t i;

	plugins = realloc(ld->plugins, (ld->n_plugins + 1) * sizeof(*plugins));
	if (!plugins)
		return -ENOMEM;
	ld->plugins = plugins;
	types = realloc(ld->types, (ld->n_types + d->n_types) * sizeof(*types));
	if (!types)
		return -ENOMEM;
	ld->types = types;

	ld->plugins[ld->n_plugins++] = pl;
	for (i = 0; i < d->n_types; i++) {
		struct tq_type *t = &ld->types[ld->n_types++];

		t->name = d->types[i].name;
		t->def = &d->types[i];
		t->plugin = pl;
	}
	qsort(ld->types, ld->n_types, sizeof(*ld->types), host_type_cmp);
	return 0;
}

static void host_log_loaded(const struct tq_plugin *pl, int procs)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	const struct taskq_plugin *d = pl->desc;
	char types[512];
	const size_t limit = sizeof(types) - 4; /* room for "..." */
	size_t used = 0, i;
	int n;

	types[0] = '\0';
	for (i = 0; i < d->n_types; i++) {
		n = snprintf(types + used, limit - used, "%s%s", i ? "," : "",
			     d->types[i].name);
		if (n < 0 || (size_t)n >= limit - used) {
			memcpy(types + used, "...", 4);
			break;
		}
		used += (size_t)n;
	}
	f.plugin = pl->name;
	f.file = pl->path;
	if (pl->pool)
		tq_logf(TQ_LOG_INFO, &f,
			"plugin loaded: version %s, types %s, isolation process (%d processes)",
			pl->version, types, procs);
	else
		tq_logf(TQ_LOG_INFO, &f,
			"plugin loaded: version %s, types %s, isolation thread",
			pl->version, types);
}

/* A setting of a plugin block as an integer in [lo, hi]. */
static int host_block_int(const config_setting_t *block, const char *plugin,
			  const char *name, long long lo, long long hi,
			  long long *out, char *err, size_t errlen)
{
	const config_setting_t *s;
	long long v;

	s = block ? config_setting_lookup((config_setting_t *)block, name) : NULL;
	if (!s)
		return 0;
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		break;
	default:
		v = lo - 1;
		break;
	}
	if (v < lo || v > hi) {
		snprintf(err, errlen,
			 "plugin \"%s\": %s must be an integer from %lld to %lld",
			 plugin, name, lo, hi);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/*
 * The isolation settings of a plugin's block:
 *   isolation = "process" | "thread";   (default "process")
 *   processes = N;       1..64, default workers.count
 *   recycle_after = N;   jobs per process, 0 (default) = never
 *   max_memory_mb = N;   address space a process may add, 0 = no limit
 *   max_cpu_s = N;       CPU seconds per attempt, 0 = no limit
 */
static int host_isolation_parse(const struct tq_config *cfg,
				const config_setting_t *block,
				const char *plugin, struct host_isolation *iso,
				char *err, size_t errlen)
{
	const char *mode = NULL;
	long long procs, recycle = 0, mem = 0, cpu = 0;
	int rc;

	memset(iso, 0, sizeof(*iso));
	procs = cfg->workers;
	if (procs < 1)
		procs = 1;
	if (procs > TQ_PROCPOOL_MAX)
		procs = TQ_PROCPOOL_MAX;
	iso->mode = TQ_ISOLATION_PROCESS;
	if (block && config_setting_lookup((config_setting_t *)block, "isolation")) {
		if (!config_setting_lookup_string(block, "isolation", &mode) ||
		    (strcmp(mode, "process") != 0 && strcmp(mode, "thread") != 0)) {
			snprintf(err, errlen,
				 "plugin \"%s\": isolation must be \"process\" or \"thread\"",
				 plugin);
			return -EINVAL;
		}
		if (strcmp(mode, "thread") == 0)
			iso->mode = TQ_ISOLATION_THREAD;
	}
	if ((rc = host_block_int(block, plugin, "processes", 1, TQ_PROCPOOL_MAX,
				 &procs, err, errlen)) < 0 ||
	    (rc = host_block_int(block, plugin, "recycle_after", 0, INT_MAX,
				 &recycle, err, errlen)) < 0 ||
	    (rc = host_block_int(block, plugin, "max_memory_mb", 0,
				 TQ_PLUGIN_LIMIT_MAX, &mem, err, errlen)) < 0 ||
	    (rc = host_block_int(block, plugin, "max_cpu_s", 0,
				 TQ_PLUGIN_LIMIT_MAX, &cpu, err, errlen)) < 0)
		return rc;
	iso->pool.processes = (int)procs;
	iso->pool.recycle_after = (int)recycle;
	iso->pool.max_memory_mb = mem;
	iso->pool.max_cpu_s = cpu;
	return 0;
}

static int host_int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* The open descriptors of this process, sorted; how many (at most max). */
static size_t host_open_fds(int *fds, size_t max)
{
	struct dirent *de;
	size_t n = 0;
	char *end;
	long fd;
	DIR *d;

	d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	while (n < max && (de = readdir(d))) {
		errno = 0;
		fd = strtol(de->d_name, &end, 10);
		if (errno || end == de->d_name || *end || fd < 0 || fd > INT_MAX ||
		    fd == dirfd(d))
			continue;
		fds[n++] = (int)fd;
	}
	closedir(d);
	qsort(fds, n, sizeof(*fds), host_int_cmp);
	return n;
}

/* init() with the descriptors it opened collected into keep (for the
 * plugin's worker processes, which close every other one). */
static int host_plugin_init_fds(struct tq_plugin *pl,
				const config_setting_t *block, int *keep,
				size_t *n_keep, char *err, size_t errlen)
{
	int *before, *after;
	size_t nb, na, i;
	int rc;

	*n_keep = 0;
	before = malloc(2 * TQ_PLUGIN_FDS_MAX * sizeof(int));
	if (!before) {
		host_plugin_discard(pl);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	after = before + TQ_PLUGIN_FDS_MAX;
	nb = host_open_fds(before, TQ_PLUGIN_FDS_MAX);
	rc = host_plugin_init(pl, block, err, errlen);
	if (rc == 0) {
		na = host_open_fds(after, TQ_PLUGIN_FDS_MAX);
		for (i = 0; i < na && *n_keep < TQ_PROCPOOL_KEEP_FDS_MAX; i++)
			if (!bsearch(&after[i], before, nb, sizeof(int), host_int_cmp))
				keep[(*n_keep)++] = after[i];
	}
	free(before);
	return rc;
}

/* The plugin of the current registry loaded from path, when the file is
 * still the same. */
static struct tq_plugin *host_find_same(const struct tq_plugins *p,
					const char *path, const struct stat *st,
					bool *changed)
{
	struct tq_plugin *pl;
	size_t i;

	*changed = false;
	for (i = 0; i < p->n_active; i++) {
		pl = p->active[i];
		if (strcmp(pl->path, path) != 0)
			continue;
		if (pl->file_dev == st->st_dev && pl->file_ino == st->st_ino &&
		    pl->file_size == st->st_size &&
		    pl->file_mtime.tv_sec == st->st_mtim.tv_sec &&
		    pl->file_mtime.tv_nsec == st->st_mtim.tv_nsec)
			return pl;
		*changed = true;
	}
	return NULL;
}

static int host_load_fresh(struct host_load *ld, struct tq_plugin *pl)
{
	struct tq_plugin **fresh;

	fresh = realloc(ld->fresh, (ld->n_fresh + 1) * sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	ld->fresh = fresh;
	ld->fresh[ld->n_fresh++] = pl;
	return 0;
}

/* Load one file into ld.  On failure err says why; nothing was added. */
static int host_load_one(struct tq_plugins *p, struct host_load *ld,
			 const char *path, char *err, size_t errlen)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	const config_setting_t *block;
	struct tq_plugin *pl = NULL;
	struct host_isolation iso;
	int keep[TQ_PROCPOOL_KEEP_FDS_MAX];
	size_t n_keep = 0;
	char perr[256];
	struct stat st;
	bool changed;
	int rc;

	if (stat(path, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot stat: %s", strerror(-rc));
		return rc;
	}
	rc = host_check_owner(p->cfg, &st, err, errlen);
	if (rc < 0)
		return rc;

	/* unchanged since it was loaded: keep it as it is */
	pl = host_find_same(p, path, &st, &changed);
	if (pl) {
		rc = host_check_clash(ld, pl, err, errlen);
		if (rc < 0)
			return rc;
		rc = host_load_add(ld, pl);
		if (rc < 0)
			snprintf(err, errlen, "out of memory");
		return rc;
	}

	rc = host_plugin_open(path, &pl, err, errlen);
	if (rc < 0)
		return rc;
	rc = host_check_clash(ld, pl, err, errlen);
	if (rc < 0) {
		host_plugin_discard(pl);
		return rc;
	}
	block = tq_config_plugin_block(p->cfg, pl->name);
	rc = host_isolation_parse(p->cfg, block, pl->name, &iso, err, errlen);
	if (rc < 0) {
		host_plugin_discard(pl);
		return rc;
	}
	rc = host_plugin_init_fds(pl, block, keep, &n_keep, err, errlen);
	if (rc < 0)
		return rc; /* pl is gone, its object stays mapped */
	pl->isolation = iso.mode;
	if (iso.mode == TQ_ISOLATION_PROCESS) {
		iso.pool.name = pl->name;
		iso.pool.keep_fds = keep;
		iso.pool.n_keep_fds = n_keep;
		rc = tq_procpool_open(&pl->pool, &iso.pool, pl->desc->types,
				      pl->desc->n_types, pl->user_data, perr,
				      sizeof(perr));
		if (rc < 0) {
			snprintf(err, errlen, "plugin \"%s\": %s", pl->name, perr);
			tq_plugin_free(pl);
			return rc;
		}
	}
	rc = host_load_fresh(ld, pl);
	if (rc == 0) {
		rc = host_load_add(ld, pl);
		if (rc < 0)
			ld->n_fresh--;
	}
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		tq_plugin_free(pl);
		return rc;
	}
	host_log_loaded(pl, iso.pool.processes);
	if (changed) {
		f.plugin = pl->name;
		f.file = path;
		tq_logf(TQ_LOG_INFO, &f,
			"plugin file changed: new jobs run version %s", pl->version);
	}
	return 0;
}

/* Move ld's plugins to p's list of plugins kept until close. */
static int host_keep_plugins(struct tq_plugins *p, struct host_load *ld)
{
	struct tq_plugin **all;
	size_t cap;

	if (!ld->n_fresh)
		return 0;
	if (p->n_plugins + ld->n_fresh > p->cap_plugins) {
		cap = p->cap_plugins ? p->cap_plugins : 16;
		while (cap < p->n_plugins + ld->n_fresh)
			cap *= 2;
		all = realloc(p->plugins, cap * sizeof(*all));
		if (!all)
			return -ENOMEM;
		p->plugins = all;
		p->cap_plugins = cap;
	}
	memcpy(p->plugins + p->n_plugins, ld->fresh,
	       ld->n_fresh * sizeof(*ld->fresh));
	p->n_plugins += ld->n_fresh;
	ld->n_fresh = 0;
	return 0;
}

/* Retire the plugins of the previous registry that ld does not keep. */
static void host_retire_missing(struct tq_plugins *p, const struct host_load *ld)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	struct tq_plugin *pl;
	size_t i, j;

	for (i = 0; i < p->n_active; i++) {
		pl = p->active[i];
		for (j = 0; j < ld->n_plugins; j++)
			if (ld->plugins[j] == pl)
				break;
		if (j < ld->n_plugins)
			continue;
		pl->retired = true;
		tq_procpool_drain(pl->pool);
		f.plugin = pl->name;
		f.file = pl->path;
		tq_logf(TQ_LOG_INFO, &f,
			"plugin retired: version %s takes no new jobs; running ones finish",
			pl->version);
	}
}

int tq_plugins_load(struct tq_plugins *p)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	struct host_load ld = { 0 };
	struct tq_registry *reg = NULL, *old;
	char path[PATH_MAX];
	char err[512];
	char **names = NULL;
	size_t n_names = 0, i;
	int rc, n;

	pthread_mutex_lock(&p->load_lock);
	rc = host_scan_dir(p->cfg, &names, &n_names);
	if (rc < 0)
		goto out;

	for (i = 0; i < n_names; i++) {
		n = snprintf(path, sizeof(path), "%s/%s", p->cfg->plugin_dir,
			     names[i]);
		f.file = names[i];
		if (n < 0 || (size_t)n >= sizeof(path)) {
			tq_logf(TQ_LOG_WARN, &f, "plugin skipped: path too long");
			continue;
		}
		f.file = path;
		err[0] = '\0';
		if (host_load_one(p, &ld, path, err, sizeof(err)) < 0)
			tq_logf(TQ_LOG_WARN, &f, "plugin skipped: %s", err);
	}

	reg = host_registry_new(ld.types, ld.n_types);
	if (!reg) {
		rc = -ENOMEM;
		goto out;
	}
	rc = host_keep_plugins(p, &ld);
	if (rc < 0)
		goto out;
	pthread_mutex_lock(&p->lock);
	old = p->current;
	p->current = reg;
	pthread_mutex_unlock(&p->lock);
	tq_registry_release(old);
	rc = (int)reg->n;
	reg = NULL;
	host_retire_missing(p, &ld);
	free(p->active);
	p->active = ld.plugins;
	p->n_active = ld.n_plugins;
	ld.plugins = NULL;
out:
	/* new plugins not handed to p (only on errors) are retired here */
	for (i = ld.n_fresh; i > 0; i--)
		tq_plugin_free(ld.fresh[i - 1]);
	free(ld.fresh);
	free(ld.plugins);
	free(ld.types);
	free(reg);
	host_free_names(names, n_names);
	pthread_mutex_unlock(&p->load_lock);
	return rc;
}

enum taskq_outcome tq_type_run(const struct tq_type *t, struct taskq_job *job)
{
	const struct tq_plugin *pl = t->plugin;
	pthread_mutex_t *serial = NULL;
	enum taskq_outcome outcome;

	if ((t->def->flags & TASKQ_TYPE_SERIAL) && pl->serial)
		serial = &pl->serial[t->def - pl->desc->types];
	if (serial)
		pthread_mutex_lock(serial);
	if (pl->pool)
		outcome = tq_procpool_run(pl->pool, t->def, job);
	else
		outcome = t->def->handler(&tq_host, job, pl->user_data);
	if (serial)
		pthread_mutex_unlock(serial);
	return outcome;
}

int tq_plugins_types_json(struct tq_plugins *p, char **json)
{
	struct tq_registry *reg = tq_plugins_acquire(p);
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = root ? cJSON_AddArrayToObject(root, "job_types") : NULL;
	int r = -ENOMEM;

	*json = NULL;
	if (!arr)
		goto out;
	for (size_t i = 0; i < tq_registry_count(reg); i++) {
		const struct tq_type *t = tq_registry_at(reg, i);
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(arr, o))
			goto out;
		if (!cJSON_AddStringToObject(o, "name", t->name) ||
		    !cJSON_AddStringToObject(o, "plugin", t->plugin->name) ||
		    !cJSON_AddStringToObject(o, "version", t->plugin->version) ||
		    !cJSON_AddStringToObject(o, "file", t->plugin->path) ||
		    !cJSON_AddStringToObject(o, "isolation",
					     t->plugin->pool ? "process" : "thread") ||
		    !cJSON_AddNumberToObject(o, "max_attempts", t->def->max_attempts) ||
		    !cJSON_AddNumberToObject(o, "timeout_s", t->def->timeout_s))
			goto out;
	}
	*json = cJSON_PrintUnformatted(root);
	r = *json ? 0 : -ENOMEM;
out:
	cJSON_Delete(root);
	tq_registry_release(reg);
	return r;
}
