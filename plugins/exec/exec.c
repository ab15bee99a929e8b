/*
 * exec.c - the "exec" job type: run one allow-listed program, no shell.
 *
 * Payload {"command": NAME, "args": [S, ...], "stdin": S}; only "command"
 * is required.  NAME is looked up in the allow-list of the configuration
 * (block plugin.exec):
 *
 *     commands = { report = "/usr/local/bin/make-report"; };
 *     max_output_bytes = 65536;  # per stream kept in the result
 *
 * The program runs with argv = [path, args...], an environment holding only
 * PATH and LANG, stdin from the payload (or /dev/null), stdout and stderr
 * captured through pipes, no other descriptor, in its own process group.
 * When the job is cancelled or its time runs out the group gets SIGTERM,
 * then SIGKILL after EXEC_KILL_GRACE_MS.
 *
 * Result {"exit_status": N, "stdout": S, "stderr": S, "truncated": B}
 * ("exit_status" is null and "signal" names the signal when the program
 * was killed).  Exit status 0 completes; anything else retries with the
 * error "command exited with status N" or one naming the signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <taskq/plugin.h>

#include "plugin_utf8.h"

#define EXEC_MAX_NAME 64
#define EXEC_MAX_ARGS 256
#define EXEC_MAX_ARG_LEN 4096
#define EXEC_MAX_STDIN (1024 * 1024)
#define EXEC_DEFAULT_OUTPUT 65536
#define EXEC_MAX_OUTPUT (256 * 1024)
/* SIGTERM first; SIGKILL when the group is still there after this. */
#define EXEC_KILL_GRACE_MS 2000
/* After the program exited, how long its leftovers may keep the pipes. */
#define EXEC_DRAIN_MS 1000
/* How often cancellation and the deadline are checked. */
#define EXEC_TICK_MS 50

struct exec_conf {
	const struct taskq_config *cfg; /* borrowed for the life of the plugin */
	size_t max_output;
};

struct exec_req {
	cJSON *doc; /* owns the strings below */
	const char *name;
	const char *path; /* borrowed from the configuration */
	char **argv;      /* [path, args..., NULL]; the array is ours */
	const char *stdin_data;
	size_t stdin_len;
};

/* One captured stream. */
struct exec_buf {
	char *data;
	size_t len;
	size_t max;
	int fd;
};

static int64_t exec_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void exec_req_free(struct exec_req *req)
{
	free(req->argv);
	cJSON_Delete(req->doc);
	memset(req, 0, sizeof(*req));
}

/* A command name is also a libconfig setting name: [A-Za-z][A-Za-z0-9_-]*. */
static int exec_name_ok(const char *s)
{
	size_t n = 0;

	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return 0;
	for (; *s; s++, n++) {
		if (n >= EXEC_MAX_NAME)
			return 0;
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return 0;
	}
	return 1;
}

/* Path of command name from the allow-list: 0, or -1 with a reason. */
static int exec_lookup(const struct taskq_host *host,
		       const struct exec_conf *conf, const char *name,
		       const char **path, char *err, size_t errlen)
{
	char key[EXEC_MAX_NAME + 16];

	if (!exec_name_ok(name) ||
	    snprintf(key, sizeof(key), "commands.%s", name) >= (int)sizeof(key) ||
	    host->config_string(conf->cfg, key, path) != TASKQ_OK) {
		snprintf(err, errlen,
			 "command \"%.64s\" is not in plugin.exec.commands", name);
		return -1;
	}
	if ((*path)[0] != '/') {
		snprintf(err, errlen,
			 "plugin.exec.commands.%s must be an absolute path", name);
		return -1;
	}
	return 0;
}

/* Read and check a payload: 0, or -1 with a reason in err. */
static int exec_parse(const struct taskq_host *host,
		      const struct exec_conf *conf, const char *json,
		      struct exec_req *req, char *err, size_t errlen)
{
	const cJSON *v, *a;
	size_t n = 0, i;

