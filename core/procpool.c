/*
 * procpool.c - pre-forked worker processes for plugins with isolation
 * "process" (see procpool.h).
 *
 * Parent side: a fixed array of slots, each empty, starting, idle or busy,
 * under one mutex.  A worker thread borrows an idle process (or forks one
 * into an empty slot), sends it the attempt, supervises it without the
 * lock held, and gives it back: kept, recycled, or replaced when it died.
 *
 * Process side: nothing but pp_child_main().  The process was forked from
 * a multithreaded daemon, so it touches no daemon lock: it formats log
 * lines itself (log.c takes none), allocates with malloc (fork-safe in
 * glibc) and talks to the parent over its socket only.
 */
#include "procpool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "job.h"
#include "log.h"

/* Largest frame either side accepts (an attempt carries the payload, an
 * outcome the result): bounded so a broken peer cannot make us allocate
 * without limit. */
#define PP_FRAME_MAX (64u * 1024u * 1024u)
#define PP_HDR_LEN 5
/* How often the parent looks at the deadline, the cancel flag and the
 * process while an attempt runs. */
#define PP_TICK_MS 50
#define PP_GRACE_DEFAULT_MS 2000
/* What one read takes of a peer's frames: a frame this small (a no-op's
 * attempt or outcome is about a hundred bytes) costs one system call. */
#define PP_RX_BUF 4096
/* How long a process that was asked to stop (its socket closed) may take. */
#define PP_STOP_WAIT_MS 1000
/* Longest progress message sent (the host keeps less). */
#define PP_PROGRESS_MESSAGE_MAX 1024

/* Frame kinds.  Both ends are the same binary: change freely, together. */
enum pp_kind {
	PP_MSG_JOB = 'J',      /* parent -> process: run an attempt */
	PP_MSG_CANCEL = 'C',   /* parent -> process: stop the attempt */
	PP_MSG_PROGRESS = 'P', /* process -> parent: progress */
	PP_MSG_OUTCOME = 'O',  /* process -> parent: the attempt ended */
};

/* Flags of an outcome frame. */
#define PP_OUT_RESULT 0x1u
#define PP_OUT_ERROR 0x2u
#define PP_OUT_RETRY_AFTER 0x4u

enum pp_state { PP_EMPTY, PP_STARTING, PP_IDLE, PP_BUSY };

struct pp_proc {
	pid_t pid;
	int fd;
	int jobs; /* attempts run */
	enum pp_state state;
};

struct tq_procpool {
	char *name;
	struct tq_procpool_opts o; /* o.name and o.keep_fds point into here */
	int keep_fds[TQ_PROCPOOL_KEEP_FDS_MAX];
	const struct taskq_job_type *types;
	size_t n_types;
	void *user_data;

	pthread_mutex_t lock;
	pthread_cond_t changed; /* a slot became idle or empty */
	bool draining;
	int n;
	struct pp_proc procs[];
};

/* ---- frames ---------------------------------------------------------- */

static void pp_put_i32(struct tq_buf *b, int32_t v)
{
	tq_buf_put(b, &v, sizeof(v));
}

static void pp_put_i64(struct tq_buf *b, int64_t v)
{
	tq_buf_put(b, &v, sizeof(v));
}

static void pp_put_u8(struct tq_buf *b, uint8_t v)
{
	tq_buf_put(b, &v, sizeof(v));
}

/* A string and its NUL, at most max bytes of it. */
static void pp_put_str(struct tq_buf *b, const char *s, size_t max)
{
	size_t n = s ? strnlen(s, max) : 0;

	tq_buf_put(b, s ? s : "", n);
	pp_put_u8(b, 0);
}

/* Start a frame: room for the header. */
static void pp_begin(struct tq_buf *b, enum pp_kind kind)
{
	uint32_t zero = 0;

	b->len = 0;
	tq_buf_put(b, &zero, sizeof(zero));
	pp_put_u8(b, (uint8_t)kind);
}

