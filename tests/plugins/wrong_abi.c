/*
 * wrong_abi.c - test plugin built for a future ABI 2.0: the host must
 * refuse it after reading only the stamp.  Everything past the stamp is
 * deliberately garbage, as a different major ABI may lay it out
 * differently.
 */
#include <stdint.h>

#include <taskq/plugin.h>

struct future_plugin {
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t struct_size;
	uintptr_t garbage[16];
};

static const struct future_plugin future = {
	.abi_major = 2,
	.abi_minor = 0,
	.struct_size = sizeof(struct future_plugin),
	.garbage = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
};

TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void);
TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void)
{
	return (const struct taskq_plugin *)(const void *)&future;
}
