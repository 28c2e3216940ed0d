/* resolve.h -- the table a job walks and its key columns, as the server sees them.
 *
 * Shared by a job's walk and by backfillctl plan: one query, and the checks
 * that make a keyset walk correct (a table, NOT NULL keys that are exactly
 * a unique btree index) and safe (no code on the table that would run as
 * the daemon's role for someone other than the job's author: SECURITY.md),
 * each refusal in words an operator can act on.
 */
#ifndef BF_RESOLVE_H
#define BF_RESOLVE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "keyset.h"

typedef struct bf_table {
	char *quoted; /* "schema"."table", quoted by the server */
	int nkeys;
	char **key_names;      /* quoted identifiers, in index order */
	char **key_types;      /* format_type(type, -1) */
	uint32_t *key_type_oids; /* the types' OIDs: their names depend on search_path */
	int64_t rows_estimate; /* reltuples; -1 when never analyzed */
	uint32_t oid;	       /* pg_class.oid: pinned with the walk */
} bf_table;

/* $1: the table name as the job gives it; $2: key_columns (text[]) or NULL
 * for the primary key; $3: the job's author (created_by), NULL when not
 * recorded (an author who controls nothing); $4: allow_triggers (boolean:
 * true skips the check of the table's code); $5: the job's name, for the
 * remedy a refusal quotes. Run it as the daemon's role: who the daemon is
 * decides which code counts (row security, roles that can act as it). */
extern const char bf_resolve_sql[];

/* Checks the result of bf_resolve_sql and fills t. Returns 0; or -1 with
 * *error a malloc'd reason the job cannot run as written (a table it cannot
 * walk, a bad key, or code on the table that someone other than the job's
 * author controls and allow_triggers does not vouch for), or with *error
 * NULL when memory ran out. */
int bf_resolve_table(const PGresult *res, const char *table_name, bf_table *t, char **error);

void bf_table_free(bf_table *t);

/* The walk over t for a job's clauses (t and the clauses must outlive it). */
void bf_table_walk(const bf_table *t, bf_walk *w, bf_job_kind kind, const char *set_clause,
		   const char *where_clause, const char *statement);

#endif