static int pp_send_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n) {
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Finish the frame begun with pp_begin() and send it. */
static int pp_send(int fd, struct tq_buf *b)
{
	uint32_t len;

	if (b->failed)
		return -ENOMEM;
	if (b->len - PP_HDR_LEN > PP_FRAME_MAX)
		return -E2BIG;
	len = (uint32_t)(b->len - PP_HDR_LEN);
	memcpy(b->p, &len, sizeof(len));
	return pp_send_all(fd, b->p, b->len);
}

/* 0, -EPIPE at end of file, -errno. */
static int pp_read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	ssize_t r;

	while (n) {
		r = read(fd, p, n);
		if (r == 0)
			return -EPIPE;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/*
 * The frames coming in on one socket.  A read takes whatever has arrived,
 * up to PP_RX_BUF, instead of the header and then the body, so the
 * frames that follow one another stay buffered here for the next call.
 */
struct pp_rx {
	int fd;
	size_t start, end; /* the bytes not taken yet: buf[start, end) */
	char buf[PP_RX_BUF];
};

static void pp_rx_init(struct pp_rx *rx, int fd)
{
	rx->fd = fd;
	rx->start = rx->end = 0;
}

/* Bytes of a frame are here already: the next pp_recv() may not block. */
static bool pp_rx_pending(const struct pp_rx *rx)
{
	return rx->end > rx->start;
}

/* One read into the free end of the buffer: 0, -EPIPE at end of file,
 * -errno. */
static int pp_rx_fill(struct pp_rx *rx)
{
	ssize_t r;

	if (rx->start > 0) {
		memmove(rx->buf, rx->buf + rx->start, rx->end - rx->start);
		rx->end -= rx->start;
		rx->start = 0;
	}
	do
		r = read(rx->fd, rx->buf + rx->end, sizeof(rx->buf) - rx->end);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -EPIPE;
	if (r < 0)
		return -errno;
	rx->end += (size_t)r;
	return 0;
}

/* One frame: its kind and its body (malloc'd, NUL-terminated).  What the
 * buffer does not hold of a long body is read straight into it. */
static int pp_recv(struct pp_rx *rx, uint8_t *kind, char **body, size_t *len)
{
	size_t have;
	uint32_t n;
	char *p;
	int r;

	*body = NULL;
	while (rx->end - rx->start < PP_HDR_LEN) {
		r = pp_rx_fill(rx);
		if (r < 0)
			return r;
	}
	memcpy(&n, rx->buf + rx->start, sizeof(n));
	if (n > PP_FRAME_MAX)
		return -EPROTO;
	p = malloc((size_t)n + 1);
	if (!p)
		return -ENOMEM;
	*kind = (uint8_t)rx->buf[rx->start + 4];
	rx->start += PP_HDR_LEN;
	have = rx->end - rx->start < n ? rx->end - rx->start : n;
	memcpy(p, rx->buf + rx->start, have);
	rx->start += have;
	if (rx->start == rx->end)
		rx->start = rx->end = 0;
	r = pp_read_all(rx->fd, p + have, n - have);
	if (r < 0) {
		free(p);
		return r;
	}
	p[n] = '\0';
	*body = p;
	*len = n;
	return 0;
}

/* Reading a body. */
struct pp_cur {
	const char *p;
	size_t left;
	bool bad;
};

static void pp_get(struct pp_cur *c, void *out, size_t n)
{
	if (c->bad || c->left < n) {
		c->bad = true;
		memset(out, 0, n);
		return;
	}
	memcpy(out, c->p, n);
	c->p += n;
	c->left -= n;
}

static int32_t pp_get_i32(struct pp_cur *c)
{
	int32_t v;

	pp_get(c, &v, sizeof(v));
	return v;
}

static int64_t pp_get_i64(struct pp_cur *c)
{
	int64_t v;

	pp_get(c, &v, sizeof(v));
	return v;
}

static uint8_t pp_get_u8(struct pp_cur *c)
{
	uint8_t v;

	pp_get(c, &v, sizeof(v));
	return v;
}

/* A NUL-terminated string inside the body (borrowed). */
static const char *pp_get_str(struct pp_cur *c)
{
	const char *s = c->p, *nul;

	if (c->bad)
		return "";
	nul = memchr(c->p, '\0', c->left);
	if (!nul) {
		c->bad = true;
		return "";
	}
	c->left -= (size_t)(nul - c->p) + 1;
	c->p = nul + 1;
	return s;
}

/* ---- the process side ------------------------------------------------ */

/* The process runs one thread and one pool: plain statics are its state. */
static int pp_child_fd = -1;
static struct pp_rx pp_child_rx; /* what the parent sent */
static bool pp_child_orphan; /* the parent closed the socket */
static struct taskq_host pp_child_host;

/* exit() from a handler: leave at once with its status, without running
 * the daemon's exit handlers (inherited, and meant for the daemon). */
static void pp_child_on_exit(int status, void *arg)
{
	(void)arg;
	fflush(NULL);
	_exit(status);
}

static int pp_child_set_progress(struct taskq_job *job, int percent,
				 const char *message)
{
	struct tq_buf b = { 0 };

	if (!job || percent < 0 || percent > 100)
		return TASKQ_EINVAL;
	pp_begin(&b, PP_MSG_PROGRESS);
	pp_put_i32(&b, percent);
	pp_put_u8(&b, message ? 1 : 0);
	pp_put_str(&b, message, PP_PROGRESS_MESSAGE_MAX);
	if (pp_send(pp_child_fd, &b) < 0) {
		pp_child_orphan = true;
		atomic_store(&job->cancelled, 1);
	}
	free(b.p);
	return b.failed ? TASKQ_ENOMEM : TASKQ_OK;
}

static int pp_child_is_cancelled(const struct taskq_job *job)
{
	struct taskq_job *j = (struct taskq_job *)job;
	struct pollfd pfd = { .fd = pp_child_fd, .events = POLLIN };
	uint8_t kind;
	size_t len;
	char *body;

	if (atomic_load(&j->cancelled))
		return 1;
	if (job->deadline_ms > 0 && tq_now_ms() >= job->deadline_ms)
		return 1;
	/* the parent sends nothing but a cancel while an attempt runs */
	while (pp_rx_pending(&pp_child_rx) || poll(&pfd, 1, 0) > 0) {
		if (pp_recv(&pp_child_rx, &kind, &body, &len) < 0) {
			pp_child_orphan = true;
			atomic_store(&j->cancelled, 1);
			break;
		}
		if (kind == PP_MSG_CANCEL)
			atomic_store(&j->cancelled, 1);
		free(body);
		if (atomic_load(&j->cancelled))
			break;
	}
	return atomic_load(&j->cancelled) ? 1 : 0;
}

static int pp_int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Close every descriptor but 0-2, the socket and the plugin's own. */
static void pp_child_close_fds(const struct tq_procpool *pp, int sock)
{
	int keep[TQ_PROCPOOL_KEEP_FDS_MAX + 4];
	size_t n = 0, i;
	int lo;

	keep[n++] = 2;
	keep[n++] = sock;
	for (i = 0; i < pp->o.n_keep_fds; i++)
		if (pp->keep_fds[i] > 2)
			keep[n++] = pp->keep_fds[i];
	qsort(keep, n, sizeof(keep[0]), pp_int_cmp);
	lo = 3;
	for (i = 0; i < n; i++) {
		if (keep[i] > lo)
			close_range((unsigned int)lo, (unsigned int)keep[i] - 1, 0);
		if (keep[i] + 1 > lo)
			lo = keep[i] + 1;
	}
	if (close_range((unsigned int)lo, ~0u, 0) < 0) {
		/* kernels before 5.9 */
		long max = sysconf(_SC_OPEN_MAX);
		int fd;

		if (max < 0 || max > 65536)
			max = 65536;
		for (fd = lo; fd < max; fd++)
			close(fd);
	}
}

/* Address space in bytes now, from /proc/self/statm; 0 if unknown. */
static unsigned long long pp_child_vm_bytes(void)
{
	char buf[128], *end;
	unsigned long long pages;
	ssize_t r;
	int fd;

	fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = '\0';
	errno = 0;
	pages = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return 0;
	return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static void pp_child_setup(const struct tq_procpool *pp, int sock,
			   pid_t parent)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	/* the daemon's signal handling is not ours */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL); /* fails harmlessly for some */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* die with the daemon (with the thread that forked us, in fact) */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);

	pp_child_close_fds(pp, sock);

	if (pp->o.max_memory_mb > 0) {
		unsigned long long lim = pp_child_vm_bytes() +
					 (unsigned long long)pp->o.max_memory_mb * 1024 * 1024;
		struct rlimit rl = { .rlim_cur = lim, .rlim_max = lim };
		struct tq_log_fields f = TQ_LOG_FIELDS_INIT;

		f.plugin = pp->name;
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			tq_logf(TQ_LOG_WARN, &f,
				"cannot limit the worker process's memory: %s",
				strerror(errno));
	}
	on_exit(pp_child_on_exit, NULL);

	pp_child_fd = sock;
	pp_rx_init(&pp_child_rx, sock);
	pp_child_host = tq_host;
	pp_child_host.set_progress = pp_child_set_progress;
	pp_child_host.is_cancelled = pp_child_is_cancelled;
	tq_job_set_log_plugin(pp->name);
}

