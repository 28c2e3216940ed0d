/* test_errclass.c -- errclass.c: what a failed batch's SQLSTATE means. */
#include <stddef.h>

#include "errclass.h"
#include "unit.h"

static void test_errclass(void)
{
	UNIT_CHECK_INT(bf_errclass_of("55P03"), BF_ERR_TRANSIENT_SHRINK);
	UNIT_CHECK_INT(bf_errclass_of("57014"), BF_ERR_TRANSIENT_SHRINK);
	UNIT_CHECK_INT(bf_errclass_of("40P01"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("40001"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("08006"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("57P01"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("53300"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of(NULL), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("BF001"), BF_ERR_FENCE);
	UNIT_CHECK_INT(bf_errclass_of("42P01"), BF_ERR_PERMANENT); /* undefined_table */
	UNIT_CHECK_INT(bf_errclass_of("42601"), BF_ERR_PERMANENT); /* syntax_error */
	UNIT_CHECK_INT(bf_errclass_of("23505"), BF_ERR_DATA);	   /* unique_violation */
	UNIT_CHECK_INT(bf_errclass_of("22P02"), BF_ERR_DATA);	   /* invalid_text_representation */
	UNIT_CHECK_INT(bf_errclass_of("P0001"), BF_ERR_DATA);	   /* raise_exception */
	UNIT_CHECK_INT(bf_errclass_of("42501"), BF_ERR_PERMANENT); /* insufficient_privilege */
	UNIT_CHECK_INT(bf_errclass_of("42883"), BF_ERR_PERMANENT); /* no ordering operator */
}

int main(void)
{
	UNIT_RUN(test_errclass);
	return UNIT_DONE();
}
