/*
 * email.c - the "email" job type: send one plain-text mail over SMTP with
 * libcurl.
 *
 * Payload {"to": S or [S, ...], "subject": S, "text": S}.
 *
 * Configuration (block plugin.email):
 *     smtp_url = "smtp://127.0.0.1:25";   # or smtps://host:465
 *     from = "taskq@example.org";
 *     username = "..."; password = "...";  # optional
 *     starttls = false;                    # require STARTTLS on smtp://
 *     timeout_s = 30;
 *
 * The message has Date, From, To, Subject (RFC 2047 encoded when it is not
 * ASCII), Message-ID (<job id@domain of from>, the same on every attempt so
 * that a resent mail can be recognised), MIME-Version and a UTF-8
 * text/plain body with CRLF line ends; libcurl does the SMTP dot-stuffing.
 *
 * Outcomes: all recipients accepted completes with {"accepted": N}; an
 * SMTP 5xx answer fails permanently; 4xx answers and network errors retry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <taskq/plugin.h>

#define EMAIL_MAX_RCPTS 50
#define EMAIL_MAX_ADDR 254
#define EMAIL_MAX_SUBJECT 900
#define EMAIL_MAX_TEXT (1024 * 1024)
#define EMAIL_DEFAULT_TIMEOUT_S 30
#define EMAIL_MAX_TIMEOUT_S 3600
/* Bytes of subject text per RFC 2047 encoded-word (60 base64 chars). */
#define EMAIL_WORD_BYTES 45

struct email_conf {
	/* borrowed from the host's configuration */
	const char *smtp_url; /* NULL: not configured */
	const char *from;
	const char *username;
	const char *password;
	int starttls;
	long timeout_s;
};

struct email_req {
	cJSON *doc; /* owns the strings below */
	const char *to[EMAIL_MAX_RCPTS];
	size_t n_to;
	const char *subject;
	const char *text;
};

/* A growing message buffer; on ENOMEM it stays failed. */
struct email_buf {
	char *data;
	size_t len;
	size_t cap;
	int failed;
};

/* The message handed to curl's read callback. */
struct email_reader {
	const char *data;
	size_t len;
	size_t off;
};

struct email_progress {
	const struct taskq_host *host;
	struct taskq_job *job;
};

/*
 * Something@something in printable ASCII, without the characters that
 * would let an address break out of a header or an SMTP command.
 */
static int email_addr_ok(const char *s)
{
	static const char bad[] = "<>()[]\\,;:\" ";
	const char *at = NULL, *p;
	size_t n = 0;

	for (p = s; *p; p++, n++) {
		unsigned char c = (unsigned char)*p;

		if (n >= EMAIL_MAX_ADDR || c <= 0x20 || c >= 0x7f || strchr(bad, c))
			return 0;
		if (c == '@') {
			if (at)
				return 0;
			at = p;
		}
	}
	return at && at != s && at[1] != '\0';
}

/* Text without CR or LF (or other control characters but tab). */
static int email_header_text_ok(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static void email_req_free(struct email_req *req)
{
	cJSON_Delete(req->doc);
	memset(req, 0, sizeof(*req));
}

/* Read and check a payload: 0, or -1 with a reason in err. */
static int email_parse(const struct email_conf *conf, const char *json,
		       struct email_req *req, char *err, size_t errlen)
{
	const cJSON *v, *a;

	memset(req, 0, sizeof(*req));
	if (!conf->smtp_url || !conf->from) {
		snprintf(err, errlen,
			 "plugin.email.smtp_url and plugin.email.from are not set");
		goto fail;
	}
	req->doc = cJSON_Parse(json);
	if (!cJSON_IsObject(req->doc)) {
		snprintf(err, errlen,
			 "payload must be a JSON object like {\"to\": \"a@example.org\", \"subject\": \"...\", \"text\": \"...\"}");
		goto fail;
	}

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "to");
	if (cJSON_IsString(v)) {
		req->to[req->n_to++] = v->valuestring;
	} else if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(a, v) {
			if (req->n_to == EMAIL_MAX_RCPTS || !cJSON_IsString(a))
				goto bad_to;
			req->to[req->n_to++] = a->valuestring;
		}
	}
	if (req->n_to == 0)
		goto bad_to;
	for (size_t i = 0; i < req->n_to; i++) {
		if (!email_addr_ok(req->to[i])) {
			snprintf(err, errlen,
				 "\"to\": \"%.64s\" does not look like an address",
				 req->to[i]);
			goto fail;
		}
	}

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "subject");
	if (!cJSON_IsString(v) || strlen(v->valuestring) > EMAIL_MAX_SUBJECT ||
	    !email_header_text_ok(v->valuestring)) {
		snprintf(err, errlen,
			 "\"subject\" is required: one line of at most %d bytes",
			 EMAIL_MAX_SUBJECT);
		goto fail;
	}
	req->subject = v->valuestring;

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "text");
	if (!cJSON_IsString(v) || strlen(v->valuestring) > EMAIL_MAX_TEXT) {
		snprintf(err, errlen,
			 "\"text\" is required: a string of at most %d bytes",
			 EMAIL_MAX_TEXT);
		goto fail;
	}
	req->text = v->valuestring;
	return 0;

