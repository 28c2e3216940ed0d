/* pg_resolve.c -- host names resolved on the thread pool: libpq's getaddrinfo() would block. */
#include "pg_resolve.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "strbuf.h"

/* One connect attempt's name lookups, one name at a time. */
struct bf_pg_resolution {
	uv_getaddrinfo_t req; /* first: the request is the struct */
	uv_loop_t *loop;
	const char *log_name;
	bf_pg_resolve_cb cb;
	void *arg;
	bool cancelled;
	int n;
	char **names;  /* the host list, split at commas */
	char **ports;  /* per-host ports, or NULL when one port serves all */
	char **addrs;  /* hostaddrs for each, comma-separated; "" where libpq
		       * needs none; NULL: still to resolve */
	bool *dropped; /* names that did not resolve: left out of the lists */
	char last_error[256];
};

/* Where the conninfo says to connect; the strings belong to the parsed
 * options or the environment. */
typedef struct pg_target {
	const char *host;
	const char *hostaddr;
	const char *service;
	const char *port;
} pg_target;

static void resolution_free(bf_pg_resolution *res)
{
	for (int i = 0; i < res->n; i++) {
		free(res->names[i]);
		if (res->addrs)
			free(res->addrs[i]);
		if (res->ports)
			free(res->ports[i]);
	}
	free(res->names);
	free(res->addrs);
	free(res->ports);
	free(res->dropped);
	free(res);
}

/* "a,b,c" -> n malloc'd strings; returns the number of items, or -1 when
 * out of memory (then *items is freed). */
static int split_list(const char *list, char ***items)
{
	int n = 1;

	for (const char *p = list; *p; p++)
		n += *p == ',';
	*items = calloc((size_t)n, sizeof(char *));
	if (!*items)
		return -1;
	for (int i = 0; i < n; i++) {
		size_t len = strcspn(list, ",");

		(*items)[i] = strndup(list, len);
		if (!(*items)[i]) {
			while (i-- > 0)
				free((*items)[i]);
			free(*items);
			*items = NULL;
			return -1;
		}
		list += len + (list[len] == ',');
	}
	return n;
}

/* ---- planning: which names need a lookup ---- */

/* Fills t from conninfo, and from libpq's environment variables where the
 * conninfo is silent. Returns the parsed options that t points into (the
 * caller frees them), or NULL when conninfo does not parse: libpq will say
 * what is wrong with it. */
static PQconninfoOption *read_target(const char *conninfo, pg_target *t)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);

	memset(t, 0, sizeof(*t));
	if (!opts)
		return NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "host") == 0)
			t->host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			t->hostaddr = o->val;
		else if (strcmp(o->keyword, "service") == 0)
			t->service = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			t->port = o->val;
	}
	if (!t->port)
		t->port = getenv("PGPORT");
	if (!t->host)
		t->host = getenv("PGHOST");
	if (!t->hostaddr)
		t->hostaddr = getenv("PGHOSTADDR");
	if (!t->service)
		t->service = getenv("PGSERVICE");
	return opts;
}

/* Per-host ports must be repeated with each address. Returns 0, or -1 when
 * out of memory or when the count does not match the hosts (libpq's to
 * report). */
static int resolution_take_ports(bf_pg_resolution *res, const char *port)
{
	char **ports;
	int nports;

	if (!port || !strchr(port, ','))
		return 0;
	nports = split_list(port, &ports);
	if (nports != res->n) {
		for (int i = 0; i < nports; i++)
			free(ports[i]);
		if (nports >= 0)
			free(ports);
		return -1;
	}
	res->ports = ports;
	return 0;
}

/* A resolution of the host list host (with its ports), nothing resolved
 * yet; NULL when out of memory or the ports do not match the hosts. */
static bf_pg_resolution *resolution_new(const char *host, const char *port)
{
	bf_pg_resolution *res = calloc(1, sizeof(*res));

	if (!res || (res->n = split_list(host, &res->names)) < 0) {
		free(res);
		return NULL;
	}
	res->addrs = calloc((size_t)res->n, sizeof(char *));
	res->dropped = calloc((size_t)res->n, sizeof(bool));
	if (!res->addrs || !res->dropped || resolution_take_ports(res, port) != 0) {
		resolution_free(res);
		return NULL;
	}
	return res;
}

