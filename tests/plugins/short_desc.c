/*
 * short_desc.c - test plugin whose descriptor claims ABI 1.0 but is
 * shorter than the 1.0 struct_size: the host must refuse it without
 * reading past the stamp.
 */
#include <stdint.h>

#include <taskq/plugin.h>

struct stamp_only {
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t struct_size;
};

static const struct stamp_only stamp = {
	.abi_major = TASKQ_ABI_MAJOR,
	.abi_minor = 0,
	.struct_size = sizeof(struct stamp_only),
};

TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void);
TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void)
{
	return (const struct taskq_plugin *)(const void *)&stamp;
}
