/*
 * main.c - taskqd: options, start-up order, signals, shutdown.
 *
 * Start-up: configuration -> PostgreSQL (waits for it) -> migrations ->
 * plugins -> dispatcher -> scheduler -> workers -> API.  Shutdown runs the
 * same list backwards.  Signals are taken synchronously by the main thread
 * (sigtimedwait); every other thread has them blocked.  Between signals
 * the main thread hands freed memory back to the system.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "dispatch.h"
#include "log.h"
#include "plugin_host.h"
#include "scheduler.h"
#include "store.h"
#include "submit.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/taskq/taskq.conf"
#define DISPATCH_BUFFER 65536
/* Group commit of submissions: committer threads, largest batch. */
#define SUBMIT_COMMITTERS 1
#define SUBMIT_BATCH_MAX 256
/* how often the main thread hands freed memory back to the system */
#define TRIM_INTERVAL_MS 10000
/* blocks from this size up are mapped on their own (glibc's default start) */
#define MMAP_THRESHOLD_BYTES (128 * 1024)
/* the glibc tunable of the per-thread caches of freed blocks */
#define TCACHE_TUNABLE "glibc.malloc.tcache_count"

enum { EXIT_RUNTIME = 1, EXIT_CONFIG = 2 };

static void usage(FILE *out)
{
	fprintf(out,
		"usage: taskqd [-c FILE] [--check-config] [COMMAND]\n"
		"\n"
		"TaskQ job-queue daemon.\n"
		"\n"
		"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG
		" if it exists)\n"
		"  -n, --check-config  check the configuration, print it, and exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"commands:\n"
		"  run                 run the daemon (the default)\n"
		"  migrate             apply the database migrations and exit\n"
		"\n"
		"Every setting can be overridden by a TASKQ_* environment variable\n"
		"(see taskq.conf).\n");
}

/* Wait up to ms for one of the signals in set; the signal or 0. */
static int wait_signal(const sigset_t *set, int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	int sig = sigtimedwait(set, NULL, &ts);

	return sig > 0 ? sig : 0;
}

/* Open the store, waiting for PostgreSQL while it is down; NULL when a
 * signal asked to stop first. */
static struct tq_store *open_store(const struct tq_config *cfg, int pool,
				   const sigset_t *sigs)
{
	struct tq_store *store = NULL;
	char err[512];
	bool logged = false;

	for (;;) {
		int r = tq_store_open(&store, cfg->database_url, pool, err, sizeof(err));

		if (r == 0) {
			/* within a lease of its hand-off, so that a job
			 * claimed and then lost is looked at by the time its
			 * lease expires (see sql/006_watch_at.sql) */
			tq_store_set_recheck_s(store, cfg->lease_s < cfg->pending_redispatch_s
							      ? cfg->lease_s
							      : cfg->pending_redispatch_s);
			return store;
		}
		if (r != -EAGAIN || !sigs) {
			tq_error("cannot use the database: %s", err);
			return NULL;
		}
		if (!logged)
			tq_warn("database unavailable: %s; waiting for it", err);
		logged = true;
		if (wait_signal(sigs, 1000))
			return NULL;
	}
}

static int migrate(struct tq_store *store)
{
	char err[512];
	int applied = 0;

	if (tq_store_migrate(store, &applied, err, sizeof(err))) {
		tq_error("migration failed: %s", err);
		return -1;
	}
	if (applied)
		tq_info("applied %d migrations", applied);
	else
		tq_debug("database schema is up to date");
	return 0;
}

static int check_config(const struct tq_config *cfg, const char *path)
{
	struct stat st;

	if (stat(cfg->plugin_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: plugins.dir '%s' is not a readable directory\n",
			path ? path : "configuration", cfg->plugin_dir);
		return EXIT_CONFIG;
	}
	tq_config_dump(cfg, stdout);
	printf("configuration OK\n");
	return 0;
}

