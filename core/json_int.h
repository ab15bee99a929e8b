/*
 * json_int.h - integers into cJSON objects that are only printed.
 *
 * cJSON 1.7.15 prints every number with "%1.15g" and reads it back with
 * sscanf() to check the round trip; for the integers of every submission
 * (its 201 body and the batch INSERT's JSON) that was 3 % of taskqd's CPU
 * in the benchmark.  This prints an integer once, as raw JSON text.  The
 * item is raw, not a number: use it only in objects that are printed,
 * never read back.
 */
#ifndef TASKQ_JSON_INT_H
#define TASKQ_JSON_INT_H

#include <stdio.h>
#include <cjson/cJSON.h>

static inline cJSON *tq_json_add_int(cJSON *object, const char *name, long long v)
{
	char text[24];

	snprintf(text, sizeof(text), "%lld", v);
	return cJSON_AddRawToObject(object, name, text);
}

#endif
