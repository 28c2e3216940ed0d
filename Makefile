# backfilld -- build, test, install.
#
#   make                 build/backfilld and build/backfillctl
#   make check           every test: C unit tests, then pytest against real PostgreSQL
#   make check SANITIZE=address,undefined
#   make demo            a throwaway PostgreSQL, a million rows, one job, watched to the end
#   make bench           backfilld against the alternatives (BENCH_ARGS="--rows 10m")
#   make install         PREFIX=/usr/local DESTDIR=
#   make deps            install the Debian packages the build and the tests need

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

LIB_SRCS  := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CTL_SRCS  := $(wildcard ctl/*.c)
CTL_OBJS  := $(CTL_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HEADERS   := $(wildcard include/*.h)

.PHONY: all clean check unit pytest demo bench install deps
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
	$(Q)$(MAKE) --no-print-directory WERROR=1 pytest

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BACKFILLD=$(abspath $(BUILD)/backfilld) BACKFILLCTL=$(abspath $(BUILD)/backfillctl) sh scripts/demo.sh

# Never part of `make check` (tests/test_bench.py runs it at a tiny size).
# An optimized build without sanitizers: the numbers are the product's.
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BACKFILLD=$(abspath $(BUILD)/backfilld) BACKFILLCTL=$(abspath $(BUILD)/backfillctl) \
	    $(PYTHON) bench/bench.py --out $(abspath $(BUILD)/bench) $(BENCH_ARGS)

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
	for u in backfilld.service backfilld.socket; do \
	    sed $(UNIT_SED) systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 systemd/backfilld.sysusers $(DESTDIR)$(SYSUSERSDIR)/backfilld.conf
	install -m 0644 man/backfillctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/backfilld.yaml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/backfilld.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 README.md LICENSE $(DESTDIR)$(DOCDIR)/

clean:
	rm -rf $(BUILD)