/* RLIMIT_CPU: max_cpu_s more seconds from now (it counts the process's
 * whole life, so it moves with every attempt). */
static void pp_child_cpu_limit(const struct tq_procpool *pp)
{
	struct rusage ru;
	struct rlimit rl;
	rlim_t used;

	if (pp->o.max_cpu_s <= 0)
		return;
	if (getrusage(RUSAGE_SELF, &ru) < 0 || getrlimit(RLIMIT_CPU, &rl) < 0)
		return;
	used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1);
	rl.rlim_cur = used + (rlim_t)pp->o.max_cpu_s;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_CPU, &rl);
}

static void pp_child_job(const struct tq_procpool *pp, const char *body,
			 size_t len)
{
	struct pp_cur c = { .p = body, .left = len };
	enum taskq_outcome outcome;
	struct taskq_job job;
	struct tq_buf b = { 0 };
	const char *id, *type, *payload;
	int32_t idx, attempt;
	int64_t remaining;
	uint8_t flags = 0;

	idx = pp_get_i32(&c);
	attempt = pp_get_i32(&c);
	remaining = pp_get_i64(&c);
	id = pp_get_str(&c);
	type = pp_get_str(&c);
	payload = pp_get_str(&c);
	if (c.bad || idx < 0 || (size_t)idx >= pp->n_types)
		_exit(70); /* the parent reports it as the exit status */

	tq_job_init(&job, id, type, payload, attempt,
		    remaining >= 0 ? tq_now_ms() + remaining : 0);
	pp_child_cpu_limit(pp);
	outcome = pp->types[idx].handler(&pp_child_host, &job, pp->user_data);

	if (job.result)
		flags |= PP_OUT_RESULT;
	if (job.error)
		flags |= PP_OUT_ERROR;
	if (job.has_retry_after)
		flags |= PP_OUT_RETRY_AFTER;
	pp_begin(&b, PP_MSG_OUTCOME);
	pp_put_i32(&b, (int32_t)outcome);
	pp_put_u8(&b, flags);
	pp_put_i64(&b, (int64_t)job.retry_after_s);
	pp_put_str(&b, job.result, TQ_RESULT_MAX);
	pp_put_str(&b, job.error, TQ_ERROR_MAX);
	if (pp_send(pp_child_fd, &b) < 0)
		pp_child_orphan = true;
	free(b.p);
	tq_job_clear(&job);
}