/* Settles the names that need no lookup. Returns 1 when some name still
 * needs one, 0 when none does, -1 when out of memory. */
static int resolution_settle_literals(bf_pg_resolution *res)
{
	bool need = false, oom = false;

	for (int i = 0; i < res->n; i++) {
		const char *name = res->names[i];
		unsigned char buf[sizeof(struct in6_addr)];

		/* A socket directory, an address, or empty: nothing to look up
		 * (hostaddr takes an address as it is). */
		if (!name[0] || name[0] == '/' || name[0] == '@')
			oom |= !(res->addrs[i] = strdup(""));
		else if (inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1)
			oom |= !(res->addrs[i] = strdup(name));
		else
			need = true;
	}
	return oom ? -1 : need;
}

/* The hosts the conninfo (or PGHOST) names, when some of them need a DNS
 * lookup; NULL when libpq can connect without one (sockets, IP addresses,
 * hostaddr given, or a service file that we do not read), or when there is
 * no memory to plan it: libpq as it is. */
static bf_pg_resolution *resolution_plan(const char *conninfo)
{
	pg_target target;
	PQconninfoOption *opts = read_target(conninfo, &target);
	bf_pg_resolution *res = NULL;

	if (!opts)
		return NULL;
	if (target.host && target.host[0] && !target.hostaddr && !target.service) {
		res = resolution_new(target.host, target.port);
		if (res && resolution_settle_literals(res) != 1) {
			resolution_free(res);
			res = NULL;
		}
	}
	PQconninfoFree(opts);
	return res;
}

/* ---- the lookups ---- */

/* Tells the owner, then frees res: the owner must not touch it after. */
static void resolution_report(bf_pg_resolution *res, const bf_pg_resolve_result *r)
{
	res->cb(r, res->arg);
	resolution_free(res);
}

static void resolution_fail(bf_pg_resolution *res, const char *why)
{
	bf_pg_resolve_result r = {.outcome = BF_PG_RESOLVE_FAILED, .error = why};

	resolution_report(res, &r);
}

/* Every name looked up: the host, hostaddr (and per-host port) lists, which
 * must line up: a name with several addresses stands as many times in
 * each. */
static void resolution_finish(bf_pg_resolution *res)
{
	bf_strbuf hosts, hostaddrs, ports;
	int emitted = 0; /* an empty host (libpq's default socket) adds no text */

	bf_strbuf_init(&hosts);
	bf_strbuf_init(&hostaddrs);
	bf_strbuf_init(&ports);
	for (int j = 0; j < res->n; j++) {
		const char *a = res->addrs[j];

		if (res->dropped[j])
			continue;
		do {
			size_t len = strcspn(a, ",");
			const char *sep = emitted++ ? "," : "";

			bf_strbuf_printf(&hosts, "%s%s", sep, res->names[j]);
			bf_strbuf_printf(&hostaddrs, "%s%.*s", sep, (int)len, a);
			if (res->ports)
				bf_strbuf_printf(&ports, "%s%s", sep, res->ports[j]);
			a += len;
		} while (*a++ == ',');
	}
	char *host_list = bf_strbuf_finish(&hosts);
	char *addr_list = bf_strbuf_finish(&hostaddrs);
	char *port_list = bf_strbuf_finish(&ports);

	if (emitted == 0) {
		resolution_fail(res, res->last_error);
	} else if (!host_list || !addr_list || !port_list) {
		resolution_fail(res, "out of memory resolving host names");
	} else {
		bf_pg_resolve_result r = {.outcome = BF_PG_RESOLVED,
					  .host = host_list,
					  .hostaddr = addr_list,
					  .port = res->ports ? port_list : NULL};

		resolution_report(res, &r);
	}
	free(host_list);
	free(addr_list);
	free(port_list);
}

/* The first name still to resolve; res->n when none is left. */
static int resolution_next_name(const bf_pg_resolution *res)
{
	int i;

	for (i = 0; i < res->n && res->addrs[i]; i++)
		;
	return i;
}

static void resolution_looked_up(uv_getaddrinfo_t *req, int status, struct addrinfo *ai);

