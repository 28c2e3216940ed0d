# backfilld -- build, test, install.
#
#   make                 build/backfilld and build/backfillctl
#   make check           every test: C unit tests, then pytest against real PostgreSQL
#   make check SANITIZE=address,undefined
#   make demo            a throwaway PostgreSQL, a million rows, one job, watched to the end
#   make bench           backfilld against the alternatives (BENCH_ARGS="--rows 10m")
#   make valgrind        the core tests with the daemon under valgrind memcheck
#   make soak            the fault-injection soak for SOAK_SECONDS (600)
#   make install         PREFIX=/usr/local DESTDIR=
#   make deps            install the Debian packages the build and the tests need
#   make fuzz            libFuzzer on the protocol decoder and the config loader
#                        (FUZZ_SECONDS=300 each); `make check` runs fuzz-short

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR     ?= $(PREFIX)/share/doc/backfilld
DESTDIR    ?=

VERSION    := 0.1.0
BUILD      ?= build
CC         ?= cc
PKG_CONFIG ?= pkg-config
PYTHON     ?= /usr/bin/python3
PYTEST_ARGS ?= tests
# make check runs the test files on three workers (pytest-xdist), a file per
# worker: the tests mostly wait on servers and timers, not on the CPU.
CHECK_PYTEST_ARGS ?= tests -n 3 --dist loadfile
BENCH_ARGS ?=
PKGS       := libpq libuv yaml-0.1 libsystemd jansson
MANDIR     ?= $(PREFIX)/share/man

WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wno-format-nonliteral -Wpointer-arith -Wvla
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -DBF_VERSION='"$(VERSION)"'
ifneq ($(WERROR),)
CFLAGS   += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

ifeq ($(V),)
Q := @
E := @echo
else
Q :=
E := @true
endif