bad_to:
	snprintf(err, errlen,
		 "\"to\" is required: an address or an array of 1 to %d addresses",
		 EMAIL_MAX_RCPTS);
fail:
	email_req_free(req);
	return -1;
}

/* ---- the message ------------------------------------------------------ */

static void email_put(struct email_buf *b, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (b->failed)
		return;
	if (n > b->cap - b->len) {
		cap = b->cap ? b->cap : 1024;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->failed = 1;
				return;
			}
			cap *= 2;
		}
		p = realloc(b->data, cap);
		if (!p) {
			b->failed = 1;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

static void email_puts(struct email_buf *b, const char *s)
{
	email_put(b, s, strlen(s));
}

static void email_base64(struct email_buf *b, const unsigned char *s, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char quad[4];
	size_t i;

	for (i = 0; i < n; i += 3) {
		unsigned int v = (unsigned int)s[i] << 16;

		if (i + 1 < n)
			v |= (unsigned int)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		quad[0] = tab[(v >> 18) & 63];
		quad[1] = tab[(v >> 12) & 63];
		quad[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		quad[3] = i + 2 < n ? tab[v & 63] : '=';
		email_put(b, quad, 4);
	}
}

/*
 * The subject as is when it is ASCII, else as RFC 2047 "B" encoded-words
 * of whole UTF-8 characters on folded lines.
 */
static void email_put_subject(struct email_buf *b, const char *subject)
{
	const unsigned char *s = (const unsigned char *)subject;
	size_t len = strlen(subject), i, start, end;
	int ascii = 1;

	for (i = 0; i < len; i++)
		if (s[i] >= 0x80)
			ascii = 0;
	if (ascii) {
		email_put(b, subject, len);
		return;
	}
	for (start = 0; start < len; start = end) {
		end = start + EMAIL_WORD_BYTES < len ? start + EMAIL_WORD_BYTES : len;
		/* do not cut a character: back up over continuation bytes */
		while (end < len && end > start + 1 && (s[end] & 0xC0) == 0x80)
			end--;
		if (start > 0)
			email_puts(b, "\r\n ");
		email_puts(b, "=?UTF-8?B?");
		email_base64(b, s + start, end - start);
		email_puts(b, "?=");
	}
}

/* RFC 5322 date, in UTC, without the locale. */
static void email_put_date(struct email_buf *b)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
					    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
					      "May", "Jun", "Jul", "Aug",
					      "Sep", "Oct", "Nov", "Dec" };
	char line[64];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	if (!gmtime_r(&now, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		b->failed = 1;
		return;
	}
	n = snprintf(line, sizeof(line), "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
		     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
		     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		b->failed = 1;
		return;
	}
	email_put(b, line, (size_t)n);
}

/* The body with every line ending (LF, CR or CRLF) made CRLF. */
static void email_put_text(struct email_buf *b, const char *text)
{
	const char *p = text, *line = text;

	for (; *p; p++) {
		if (*p != '\n' && *p != '\r')
			continue;
		email_put(b, line, (size_t)(p - line));
		email_puts(b, "\r\n");
		if (*p == '\r' && p[1] == '\n')
			p++;
		line = p + 1;
	}
	email_put(b, line, (size_t)(p - line));
	if (p != line)
		email_puts(b, "\r\n");
}

/* Build the message: 0 or -1 (ENOMEM). */
static int email_message(const struct email_conf *conf,
			 const struct email_req *req, const char *job_id,
			 struct email_buf *b)
{
	const char *domain = strchr(conf->from, '@') + 1;
	size_t i;

	email_put_date(b);
	email_puts(b, "From: ");
	email_puts(b, conf->from);
	email_puts(b, "\r\nTo: ");
	for (i = 0; i < req->n_to; i++) {
		if (i > 0)
			email_puts(b, ",\r\n ");
		email_puts(b, req->to[i]);
	}
	email_puts(b, "\r\nSubject: ");
	email_put_subject(b, req->subject);
	email_puts(b, "\r\nMessage-ID: <");
	email_puts(b, job_id);
	email_puts(b, "@");
	email_puts(b, domain);
	email_puts(b, ">\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: text/plain; charset=UTF-8\r\n"
		      "Content-Transfer-Encoding: 8bit\r\n\r\n");
	email_put_text(b, req->text);
	return b->failed ? -1 : 0;
}

/* ---- libcurl callbacks ------------------------------------------------ */

static size_t email_on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct email_reader *r = arg;
	size_t n = size * nmemb;

	if (n > r->len - r->off)
		n = r->len - r->off;
	memcpy(buf, r->data + r->off, n);
	r->off += n;
	return n;
}

