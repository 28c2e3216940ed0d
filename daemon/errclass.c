/* errclass.c -- SQLSTATE classification for failed batches. */
#include "errclass.h"

#include <string.h>

/* Exact codes first, then whole classes (two-character prefixes). */
static const struct {
	const char *code;
	bf_errclass cls;
} errclass_table[] = {
	{BF_SQLSTATE_FENCE, BF_ERR_FENCE},
	{BF_SQLSTATE_LOCK_NOT_AVAILABLE, BF_ERR_TRANSIENT_SHRINK}, /* our lock_timeout */
	{BF_SQLSTATE_QUERY_CANCELED, BF_ERR_TRANSIENT_SHRINK}, /* statement_timeout or a cancel */
	{"40001", BF_ERR_TRANSIENT},	    /* serialization_failure */
	{"40P01", BF_ERR_TRANSIENT},	    /* deadlock_detected */
	{"25P03", BF_ERR_TRANSIENT},	    /* idle_in_transaction_session_timeout */
	{"57P01", BF_ERR_TRANSIENT},	    /* admin_shutdown */
	{"57P02", BF_ERR_TRANSIENT},	    /* crash_shutdown */
	{"57P03", BF_ERR_TRANSIENT},	    /* cannot_connect_now: starting up */
	{"57P05", BF_ERR_TRANSIENT},	    /* idle_session_timeout */
	{"08", BF_ERR_TRANSIENT},	    /* connection_exception */
	{"53", BF_ERR_TRANSIENT},	    /* insufficient_resources: disk, memory, slots */
	{"58", BF_ERR_TRANSIENT},	    /* system_error: I/O */
	{"XX", BF_ERR_TRANSIENT},	    /* internal_error, data_corrupted: not ours to judge */
	{"HV", BF_ERR_TRANSIENT},	    /* fdw errors: usually the remote side */
	{"22", BF_ERR_DATA},		    /* data_exception: invalid input, division by zero */
	{"23", BF_ERR_DATA},		    /* integrity_constraint_violation */
	{"P0", BF_ERR_DATA},		    /* plpgsql: RAISE, ASSERT, no/too many rows */
	{"2F", BF_ERR_DATA},		    /* sql_routine_exception */
	{"38", BF_ERR_DATA},		    /* external_routine_exception */
	{"39", BF_ERR_DATA},		    /* external_routine_invocation_exception */
	{"44", BF_ERR_DATA},		    /* with_check_option_violation */
};

bf_errclass bf_errclass_of(const char *sqlstate)
{
	if (!sqlstate || strlen(sqlstate) != 5)
		return BF_ERR_TRANSIENT;
	for (size_t i = 0; i < sizeof(errclass_table) / sizeof(errclass_table[0]); i++) {
		const char *code = errclass_table[i].code;

		if (strncmp(sqlstate, code, strlen(code)) == 0)
			return errclass_table[i].cls;
	}
	return BF_ERR_PERMANENT;
}

bool bf_sqlstate_is(const char *sqlstate, const char *code)
{
	return sqlstate && strcmp(sqlstate, code) == 0;
}
