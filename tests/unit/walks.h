/* walks.h -- the walks the SQL builders are tested on: one bigint key, and
 * a composite key in a quoted schema and table, one of its names quoted. */
#ifndef BF_UNIT_WALKS_H
#define BF_UNIT_WALKS_H

#include "keyset.h"

static const char *unit_one_name[] = {"id"};
static const char *unit_one_type[] = {"bigint"};
static const char *unit_two_names[] = {"tenant", "\"Order No\""};

static inline bf_walk unit_walk_one(void)
{
	bf_walk w = {
		.table = "public.orders",
		.nkeys = 1,
		.key_names = unit_one_name,
		.key_types = unit_one_type,
		.kind = BF_KIND_UPDATE,
		.set_clause = "total_cents = (total * 100)::bigint",
	};
	return w;
}

/* w with the composite key; types: the two key columns' types. */
static inline bf_walk unit_walk_two(bf_walk w, const char *const *types)
{
	w.table = "\"my schema\".\"Orders\"";
	w.nkeys = 2;
	w.key_names = unit_two_names;
	w.key_types = types;
	return w;
}

#endif
