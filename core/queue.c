/*
 * queue.c - one Redis connection: push ready ids, block for the next one
 * (see queue.h and keys.h).
 */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "keys.h"
#include "log.h"
#include "request.h"

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_S 5
#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 2000

struct tq_queue {
	char host[256];
	char password[256];
	int port;
	int db;
	char *prefix;

	pthread_mutex_t lock; /* guards ctx against tq_queue_interrupt() */
	redisContext *ctx;
	atomic_bool interrupted;

	/* reconnection: no attempt before next_try_ms; one log per outage */
	int64_t next_try_ms;
	int backoff_ms;
	bool down_logged;

	/* BRPOP argument vector, built for the last queue list seen */
	const char *const *argv_for;
	char **argv;
	size_t argc;

	/* the server has no BLMPOP (before Redis 7.0): pop with a script */
	bool no_blmpop;
};

int tq_key_ready(char *buf, size_t len, const char *prefix, const char *queue,
		 int priority)
{
	int n = snprintf(buf, len, "%s:v%d:ready:%s:%d", prefix, TQ_KEYS_VERSION, queue,
			 priority);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tq_queue_parse_url(const char *url, char *host, size_t hostlen, int *port,
		       int *db, char *password, size_t passlen)
{
	const char *p, *at, *hend, *slash;
	char *end;
	long v;

	if (strncmp(url, "redis://", 8) != 0)
		return -EINVAL;
	p = url + 8;
	*port = 6379;
	*db = 0;
	if (passlen)
		password[0] = '\0';
	slash = strchr(p, '/');
	at = strchr(p, '@');
	if (at && (!slash || at < slash)) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *pw = colon ? colon + 1 : p;
		size_t n = (size_t)(at - pw);

		if (n >= passlen)
			return -EINVAL;
		memcpy(password, pw, n);
		password[n] = '\0';
		p = at + 1;
	}
	hend = p;
	while (*hend && *hend != ':' && *hend != '/')
		hend++;
	if (hend == p || (size_t)(hend - p) >= hostlen)
		return -EINVAL;
	memcpy(host, p, (size_t)(hend - p));
	host[hend - p] = '\0';
	p = hend;
	if (*p == ':') {
		errno = 0;
		v = strtol(p + 1, &end, 10);
		if (errno || end == p + 1 || v < 1 || v > 65535)
			return -EINVAL;
		*port = (int)v;
		p = end;
	}
	if (*p == '/' && p[1]) {
		errno = 0;
		v = strtol(p + 1, &end, 10);
		if (errno || end == p + 1 || *end || v < 0 || v > 1000000)
			return -EINVAL;
		*db = (int)v;
		p = end;
	} else if (*p == '/') {
		p++;
	}
	return *p ? -EINVAL : 0;
}

static void drop_connection(struct tq_queue *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->ctx)
		redisFree(q->ctx);
	q->ctx = NULL;
	pthread_mutex_unlock(&q->lock);
}

static int handshake(redisContext *c, const struct tq_queue *q, char *why, size_t len)
{
	redisReply *r;

	if (q->password[0]) {
		r = redisCommand(c, "AUTH %s", q->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, len, "AUTH failed: %s", r ? r->str : c->errstr);
			freeReplyObject(r);
			return -EIO;
		}
		freeReplyObject(r);
	}
	if (q->db) {
		r = redisCommand(c, "SELECT %d", q->db);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, len, "SELECT %d failed: %s", q->db, r ? r->str : c->errstr);
			freeReplyObject(r);
			return -EIO;
		}
		freeReplyObject(r);
	}
	return 0;
}

