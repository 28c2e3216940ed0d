/* test_pg_resolve.c -- the host name resolver's contract: which conninfos need
 * a lookup, the lists handed to libpq, and that the callback runs exactly
 * once, never early, also after a cancel. Only "localhost" is looked up
 * (/etc/hosts): no test needs the network. */
#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

#include "pg_resolve.h"
#include "unit.h"

typedef struct outcome {
	int calls;
	bf_pg_resolve_outcome outcome;
	char host[256], hostaddr[256], port[64], error[256];
	bool port_set;
} outcome;

static void record(const bf_pg_resolve_result *r, void *arg)
{
	outcome *o = arg;

	o->calls++;
	o->outcome = r->outcome;
	snprintf(o->host, sizeof(o->host), "%s", r->host ? r->host : "");
	snprintf(o->hostaddr, sizeof(o->hostaddr), "%s", r->hostaddr ? r->hostaddr : "");
	snprintf(o->port, sizeof(o->port), "%s", r->port ? r->port : "");
	o->port_set = r->port != NULL;
	snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
}

static int count_char(const char *s, char c)
{
	int n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

/* Starts a resolution of conninfo and runs the loop dry; the loop must close. */
static int resolve(const char *conninfo, outcome *o, bool cancel, bf_pg_resolution **res)
{
	uv_loop_t loop;
	int rc;

	memset(o, 0, sizeof(*o));
	uv_loop_init(&loop);
	rc = bf_pg_resolve_start(res, &loop, conninfo, "test", record, o);
	UNIT_CHECK_INT(o->calls, 0); /* never before start returns */
	if (rc == 0 && *res && cancel)
		bf_pg_resolve_cancel(*res);
	uv_run(&loop, UV_RUN_DEFAULT);
	UNIT_CHECK_INT(uv_loop_close(&loop), 0);
	return rc;
}

static void test_no_lookup_needed(void)
{
	static const char *const conninfos[] = {
		"",
		"dbname=x",
		"host=127.0.0.1 port=5432",
		"host=::1",
		"host=/tmp",
		"host=127.0.0.1,/tmp,::1",
		"host=localhost hostaddr=127.0.0.1",
		"host=localhost service=nowhere",
		"host=localhost,127.0.0.1 port=1,2,3", /* ports do not match: libpq's to say */
		"host='localhost",		       /* does not parse: libpq's to say */
	};

	for (size_t i = 0; i < sizeof(conninfos) / sizeof(conninfos[0]); i++) {
		bf_pg_resolution *res = (bf_pg_resolution *)1;
		outcome o;

		UNIT_CHECK_INT(resolve(conninfos[i], &o, false, &res), 0);
		if (res)
			fprintf(stderr, "a lookup for \"%s\"\n", conninfos[i]);
		UNIT_CHECK(res == NULL);
		UNIT_CHECK_INT(o.calls, 0);
	}
}

static void test_localhost_resolved(void)
{
	bf_pg_resolution *res;
	outcome o;

	UNIT_CHECK_INT(resolve("host=localhost port=5432", &o, false, &res), 0);
	UNIT_CHECK(res != NULL);
	UNIT_CHECK_INT(o.calls, 1);
	UNIT_CHECK_INT(o.outcome, BF_PG_RESOLVED);
	UNIT_CHECK_CONTAINS(o.hostaddr, "127.0.0.1");
	/* One host name per address; one port serves all. */
	UNIT_CHECK_INT(count_char(o.host, ','), count_char(o.hostaddr, ','));
	UNIT_CHECK(strncmp(o.host, "localhost", 9) == 0);
	UNIT_CHECK(!o.port_set);
}

/* Literals keep their place; per-host ports follow each address. */
static void test_lists_line_up(void)
{
	bf_pg_resolution *res;
	outcome o;
	int n;

	UNIT_CHECK_INT(resolve("host=127.0.0.1,localhost,/tmp port=1,2,3", &o, false, &res), 0);
	UNIT_CHECK_INT(o.calls, 1);
	UNIT_CHECK_INT(o.outcome, BF_PG_RESOLVED);
	UNIT_CHECK(o.port_set);
	n = count_char(o.host, ',');
	UNIT_CHECK(n >= 2);
	UNIT_CHECK_INT(count_char(o.hostaddr, ','), n);
	UNIT_CHECK_INT(count_char(o.port, ','), n);
	UNIT_CHECK(strncmp(o.host, "127.0.0.1,localhost,", 20) == 0);
	UNIT_CHECK(strncmp(o.hostaddr, "127.0.0.1,", 10) == 0);
	UNIT_CHECK(strncmp(o.port, "1,2,", 4) == 0);
	/* The socket directory: no hostaddr, its own port. */
	UNIT_CHECK(strcmp(o.host + strlen(o.host) - 5, ",/tmp") == 0);
	UNIT_CHECK(o.hostaddr[strlen(o.hostaddr) - 1] == ',');
	UNIT_CHECK(strcmp(o.port + strlen(o.port) - 2, ",3") == 0);
}

static void test_cancel_still_calls_back_once(void)
{
	bf_pg_resolution *res;
	outcome o;

	UNIT_CHECK_INT(resolve("host=localhost", &o, true, &res), 0);
	UNIT_CHECK(res != NULL);
	UNIT_CHECK_INT(o.calls, 1);
	UNIT_CHECK_INT(o.outcome, BF_PG_RESOLVE_CANCELLED);
}

int main(void)
{
	/* Only the conninfo of each test counts. */
	unsetenv("PGHOST");
	unsetenv("PGHOSTADDR");
	unsetenv("PGPORT");
	unsetenv("PGSERVICE");
	UNIT_RUN(test_no_lookup_needed);
	UNIT_RUN(test_localhost_resolved);
	UNIT_RUN(test_lists_line_up);
	UNIT_RUN(test_cancel_still_calls_back_once);
	return UNIT_DONE();
}
