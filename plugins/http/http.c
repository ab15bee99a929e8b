/*
 * http.c - the "http" job type: one HTTP request with libcurl.
 *
 * Payload {"url": S, "method": S, "headers": {name: value}, "body": S,
 * "timeout_s": N}; only "url" is required, "method" is one of GET, POST,
 * PUT, PATCH, DELETE, HEAD (default GET).
 *
 * Configuration (block plugin.http):
 *     allow_hosts = ["127.0.0.1", "example.org"];  # the only hosts reached
 *     max_response_bytes = 65536;                   # body kept in the result
 *     user_agent = "taskq-http/1.0";
 *
 * A URL whose host is not in allow_hosts is refused by the validator (400
 * INVALID_PAYLOAD) and again by the handler; without allow_hosts every URL
 * is refused.  Only http and https are spoken and redirects are never
 * followed, so a request cannot leave the allowed hosts.
 *
 * Outcomes: 2xx completes with {"status": N, "body": S, "truncated": B};
 * 408, 429, 5xx and network errors retry (a Retry-After in seconds is
 * honoured); other statuses fail permanently.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <taskq/plugin.h>

#include "plugin_utf8.h"

#define HTTP_MAX_HOSTS 256
#define HTTP_MAX_URL 8192
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEADER_NAME 256
#define HTTP_MAX_HEADER_VALUE 8192
#define HTTP_MAX_BODY (1024 * 1024)
#define HTTP_MAX_TIMEOUT_S 86400
#define HTTP_DEFAULT_RESPONSE_BYTES 65536
#define HTTP_MAX_RESPONSE_BYTES (512 * 1024)
#define HTTP_MAX_RETRY_AFTER_S 86400
/* Without a job deadline nor timeout_s, a request still ends. */
#define HTTP_DEFAULT_TIMEOUT_MS (300 * 1000L)
#define HTTP_CONNECT_TIMEOUT_MS (30 * 1000L)
#define HTTP_DEFAULT_USER_AGENT "taskq-http/1.0"

struct http_conf {
	const char *hosts[HTTP_MAX_HOSTS]; /* borrowed from the host's config */
	size_t n_hosts;
	size_t max_response;
	const char *user_agent;
};

/* One request, as read from a payload. */
struct http_req {
	cJSON *doc;      /* owns every string below */
	CURLU *url;
	const char *url_text;
	const char *method;
	const cJSON *headers; /* object or NULL */
	const char *body;     /* NULL: none */
	long timeout_s;       /* 0: none */
};

/* What came back. */
struct http_resp {
	char *body;
	size_t len;
	size_t max;
	int truncated;
	long retry_after; /* -1: none */
	const struct taskq_host *host;
	struct taskq_job *job;
};

static const char *const http_methods[] = { "GET",    "POST", "PUT",
					    "PATCH",  "DELETE", "HEAD" };

static void http_req_free(struct http_req *req)
{
	curl_url_cleanup(req->url);
	cJSON_Delete(req->doc);
	memset(req, 0, sizeof(*req));
}

/* Compare hosts, ignoring case and the brackets of an IPv6 literal. */
static int http_host_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la >= 2 && a[0] == '[' && a[la - 1] == ']') {
		a++;
		la -= 2;
	}
	if (lb >= 2 && b[0] == '[' && b[lb - 1] == ']') {
		b++;
		lb -= 2;
	}
	return la == lb && strncasecmp(a, b, la) == 0;
}

static int http_host_allowed(const struct http_conf *conf, const char *host)
{
	size_t i;

	for (i = 0; i < conf->n_hosts; i++)
		if (http_host_equal(conf->hosts[i], host))
			return 1;
	return 0;
}

/* RFC 9110 token characters. */
static int http_is_token(const char *s)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if (!*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || strchr(extra, c)))
			return 0;
	}
	return 1;
}