static void pp_child_main(const struct tq_procpool *pp, int sock, pid_t parent)
	__attribute__((noreturn));
static void pp_child_main(const struct tq_procpool *pp, int sock, pid_t parent)
{
	uint8_t kind;
	size_t len;
	char *body;

	pp_child_setup(pp, sock, parent);
	while (!pp_child_orphan) {
		if (pp_recv(&pp_child_rx, &kind, &body, &len) < 0)
			break; /* the parent closed the socket: stop */
		if (kind == PP_MSG_JOB)
			pp_child_job(pp, body, len);
		/* a cancel that came after its attempt ended: nothing to do */
		free(body);
	}
	_exit(0);
}

/* ---- the parent side ------------------------------------------------- */

static void pp_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void pp_log(const struct tq_procpool *pp, enum tq_log_level level,
		   const struct taskq_job *job, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void pp_log(const struct tq_procpool *pp, enum tq_log_level level,
		   const struct taskq_job *job, const char *fmt, ...)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	f.plugin = pp->name;
	if (job) {
		f.job_id = job->id;
		f.type = job->type;
		f.attempt = job->attempt;
	}
	tq_logf(level, &f, "%s", msg);
}

static int pp_spawn(struct tq_procpool *pp, pid_t *pid_out, int *fd_out)
{
	pid_t parent = getpid(), pid;
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	/* nothing buffered may be written twice */
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		return r;
	}
	if (pid == 0) {
		close(sv[0]);
		pp_child_main(pp, sv[1], parent);
	}
	close(sv[1]);
	*pid_out = pid;
	*fd_out = sv[0];
	return 0;
}