/* Make sure q->ctx is connected: 0 or -EAGAIN (backing off). */
static int ensure_connected(struct tq_queue *q)
{
	struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_MS / 1000,
			     .tv_usec = (CONNECT_TIMEOUT_MS % 1000) * 1000};
	struct timeval cmd = {.tv_sec = COMMAND_TIMEOUT_S};
	redisContext *c;
	char why[256] = "";
	int64_t now;

	if (q->ctx)
		return 0;
	now = mono_ms();
	if (now < q->next_try_ms)
		return -EAGAIN;

	c = redisConnectWithTimeout(q->host, q->port, tv);
	if (!c || c->err) {
		snprintf(why, sizeof(why), "%s", c ? c->errstr : "out of memory");
		goto fail;
	}
	if (fcntl(c->fd, F_SETFD, FD_CLOEXEC) < 0 || redisSetTimeout(c, cmd) != REDIS_OK) {
		snprintf(why, sizeof(why), "cannot configure the socket");
		goto fail;
	}
	if (handshake(c, q, why, sizeof(why)))
		goto fail;

	pthread_mutex_lock(&q->lock);
	q->ctx = c;
	if (atomic_load(&q->interrupted))
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&q->lock);
	if (q->down_logged)
		tq_info("redis connection restored (%s:%d)", q->host, q->port);
	q->down_logged = false;
	q->backoff_ms = 0;
	return 0;
fail:
	if (c)
		redisFree(c);
	if (!q->down_logged)
		tq_warn("redis unavailable at %s:%d: %s; retrying", q->host, q->port, why);
	q->down_logged = true;
	q->backoff_ms = q->backoff_ms ? q->backoff_ms * 2 : RECONNECT_MIN_MS;
	if (q->backoff_ms > RECONNECT_MAX_MS)
		q->backoff_ms = RECONNECT_MAX_MS;
	q->next_try_ms = now + q->backoff_ms;
	return -EAGAIN;
}

/* A command failed on the connection: forget it, note the outage. */
static int broken(struct tq_queue *q)
{
	if (atomic_load(&q->interrupted)) {
		drop_connection(q);
		return -EINTR;
	}
	if (!q->down_logged && q->ctx)
		tq_warn("redis connection lost (%s:%d): %s; reconnecting", q->host, q->port,
			q->ctx->errstr[0] ? q->ctx->errstr : "connection closed");
	q->down_logged = true;
	drop_connection(q);
	return -EAGAIN;
}