static int email_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
			     curl_off_t ultotal, curl_off_t ulnow)
{
	struct email_progress *p = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return p->host->is_cancelled(p->job) ? 1 : 0;
}

/* ---- the job type ----------------------------------------------------- */

static int email_validate(const struct taskq_host *host, const char *payload,
			  char *err, size_t errlen, void *user_data)
{
	struct email_req req;

	(void)host;
	if (email_parse(user_data, payload, &req, err, errlen) < 0)
		return 1;
	email_req_free(&req);
	return 0;
}

static enum taskq_outcome email_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	const struct email_conf *conf = user_data;
	enum taskq_outcome outcome = TASKQ_FAIL;
	char curl_err[CURL_ERROR_SIZE] = "";
	struct email_progress prog = { host, job };
	struct email_buf msg = { 0 };
	struct email_reader reader;
	struct curl_slist *rcpts = NULL, *l;
	struct email_req req;
	char reason[256], addr[EMAIL_MAX_ADDR + 3], result[64];
	int64_t remaining;
	long timeout_ms, code = 0;
	CURL *c = NULL;
	CURLcode cc;
	size_t i;
	int n;

	if (email_parse(conf, host->job_payload(job), &req, reason,
			sizeof(reason)) < 0) {
		host->set_error(job, "email: %s", reason);
		return TASKQ_FAIL;
	}
	remaining = host->job_remaining_ms(job);
	if (remaining <= 0 || host->is_cancelled(job)) {
		host->set_error(job, "email: cancelled or timed out before sending");
		outcome = TASKQ_RETRY;
		goto out;
	}
	timeout_ms = conf->timeout_s * 1000L;
	if (remaining < timeout_ms)
		timeout_ms = (long)remaining;

	for (i = 0; i < req.n_to; i++) {
		n = snprintf(addr, sizeof(addr), "<%s>", req.to[i]);
		l = n > 0 && (size_t)n < sizeof(addr) ?
			    curl_slist_append(rcpts, addr) : NULL;
		if (!l)
			goto oom;
		rcpts = l;
	}
	if (email_message(conf, &req, host->job_id(job), &msg) < 0)
		goto oom;
	reader.data = msg.data;
	reader.len = msg.len;
	reader.off = 0;
	n = snprintf(addr, sizeof(addr), "<%s>", conf->from);
	if (n < 0 || (size_t)n >= sizeof(addr))
		goto oom;

	c = curl_easy_init();
	if (!c)
		goto oom;
	curl_easy_setopt(c, CURLOPT_URL, conf->smtp_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, addr);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, email_on_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &reader);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg.len);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, email_on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &prog);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (conf->starttls)
		curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	if (conf->username)
		curl_easy_setopt(c, CURLOPT_USERNAME, conf->username);
	if (conf->password)
		curl_easy_setopt(c, CURLOPT_PASSWORD, conf->password);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (cc == CURLE_OK) {
		n = snprintf(result, sizeof(result), "{\"accepted\":%zu}", req.n_to);
		if (n < 0 || (size_t)n >= sizeof(result) ||
		    host->set_result(job, result) != TASKQ_OK) {
			host->set_error(job, "email: cannot set the result");
			outcome = TASKQ_FAIL;
			goto out;
		}
		outcome = TASKQ_DONE;
	} else if (cc == CURLE_ABORTED_BY_CALLBACK) {
		host->set_error(job, "email: cancelled or timed out");
		outcome = TASKQ_RETRY;
	} else if (code >= 500 && code <= 599) {
		host->set_error(job, "email: rejected by the SMTP server: %s",
				curl_err[0] ? curl_err : curl_easy_strerror(cc));
		outcome = TASKQ_FAIL;
	} else {
		host->set_error(job, "email: %s%s%s", curl_easy_strerror(cc),
				curl_err[0] ? ": " : "", curl_err);
		outcome = cc == CURLE_LOGIN_DENIED || cc == CURLE_URL_MALFORMAT ||
					  cc == CURLE_UNSUPPORTED_PROTOCOL ?
				  TASKQ_FAIL :
				  TASKQ_RETRY;
	}
	goto out;

