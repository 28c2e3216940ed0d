#!/bin/sh
# install-deps.sh -- make sure everything the build and the tests need is
# installed (Debian 12).  Run by `make deps`, which `make check` and
# `make demo` depend on.
#
# Silent and quick when nothing is missing.  Otherwise, as root, it installs
# only the missing Debian packages with apt-get; as any other user it prints
# the apt-get command to run and exits 1.
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
PYTHON=/usr/bin/python3   # the Debian python: another python3 may come first on PATH

# Everything needed, one "KIND:WHAT PACKAGE" line each.  KIND says how WHAT is
# checked: pc = a pkg-config module, cmd = a command on PATH, file = a path
# that must exist, py = a module that $PYTHON can import.
REQUIREMENTS="
cmd:pkg-config             pkg-config
pc:libpq                   libpq-dev
pc:libuv                   libuv1-dev
pc:yaml-0.1                libyaml-dev
pc:libsystemd              libsystemd-dev
pc:jansson                 libjansson-dev
cmd:systemd-analyze        systemd
cmd:cc                     gcc
file:/usr/include/stdio.h  libc6-dev
cmd:make                   make
cmd:clang-14               clang-14
file:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a libclang-rt-14-dev
cmd:valgrind               valgrind
file:$PYTHON               python3
py:pytest                  python3-pytest
py:xdist                   python3-pytest-xdist
py:psycopg                 python3-psycopg
py:matplotlib              python3-matplotlib
file:$PG_BIN/pgbench       postgresql-15
file:$PG_BIN/initdb        postgresql-15
file:$PG_BIN/psql          postgresql-client-15
"

# is_present KIND:WHAT -- succeeds when the requirement is met.
is_present() {
	kind=${1%%:*}
	what=${1#*:}
	case $kind in
	pc)   pkg-config --exists "$what" 2>/dev/null ;;
	cmd)  command -v "$what" >/dev/null 2>&1 ;;
	file) [ -e "$what" ] ;;
	py)   [ -x "$PYTHON" ] && "$PYTHON" -c "import $what" 2>/dev/null ;;
	*)    echo "install-deps.sh: unknown requirement kind: $1" >&2; return 2 ;;
	esac
}

# missing_packages -- prints the packages of the unmet requirements, once
# each, separated by spaces.  (Without pkg-config every pc: module counts as
# missing; apt-get skips whatever is in fact installed.)
missing_packages() {
	echo "$REQUIREMENTS" | while read -r req pkg; do
		[ -n "$req" ] || continue
		is_present "$req" || echo "$pkg"
	done | awk '!seen[$0]++' | tr '\n' ' ' | sed 's/ $//'
}

# ensure_postgres_user -- initdb refuses to run as root, so the tests run the
# servers as `postgres`; the postgresql-15 package normally creates it.
ensure_postgres_user() {
	id -u postgres >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps.sh: OS user 'postgres' is missing; create it as root" >&2
		return 1
	fi
	echo "install-deps.sh: creating OS user 'postgres'"
	useradd --system --user-group --home-dir /var/lib/postgresql \
		--shell /bin/bash postgres
}

missing=$(missing_packages)
if [ -z "$missing" ]; then
	ensure_postgres_user
	exit 0
fi

install_cmd="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: missing packages: $missing" >&2
	echo "run as root:  apt-get update && $install_cmd" >&2
	exit 1
fi

echo "install-deps.sh: installing $missing"
apt-get update
# $missing is word-split on purpose: one argument per package.
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
ensure_postgres_user

still=$(missing_packages)
if [ -n "$still" ]; then
	echo "install-deps.sh: still missing after apt-get install: $still" >&2
	exit 1
fi