/*
 * Wait up to grace_ms for pid to exit, then SIGKILL it and wait.  true
 * with its status when it was reaped (false: it is not our child).
 */
static bool pp_reap(pid_t pid, int *status, int grace_ms)
{
	int64_t until = tq_now_ms() + grace_ms;
	pid_t w;

	for (;;) {
		w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return true;
		if (w < 0 && errno != EINTR)
			return false;
		if (tq_now_ms() >= until)
			break;
		pp_sleep_ms(5);
	}
	kill(pid, SIGKILL);
	do {
		w = waitpid(pid, status, 0);
	} while (w < 0 && errno == EINTR);
	return w == pid;
}

/* Ask an idle process to stop (end of file on its socket) and reap it. */
static void pp_stop(pid_t pid, int fd)
{
	int status;

	close(fd);
	pp_reap(pid, &status, PP_STOP_WAIT_MS);
}

/* "SIGSEGV", or "signal 42". */
static void pp_signame(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else
		snprintf(buf, len, "signal %d", sig);
}

/* Fill slot i with a new process, or empty it (the lock is not held; the
 * slot is PP_STARTING, so it is ours).  Returns the new state. */
static int pp_fill(struct tq_procpool *pp, int i, enum pp_state state)
{
	pid_t pid = 0;
	int fd = -1, r;

	r = pp_spawn(pp, &pid, &fd);
	pthread_mutex_lock(&pp->lock);
	if (r < 0) {
		pp->procs[i].state = PP_EMPTY;
	} else {
		pp->procs[i].pid = pid;
		pp->procs[i].fd = fd;
		pp->procs[i].jobs = 0;
		pp->procs[i].state = state;
	}
	pthread_cond_broadcast(&pp->changed);
	pthread_mutex_unlock(&pp->lock);
	return r;
}

/* Take a live process; its slot becomes PP_BUSY.  0 or -errno. */
static int pp_borrow(struct tq_procpool *pp, int *slot)
{
	int i, empty, status, r;
	pid_t pid;

	pthread_mutex_lock(&pp->lock);
	for (;;) {
		empty = -1;
		for (i = 0; i < pp->n; i++) {
			if (pp->procs[i].state == PP_IDLE)
				break;
			if (pp->procs[i].state == PP_EMPTY && empty < 0)
				empty = i;
		}
		if (i < pp->n) {
			pid = pp->procs[i].pid;
			pp->procs[i].state = PP_BUSY;
			pthread_mutex_unlock(&pp->lock);
			if (waitpid(pid, &status, WNOHANG) == 0) {
				*slot = i;
				return 0;
			}
			/* it died while idle: replace it */
			pp_log(pp, TQ_LOG_WARN, NULL,
			       "idle worker process %d is gone; replacing it",
			       (int)pid);
			close(pp->procs[i].fd);
			break;
		}
		if (empty >= 0) {
			i = empty;
			pp->procs[i].state = PP_STARTING;
			pthread_mutex_unlock(&pp->lock);
			break;
		}
		pthread_cond_wait(&pp->changed, &pp->lock);
	}
	r = pp_fill(pp, i, PP_BUSY);
	if (r < 0)
		return r;
	*slot = i;
	return 0;
}

enum pp_return {
	PP_KEEP, /* alive and well */
	PP_GONE, /* reaped already (or killed and reaped) */
};

/* Give slot i back: keep, recycle or replace its process. */
static void pp_return(struct tq_procpool *pp, int i, enum pp_return how)
{
	struct pp_proc *pr = &pp->procs[i];
	bool stop, replace;
	pid_t pid;
	int fd, r;

	pthread_mutex_lock(&pp->lock);
	pr->jobs++;
	stop = how == PP_GONE || pp->draining ||
	       (pp->o.recycle_after > 0 && pr->jobs >= pp->o.recycle_after);
	if (!stop) {
		pr->state = PP_IDLE;
		pthread_cond_signal(&pp->changed);
		pthread_mutex_unlock(&pp->lock);
		return;
	}
	pid = pr->pid;
	fd = pr->fd;
	replace = !pp->draining;
	pr->state = PP_STARTING;
	pthread_mutex_unlock(&pp->lock);

	if (how == PP_GONE)
		close(fd);
	else
		pp_stop(pid, fd);
	if (!replace) {
		pthread_mutex_lock(&pp->lock);
		pr->state = PP_EMPTY;
		pthread_cond_broadcast(&pp->changed);
		pthread_mutex_unlock(&pp->lock);
		return;
	}
	r = pp_fill(pp, i, PP_IDLE);
	if (r < 0)
		pp_log(pp, TQ_LOG_ERROR, NULL,
		       "cannot start a worker process: %s; retrying at the next attempt",
		       strerror(-r));
}