	memset(req, 0, sizeof(*req));
	req->doc = cJSON_Parse(json);
	if (!cJSON_IsObject(req->doc)) {
		snprintf(err, errlen,
			 "payload must be a JSON object like {\"command\": \"name\", \"args\": []}");
		goto fail;
	}
	v = cJSON_GetObjectItemCaseSensitive(req->doc, "command");
	if (!cJSON_IsString(v) || !*v->valuestring) {
		snprintf(err, errlen, "\"command\" is required: a name from plugin.exec.commands");
		goto fail;
	}
	req->name = v->valuestring;
	if (exec_lookup(host, conf, req->name, &req->path, err, errlen) < 0)
		goto fail;

	a = cJSON_GetObjectItemCaseSensitive(req->doc, "args");
	if (a) {
		if (!cJSON_IsArray(a))
			goto bad_args;
		n = (size_t)cJSON_GetArraySize(a);
		if (n > EXEC_MAX_ARGS)
			goto bad_args;
		cJSON_ArrayForEach(v, a)
			if (!cJSON_IsString(v) ||
			    strlen(v->valuestring) > EXEC_MAX_ARG_LEN)
				goto bad_args;
	}
	req->argv = calloc(n + 2, sizeof(*req->argv));
	if (!req->argv) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	req->argv[0] = (char *)req->path;
	i = 1;
	if (a)
		cJSON_ArrayForEach(v, a)
			req->argv[i++] = v->valuestring;
	req->argv[i] = NULL;

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "stdin");
	if (v) {
		if (!cJSON_IsString(v) || strlen(v->valuestring) > EXEC_MAX_STDIN) {
			snprintf(err, errlen, "\"stdin\" must be a string of at most %d bytes",
				 EXEC_MAX_STDIN);
			goto fail;
		}
		req->stdin_data = v->valuestring;
		req->stdin_len = strlen(v->valuestring);
	}
	return 0;

bad_args:
	snprintf(err, errlen,
		 "\"args\" must be an array of at most %d strings of at most %d bytes",
		 EXEC_MAX_ARGS, EXEC_MAX_ARG_LEN);
fail:
	exec_req_free(req);
	return -1;
}

/* ---- running the program ------------------------------------------- */