/* A header value: no control characters but tab. */
static int http_is_field_value(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* Parse and check the URL: scheme http(s) and an allowed host. */
static int http_parse_url(const struct http_conf *conf, struct http_req *req,
			  char *err, size_t errlen)
{
	char *scheme = NULL, *host = NULL;
	int rc = -1;

	req->url = curl_url();
	if (!req->url) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (curl_url_set(req->url, CURLUPART_URL, req->url_text, 0) != CURLUE_OK) {
		snprintf(err, errlen, "\"url\" is not a valid absolute URL");
		goto out;
	}
	if (curl_url_get(req->url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
		snprintf(err, errlen, "\"url\" must be an http or https URL");
		goto out;
	}
	if (curl_url_get(req->url, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    !*host) {
		snprintf(err, errlen, "\"url\" has no host");
		goto out;
	}
	if (!http_host_allowed(conf, host)) {
		if (conf->n_hosts == 0)
			snprintf(err, errlen,
				 "host \"%.200s\" is not allowed (plugin.http.allow_hosts is empty)",
				 host);
		else
			snprintf(err, errlen,
				 "host \"%.200s\" is not in plugin.http.allow_hosts",
				 host);
		goto out;
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	return rc;
}

static int http_parse_headers(const cJSON *headers, char *err, size_t errlen)
{
	const cJSON *h;
	int n = 0;

	if (!cJSON_IsObject(headers)) {
		snprintf(err, errlen, "\"headers\" must be an object of strings");
		return -1;
	}
	cJSON_ArrayForEach(h, headers) {
		if (++n > HTTP_MAX_HEADERS) {
			snprintf(err, errlen, "more than %d headers",
				 HTTP_MAX_HEADERS);
			return -1;
		}
		if (!h->string || strlen(h->string) > HTTP_MAX_HEADER_NAME ||
		    !http_is_token(h->string)) {
			snprintf(err, errlen, "header names must be tokens of at most %d characters",
				 HTTP_MAX_HEADER_NAME);
			return -1;
		}
		if (!cJSON_IsString(h) ||
		    strlen(h->valuestring) > HTTP_MAX_HEADER_VALUE ||
		    !http_is_field_value(h->valuestring)) {
			snprintf(err, errlen,
				 "header \"%.64s\" must be a string of at most %d characters without control characters",
				 h->string, HTTP_MAX_HEADER_VALUE);
			return -1;
		}
	}
	return 0;
}

/* Read and check a payload: 0, or -1 with a reason in err. */
static int http_parse(const struct http_conf *conf, const char *json,
		      struct http_req *req, char *err, size_t errlen)
{
	const cJSON *v;
	size_t i;
	double d;

	memset(req, 0, sizeof(*req));
	req->method = "GET";
	req->doc = cJSON_Parse(json);
	if (!cJSON_IsObject(req->doc)) {
		snprintf(err, errlen,
			 "payload must be a JSON object like {\"url\": \"https://example.org/\"}");
		goto fail;
	}
	v = cJSON_GetObjectItemCaseSensitive(req->doc, "url");
	if (!cJSON_IsString(v) || !*v->valuestring ||
	    strlen(v->valuestring) > HTTP_MAX_URL) {
		snprintf(err, errlen, "\"url\" is required: a string of at most %d characters",
			 HTTP_MAX_URL);
		goto fail;
	}
	req->url_text = v->valuestring;

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "method");
	if (v) {
		if (!cJSON_IsString(v))
			goto bad_method;
		for (i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++)
			if (!strcmp(v->valuestring, http_methods[i]))
				break;
		if (i == sizeof(http_methods) / sizeof(http_methods[0]))
			goto bad_method;
		req->method = http_methods[i];
	}

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "headers");
	if (v) {
		if (http_parse_headers(v, err, errlen) < 0)
			goto fail;
		req->headers = v;
	}

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "body");
	if (v) {
		if (!cJSON_IsString(v) || strlen(v->valuestring) > HTTP_MAX_BODY) {
			snprintf(err, errlen, "\"body\" must be a string of at most %d bytes",
				 HTTP_MAX_BODY);
			goto fail;
		}
		req->body = v->valuestring;
	}

	v = cJSON_GetObjectItemCaseSensitive(req->doc, "timeout_s");
	if (v) {
		d = cJSON_IsNumber(v) ? v->valuedouble : -1;
		if (!(d >= 1 && d <= HTTP_MAX_TIMEOUT_S) || d != (double)(long)d) {
			snprintf(err, errlen, "\"timeout_s\" must be an integer from 1 to %d",
				 HTTP_MAX_TIMEOUT_S);
			goto fail;
		}
		req->timeout_s = (long)d;
	}

	if (http_parse_url(conf, req, err, errlen) < 0)
		goto fail;
	return 0;

bad_method:
	snprintf(err, errlen,
		 "\"method\" must be one of GET, POST, PUT, PATCH, DELETE, HEAD");
fail:
	http_req_free(req);
	return -1;
}

/* ---- libcurl callbacks ---------------------------------------------- */

static size_t http_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_resp *resp = arg;
	size_t n = size * nmemb;
	size_t room = resp->max - resp->len;

	if (n > room) {
		/* keep what fits, then stop the transfer: the rest is dropped */
		memcpy(resp->body + resp->len, data, room);
		resp->len += room;
		resp->truncated = 1;
		return 0;
	}
	memcpy(resp->body + resp->len, data, n);
	resp->len += n;
	return n;
}