static void pp_take_outcome(const char *body, size_t len, struct taskq_job *job,
			    enum taskq_outcome *outcome, bool *ok)
{
	struct pp_cur c = { .p = body, .left = len };
	const char *result, *error;
	int64_t retry_after;
	int32_t out;
	uint8_t flags;

	out = pp_get_i32(&c);
	flags = pp_get_u8(&c);
	retry_after = pp_get_i64(&c);
	result = pp_get_str(&c);
	error = pp_get_str(&c);
	if (c.bad) {
		*ok = false;
		return;
	}
	*ok = true;
	*outcome = (enum taskq_outcome)out;
	if ((flags & PP_OUT_RESULT) && tq_host.set_result(job, result) != TASKQ_OK)
		tq_host.set_error(job, "handler set a result the host refused");
	if (flags & PP_OUT_ERROR)
		tq_host.set_error(job, "%s", error);
	if ((flags & PP_OUT_RETRY_AFTER) && retry_after >= 0 &&
	    retry_after <= UINT32_MAX)
		tq_host.retry_after(job, (unsigned int)retry_after);
}

static void pp_take_progress(const char *body, size_t len,
			     struct taskq_job *job)
{
	struct pp_cur c = { .p = body, .left = len };
	const char *message;
	int32_t percent;
	uint8_t has;

	percent = pp_get_i32(&c);
	has = pp_get_u8(&c);
	message = pp_get_str(&c);
	if (!c.bad)
		tq_job_set_progress(job, percent, has ? message : NULL);
}

/*
 * Supervise one attempt that was sent to process pid.  Returns the
 * outcome; *how says whether the process can be used again.
 */
static enum taskq_outcome pp_supervise(struct tq_procpool *pp, pid_t pid,
				       int fd, struct taskq_job *job,
				       enum pp_return *how)
{
	const int cancel_grace = pp->o.cancel_grace_ms, kill_grace = pp->o.kill_grace_ms;
	enum taskq_outcome outcome = TASKQ_RETRY;
	bool cancel_sent = false, term_sent = false, kill_sent = false;
	bool timed_out = false, reaped = false, have_outcome = false, ok;
	int64_t now, cancel_at = 0, term_at = 0;
	int timeout_s = 0, status = 0, r;
	struct tq_buf b = { 0 };
	struct pp_rx rx;
	char why[160], sig[32];
	uint8_t kind;
	size_t len;
	char *body;