int tq_queue_open(struct tq_queue **out, const char *url, const char *prefix,
		  char *err, size_t errlen)
{
	struct tq_queue *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (!q || !(q->prefix = strdup(prefix))) {
		free(q);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (tq_queue_parse_url(url, q->host, sizeof(q->host), &q->port, &q->db,
			       q->password, sizeof(q->password))) {
		snprintf(err, errlen,
			 "invalid redis url '%s' (expected redis://[:password@]host[:port][/db])",
			 url);
		free(q->prefix);
		free(q);
		return -EINVAL;
	}
	pthread_mutex_init(&q->lock, NULL);
	ensure_connected(q); /* a server that is down now is retried on use */
	*out = q;
	return 0;
}

static void free_argv(struct tq_queue *q)
{
	for (size_t i = 0; i < q->argc; i++)
		free(q->argv[i]);
	free(q->argv);
	q->argv = NULL;
	q->argc = 0;
	q->argv_for = NULL;
}

void tq_queue_close(struct tq_queue *q)
{
	if (!q)
		return;
	drop_connection(q);
	free_argv(q);
	pthread_mutex_destroy(&q->lock);
	free(q->prefix);
	free(q);
}

/* Most ids one LPUSH carries. */
#define PUSH_RUN_MAX 512

/* Read the replies of n pipelined commands named cmd: 0, -EIO when one
 * was an error (logged), or the connection broke. */
static int pipelined_replies(struct tq_queue *q, size_t n, const char *cmd)
{
	redisReply *reply;
	int r = 0;

	for (size_t c = 0; c < n; c++) {
		if (redisGetReply(q->ctx, (void **)&reply) != REDIS_OK)
			return broken(q);
		if (reply->type == REDIS_REPLY_ERROR) {
			tq_warn("redis %s failed: %s", cmd, reply->str);
			r = -EIO;
		}
		freeReplyObject(reply);
	}
	return r;
}

int tq_queue_push(struct tq_queue *q, const struct tq_ready *items, size_t n)
{
	const char *argv[2 + PUSH_RUN_MAX];
	char key[256];
	size_t commands = 0;
	int r;

	if (n == 0)
		return 0;
	r = ensure_connected(q);
	if (r)
		return r;
	/* one LPUSH per run of ids bound for the same list, pipelined:
	 * LPUSH k a b c leaves a to be popped first, as FIFO wants */
	for (size_t i = 0; i < n;) {
		size_t k = 0, run = 0;

		if (tq_key_ready(key, sizeof(key), q->prefix, items[i].queue, items[i].priority))
			return -ENAMETOOLONG;
		argv[k++] = "LPUSH";
		argv[k++] = key;
		while (i + run < n && run < PUSH_RUN_MAX &&
		       items[i + run].priority == items[i].priority &&
		       strcmp(items[i + run].queue, items[i].queue) == 0) {
			argv[k++] = items[i + run].id;
			run++;
		}
		if (redisAppendCommandArgv(q->ctx, (int)k, argv, NULL) != REDIS_OK)
			return broken(q);
		commands++;
		i += run;
	}
	return pipelined_replies(q, commands, "LPUSH");
}

static int build_argv(struct tq_queue *q, const char *const *queues, int timeout_s)
{
	size_t nq = 0, k = 0;
	char key[256];

	for (; queues[nq]; nq++)
		;
	if (q->argv_for == queues && q->argv) {
		snprintf(q->argv[q->argc - 1], 16, "%d", timeout_s);
		return 0;
	}
	free_argv(q);
	q->argc = 2 + nq * (TQ_PRIORITY_MAX - TQ_PRIORITY_MIN + 1);
	q->argv = calloc(q->argc, sizeof(*q->argv));
	if (!q->argv)
		goto nomem;
	if (!(q->argv[k++] = strdup("BRPOP")))
		goto nomem;
	for (int prio = TQ_PRIORITY_MAX; prio >= TQ_PRIORITY_MIN; prio--) {
		for (size_t i = 0; i < nq; i++) {
			if (tq_key_ready(key, sizeof(key), q->prefix, queues[i], prio))
				goto toolong;
			if (!(q->argv[k++] = strdup(key)))
				goto nomem;
		}
	}
	if (!(q->argv[k] = malloc(16)))
		goto nomem;
	snprintf(q->argv[k], 16, "%d", timeout_s);
	q->argv_for = queues;
	return 0;
toolong:
	free_argv(q);
	return -ENAMETOOLONG;
nomem:
	q->argc = k; /* free what was made */
	free_argv(q);
	return -ENOMEM;
}

/* The index among the ready lists of the last build_argv() of the list
 * named key (as a reply names it), or -1. */
static int list_index(const struct tq_queue *q, const redisReply *key)
{
	if (key->type != REDIS_REPLY_STRING)
		return -1;
	for (size_t i = 1; i + 1 < q->argc; i++)
		if (strlen(q->argv[i]) == key->len && memcmp(q->argv[i], key->str, key->len) == 0)
			return (int)(i - 1);
	return -1;
}

/* Append the id in e to ids (and the list it came from to from, when
 * given); anything but an id we wrote is dropped: the store is the truth. */
static void take_id(const redisReply *e, int list, size_t max, char (*ids)[37],
		    unsigned short *from, size_t *n)
{
	if (*n >= max || e->type != REDIS_REPLY_STRING || e->len != 36 || list < 0)
		return;
	memcpy(ids[*n], e->str, 36);
	ids[*n][36] = '\0';
	if (from)
		from[*n] = (unsigned short)list;
	(*n)++;
}

/* BRPOP: one id, and the list it came from (when from is given). */
static int pop_one(struct tq_queue *q, const char *const *queues, int timeout_s,
		   char id[37], unsigned short *from)
{
	struct timeval block = {.tv_sec = timeout_s > 0 ? timeout_s + COMMAND_TIMEOUT_S : 0};
	struct timeval cmd = {.tv_sec = COMMAND_TIMEOUT_S};
	redisReply *reply;
	int r, list;

	if (atomic_load(&q->interrupted))
		return -EINTR;
	r = ensure_connected(q);
	if (r)
		return r;
	r = build_argv(q, queues, timeout_s);
	if (r)
		return r;
	/* The socket must wait at least as long as the server blocks. */
	redisSetTimeout(q->ctx, block);
	reply = redisCommandArgv(q->ctx, (int)q->argc, (const char **)q->argv, NULL);
	if (!reply)
		return broken(q);
	redisSetTimeout(q->ctx, cmd);
	if (reply->type == REDIS_REPLY_NIL) {
		r = -ETIMEDOUT;
	} else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
		   reply->element[1]->type == REDIS_REPLY_STRING &&
		   reply->element[1]->len == 36 &&
		   (list = list_index(q, reply->element[0])) >= 0) {
		memcpy(id, reply->element[1]->str, 36);
		id[36] = '\0';
		if (from)
			*from = (unsigned short)list;
		r = 0;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		tq_warn("redis BRPOP failed: %s", reply->str);
		r = -EIO;
	} else {
		/* Not an id we wrote, or not from our lists: drop it, the
		 * store is the truth. */
		tq_warn("redis returned an unexpected ready entry; ignored");
		r = -EIO;
	}
	freeReplyObject(reply);
	return r;
}