static size_t http_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	static const char name[] = "retry-after:";
	struct http_resp *resp = arg;
	size_t n = size * nmemb;
	char value[32];
	size_t i, j = 0;
	char *end;
	long s;

	/* a new status line starts a new response (after 100 Continue) */
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		resp->retry_after = -1;
		return n;
	}
	if (n <= sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1))
		return n;
	for (i = sizeof(name) - 1; i < n && j + 1 < sizeof(value); i++) {
		if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' ||
		    data[i] == '\n')
			continue;
		value[j++] = data[i];
	}
	value[j] = '\0';
	/* only the delay-seconds form; an HTTP date is ignored */
	if (j == 0 || value[0] < '0' || value[0] > '9')
		return n;
	errno = 0;
	s = strtol(value, &end, 10);
	if (*end || errno == ERANGE || s > HTTP_MAX_RETRY_AFTER_S)
		s = HTTP_MAX_RETRY_AFTER_S;
	resp->retry_after = s;
	return n;
}

static int http_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
			    curl_off_t ultotal, curl_off_t ulnow)
{
	struct http_resp *resp = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return resp->host->is_cancelled(resp->job) ? 1 : 0;
}

/* ---- result ----------------------------------------------------------- */

static int http_set_result(const struct taskq_host *host, struct taskq_job *job,
			   long status, const struct http_resp *resp)
{
	cJSON *doc = NULL;
	char *body = NULL, *text = NULL;
	int rc = -1;

	body = plugin_utf8_dup(resp->body, resp->len);
	doc = cJSON_CreateObject();
	if (!body || !doc || !cJSON_AddNumberToObject(doc, "status", (double)status) ||
	    !cJSON_AddStringToObject(doc, "body", body) ||
	    !cJSON_AddBoolToObject(doc, "truncated", resp->truncated))
		goto out;
	text = cJSON_PrintUnformatted(doc);
	if (!text)
		goto out;
	rc = host->set_result(job, text) == TASKQ_OK ? 0 : -1;
out:
	free(text);
	free(body);
	cJSON_Delete(doc);
	return rc;
}

/* ---- the job type ----------------------------------------------------- */

static int http_validate(const struct taskq_host *host, const char *payload,
			 char *err, size_t errlen, void *user_data)
{
	struct http_req req;

	(void)host;
	if (http_parse(user_data, payload, &req, err, errlen) < 0)
		return 1;
	http_req_free(&req);
	return 0;
}