	/* the process sends nothing between attempts: this attempt's frames
	 * are all read here */
	pp_rx_init(&rx, fd);
	if (job->deadline_ms > 0) {
		int64_t left = job->deadline_ms - tq_now_ms();

		timeout_s = left > 0 ? (int)((left + 500) / 1000) : 0;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		now = tq_now_ms();
		if (!term_sent) {
			if (job->deadline_ms > 0 && now >= job->deadline_ms) {
				timed_out = true;
				kill(pid, SIGTERM);
				term_sent = true;
				term_at = now;
			} else if (!cancel_sent && atomic_load(&job->cancelled)) {
				pp_begin(&b, PP_MSG_CANCEL);
				pp_send(fd, &b); /* a dead process shows below */
				cancel_sent = true;
				cancel_at = now;
			} else if (cancel_sent && now - cancel_at >= cancel_grace) {
				kill(pid, SIGTERM);
				term_sent = true;
				term_at = now;
			}
		}
		if (term_sent && !kill_sent && now - term_at >= kill_grace) {
			kill(pid, SIGKILL);
			kill_sent = true;
		}

		r = pp_rx_pending(&rx) ? 1 : poll(&pfd, 1, PP_TICK_MS);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			r = pp_recv(&rx, &kind, &body, &len);
			if (r < 0)
				break; /* the process is gone (or broke the wire) */
			if (kind == PP_MSG_PROGRESS) {
				pp_take_progress(body, len, job);
			} else if (kind == PP_MSG_OUTCOME) {
				pp_take_outcome(body, len, job, &outcome, &ok);
				have_outcome = ok;
			}
			free(body);
			if (kind == PP_MSG_PROGRESS)
				continue;
			if (kind != PP_MSG_OUTCOME)
				kill(pid, SIGKILL); /* not our protocol */
			break;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			reaped = true;
			break;
		}
	}
	free(b.p);

	if (have_outcome) {
		*how = PP_KEEP;
		if (pp_rx_pending(&rx)) {
			/* it wrote after its outcome: the wire cannot be
			 * trusted for the next attempt */
			kill(pid, SIGKILL);
			pp_reap(pid, &status, kill_grace);
			*how = PP_GONE;
		} else if (term_sent) {
			/* signalled on its way out: do not run it again */
			pp_reap(pid, &status, kill_grace);
			*how = PP_GONE;
		}
		if (timed_out && outcome != TASKQ_FAIL) {
			tq_host.set_error(job, "timeout after %d s", timeout_s);
			outcome = TASKQ_RETRY;
		}
		return outcome;
	}

	/* no outcome: the process died, or must */
	if (!reaped) {
		if (kill_sent || term_sent)
			reaped = pp_reap(pid, &status, kill_grace);
		else
			reaped = pp_reap(pid, &status, PP_STOP_WAIT_MS);
	}
	*how = PP_GONE;
	if (timed_out) {
		snprintf(why, sizeof(why), "timeout after %d s", timeout_s);
	} else if (cancel_sent) {
		snprintf(why, sizeof(why), "cancelled");
	} else if (reaped && WIFSIGNALED(status)) {
		pp_signame(WTERMSIG(status), sig, sizeof(sig));
		snprintf(why, sizeof(why), "handler crashed: %s", sig);
	} else if (reaped && WIFEXITED(status)) {
		snprintf(why, sizeof(why), "handler exited with status %d",
			 WEXITSTATUS(status));
	} else {
		snprintf(why, sizeof(why), "handler process lost");
	}
	pp_log(pp, TQ_LOG_WARN, job, "worker process %d ended: %s; replacing it",
	       (int)pid, why);
	tq_host.set_error(job, "%s", why);
	return TASKQ_RETRY;
}

enum taskq_outcome tq_procpool_run(struct tq_procpool *pp,
				   const struct taskq_job_type *def,
				   struct taskq_job *job)
{
	enum taskq_outcome outcome;
	struct tq_buf b = { 0 };
	enum pp_return how;
	int slot, tries, r;
	int64_t remaining;

	if (!def || def < pp->types || def >= pp->types + pp->n_types) {
		tq_host.set_error(job, "job type not handled by plugin \"%s\"",
				  pp->name);
		return TASKQ_FAIL;
	}
	for (tries = 0;; tries++) {
		r = pp_borrow(pp, &slot);
		if (r < 0) {
			tq_host.set_error(job, "cannot start a worker process: %s",
					  strerror(-r));
			free(b.p);
			return TASKQ_RETRY;
		}
		remaining = -1;
		if (job->deadline_ms > 0) {
			remaining = job->deadline_ms - tq_now_ms();
			if (remaining < 1)
				remaining = 1;
		}
		pp_begin(&b, PP_MSG_JOB);
		pp_put_i32(&b, (int32_t)(def - pp->types));
		pp_put_i32(&b, job->attempt);
		pp_put_i64(&b, remaining);
		pp_put_str(&b, job->id, SIZE_MAX);
		pp_put_str(&b, job->type, SIZE_MAX);
		pp_put_str(&b, job->payload, SIZE_MAX);
		r = pp_send(pp->procs[slot].fd, &b);
		if (r == 0)
			break;
		if (r == -ENOMEM || r == -E2BIG) {
			pp_return(pp, slot, PP_KEEP);
			tq_host.set_error(job, "cannot pass the attempt to a worker process: %s",
					  strerror(-r));
			free(b.p);
			return TASKQ_RETRY;
		}
		/* it died before it got the attempt: that costs nothing */
		{
			int status;

			pp_reap(pp->procs[slot].pid, &status, PP_STOP_WAIT_MS);
		}
		pp_return(pp, slot, PP_GONE);
		if (tries == 2) {
			tq_host.set_error(job, "cannot reach a worker process: %s",
					  strerror(-r));
			free(b.p);
			return TASKQ_RETRY;
		}
	}
	free(b.p);
	outcome = pp_supervise(pp, pp->procs[slot].pid, pp->procs[slot].fd,
			       job, &how);
	pp_return(pp, slot, how);
	return outcome;
}