static int resolution_lookup(bf_pg_resolution *res, int i)
{
	struct addrinfo hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	return uv_getaddrinfo(res->loop, &res->req, resolution_looked_up, res->names[i], NULL,
			      &hints);
}

/* Looks up the next name, or reports the lists once none is left. */
static void resolution_continue(bf_pg_resolution *res)
{
	int i = resolution_next_name(res);

	if (i == res->n)
		resolution_finish(res);
	else if (resolution_lookup(res, i) != 0)
		resolution_fail(res, "could not start a host name lookup");
}

/* Leaves name i out, as libpq skips a name that does not resolve: the other
 * hosts of a failover list may still be there. res->last_error says why.
 * Returns 0, or -1 when out of memory. */
static int resolution_drop(bf_pg_resolution *res, int i)
{
	res->dropped[i] = true;
	if (!res->addrs[i] && !(res->addrs[i] = strdup("")))
		return -1;
	if (res->n > 1)
		bf_warning("%s: %s; trying the other hosts", res->log_name, res->last_error);
	return 0;
}

/* Every IPv4 and IPv6 address of ai, comma-separated, as libpq would try
 * them all in turn ("" when there is none); NULL when out of memory. */
static char *address_list(const struct addrinfo *ai)
{
	bf_strbuf addrs;

	bf_strbuf_init(&addrs);
	for (const struct addrinfo *a = ai; a; a = a->ai_next) {
		char text[INET6_ADDRSTRLEN] = "";
		const void *addr =
			a->ai_family == AF_INET6
				? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
				: (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;

		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    !inet_ntop(a->ai_family, addr, text, sizeof(text)))
			continue;
		bf_strbuf_printf(&addrs, "%s%s", addrs.len ? "," : "", text);
	}
	return bf_strbuf_finish(&addrs);
}

static void resolution_looked_up(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
	bf_pg_resolution *res = (bf_pg_resolution *)req;
	int i = resolution_next_name(res);

	if (res->cancelled) {
		bf_pg_resolve_result r = {.outcome = BF_PG_RESOLVE_CANCELLED};

		uv_freeaddrinfo(ai);
		resolution_report(res, &r);
		return;
	}
	if (status != 0 || !ai) {
		snprintf(res->last_error, sizeof(res->last_error),
			 "could not resolve host name \"%s\": %s", res->names[i],
			 status ? uv_strerror(status) : "no address");
		uv_freeaddrinfo(ai);
		if (resolution_drop(res, i) != 0)
			resolution_fail(res, "out of memory resolving host names");
		else
			resolution_continue(res);
		return;
	}
	res->addrs[i] = address_list(ai);
	uv_freeaddrinfo(ai);
	if (!res->addrs[i]) {
		resolution_fail(res, "out of memory resolving host names");
		return;
	}
	if (!res->addrs[i][0]) {
		snprintf(res->last_error, sizeof(res->last_error),
			 "host name \"%s\" has no IPv4 or IPv6 address", res->names[i]);
		resolution_drop(res, i); /* addrs[i] is set: cannot fail */
	} else {
		bf_debug("%s: host \"%s\" is %s", res->log_name, res->names[i], res->addrs[i]);
	}
	resolution_continue(res);
}

int bf_pg_resolve_start(bf_pg_resolution **out, uv_loop_t *loop, const char *conninfo,
			const char *log_name, bf_pg_resolve_cb cb, void *arg)
{
	bf_pg_resolution *res = resolution_plan(conninfo);
	int rc;

	*out = NULL;
	if (!res)
		return 0;
	res->loop = loop;
	res->log_name = log_name;
	res->cb = cb;
	res->arg = arg;
	/* A plan always leaves a name to look up. */
	rc = resolution_lookup(res, resolution_next_name(res));
	if (rc != 0) {
		resolution_free(res);
		return rc;
	}
	*out = res;
	return 0;
}

void bf_pg_resolve_cancel(bf_pg_resolution *res)
{
	res->cancelled = true;
	/* Fails (UV_EBUSY) once the lookup runs or ran: its result is ignored. */
	uv_cancel((uv_req_t *)&res->req);
}