/* Read what is there; 1 at EOF, 0 otherwise.  Beyond max it is dropped. */
static int exec_read(struct exec_buf *b, int *truncated)
{
	char chunk[16384];
	ssize_t r;
	size_t keep;

	for (;;) {
		r = read(b->fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? 0 : 1;
		if (r == 0)
			return 1;
		keep = b->max - b->len;
		if ((size_t)r < keep)
			keep = (size_t)r;
		if (keep < (size_t)r)
			*truncated = 1;
		memcpy(b->data + b->len, chunk, keep);
		b->len += keep;
	}
}

/*
 * Write more of stdin without raising SIGPIPE in the process (the program
 * may exit without reading it): SIGPIPE is blocked for this thread during
 * the write and a pending one is consumed.  1 when done (all written or
 * the reader is gone), 0 otherwise.
 */
static int exec_write(int fd, const char *data, size_t len, size_t *off)
{
	const struct timespec zero = { 0, 0 };
	sigset_t pipe_set, old;
	int done = 0;
	ssize_t w;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	while (*off < len) {
		w = write(fd, data + *off, len - *off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			if (errno == EPIPE) {
				done = 1;
				/* consume the SIGPIPE sent to this thread (none
				 * when the process ignores the signal) */
				while (sigtimedwait(&pipe_set, NULL, &zero) < 0 &&
				       errno == EINTR)
					;
			} else if (errno != EAGAIN) {
				done = 1;
			}
			break;
		}
		*off += (size_t)w;
	}
	if (*off >= len)
		done = 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return done;
}

static int exec_pipe(int fds[2])
{
	return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

static void exec_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Start the program: child's 0, 1, 2 from the pipes (or /dev/null), every
 * other descriptor closed, default signal dispositions and an empty mask,
 * a process group of its own.  0 or -errno.
 */
static int exec_spawn(const struct exec_req *req, int in_fd, int out_fd,
		      int err_fd, pid_t *pid)
{
	static char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin",
				      "LANG=C.UTF-8", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int rc;

	rc = posix_spawn_file_actions_init(&fa);
	if (rc)
		return -rc;
	rc = posix_spawnattr_init(&attr);
	if (rc) {
		posix_spawn_file_actions_destroy(&fa);
		return -rc;
	}
	sigemptyset(&none);
	sigfillset(&all);
	if (in_fd >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	else
		rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
						      O_RDONLY, 0);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (!rc)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
						     POSIX_SPAWN_SETSIGMASK |
						     POSIX_SPAWN_SETSIGDEF);
	if (!rc)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (!rc)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	if (!rc)
		rc = posix_spawn(pid, req->path, &fa, &attr, req->argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return -rc;
}

static const char *exec_signame(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else
		snprintf(buf, len, "signal %d", sig);
	return buf;
}

/* Why the program was stopped by us, if it was. */
enum exec_stop { EXEC_RAN, EXEC_CANCELLED, EXEC_TIMED_OUT };

struct exec_run_state {
	pid_t pid;
	int status;
	int exited; /* a zombie: its pid, and so its group id, stay taken */
	int truncated;
	enum exec_stop stop;
	int64_t limit_ms; /* the time the program had */
};

/* Supervise the program until it exited and its pipes are drained (or
 * its leftovers were killed). */
static void exec_supervise(const struct taskq_host *host, struct taskq_job *job,
			   const struct exec_req *req, int in_fd,
			   struct exec_buf out[2], struct exec_run_state *st)
{
	int64_t now, term_at = 0, exit_at = 0, deadline = 0;
	int64_t remaining = host->job_remaining_ms(job);
	size_t in_off = 0;
	struct pollfd pfd[3];
	int open_out = 2, i, n;
	int killed = 0;

	if (remaining < INT64_MAX / 2)
		deadline = exec_now_ms() + (remaining > 0 ? remaining : 0);
	st->limit_ms = remaining;
	if (in_fd >= 0 && exec_write(in_fd, req->stdin_data, req->stdin_len, &in_off))
		exec_close(&in_fd);

	for (;;) {
		n = 0;
		for (i = 0; i < 2; i++) {
			if (out[i].fd >= 0) {
				pfd[n].fd = out[i].fd;
				pfd[n].events = POLLIN;
				pfd[n].revents = 0;
				n++;
			}
		}
		if (in_fd >= 0) {
			pfd[n].fd = in_fd;
			pfd[n].events = POLLOUT;
			pfd[n].revents = 0;
			n++;
		}
		if (n > 0)
			poll(pfd, (nfds_t)n, EXEC_TICK_MS);
		else {
			struct timespec ts = { 0, EXEC_TICK_MS * 1000000L };

			nanosleep(&ts, NULL);
		}

		for (i = 0; i < 2; i++)
			if (out[i].fd >= 0 && exec_read(&out[i], &st->truncated)) {
				exec_close(&out[i].fd);
				open_out--;
			}
		if (in_fd >= 0 &&
		    exec_write(in_fd, req->stdin_data, req->stdin_len, &in_off))
			exec_close(&in_fd);

		if (!st->exited) {
			siginfo_t si = { .si_pid = 0 };

			/* WNOWAIT: the group cannot be reused before we kill
			 * what is left of it and reap */
			if (waitid(P_PID, (id_t)st->pid, &si,
				   WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    si.si_pid == st->pid) {
				st->exited = 1;
				exit_at = exec_now_ms();
			}
		}
		now = exec_now_ms();
		if (st->exited && open_out == 0)
			break;
		if (st->exited && now - exit_at >= EXEC_DRAIN_MS) {
			/* leftovers of the group hold the pipes: end them */
			kill(-st->pid, SIGKILL);
			break;
		}
		if (!st->exited && !killed && st->stop == EXEC_RAN) {
			if (host->is_cancelled(job))
				st->stop = deadline && now >= deadline ?
						   EXEC_TIMED_OUT : EXEC_CANCELLED;
			else if (deadline && now >= deadline)
				st->stop = EXEC_TIMED_OUT;
			if (st->stop != EXEC_RAN) {
				kill(-st->pid, SIGTERM);
				term_at = now;
			}
		}
		if (!st->exited && !killed && st->stop != EXEC_RAN &&
		    now - term_at >= EXEC_KILL_GRACE_MS) {
			kill(-st->pid, SIGKILL);
			killed = 1;
		}
		if (!st->exited && killed && now - term_at >= EXEC_KILL_GRACE_MS * 3)
			break; /* a stuck kernel: block in waitpid() below */
	}
	exec_close(&in_fd);
	/* the program may have left others in its group */
	kill(-st->pid, SIGKILL);
	while (waitpid(st->pid, &st->status, 0) < 0 && errno == EINTR)
		;
}

/* ---- result ----------------------------------------------------------- */

static int exec_set_result(const struct taskq_host *host, struct taskq_job *job,
			   const struct exec_run_state *st,
			   const struct exec_buf out[2])
{
	char *so = NULL, *se = NULL, *text = NULL;
	char sig[32];
	cJSON *doc;
	int rc = -1;

	doc = cJSON_CreateObject();
	so = plugin_utf8_dup(out[0].data, out[0].len);
	se = plugin_utf8_dup(out[1].data, out[1].len);
	if (!doc || !so || !se)
		goto out;
	if (WIFEXITED(st->status)) {
		if (!cJSON_AddNumberToObject(doc, "exit_status",
					     WEXITSTATUS(st->status)))
			goto out;
	} else {
		if (!cJSON_AddNullToObject(doc, "exit_status") ||
		    !cJSON_AddStringToObject(doc, "signal",
					     exec_signame(WTERMSIG(st->status), sig,
							  sizeof(sig))))
			goto out;
	}
	if (!cJSON_AddStringToObject(doc, "stdout", so) ||
	    !cJSON_AddStringToObject(doc, "stderr", se) ||
	    !cJSON_AddBoolToObject(doc, "truncated", st->truncated))
		goto out;
	text = cJSON_PrintUnformatted(doc);
	if (text && host->set_result(job, text) == TASKQ_OK)
		rc = 0;
out:
	free(text);
	free(so);
	free(se);
	cJSON_Delete(doc);
	return rc;
}

/* ---- the job type ----------------------------------------------------- */

static int exec_validate(const struct taskq_host *host, const char *payload,
			 char *err, size_t errlen, void *user_data)
{
	struct exec_req req;

	if (exec_parse(host, user_data, payload, &req, err, errlen) < 0)
		return 1;
	exec_req_free(&req);
	return 0;
}

static enum taskq_outcome exec_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	const struct exec_conf *conf = user_data;
	struct exec_run_state st = { .pid = -1 };
	struct exec_buf out[2] = { { .fd = -1 }, { .fd = -1 } };
	int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 },
	    err_pipe[2] = { -1, -1 };
	enum taskq_outcome outcome = TASKQ_FAIL;
	struct exec_req req;
	char reason[256], sig[32];
	int rc, i;

	if (exec_parse(host, conf, host->job_payload(job), &req, reason,
		       sizeof(reason)) < 0) {
		host->set_error(job, "exec: %s", reason);
		return TASKQ_FAIL;
	}
	if (host->job_remaining_ms(job) <= 0 || host->is_cancelled(job)) {
		host->set_error(job, "exec: cancelled or timed out before the start");
		outcome = TASKQ_RETRY;
		goto out;
	}

	for (i = 0; i < 2; i++) {
		out[i].max = conf->max_output;
		out[i].data = malloc(conf->max_output ? conf->max_output : 1);
		if (!out[i].data) {
			host->set_error(job, "exec: out of memory");
			outcome = TASKQ_RETRY;
			goto out;
		}
	}
	if ((req.stdin_data && (rc = exec_pipe(in_pipe)) < 0) ||
	    (rc = exec_pipe(out_pipe)) < 0 || (rc = exec_pipe(err_pipe)) < 0) {
		host->set_error(job, "exec: pipe: %s", strerror(-rc));
		outcome = TASKQ_RETRY;
		goto out;
	}
	rc = exec_spawn(&req, in_pipe[0], out_pipe[1], err_pipe[1], &st.pid);
	if (rc < 0) {
		st.pid = -1;
		host->set_error(job, "exec: cannot run %s: %s", req.path,
				strerror(-rc));
		outcome = rc == -ENOENT || rc == -EACCES || rc == -ENOEXEC ?
				  TASKQ_FAIL : TASKQ_RETRY;
		goto out;
	}
	exec_close(&in_pipe[0]);
	exec_close(&out_pipe[1]);
	exec_close(&err_pipe[1]);
	out[0].fd = out_pipe[0];
	out[1].fd = err_pipe[0];
	out_pipe[0] = err_pipe[0] = -1;
	if ((in_pipe[1] >= 0 && fcntl(in_pipe[1], F_SETFL, O_NONBLOCK) < 0) ||
	    fcntl(out[0].fd, F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(out[1].fd, F_SETFL, O_NONBLOCK) < 0)
		host->log(job, TASKQ_LOG_WARN, "exec: cannot make the pipes non-blocking");

	exec_supervise(host, job, &req, in_pipe[1], out, &st);
	in_pipe[1] = -1; /* closed by exec_supervise() */

	if (exec_set_result(host, job, &st, out) < 0)
		host->log(job, TASKQ_LOG_WARN, "exec: cannot set the result");

	if (st.stop == EXEC_TIMED_OUT) {
		host->set_error(job, "command %s timed out after %lld ms (%s)",
				req.name, (long long)st.limit_ms,
				WIFSIGNALED(st.status) ?
					exec_signame(WTERMSIG(st.status), sig, sizeof(sig)) :
					"exited after SIGTERM");
		outcome = TASKQ_RETRY;
	} else if (st.stop == EXEC_CANCELLED) {
		host->set_error(job, "command %s cancelled (%s)", req.name,
				WIFSIGNALED(st.status) ?
					exec_signame(WTERMSIG(st.status), sig, sizeof(sig)) :
					"exited after SIGTERM");
		outcome = TASKQ_RETRY;
	} else if (WIFSIGNALED(st.status)) {
		host->set_error(job, "command killed by signal %s",
				exec_signame(WTERMSIG(st.status), sig, sizeof(sig)));
		outcome = TASKQ_RETRY;
	} else if (WEXITSTATUS(st.status) != 0) {
		host->set_error(job, "command exited with status %d",
				WEXITSTATUS(st.status));
		outcome = TASKQ_RETRY;
	} else {
		outcome = TASKQ_DONE;
	}
out:
	for (i = 0; i < 2; i++) {
		exec_close(&in_pipe[i]);
		exec_close(&out_pipe[i]);
		exec_close(&err_pipe[i]);
	}
	for (i = 0; i < 2; i++) {
		exec_close(&out[i].fd);
		free(out[i].data);
	}
	exec_req_free(&req);
	return outcome;
}

/* ---- plugin ----------------------------------------------------------- */

static int exec_init(const struct taskq_host *host, const struct taskq_config *cfg,
		     void **user_data, char *err, size_t errlen)
{
	struct exec_conf *conf;
	long long ll;
	int rc;

	conf = calloc(1, sizeof(*conf));
	if (!conf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	conf->cfg = cfg;
	conf->max_output = EXEC_DEFAULT_OUTPUT;
	rc = host->config_int(cfg, "max_output_bytes", &ll);
	if (rc == TASKQ_OK) {
		if (ll < 0 || ll > EXEC_MAX_OUTPUT) {
			snprintf(err, errlen, "max_output_bytes must be from 0 to %d",
				 EXEC_MAX_OUTPUT);
			free(conf);
			return -1;
		}
		conf->max_output = (size_t)ll;
	} else if (rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "max_output_bytes must be an integer");
		free(conf);
		return -1;
	}
	if (host->config_string(cfg, "commands.[0]", &(const char *){ NULL }) != TASKQ_OK)
		host->log(NULL, TASKQ_LOG_WARN,
			  "plugin.exec.commands is empty: every command is refused");
	*user_data = conf;
	return 0;
}

static void exec_fini(void *user_data)
{
	free(user_data);
}

static const struct taskq_job_type exec_types[] = {
	{ .name = "exec", .handler = exec_run, .validate = exec_validate },
};

TASKQ_PLUGIN("exec", "1.0.0", exec_types, exec_init, exec_fini)