int tq_procpool_open(struct tq_procpool **out, const struct tq_procpool_opts *o,
		     const struct taskq_job_type *types, size_t n_types,
		     void *user_data, char *err, size_t errlen)
{
	struct tq_procpool *pp;
	int i, r;

	*out = NULL;
	if (o->processes < 1 || o->processes > TQ_PROCPOOL_MAX || !types ||
	    !n_types || o->n_keep_fds > TQ_PROCPOOL_KEEP_FDS_MAX) {
		snprintf(err, errlen, "invalid process pool settings");
		return -EINVAL;
	}
	pp = calloc(1, sizeof(*pp) + (size_t)o->processes * sizeof(pp->procs[0]));
	if (!pp) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pp->name = strdup(o->name ? o->name : "");
	if (!pp->name) {
		free(pp);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pp->o = *o;
	pp->o.name = pp->name;
	if (o->n_keep_fds)
		memcpy(pp->keep_fds, o->keep_fds, o->n_keep_fds * sizeof(int));
	pp->o.keep_fds = pp->keep_fds;
	if (pp->o.cancel_grace_ms <= 0)
		pp->o.cancel_grace_ms = PP_GRACE_DEFAULT_MS;
	if (pp->o.kill_grace_ms <= 0)
		pp->o.kill_grace_ms = PP_GRACE_DEFAULT_MS;
	pp->types = types;
	pp->n_types = n_types;
	pp->user_data = user_data;
	pp->n = o->processes;
	pthread_mutex_init(&pp->lock, NULL);
	pthread_cond_init(&pp->changed, NULL);
	for (i = 0; i < pp->n; i++) {
		pp->procs[i].fd = -1;
		pp->procs[i].state = PP_STARTING;
		r = pp_fill(pp, i, PP_IDLE);
		if (r < 0) {
			snprintf(err, errlen, "cannot fork a worker process: %s",
				 strerror(-r));
			tq_procpool_close(pp);
			return r;
		}
	}
	*out = pp;
	return 0;
}

void tq_procpool_drain(struct tq_procpool *pp)
{
	pid_t pids[TQ_PROCPOOL_MAX];
	int fds[TQ_PROCPOOL_MAX], slots[TQ_PROCPOOL_MAX];
	int i, n = 0;

	if (!pp)
		return;
	pthread_mutex_lock(&pp->lock);
	pp->draining = true;
	for (i = 0; i < pp->n; i++) {
		if (pp->procs[i].state != PP_IDLE)
			continue;
		pp->procs[i].state = PP_STARTING; /* ours while it stops */
		pids[n] = pp->procs[i].pid;
		fds[n] = pp->procs[i].fd;
		slots[n++] = i;
	}
	pthread_mutex_unlock(&pp->lock);
	for (i = 0; i < n; i++)
		pp_stop(pids[i], fds[i]);
	pthread_mutex_lock(&pp->lock);
	for (i = 0; i < n; i++)
		pp->procs[slots[i]].state = PP_EMPTY;
	pthread_cond_broadcast(&pp->changed);
	pthread_mutex_unlock(&pp->lock);
}

void tq_procpool_close(struct tq_procpool *pp)
{
	int i, status;

	if (!pp)
		return;
	tq_procpool_drain(pp);
	/* no attempt runs now; anything left is killed */
	for (i = 0; i < pp->n; i++) {
		if (pp->procs[i].state != PP_BUSY && pp->procs[i].state != PP_IDLE)
			continue;
		close(pp->procs[i].fd);
		kill(pp->procs[i].pid, SIGKILL);
		pp_reap(pp->procs[i].pid, &status, 0);
	}
	pthread_cond_destroy(&pp->changed);
	pthread_mutex_destroy(&pp->lock);
	free(pp->name);
	free(pp);
}

size_t tq_procpool_pids(struct tq_procpool *pp, pid_t *pids, size_t max)
{
	size_t n = 0;
	int i;

	if (!pp)
		return 0;
	pthread_mutex_lock(&pp->lock);
	for (i = 0; i < pp->n; i++) {
		if (pp->procs[i].state != PP_IDLE && pp->procs[i].state != PP_BUSY)
			continue;
		if (n < max)
			pids[n] = pp->procs[i].pid;
		n++;
	}
	pthread_mutex_unlock(&pp->lock);
	return n;
}
