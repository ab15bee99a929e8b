/*
 * test_template.c - run the template plugin's handler without a daemon.
 *
 *     ./test_template ./template.so
 *
 * Loads the .so exactly as taskqd does (dlopen, taskq_plugin_describe, ABI
 * check), hands it a small stand-in for the host services, and checks what
 * the handler and the validator do.  Exits 0 when every check passes.
 * Adapt the checks at the end when you change the plugin; the stand-in
 * host above them works for any plugin.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <taskq/plugin.h>

/* ---- a stand-in host: one job at a time, one config setting ---- */

struct taskq_job {
	const char *payload;
	int attempt;
	int cancelled;
	char result[4096];
	char error[512];
	int progress;
};

struct taskq_config {
	const char *greeting; /* NULL: not set */
};

static void fake_log(struct taskq_job *job, enum taskq_log_level level,
		     const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  [%s level %d] ", job ? "job" : "plugin", (int)level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *fake_id(const struct taskq_job *job)
{
	(void)job;
	return "00000000-0000-4000-8000-000000000001";
}

static const char *fake_type(const struct taskq_job *job)
{
	(void)job;
	return "template.hello";
}

static int fake_attempt(const struct taskq_job *job)
{
	return job->attempt;
}

static const char *fake_payload(const struct taskq_job *job)
{
	return job->payload;
}

static int64_t fake_remaining(const struct taskq_job *job)
{
	(void)job;
	return 30000;
}

static int fake_set_result(struct taskq_job *job, const char *json)
{
	int n = snprintf(job->result, sizeof(job->result), "%s", json);

	return n < 0 || (size_t)n >= sizeof(job->result) ? TASKQ_ETOOLARGE : TASKQ_OK;
}

static int fake_set_error(struct taskq_job *job, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->error, sizeof(job->error), fmt, ap);
	va_end(ap);
	return TASKQ_OK;
}

static int fake_is_cancelled(const struct taskq_job *job)
{
	return job->cancelled;
}

static int fake_set_progress(struct taskq_job *job, int percent, const char *msg)
{
	(void)msg;
	if (percent < 0 || percent > 100)
		return TASKQ_EINVAL;
	job->progress = percent;
	return TASKQ_OK;
}

static void fake_retry_after(struct taskq_job *job, unsigned int seconds)
{
	(void)job;
	(void)seconds;
}

static int fake_config_string(const struct taskq_config *cfg, const char *name,
			      const char **out)
{
	if (!cfg || strcmp(name, "greeting") != 0 || !cfg->greeting)
		return TASKQ_ENOENT;
	*out = cfg->greeting;
	return TASKQ_OK;
}

static int fake_config_int(const struct taskq_config *cfg, const char *name,
			   long long *out)
{
	(void)cfg;
	(void)name;
	(void)out;
	return TASKQ_ENOENT;
}

static int fake_config_bool(const struct taskq_config *cfg, const char *name,
			    int *out)
{
	(void)cfg;
	(void)name;
	(void)out;
	return TASKQ_ENOENT;
}

static const struct taskq_host host = {
	.struct_size = sizeof(struct taskq_host),
	.abi_major = TASKQ_ABI_MAJOR,
	.abi_minor = TASKQ_ABI_MINOR,
	.log = fake_log,
	.job_id = fake_id,
	.job_type = fake_type,
	.job_attempt = fake_attempt,
	.job_payload = fake_payload,
	.job_remaining_ms = fake_remaining,
	.set_result = fake_set_result,
	.set_error = fake_set_error,
	.is_cancelled = fake_is_cancelled,
	.set_progress = fake_set_progress,
	.retry_after = fake_retry_after,
	.config_string = fake_config_string,
	.config_int = fake_config_int,
	.config_bool = fake_config_bool,
};

/* ---- the checks ---- */

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__,          \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)

static const struct taskq_job_type *find_type(const struct taskq_plugin *p,
					      const char *name)
{
	for (size_t i = 0; i < p->n_types; i++)
		if (strcmp(p->types[i].name, name) == 0)
			return &p->types[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct taskq_plugin *p;
	const struct taskq_job_type *t;
	struct taskq_config cfg = { .greeting = "hi" };
	struct taskq_config bad = { .greeting = "say \"hi\"" };
	struct taskq_job job;
	taskq_describe_fn describe;
	void *dl, *ud = NULL;
	char err[256];

	if (argc != 2) {
		fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
		return 2;
	}
	dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	*(void **)&describe = dlsym(dl, TASKQ_PLUGIN_SYMBOL);
	if (!describe) {
		fprintf(stderr, "no %s symbol\n", TASKQ_PLUGIN_SYMBOL);
		return 1;
	}
	p = describe();
	CHECK(p->abi_major == TASKQ_ABI_MAJOR);
	CHECK(p->struct_size >= sizeof(struct taskq_plugin));
	CHECK(strcmp(p->name, "template") == 0);
	t = find_type(p, "template.hello");
	if (!t) {
		fprintf(stderr, "no type template.hello\n");
		return 1;
	}

	/* init refuses a greeting that would need escaping */
	CHECK(p->init(&host, &bad, &ud, err, sizeof(err)) != 0);
	CHECK(strstr(err, "greeting") != NULL);

	/* init with a config block */
	err[0] = '\0';
	CHECK(p->init(&host, &cfg, &ud, err, sizeof(err)) == 0);

	/* the validator wants an object */
	CHECK(t->validate(&host, "{\"name\":\"x\"}", err, sizeof(err), ud) == 0);
	CHECK(t->validate(&host, "[1,2]", err, sizeof(err), ud) != 0);
	CHECK(strstr(err, "object") != NULL);

	/* a normal attempt: DONE with the greeting and the payload */
	memset(&job, 0, sizeof(job));
	job.payload = "{\"name\":\"world\"}";
	job.attempt = 2;
	CHECK(t->handler(&host, &job, ud) == TASKQ_DONE);
	CHECK(strcmp(job.result, "{\"greeting\":\"hi\",\"attempt\":2,"
				 "\"payload\":{\"name\":\"world\"}}") == 0);
	CHECK(job.progress == 100);

	/* a cancelled attempt gives up with RETRY and a reason */
	memset(&job, 0, sizeof(job));
	job.payload = "{}";
	job.attempt = 1;
	job.cancelled = 1;
	CHECK(t->handler(&host, &job, ud) == TASKQ_RETRY);
	CHECK(job.error[0] != '\0');
	CHECK(job.result[0] == '\0');

	/* a result larger than the host accepts: permanent FAIL */
	{
		static char big[8192];

		memset(big, ' ', sizeof(big) - 3);
		big[0] = '{';
		big[sizeof(big) - 2] = '}';
		memset(&job, 0, sizeof(job));
		job.payload = big;
		job.attempt = 1;
		CHECK(t->handler(&host, &job, ud) == TASKQ_FAIL);
		CHECK(strstr(job.error, "refused") != NULL);
	}

	if (p->fini)
		p->fini(ud);
	/* a plugin is never dlclose()d by taskqd; do the same */
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("template: all checks passed\n");
	return 0;
}