/* Add "Name: value" (or "Name;" for an empty value) to *list. */
static int http_add_header(struct curl_slist **list, const char *name,
			   const char *value)
{
	char line[HTTP_MAX_HEADER_NAME + HTTP_MAX_HEADER_VALUE + 4];
	struct curl_slist *l;
	int n;

	if (*value)
		n = snprintf(line, sizeof(line), "%s: %s", name, value);
	else
		n = snprintf(line, sizeof(line), "%s;", name);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	l = curl_slist_append(*list, line);
	if (!l)
		return -1;
	*list = l;
	return 0;
}

/* Errors of the request itself, not of the network: retrying won't help. */
static int http_curl_permanent(CURLcode cc)
{
	switch (cc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_TOO_MANY_REDIRECTS:
		return 1;
	default:
		return 0;
	}
}

static enum taskq_outcome http_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	const struct http_conf *conf = user_data;
	enum taskq_outcome outcome = TASKQ_FAIL;
	char curl_err[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	struct http_resp resp = { .retry_after = -1 };
	struct http_req req;
	const cJSON *h;
	char reason[256];
	CURL *c = NULL;
	int64_t remaining;
	long timeout_ms, status = 0;
	CURLcode cc;

	if (http_parse(conf, host->job_payload(job), &req, reason,
		       sizeof(reason)) < 0) {
		host->set_error(job, "http: %s", reason);
		return TASKQ_FAIL;
	}

	remaining = host->job_remaining_ms(job);
	if (remaining <= 0 || host->is_cancelled(job)) {
		host->set_error(job, "http: cancelled or timed out before the request");
		outcome = TASKQ_RETRY;
		goto out;
	}
	/* timeout_s, or a default when there is none, within the job's time */
	timeout_ms = req.timeout_s ? req.timeout_s * 1000L : HTTP_DEFAULT_TIMEOUT_MS;
	if (remaining < timeout_ms)
		timeout_ms = (long)remaining;

	resp.max = conf->max_response;
	resp.body = malloc(resp.max ? resp.max : 1);
	resp.host = host;
	resp.job = job;
	c = curl_easy_init();
	if (!resp.body || !c) {
		host->set_error(job, "http: out of memory");
		outcome = TASKQ_RETRY;
		goto out;
	}

	if (req.headers) {
		cJSON_ArrayForEach(h, req.headers) {
			if (http_add_header(&hdrs, h->string, h->valuestring) < 0) {
				host->set_error(job, "http: out of memory");
				outcome = TASKQ_RETRY;
				goto out;
			}
		}
	}

	curl_easy_setopt(c, CURLOPT_CURLU, req.url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 timeout_ms < HTTP_CONNECT_TIMEOUT_MS ? timeout_ms :
								HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(c, CURLOPT_USERAGENT, conf->user_agent);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, http_on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &resp);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (req.body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)strlen(req.body));
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body);
	}
	if (!strcmp(req.method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(req.method, "GET") != 0 || req.body)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	/* our own stop at max_response_bytes is not an error */
	if (cc == CURLE_WRITE_ERROR && resp.truncated)
		cc = CURLE_OK;

	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		host->set_error(job, "http: %s %s cancelled or timed out",
				req.method, req.url_text);
		outcome = TASKQ_RETRY;
		goto out;
	}
	if (cc != CURLE_OK) {
		host->set_error(job, "http: %s %s: %s%s%s", req.method,
				req.url_text, curl_easy_strerror(cc),
				curl_err[0] ? ": " : "", curl_err);
		outcome = http_curl_permanent(cc) ? TASKQ_FAIL : TASKQ_RETRY;
		goto out;
	}

	if (http_set_result(host, job, status, &resp) < 0) {
		host->set_error(job, "http: cannot set the result (lower plugin.http.max_response_bytes?)");
		outcome = TASKQ_FAIL;
		goto out;
	}
	if (status >= 200 && status <= 299) {
		outcome = TASKQ_DONE;
	} else if (status == 408 || status == 429 || (status >= 500 && status <= 599)) {
		host->set_error(job, "http: %s %s: HTTP status %ld", req.method,
				req.url_text, status);
		if (resp.retry_after >= 0)
			host->retry_after(job, (unsigned int)resp.retry_after);
		outcome = TASKQ_RETRY;
	} else if (status >= 300 && status <= 399) {
		host->set_error(job, "http: %s %s: HTTP status %ld (redirects are not followed)",
				req.method, req.url_text, status);
		outcome = TASKQ_FAIL;
	} else {
		host->set_error(job, "http: %s %s: HTTP status %ld", req.method,
				req.url_text, status);
		outcome = TASKQ_FAIL;
	}
