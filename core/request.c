/*
 * request.c - parsing and validation of API request bodies.
 *
 * Every refusal names the field and what it accepts, so that a client can
 * fix its request from the error alone.  Nothing here does I/O.
 */
#include "request.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest RFC 3339 text accepted (a nanosecond fraction and an offset fit
 * comfortably). */
#define RFC3339_MAX_LEN 64

void tq_api_error_set(struct tq_api_error *err, int status, const char *code,
		      const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	err->status = status;
	err->code = code;
	va_start(ap, fmt);
	/* Truncation is acceptable: the message is for humans. */
	if (vsnprintf(err->message, sizeof(err->message), fmt, ap) < 0)
		err->message[0] = '\0';
	va_end(ap);
}

void tq_job_spec_free(struct tq_job_spec *spec)
{
	if (!spec)
		return;
	free(spec->type);
	free(spec->payload);
	free(spec->queue);
	free(spec->idempotency_key);
	memset(spec, 0, sizeof(*spec));
}

/* --- RFC 3339 ----------------------------------------------------------- */

static bool is_leap(long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(long y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Read exactly n decimal digits at *p; advance *p.  -1 when not digits. */
static long read_digits(const char **p, int n)
{
	long v = 0;
	int i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)(*p)[i];

		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	return v;
}

static bool expect_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

int tq_parse_rfc3339_ms(const char *s, int64_t *out_ms)
{
	const char *p = s;
	long year, month, day, hour, minute, second, oh, om;
	int64_t ms = 0, offset_s = 0, days, total;
	int frac_digits = 0;

	if (!s || !out_ms || strnlen(s, RFC3339_MAX_LEN + 1) > RFC3339_MAX_LEN)
		return -EINVAL;

	if ((year = read_digits(&p, 4)) < 0 || !expect_char(&p, '-') ||
	    (month = read_digits(&p, 2)) < 0 || !expect_char(&p, '-') ||
	    (day = read_digits(&p, 2)) < 0)
		return -EINVAL;
	/* RFC 3339 allows "t" and, by note, a space in place of "T". */
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if ((hour = read_digits(&p, 2)) < 0 || !expect_char(&p, ':') ||
	    (minute = read_digits(&p, 2)) < 0 || !expect_char(&p, ':') ||
	    (second = read_digits(&p, 2)) < 0)
		return -EINVAL;
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			if (frac_digits < 3)
				ms = ms * 10 + (*p - '0');
			frac_digits++;
			p++;
		}
		if (frac_digits == 0)
			return -EINVAL;
		for (; frac_digits < 3; frac_digits++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;

		p++;
		if ((oh = read_digits(&p, 2)) < 0 || !expect_char(&p, ':') ||
		    (om = read_digits(&p, 2)) < 0)
			return -EINVAL;
		if (oh > 23 || om > 59)
			return -EINVAL;
		offset_s = sign * (oh * 3600 + om * 60);
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;

	if (month < 1 || month > 12 || day < 1 ||
	    day > days_in_month(year, (int)month) || hour > 23 ||
	    minute > 59 || second > 60)
		return -EINVAL;

	/* A leap second (:60) is counted as the first second of the next
	 * minute, as POSIX time does. */
	days = days_from_civil(year, (int)month, (int)day);
	total = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
	*out_ms = total * 1000 + ms;
	return 0;
}

/* --- raw JSON text (already accepted by cJSON) ------------------------ */

/* Index just past the string that starts at s[i] == '"'. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return len;
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len &&
	       (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_number_char(char c)
{
	return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' ||
	       c == 'E';
}

/* RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? is all of s. */
static bool number_strict(const char *s, size_t n)
{
	size_t i = 0, start;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && s[i] >= '1' && s[i] <= '9') {
		while (i < n && is_digit(s[i]))
			i++;
	} else {
		return false;
	}
	if (i < n && s[i] == '.') {
		start = ++i;
		while (i < n && is_digit(s[i]))
			i++;
		if (i == start)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		start = i;
		while (i < n && is_digit(s[i]))
			i++;
		if (i == start)
			return false;
	}
	return i == n;
}

