/*
 * no_symbol.c - a shared object that is not a TaskQ plugin: it exports a
 * function, but not taskq_plugin_describe.
 */
#include <taskq/plugin.h>

TASKQ_EXPORT int no_symbol_answer(void);
TASKQ_EXPORT int no_symbol_answer(void)
{
	return 42;
}
