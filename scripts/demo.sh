#!/bin/sh
# demo.sh -- backfilld on a throwaway PostgreSQL: a million orders get a new
# column filled while you watch. Run by `make demo`; cleans up after itself.
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BACKFILLD=${BACKFILLD:-build/backfilld}
BACKFILLCTL=${BACKFILLCTL:-build/backfillctl}
ROWS=${DEMO_ROWS:-1000000}

work=$(mktemp -d /tmp/backfilld-demo.XXXXXX)
daemon_pid=
as_pg=
# initdb refuses to run as root: the server runs as the postgres user then.
if [ "$(id -u)" = 0 ]; then
	chown postgres "$work"
	as_pg="runuser -u postgres --"
fi

cleanup() {
	status=$?
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	$as_pg "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	if [ "$status" != 0 ]; then
		echo "demo failed; daemon log:" >&2
		tail -n 30 "$work/backfilld.log" 2>/dev/null >&2 || true
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT INT TERM

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
conninfo="host=127.0.0.1 port=$port user=postgres dbname=postgres"
psql_q() { psql "$conninfo" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== a throwaway PostgreSQL on 127.0.0.1:$port in $work"
$as_pg "$PGBIN/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
$as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/data/server.log" -w \
	-o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work -c fsync=off" \
	start >/dev/null

echo "== a table of $ROWS orders, with a new column total_cents to fill"
psql_q <<SQL
CREATE TABLE public.orders (
  id bigint PRIMARY KEY,
  customer text NOT NULL,
  total numeric(12,2) NOT NULL,
  total_cents bigint
);
INSERT INTO public.orders (id, customer, total)
SELECT g, 'customer ' || (g % 5000), round((random() * 1000)::numeric, 2)
FROM generate_series(1, $ROWS) g;
ANALYZE public.orders;
SQL

cat > "$work/backfilld.yaml" <<YAML
database:
  conninfo: "$conninfo"
control:
  socket: "$work/backfilld.sock"
YAML

echo "== backfilld starts"
"$BACKFILLD" -c "$work/backfilld.yaml" 2>"$work/backfilld.log" &
daemon_pid=$!

# The daemon creates its schema "backfill" on its first connect.
i=0
until [ "$(psql_q -At -c "SELECT to_regclass('backfill.jobs') IS NOT NULL")" = t ]; do
	i=$((i + 1)); [ $i -lt 300 ] || { echo "backfilld never created its schema" >&2; exit 1; }
	sleep 0.1
done

echo "== the job is scheduled with a plain INSERT:"
job_sql="INSERT INTO backfill.jobs (name, table_name, set_clause, where_clause)
VALUES ('orders-total-cents', 'public.orders',
        'total_cents = (total * 100)::bigint', 'total_cents IS NULL');"
echo "$job_sql" | sed 's/^/    /'
psql_q -c "$job_sql"

echo "== progress (SELECT state, rows_scanned, rows_updated, batches FROM backfill.jobs):"
start=$(date +%s)
while :; do
	line=$(psql_q -At -F ' ' -c "SELECT state, rows_scanned, rows_updated, batches,
		coalesce(round(100.0 * rows_scanned / nullif(rows_estimate, 0), 1), 0)
		FROM backfill.jobs WHERE name = 'orders-total-cents'")
	set -- $line
	printf '  %3ss  %-9s %5s%%  scanned %-9s updated %-9s batches %s\n' \
		"$(( $(date +%s) - start ))" "$1" "$5" "$2" "$3" "$4"
	case "$1" in succeeded | failed | cancelled) break ;; esac
	shown=$((${shown:-0} + 1))
	if [ "$shown" = 2 ]; then
		echo "== what backfillctl status says meanwhile:"
		"$BACKFILLCTL" -s "$work/backfilld.sock" status | sed 's/^/    /'
	fi
	if [ $(( $(date +%s) - start )) -gt 600 ]; then
		echo "the job did not finish within 10 minutes" >&2
		exit 1
	fi
	sleep 1
done

left=$(psql_q -At -c "SELECT count(*) FROM public.orders WHERE total_cents IS NULL")
psql_q -c "SELECT name, state, rows_scanned, rows_updated, batches, last_error,
	finished_at - started_at AS took FROM backfill.jobs"
if [ "$1" != succeeded ] || [ "$left" != 0 ]; then
	echo "== the job ended $1 with $left rows left" >&2
	exit 1
fi
echo "== backfillctl status at the end:"
"$BACKFILLCTL" -s "$work/backfilld.sock" status | sed 's/^/    /'
echo "== done: every order has total_cents; the daemon stops, the server is removed"