oom:
	host->set_error(job, "email: out of memory");
	outcome = TASKQ_RETRY;
out:
	curl_easy_cleanup(c);
	curl_slist_free_all(rcpts);
	free(msg.data);
	email_req_free(&req);
	return outcome;
}

/* ---- plugin ----------------------------------------------------------- */

/* Optional string setting: 0 (absent leaves *out alone) or -1. */
static int email_conf_string(const struct taskq_host *host,
			     const struct taskq_config *cfg, const char *name,
			     const char **out, char *err, size_t errlen)
{
	int rc = host->config_string(cfg, name, out);

	if (rc == TASKQ_OK || rc == TASKQ_ENOENT)
		return 0;
	snprintf(err, errlen, "%s must be a string", name);
	return -1;
}

static int email_init(const struct taskq_host *host,
		      const struct taskq_config *cfg, void **user_data,
		      char *err, size_t errlen)
{
	struct email_conf *conf;
	long long ll;
	int rc;

	conf = calloc(1, sizeof(*conf));
	if (!conf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (email_conf_string(host, cfg, "smtp_url", &conf->smtp_url, err, errlen) ||
	    email_conf_string(host, cfg, "from", &conf->from, err, errlen) ||
	    email_conf_string(host, cfg, "username", &conf->username, err, errlen) ||
	    email_conf_string(host, cfg, "password", &conf->password, err, errlen))
		goto fail;
	if (conf->smtp_url && strncmp(conf->smtp_url, "smtp://", 7) != 0 &&
	    strncmp(conf->smtp_url, "smtps://", 8) != 0) {
		snprintf(err, errlen, "smtp_url must start with smtp:// or smtps://");
		goto fail;
	}
	if (conf->from && !email_addr_ok(conf->from)) {
		snprintf(err, errlen, "from does not look like an address");
		goto fail;
	}
	if (!conf->smtp_url || !conf->from)
		host->log(NULL, TASKQ_LOG_WARN,
			  "plugin.email.smtp_url or plugin.email.from is not set: every mail is refused");

	rc = host->config_bool(cfg, "starttls", &conf->starttls);
	if (rc != TASKQ_OK && rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "starttls must be true or false");
		goto fail;
	}
	conf->timeout_s = EMAIL_DEFAULT_TIMEOUT_S;
	rc = host->config_int(cfg, "timeout_s", &ll);
	if (rc == TASKQ_OK) {
		if (ll < 1 || ll > EMAIL_MAX_TIMEOUT_S) {
			snprintf(err, errlen, "timeout_s must be from 1 to %d",
				 EMAIL_MAX_TIMEOUT_S);
			goto fail;
		}
		conf->timeout_s = (long)ll;
	} else if (rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "timeout_s must be an integer");
		goto fail;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed");
		goto fail;
	}
	*user_data = conf;
	return 0;
fail:
	free(conf);
	return -1;
}

static void email_fini(void *user_data)
{
	free(user_data);
	curl_global_cleanup();
}

static const struct taskq_job_type email_types[] = {
	{ .name = "email", .handler = email_run, .validate = email_validate },
};

TASKQ_PLUGIN("email", "1.0.0", email_types, email_init, email_fini)