static int run(const struct tq_config *cfg)
{
	struct tq_store *store = NULL;
	struct tq_plugins *plugins = NULL;
	struct tq_dispatch *dispatch = NULL;
	struct tq_scheduler *sched = NULL;
	struct tq_workers *workers = NULL;
	struct tq_api *api = NULL;
	struct tq_submit *submit = NULL;
	struct tq_api_deps deps;
	sigset_t sigs;
	char err[512];
	int rc = EXIT_RUNTIME, r, abandoned;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	tq_info("taskqd %s starting", TASKQ_VERSION);
	store = open_store(cfg, cfg->db_pool_size, &sigs);
	if (!store) {
		rc = 0; /* asked to stop while waiting */
		goto out;
	}
	if (cfg->auto_migrate && migrate(store))
		goto out;

	r = tq_plugins_open(&plugins, cfg);
	if (r) {
		tq_error("cannot start the plugin host: %s", strerror(-r));
		goto out;
	}
	r = tq_plugins_load(plugins);
	if (r < 0)
		tq_error("cannot read plugins.dir '%s': %s; no job types registered",
			 cfg->plugin_dir, strerror(-r));
	else if (r == 0)
		tq_warn("no job types registered from '%s'", cfg->plugin_dir);

	r = tq_dispatch_start(&dispatch, cfg->redis_url, cfg->redis_prefix, DISPATCH_BUFFER,
			      err, sizeof(err));
	if (r) {
		tq_error("cannot start the dispatcher: %s", err);
		goto out;
	}
	r = tq_scheduler_start(&sched, cfg, store, dispatch);
	if (r) {
		tq_error("cannot start the scheduler: %s", strerror(-r));
		goto out;
	}
	r = tq_workers_start(&workers, cfg, store, plugins, sched, dispatch);
	if (r) {
		tq_error("cannot start the workers: %s", strerror(-r));
		goto out;
	}
	r = tq_submit_start(&submit, store, cfg->claim_on_submit ? workers : NULL, cfg->lease_s,
			    SUBMIT_COMMITTERS, SUBMIT_BATCH_MAX);
	if (r) {
		tq_error("cannot start the submission committers: %s", strerror(-r));
		goto out;
	}
	deps = (struct tq_api_deps){
		.submit = submit,
		.cfg = cfg, .store = store, .plugins = plugins,
		.dispatch = dispatch, .scheduler = sched,
	};
	r = tq_api_start(&api, &deps, err, sizeof(err));
	if (r) {
		tq_error("cannot start the API: %s", err);
		goto out;
	}
	tq_info("listening on http://%s:%d", cfg->listen_host, cfg->listen_port);

	for (;;) {
		int sig = wait_signal(&sigs, TRIM_INTERVAL_MS);

		if (sig == 0) {
			/*
			 * glibc keeps what the threads freed in their arenas:
			 * after a burst of large batch requests that is tens of
			 * MiB nobody uses.  Hand it back, so that the resident
			 * size follows the load instead of its high-water mark.
			 */
			malloc_trim(0);
			continue;
		}
		if (sig == SIGHUP) {
			tq_info("SIGHUP: reloading plugins");
			r = tq_plugins_load(plugins);
			if (r < 0)
				tq_error("plugin reload failed: %s", strerror(-r));
			continue;
		}
		tq_info("%s: shutting down (grace %d s)", strsignal(sig), cfg->shutdown_grace_s);
		break;
	}
	rc = 0;
out:
	tq_api_stop(api);
	tq_submit_stop(submit);
	abandoned = workers ? tq_workers_stop(workers, cfg->shutdown_grace_s) : 0;
	if (abandoned) {
		/* Their jobs were handed back; the threads still use the
		 * shared state, so leave without tearing it down. */
		tq_warn("%d jobs still running at the shutdown deadline; handed back",
			abandoned);
		if (dispatch)
			tq_dispatch_flush(dispatch, 2000);
		_exit(rc);
	}
	tq_scheduler_stop(sched);
	if (dispatch) {
		tq_dispatch_flush(dispatch, 2000);
		tq_dispatch_stop(dispatch);
	}
	tq_plugins_close(plugins);
	tq_store_close(store);
	tq_info("taskqd stopped");
	return rc;
}