/*
 * cJSON hands number tokens to strtod(), which takes forms JSON does not
 * ("01", "1.", "-.5"); PostgreSQL would refuse them later.  Check every
 * number outside strings against the grammar.  Outside strings, valid
 * JSON has no other token containing a digit or "-".
 */
static bool numbers_strict(const char *s, size_t len)
{
	size_t i = 0, start;

	while (i < len) {
		if (s[i] == '"') {
			i = skip_string(s, len, i);
		} else if (s[i] == '-' || is_digit(s[i])) {
			start = i;
			while (i < len && is_number_char(s[i]))
				i++;
			if (!number_strict(s + start, i - start))
				return false;
		} else {
			i++;
		}
	}
	return true;
}

/* Index just past the value that starts at s[i]. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
	int depth = 0;

	if (i >= len)
		return len;
	if (s[i] == '"')
		return skip_string(s, len, i);
	if (s[i] != '{' && s[i] != '[') {
		while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
		       s[i] != ' ' && s[i] != '\t' && s[i] != '\n' &&
		       s[i] != '\r')
			i++;
		return i;
	}
	while (i < len) {
		if (s[i] == '"') {
			i = skip_string(s, len, i);
			continue;
		}
		if (s[i] == '{' || s[i] == '[') {
			depth++;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
		i++;
	}
	return len;
}

/*
 * The text of the value of the index-th member of the top-level object,
 * with the white space outside strings removed (malloc'd).  Keeping the
 * client's own text keeps numbers exactly as sent (cJSON would round a
 * 64-bit integer through a double).
 */
static char *member_text(const char *s, size_t len, int index)
{
	size_t i, start, end, k;
	char *out;
	bool in_string = false;
	int m;

	i = skip_ws(s, len, 0);
	if (i >= len || s[i] != '{')
		return NULL;
	i++;
	for (m = 0;; m++) {
		i = skip_ws(s, len, i);
		if (i >= len || s[i] != '"')
			return NULL;
		i = skip_ws(s, len, skip_string(s, len, i));
		if (i >= len || s[i] != ':')
			return NULL;
		i = skip_ws(s, len, i + 1);
		if (m == index)
			break;
		i = skip_ws(s, len, skip_value(s, len, i));
		if (i >= len || s[i] != ',')
			return NULL;
		i++;
	}
	start = i;
	end = skip_value(s, len, start);
	if (end <= start)
		return NULL;

	out = malloc(end - start + 1);
	if (!out)
		return NULL;
	for (i = start, k = 0; i < end; i++) {
		char c = s[i];

		if (in_string) {
			out[k++] = c;
			if (c == '\\' && i + 1 < end)
				out[k++] = s[++i];
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == '"')
			in_string = true;
		out[k++] = c;
	}
	out[k] = '\0';
	return out;
}

/* --- the job body ------------------------------------------------------- */

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */

/*
 * Whether the text has a \u0000 escape.  cJSON would cut the string
 * there and PostgreSQL's jsonb refuses it, so it is refused up front.
 * Backslashes only occur inside strings in valid JSON, so pairing them
 * from the start is exact.
 */
static bool has_nul_escape(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 5 < len &&
		    memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++; /* skip the escaped character */
	}
	return false;
}

/* A field name fit to quote in a message: printable ASCII, bounded. */
static void quote_name(char *out, size_t outlen, const char *name)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)name[i];

		out[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	out[i] = '\0';
	if (name[i] && outlen > 4)
		memcpy(out + outlen - 4, "...", 4);
}

/* Whether s is 1..max characters of [a-z0-9_.-], with upper case letters
 * too when allow_upper. */
static bool name_valid(const char *s, size_t max, bool allow_upper)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i >= max)
			return false;
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-')
			continue;
		if (allow_upper && c >= 'A' && c <= 'Z')
			continue;
		return false;
	}
	return i > 0;
}