out:
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	free(resp.body);
	http_req_free(&req);
	return outcome;
}

/* ---- plugin ----------------------------------------------------------- */

static int http_init(const struct taskq_host *host, const struct taskq_config *cfg,
		     void **user_data, char *err, size_t errlen)
{
	struct http_conf *conf = NULL;
	const char *s;
	long long ll;
	char path[32];
	int rc;

	conf = calloc(1, sizeof(*conf));
	if (!conf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (conf->n_hosts = 0;; conf->n_hosts++) {
		if (snprintf(path, sizeof(path), "allow_hosts.[%zu]", conf->n_hosts) >=
		    (int)sizeof(path))
			goto fail_hosts;
		rc = host->config_string(cfg, path, &s);
		if (rc == TASKQ_ENOENT)
			break;
		if (rc != TASKQ_OK || !*s)
			goto fail_hosts;
		if (conf->n_hosts == HTTP_MAX_HOSTS) {
			snprintf(err, errlen, "allow_hosts: more than %d hosts",
				 HTTP_MAX_HOSTS);
			goto fail;
		}
		conf->hosts[conf->n_hosts] = s;
	}
	/* a single host written as a string is fine too */
	if (conf->n_hosts == 0 && host->config_string(cfg, "allow_hosts", &s) == TASKQ_OK) {
		if (!*s)
			goto fail_hosts;
		conf->hosts[conf->n_hosts++] = s;
	}
	if (conf->n_hosts == 0)
		host->log(NULL, TASKQ_LOG_WARN,
			  "plugin.http.allow_hosts is not set: every URL is refused");

	conf->max_response = HTTP_DEFAULT_RESPONSE_BYTES;
	rc = host->config_int(cfg, "max_response_bytes", &ll);
	if (rc == TASKQ_OK) {
		if (ll < 0 || ll > HTTP_MAX_RESPONSE_BYTES) {
			snprintf(err, errlen, "max_response_bytes must be from 0 to %d",
				 HTTP_MAX_RESPONSE_BYTES);
			goto fail;
		}
		conf->max_response = (size_t)ll;
	} else if (rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "max_response_bytes must be an integer");
		goto fail;
	}

	conf->user_agent = HTTP_DEFAULT_USER_AGENT;
	rc = host->config_string(cfg, "user_agent", &s);
	if (rc == TASKQ_OK) {
		if (!http_is_field_value(s) || strlen(s) > HTTP_MAX_HEADER_VALUE) {
			snprintf(err, errlen, "user_agent has control characters or is too long");
			goto fail;
		}
		conf->user_agent = s;
	} else if (rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "user_agent must be a string");
		goto fail;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed");
		goto fail;
	}
	*user_data = conf;
	return 0;

fail_hosts:
	snprintf(err, errlen, "allow_hosts must be a list of non-empty strings");
fail:
	free(conf);
	return -1;
}

static void http_fini(void *user_data)
{
	free(user_data);
	curl_global_cleanup();
}

static const struct taskq_job_type http_types[] = {
	{ .name = "http", .handler = http_run, .validate = http_validate },
};

TASKQ_PLUGIN("http", "1.0.0", http_types, http_init, http_fini)