int tq_queue_pop(struct tq_queue *q, const char *const *queues, int timeout_s,
		 char id[37])
{
	return pop_one(q, queues, timeout_s, id, NULL);
}

void tq_queue_interrupt(struct tq_queue *q)
{
	pthread_mutex_lock(&q->lock);
	atomic_store(&q->interrupted, true);
	if (q->ctx)
		shutdown(q->ctx->fd, SHUT_RDWR);
	pthread_mutex_unlock(&q->lock);
}

int tq_queue_ping(struct tq_queue *q)
{
	redisReply *reply;
	int r;

	r = ensure_connected(q);
	if (r)
		return r;
	reply = redisCommand(q->ctx, "PING");
	if (!reply)
		return broken(q);
	r = reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0 ? 0 : -EIO;
	freeReplyObject(reply);
	return r;
}

/*
 * Pop up to ARGV[1] ids from KEYS in order (priority 9..0), without
 * blocking: each id follows the index of its key (from 0).  RPOP with a
 * count needs Redis 6.2.
 */
static const char pop_many_lua[] =
	"local out = {} "
	"local need = tonumber(ARGV[1]) "
	"for i, k in ipairs(KEYS) do "
	"  if need <= 0 then break end "
	"  local r = redis.call('RPOP', k, need) "
	"  if r then "
	"    for _, v in ipairs(r) do out[#out + 1] = i - 1; out[#out + 1] = v end "
	"    need = need - #r "
	"  end "
	"end "
	"return out";

/*
 * A command on the ready lists of the last build_argv(): head, the number
 * of keys, the keys in priority order, then tail.  The reply, or NULL with
 * *r set (-ENOMEM, or the connection broke).
 */
static redisReply *on_ready_lists(struct tq_queue *q, const char *const *head, size_t nh,
				  const char *const *tail, size_t nt, int *r)
{
	size_t nkeys = q->argc - 2, k = 0;
	const char **argv = calloc(nh + 1 + nkeys + nt, sizeof(*argv));
	char nkeys_s[24];
	redisReply *reply;

	*r = 0;
	if (!argv) {
		*r = -ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < nh; i++)
		argv[k++] = head[i];
	snprintf(nkeys_s, sizeof(nkeys_s), "%zu", nkeys);
	argv[k++] = nkeys_s;
	for (size_t i = 0; i < nkeys; i++)
		argv[k++] = q->argv[1 + i];
	for (size_t i = 0; i < nt; i++)
		argv[k++] = tail[i];
	reply = redisCommandArgv(q->ctx, (int)k, argv, NULL);
	free(argv);
	if (!reply)
		*r = broken(q);
	return reply;
}

static int pop_now(struct tq_queue *q, size_t max, char (*ids)[37], unsigned short *from,
		   size_t *n)
{
	char max_s[24];
	const char *head[] = {"EVAL", pop_many_lua};
	const char *tail[] = {max_s};
	redisReply *reply;
	int r;

	snprintf(max_s, sizeof(max_s), "%zu", max);
	reply = on_ready_lists(q, head, 2, tail, 1, &r);
	if (!reply)
		return r;
	if (reply->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i + 1 < reply->elements; i += 2) {
			const redisReply *k = reply->element[i];
			int list = -1; /* the index of one of the keys, or none */

			if (k->type == REDIS_REPLY_INTEGER && k->integer >= 0 &&
			    (size_t)k->integer + 2 < q->argc)
				list = (int)k->integer;
			take_id(reply->element[i + 1], list, max, ids, from, n);
		}
	} else {
		tq_warn("redis pop failed: %s",
			reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		r = -EIO;
	}
	freeReplyObject(reply);
	return r;
}