static int bad_field(struct tq_api_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad_field(struct tq_api_error *err, const char *fmt, ...)
{
	va_list ap;

	err->status = 400;
	err->code = TQ_ERR_INVALID_REQUEST;
	va_start(ap, fmt);
	if (vsnprintf(err->message, sizeof(err->message), fmt, ap) < 0)
		err->message[0] = '\0';
	va_end(ap);
	return -EINVAL;
}

/* An integer field within [min, max]: a JSON number with no fraction. */
static int get_int(const cJSON *item, const char *name, int min, int max,
		   int *out, struct tq_api_error *err)
{
	double d;

	if (!cJSON_IsNumber(item))
		goto bad;
	d = item->valuedouble;
	if (!isfinite(d) || d != floor(d) || d < min || d > max)
		goto bad;
	*out = (int)d;
	return 0;
bad:
	return bad_field(err, "\"%s\" must be an integer from %d to %d", name,
			 min, max);
}

bool tq_idempotency_key_valid(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (*s < 0x20 || *s > 0x7e || n >= TQ_IDEMPOTENCY_KEY_MAX)
			return false;
	return n > 0;
}

static int set_string(char **dst, const char *s, struct tq_api_error *err)
{
	*dst = strdup(s);
	if (!*dst) {
		tq_api_error_set(err, 500, TQ_ERR_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int parse_field(const cJSON *item, int index, const char *body,
		       size_t len, struct tq_job_spec *spec,
		       struct tq_api_error *err)
{
	const char *name = item->string;

	if (strcmp(name, "type") == 0) {
		if (!cJSON_IsString(item) ||
		    !name_valid(item->valuestring, TQ_TYPE_NAME_MAX, false))
			return bad_field(err,
					 "\"type\" must be a string of 1 to %d characters a-z, 0-9, \"_\", \".\" or \"-\"",
					 TQ_TYPE_NAME_MAX);
		return set_string(&spec->type, item->valuestring, err);
	}
	if (strcmp(name, "payload") == 0) {
		spec->payload = member_text(body, len, index);
		if (!spec->payload) {
			tq_api_error_set(err, 500, TQ_ERR_INTERNAL,
					 "out of memory");
			return -ENOMEM;
		}
		return 0;
	}
	if (strcmp(name, "queue") == 0) {
		if (!cJSON_IsString(item) ||
		    !name_valid(item->valuestring, TQ_QUEUE_NAME_MAX, true))
			return bad_field(err,
					 "\"queue\" must be a string of 1 to %d characters A-Z, a-z, 0-9, \"_\", \".\" or \"-\"",
					 TQ_QUEUE_NAME_MAX);
		return set_string(&spec->queue, item->valuestring, err);
	}
	if (strcmp(name, "priority") == 0)
		return get_int(item, name, TQ_PRIORITY_MIN, TQ_PRIORITY_MAX,
			       &spec->priority, err);
	if (strcmp(name, "max_attempts") == 0)
		return get_int(item, name, 1, TQ_MAX_ATTEMPTS_LIMIT,
			       &spec->max_attempts, err);
	if (strcmp(name, "timeout_s") == 0)
		return get_int(item, name, 1, TQ_TIMEOUT_LIMIT_S,
			       &spec->timeout_s, err);
	if (strcmp(name, "delay_s") == 0) {
		double d = item->valuedouble;

		if (!cJSON_IsNumber(item) || !isfinite(d) || d < 0 ||
		    d > (double)TQ_DELAY_LIMIT_S)
			return bad_field(err,
					 "\"delay_s\" must be a number of seconds from 0 to %lld",
					 (long long)TQ_DELAY_LIMIT_S);
		spec->has_delay = true;
		/* Round to the nearest millisecond; never below zero. */
		spec->delay_ms = (int64_t)llround(d * 1000.0);
		return 0;
	}
	if (strcmp(name, "run_at") == 0) {
		if (!cJSON_IsString(item) ||
		    tq_parse_rfc3339_ms(item->valuestring, &spec->run_at_ms) < 0)
			return bad_field(err,
					 "\"run_at\" must be an RFC 3339 timestamp such as \"2026-01-31T12:00:00Z\" or \"2026-01-31T13:00:00.5+01:00\"");
		spec->has_run_at = true;
		return 0;
	}

	if (strcmp(name, "idempotency_key") == 0) {
		if (!cJSON_IsString(item) || !tq_idempotency_key_valid(item->valuestring))
			return bad_field(err,
					 "\"idempotency_key\" must be a string of 1 to %d printable ASCII characters",
					 TQ_IDEMPOTENCY_KEY_MAX);
		return set_string(&spec->idempotency_key, item->valuestring, err);
	}

	{
		char quoted[TQ_TYPE_NAME_MAX + 1];

		quote_name(quoted, sizeof(quoted), name);
		return bad_field(err,
				 "unknown field \"%s\" (allowed: type, payload, queue, priority, max_attempts, timeout_s, delay_s, run_at, idempotency_key)",
				 quoted);
	}
}

int tq_request_parse_job(const char *body, size_t len, struct tq_job_spec *spec,
			 struct tq_api_error *err)
{
	cJSON *root = NULL;
	const cJSON *item, *other;
	const char *end = NULL;
	int index = 0;
	int ret;

	memset(spec, 0, sizeof(*spec));

	if (!body || !tq_utf8_valid(body, len)) {
		tq_api_error_set(err, 400, TQ_ERR_INVALID_JSON,
				 "request body is not valid UTF-8 JSON");
		ret = -EINVAL;
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (root && end) {
		/* Only white space may follow the value. */
		while (end < body + len &&
		       (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
			end++;
	}
	if (!root || end != body + len) {
		/* On failure cJSON points end at the offending byte. */
		size_t at = end && end >= body && end <= body + len ?
				    (size_t)(end - body) : 0;

		if (len == 0)
			tq_api_error_set(err, 400, TQ_ERR_INVALID_JSON,
					 "request body is empty; expected a JSON object");
		else if (root)
			tq_api_error_set(err, 400, TQ_ERR_INVALID_JSON,
					 "unexpected data after the JSON value at byte %zu",
					 at);
		else
			tq_api_error_set(err, 400, TQ_ERR_INVALID_JSON,
					 "request body is not valid JSON (near byte %zu)",
					 at);
		ret = -EINVAL;
		goto out;
	}
	if (!numbers_strict(body, len)) {
		tq_api_error_set(err, 400, TQ_ERR_INVALID_JSON,
				 "request body has a number that is not valid JSON (such as 01, 1. or .5)");
		ret = -EINVAL;
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		ret = bad_field(err, "body must be a JSON object");
		goto out;
	}
	if (has_nul_escape(body, len)) {
		ret = bad_field(err, "strings must not contain \\u0000");
		goto out;
	}

	cJSON_ArrayForEach(item, root) {
		if (!item->string) {
			ret = bad_field(err, "body must be a JSON object");
			goto out;
		}
		for (other = root->child; other != item; other = other->next) {
			if (strcmp(other->string, item->string) == 0) {
				char quoted[TQ_TYPE_NAME_MAX + 1];

				quote_name(quoted, sizeof(quoted), item->string);
				ret = bad_field(err, "duplicate field \"%s\"",
						quoted);
				goto out;
			}
		}
		ret = parse_field(item, index++, body, len, spec, err);
		if (ret < 0)
			goto out;
	}

	if (!spec->type) {
		ret = bad_field(err, "\"type\" is required");
		goto out;
	}
	if (spec->has_delay && spec->has_run_at) {
		ret = bad_field(err, "give either \"delay_s\" or \"run_at\", not both");
		goto out;
	}
	if (!spec->payload) {
		ret = set_string(&spec->payload, "{}", err);
		if (ret < 0)
			goto out;
	}
	if (!spec->queue) {
		ret = set_string(&spec->queue, "default", err);
		if (ret < 0)
			goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		tq_job_spec_free(spec);
	cJSON_Delete(root);
	return ret;
}
