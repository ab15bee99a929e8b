/* null_desc.c - test plugin whose describe function returns NULL. */
#include <stddef.h>

#include <taskq/plugin.h>

TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void);
TASKQ_EXPORT const struct taskq_plugin *taskq_plugin_describe(void)
{
	return NULL;
}