LIB_SRCS  := $(filter-out daemon/main.c,$(wildcard daemon/*.c daemon/job/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CTL_SRCS  := $(wildcard ctl/*.c)
CTL_OBJS  := $(CTL_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HEADERS   := $(wildcard include/*.h daemon/job/*.h)

.PHONY: all clean check unit pytest demo bench valgrind soak install deps fuzz fuzz-short
.SECONDARY: $(UNIT_SRCS:%.c=$(BUILD)/%.o)

all: $(BUILD)/backfilld $(BUILD)/backfillctl

$(BUILD)/%.o: %.c $(HEADERS) $(BUILD)/.flags
	$(E) "  CC      $<"
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

# Rebuild everything when the flags change (SANITIZE, WERROR, CFLAGS).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(BUILD)/libbf.a: $(LIB_OBJS)
	$(E) "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/backfilld: $(BUILD)/daemon/main.o $(BUILD)/libbf.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/backfillctl: $(CTL_OBJS) $(BUILD)/libbf.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libbf.a
	$(E) "  LD      $@"
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

deps:
	$(Q)sh scripts/install-deps.sh

unit: $(UNIT_BINS)
	$(Q)set -e; for t in $(UNIT_BINS); do echo "  UNIT    $$t"; $$t; done

pytest: $(BUILD)/backfilld $(BUILD)/backfillctl
	$(Q)BACKFILLD=$(abspath $(BUILD)/backfilld) BACKFILLCTL=$(abspath $(BUILD)/backfillctl) $(PYTHON) -m pytest -q $(PYTEST_ARGS)

check: deps
	$(Q)$(MAKE) --no-print-directory WERROR=1 all unit
	$(Q)$(MAKE) --no-print-directory WERROR=1 fuzz-short
	$(Q)$(MAKE) --no-print-directory WERROR=1 pytest PYTEST_ARGS="$(CHECK_PYTEST_ARGS)"

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BACKFILLD=$(abspath $(BUILD)/backfilld) BACKFILLCTL=$(abspath $(BUILD)/backfillctl) sh scripts/demo.sh

# The core tests with every daemon under valgrind's memcheck: any invalid
# access, uninitialised read or leak at exit fails the test (tests/daemon.py).
# A build without sanitizers (memcheck and ASan do not mix).
VALGRIND_TESTS ?= tests/test_walk.py tests/test_lifecycle.py tests/test_control.py \
	tests/test_faults.py tests/test_notify.py
valgrind: deps
	$(Q)$(MAKE) --no-print-directory SANITIZE= all
	$(Q)BACKFILLD_VALGRIND=1 $(MAKE) --no-print-directory SANITIZE= pytest \
	    PYTEST_ARGS="$(VALGRIND_TESTS) -q"

# The long soak: three daemons, eight jobs, random kills, freezes and
# terminated connections for SOAK_SECONDS; its numbers in $(BUILD)/soak.json.
# (`make check` runs the same test for 25 s.)
SOAK_SECONDS ?= 600
soak: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BACKFILLD_SOAK_SECONDS=$(SOAK_SECONDS) BACKFILLD_SOAK_REPORT=$(abspath $(BUILD)/soak.json) \
	    $(MAKE) --no-print-directory pytest PYTEST_ARGS="tests/test_chaos.py -k soak -q -s"

# Never part of `make check` (tests/test_bench.py runs it at a tiny size).
# An optimized build without sanitizers: the numbers are the product's.
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BACKFILLD=$(abspath $(BUILD)/backfilld) BACKFILLCTL=$(abspath $(BUILD)/backfillctl) \
	    $(PYTHON) bench/bench.py --out $(abspath $(BUILD)/bench) $(BENCH_ARGS)

# Fuzzing with libFuzzer: fuzz/fuzz_TARGET.c and the library sources, built
# by clang with ASan and UBSan into $(BUILD)/fuzz/ (never mixed with the $(CC)
# objects; SANITIZE and CFLAGS do not apply). The repository's seed corpus
# fuzz/corpus/TARGET/ is copied into $(BUILD)/fuzz/corpus-TARGET/, which the
# fuzzer grows; crash-*, leak-* and timeout-* inputs land in $(BUILD)/fuzz/.
# To keep new inputs worth having, merge them into the seeds by hand:
#   $(BUILD)/fuzz/fuzz_proto -merge=1 fuzz/corpus/proto $(BUILD)/fuzz/corpus-proto
FUZZ_CC       ?= clang-14
FUZZ_TARGETS  := proto config
FUZZ_SECONDS  ?= 300
# Short enough for every `make check` (both targets: well under 40 s).
FUZZ_SHORT_SECONDS ?= 15
FUZZ_ARGS     ?=
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   := -O1 -g -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -DBF_VERSION='"$(VERSION)"' \
		 $(FUZZ_SANITIZE) -fsanitize=fuzzer-no-link
ifneq ($(WERROR),)
FUZZ_CFLAGS   += -Werror
endif
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_DIR)/%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz/fuzz_%.o)
# Per-input limits: a slow or greedy input is a bug too (libFuzzer's
# default of 20 minutes per input would hide one in a 15 s run). Inputs up
# to 20 kB: the example config is 19 kB, a request line may be 64 kB (past
# that, fuzz_proto checks the limit on a padded copy of every input).
FUZZ_RUN_ARGS := -timeout=10 -rss_limit_mb=2048 -max_len=20000 -print_final_stats=1 \
		 -artifact_prefix=$(abspath $(FUZZ_DIR))/

# The targets themselves are always held to -Werror.
$(FUZZ_DIR)/fuzz/%.o: fuzz/%.c $(HEADERS) $(FUZZ_DIR)/.flags
	$(E) "  CLANG   $<"
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_LIB_OBJS): $(FUZZ_DIR)/%.o: %.c $(HEADERS) $(FUZZ_DIR)/.flags
	$(E) "  CLANG   $<"
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/.flags: FORCE
	@mkdir -p $(FUZZ_DIR)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $@

$(FUZZ_DIR)/libbf.a: $(FUZZ_LIB_OBJS)
	$(E) "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/fuzz/fuzz_%.o $(FUZZ_DIR)/libbf.a
	$(E) "  LD      $@"
	$(Q)$(FUZZ_CC) $(FUZZ_SANITIZE) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm

# Each target in turn (one fuzzer at a time), SECONDS each, on the seeds
# copied over whatever earlier runs found.
fuzz: $(FUZZ_BINS)
	$(Q)set -e; for t in $(FUZZ_TARGETS); do \
	    echo "  FUZZ    $$t ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(FUZZ_DIR)/corpus-$$t; \
	    cp fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus-$$t/; \
	    $(FUZZ_DIR)/fuzz_$$t $(FUZZ_RUN_ARGS) -dict=fuzz/$$t.dict \
		-max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS) $(FUZZ_DIR)/corpus-$$t; \
	done

# Part of `make check`: the seeds (regressions included) and a few seconds of
# new inputs per target. The log is shown only when the fuzzer fails.
fuzz-short: $(FUZZ_BINS)
	$(Q)set -e; for t in $(FUZZ_TARGETS); do \
	    echo "  FUZZ    $$t ($(FUZZ_SHORT_SECONDS) s)"; \
	    rm -rf $(FUZZ_DIR)/short-$$t && mkdir -p $(FUZZ_DIR)/short-$$t; \
	    cp fuzz/corpus/$$t/* $(FUZZ_DIR)/short-$$t/; \
	    if ! $(FUZZ_DIR)/fuzz_$$t $(FUZZ_RUN_ARGS) -dict=fuzz/$$t.dict \
		    -max_total_time=$(FUZZ_SHORT_SECONDS) $(FUZZ_ARGS) \
		    $(FUZZ_DIR)/short-$$t > $(FUZZ_DIR)/short-$$t.log 2>&1; then \
		tail -n 80 $(FUZZ_DIR)/short-$$t.log; \
		echo "fuzz-short: fuzz_$$t failed (log: $(FUZZ_DIR)/short-$$t.log)" >&2; \
		exit 1; \
	    fi; \
	    awk '/^stat::number_of_executed_units/ { n = $$2 } \
		/^stat::average_exec_per_sec/ { r = $$2 } $$2 == "DONE" { c = $$4 " edges covered" } \
		END { printf "          %s runs, %s/s, %s\n", n, r, c }' $(FUZZ_DIR)/short-$$t.log; \
	done

# The units name the installed paths, whatever PREFIX and SYSCONFDIR are.
UNIT_SED = -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	   -e 's|/etc/backfilld/|$(SYSCONFDIR)/backfilld/|g' \
	   -e 's|/usr/share/doc/backfilld/|$(DOCDIR)/|g'
MAN_PAGES = man/backfilld.8 man/backfillctl.1 man/backfilld.yaml.5

install: $(BUILD)/backfilld $(BUILD)/backfillctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/backfilld \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(BUILD)/backfilld $(DESTDIR)$(SBINDIR)/backfilld
	install -m 0755 $(BUILD)/backfillctl $(DESTDIR)$(BINDIR)/backfillctl
	install -m 0644 config/backfilld.yaml $(DESTDIR)$(SYSCONFDIR)/backfilld/backfilld.yaml.example
	for u in backfilld.service backfilld.socket backfilld@.service backfilld@.socket; do \
	    sed $(UNIT_SED) systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 systemd/backfilld.sysusers $(DESTDIR)$(SYSUSERSDIR)/backfilld.conf
	install -m 0644 man/backfillctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/backfilld.yaml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/backfilld.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 README.md LICENSE $(DESTDIR)$(DOCDIR)/

clean:
	rm -rf $(BUILD)