/* The ids of an [B]LMPOP reply (the list's name, then its ids); false
 * when the reply is not one. */
static bool take_mpop_reply(const struct tq_queue *q, const redisReply *reply, size_t max,
			    char (*ids)[37], unsigned short *from, size_t *n)
{
	int list;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY)
		return false;
	list = list_index(q, reply->element[0]);
	for (size_t i = 0; i < reply->element[1]->elements; i++)
		take_id(reply->element[1]->element[i], list, max, ids, from, n);
	return true;
}

/*
 * BLMPOP timeout numkeys key... RIGHT COUNT max (Redis 7.0): one command
 * that waits for the first non-empty list in priority order and takes up
 * to max ids from it.  -ENOTSUP when the server does not know it.
 */
static int blmpop(struct tq_queue *q, size_t max, int timeout_s, char (*ids)[37],
		  unsigned short *from, size_t *n)
{
	struct timeval block = {.tv_sec = timeout_s > 0 ? timeout_s + COMMAND_TIMEOUT_S : 0};
	struct timeval cmd = {.tv_sec = COMMAND_TIMEOUT_S};
	char timeout[24], max_s[24];
	const char *head[] = {"BLMPOP", timeout};
	const char *tail[] = {"RIGHT", "COUNT", max_s};
	redisReply *reply;
	int r;

	snprintf(timeout, sizeof(timeout), "%d", timeout_s);
	snprintf(max_s, sizeof(max_s), "%zu", max);
	/* the socket must wait at least as long as the server blocks */
	redisSetTimeout(q->ctx, block);
	reply = on_ready_lists(q, head, 2, tail, 3, &r);
	if (q->ctx)
		redisSetTimeout(q->ctx, cmd);
	if (!reply)
		return r;
	if (reply->type == REDIS_REPLY_NIL) {
		r = -ETIMEDOUT;
	} else if (take_mpop_reply(q, reply, max, ids, from, n)) {
		/* taken */
	} else if (reply->type == REDIS_REPLY_ERROR &&
		   strncmp(reply->str, "ERR unknown command", 19) == 0) {
		r = -ENOTSUP;
	} else {
		tq_warn("redis BLMPOP failed: %s",
			reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		r = -EIO;
	}
	freeReplyObject(reply);
	return r;
}

int tq_queue_pop_many(struct tq_queue *q, const char *const *queues, size_t max,
		      int timeout_s, char (*ids)[37], unsigned short *from, size_t *n)
{
	int r;

	*n = 0;
	if (max == 0)
		return 0;
	if (atomic_load(&q->interrupted))
		return -EINTR;
	r = ensure_connected(q);
	if (r)
		return r;
	r = build_argv(q, queues, timeout_s);
	if (r)
		return r;
	if (!q->no_blmpop) {
		r = blmpop(q, max, timeout_s, ids, from, n);
		if (r != -ENOTSUP)
			return r;
		q->no_blmpop = true;
		tq_info("redis has no BLMPOP (before 7.0): ids are popped with a script");
	}
	r = pop_now(q, max, ids, from, n);
	if (r || *n)
		return r;
	/* nothing ready: block for the first one, then take what came
	 * with it */
	r = pop_one(q, queues, timeout_s, ids[0], from);
	if (r)
		return r;
	*n = 1;
	if (max > 1 && q->ctx) {
		size_t more = 0;

		r = pop_now(q, max - 1, ids + 1, from ? from + 1 : NULL, &more);
		*n += more;
	}
	return *n ? 0 : r;
}

/*
 * LMPOP numkeys key... RIGHT COUNT max (Redis 7.0): blmpop() without the
 * wait; older servers get the script.
 */
int tq_queue_take(struct tq_queue *q, const char *const *queues, size_t max,
		  char (*ids)[37], unsigned short *from, size_t *n)
{
	char max_s[24];
	const char *head[] = {"LMPOP"};
	const char *tail[] = {"RIGHT", "COUNT", max_s};
	redisReply *reply;
	int r;

	*n = 0;
	if (max == 0)
		return 0;
	if (atomic_load(&q->interrupted))
		return -EINTR;
	r = ensure_connected(q);
	if (!r)
		r = build_argv(q, queues, 0);
	if (r)
		return r;
	if (q->no_blmpop)
		return pop_now(q, max, ids, from, n);
	snprintf(max_s, sizeof(max_s), "%zu", max);
	reply = on_ready_lists(q, head, 1, tail, 3, &r);
	if (!reply)
		return r;
	if (take_mpop_reply(q, reply, max, ids, from, n)) {
		/* taken */
	} else if (reply->type == REDIS_REPLY_ERROR &&
		   strncmp(reply->str, "ERR unknown command", 19) == 0) {
		q->no_blmpop = true;
		tq_info("redis has no LMPOP (before 7.0): ids are popped with a script");
		freeReplyObject(reply);
		return pop_now(q, max, ids, from, n);
	} else if (reply->type != REDIS_REPLY_NIL) {
		tq_warn("redis LMPOP failed: %s",
			reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		r = -EIO;
	}
	freeReplyObject(reply);
	return r;
}

/*
 * RPUSH k c b a puts a back at the end of k that pops first, then b,
 * then c: so each run of ids of one list goes back in reverse, one
 * command per run, pipelined.
 */
int tq_queue_unpop(struct tq_queue *q, char (*ids)[37], const unsigned short *from,
		   size_t n)
{
	const char *argv[2 + PUSH_RUN_MAX];
	size_t commands = 0;
	int r;

	if (n == 0)
		return 0;
	r = ensure_connected(q);
	if (r)
		return r;
	for (size_t i = 0; i < n;) {
		size_t k = 0, run = 0;

		if (!q->argv || (size_t)from[i] + 2 >= q->argc)
			return -EINVAL;
		argv[k++] = "RPUSH";
		argv[k++] = q->argv[1 + from[i]];
		while (i + run < n && run < PUSH_RUN_MAX && from[i + run] == from[i])
			run++;
		for (size_t j = run; j-- > 0;)
			argv[k++] = ids[i + j];
		if (redisAppendCommandArgv(q->ctx, (int)k, argv, NULL) != REDIS_OK)
			return broken(q);
		commands++;
		i += run;
	}
	return pipelined_replies(q, commands, "RPUSH");
}

/* Sum of LLEN over KEYS. */
static const char backlog_lua[] =
	"local n = 0 "
	"for _, k in ipairs(KEYS) do n = n + redis.call('LLEN', k) end "
	"return n";

int tq_queue_backlog(struct tq_queue *q, const char *queue, long long *n)
{
	char keys[TQ_PRIORITY_MAX - TQ_PRIORITY_MIN + 1][256];
	const char *argv[3 + TQ_PRIORITY_MAX - TQ_PRIORITY_MIN + 1];
	char nkeys[8];
	redisReply *reply;
	int k = 0, r;

	*n = 0;
	r = ensure_connected(q);
	if (r)
		return r;
	snprintf(nkeys, sizeof(nkeys), "%d", TQ_PRIORITY_MAX - TQ_PRIORITY_MIN + 1);
	argv[k++] = "EVAL";
	argv[k++] = backlog_lua;
	argv[k++] = nkeys;
	for (int prio = TQ_PRIORITY_MIN; prio <= TQ_PRIORITY_MAX; prio++) {
		if (tq_key_ready(keys[prio - TQ_PRIORITY_MIN], sizeof(keys[0]), q->prefix, queue,
				 prio))
			return -ENAMETOOLONG;
		argv[k++] = keys[prio - TQ_PRIORITY_MIN];
	}
	reply = redisCommandArgv(q->ctx, k, argv, NULL);
	if (!reply)
		return broken(q);
	r = reply->type == REDIS_REPLY_INTEGER ? 0 : -EIO;
	if (r == 0)
		*n = reply->integer;
	freeReplyObject(reply);
	return r;
}
