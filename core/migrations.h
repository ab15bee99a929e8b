/*
 * migrations.h - the schema migrations of sql/, compiled into the daemon
 * (generated into migrations.c by cmake/embed_sql.cmake at build time).
 *
 * Migrations are numbered NNN_name.sql and applied in order; each applied
 * one is recorded in schema_migrations (version, name, applied_at).  Never
 * edit a migration that was released: add the next number.
 */
#ifndef TQ_MIGRATIONS_H
#define TQ_MIGRATIONS_H

#include <stddef.h>

struct tq_migration {
	int version;      /* NNN */
	const char *name; /* file name without .sql */
	const char *sql;  /* the whole file */
};

extern const struct tq_migration tq_migrations[];
extern const size_t tq_migrations_count;

#endif