/*
 * Run the daemon without glibc's per-thread caches of freed blocks
 * (tcache): start again with the tunable set, unless GLIBC_TUNABLES sets
 * it already (this is the second start, or the operator's own choice).
 *
 * Each thread keeps up to 7 freed blocks of each small size for itself.
 * To its arena such a block is still in use, so malloc_trim() cannot give
 * back the page it sits on.  After a burst of batch requests the API
 * threads' caches hold thousands of blocks scattered over the megabytes
 * those requests used, about one to a page: measured after 3,000,000
 * jobs, 8 of the 12.6 MiB resident in the arenas held nothing else, and
 * the resident size grew with every run.  Tunables are read only when a
 * program starts, hence the exec.  When it fails taskqd runs as it is:
 * only memory is at stake.
 */
static void exec_without_tcache(char **argv)
{
	const char *old = getenv("GLIBC_TUNABLES");
	char self[PATH_MAX], *value;
	ssize_t n;

	if (old && strstr(old, TCACHE_TUNABLE))
		return;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0 || (size_t)n >= sizeof(self) - 1)
		return;
	self[n] = '\0';
	if (asprintf(&value, "%s%s%s=0", old ? old : "", old && *old ? ":" : "",
		     TCACHE_TUNABLE) < 0)
		return;
	/* glibc's setenv() keeps the old string: old stays valid */
	if (setenv("GLIBC_TUNABLES", value, 1) == 0)
		execv(self, argv);
	if (old)
		setenv("GLIBC_TUNABLES", old, 1);
	else
		unsetenv("GLIBC_TUNABLES");
	free(value);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'n'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL, *command = "run";
	struct tq_config cfg;
	bool check = false;
	char err[512];
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:nVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 'V':
			printf("taskqd %s (plugin ABI %d.%d)\n", TASKQ_VERSION, TASKQ_ABI_MAJOR,
			       TASKQ_ABI_MINOR);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind < argc)
		command = argv[optind++];
	if (optind < argc || (strcmp(command, "run") != 0 && strcmp(command, "migrate") != 0)) {
		fprintf(stderr, "taskqd: unknown command '%s'\n", command);
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (!path && access(DEFAULT_CONFIG, F_OK) == 0)
		path = DEFAULT_CONFIG;
	if (!check && strcmp(command, "run") == 0)
		exec_without_tcache(argv);

	/*
	 * Large blocks (batch request bodies, their JSON and results) come
	 * from mmap and go back to the system when freed.  glibc would
	 * otherwise raise this threshold after the first such block is freed
	 * and serve the next ones from the arenas, where they stay resident.
	 */
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
	/*
	 * Small freed blocks go straight back to their arena, where they
	 * merge with their neighbours.  Kept apart in the fast bins, the last
	 * ones of a burst leave a thread arena's top chunk unmerged and
	 * untrimmed: malloc_trim() trims only the main arena's top, and a
	 * thread arena's is trimmed only by a free() that merges into it
	 * (measured: 7 MiB resident in one arena's top after a run).
	 */
	mallopt(M_MXFAST, 0);
	if (tq_config_load(&cfg, path, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	tq_log_set_level(cfg.log_level);

	if (check) {
		rc = check_config(&cfg, path);
	} else if (strcmp(command, "migrate") == 0) {
		struct tq_store *store = open_store(&cfg, 1, NULL);

		rc = store && migrate(store) == 0 ? 0 : EXIT_RUNTIME;
		if (rc == 0)
			printf("migrations applied\n");
		tq_store_close(store);
	} else {
		rc = run(&cfg);
	}
	tq_config_free(&cfg);
	return rc;
}
