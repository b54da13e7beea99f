# wdrepo - one non-recursive Makefile for the library, the CLI and the tests.
# `make help` lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS := sqlite3 libzstd libcjson libcrypto libcurl
PKG_CHECK := $(shell for p in $(PKGS); do pkg-config --exists $$p || echo $$p; done)
ifneq ($(strip $(PKG_CHECK)),)
ifeq ($(filter clean help,$(MAKECMDGOALS)),)
$(error missing pkg-config packages: $(PKG_CHECK) (Debian: apt-get install libsqlite3-dev libzstd-dev libcjson-dev libssl-dev libcurl4-openssl-dev pkg-config))
endif
endif

# -Wno-missing-field-initializers: public option structs grow at the end, and
# C zeroes the members an initialiser leaves out, which is how they say
# "not given" (wd_strategy_opts.set); callers' {a, b, c} must keep compiling.
WARN := -Wall -Wextra -Werror -Wshadow -Wcast-qual -Wstrict-prototypes \
        -Wmissing-prototypes -Wundef -Wpointer-arith -Wvla -Wformat=2 -Wwrite-strings \
        -Wno-missing-field-initializers
# -ffp-contract=off: delta arithmetic must round once per operation, as numpy does.
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -ffp-contract=off -pthread $(WARN) \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
OPT     ?= -O2 -g
CFLAGS  ?=
ALL_CFLAGS = $(BASE_CFLAGS) $(OPT) $(CFLAGS)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread

LIB_SRC   := $(sort $(wildcard src/*.c))
CLI_SRC   := $(sort $(wildcard cli/*.c))
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c))
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
SCHEMA    := $(sort $(wildcard schema/[0-9][0-9][0-9][0-9]_*.sql))

GEN_SCHEMA := $(BUILD)/gen/schema_sql.c
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIBA     := $(BUILD)/libwdrepo.a
WDREPO   := $(BUILD)/wdrepo
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
# ---- (issue 9) shared library and Python package ----
# libwdrepo.so.$(SOMAJOR) exports only the public wd_* functions of wdrepo.h
# (src/libwdrepo.map); SOMAJOR changes when that interface breaks. -z defs
# (no undefined symbol left) except under the sanitizers, whose runtime the
# program loading the library provides (tests/python/run.sh preloads it).
SOMAJOR  := 0
SOVER    := $(SOMAJOR).1.0
LIBSO    := $(BUILD)/libwdrepo.so.$(SOVER)
PYTHON   ?= /usr/bin/python3
# Where make install puts the Python package: Debian's python3 searches
# /usr/local/lib/python3.N/dist-packages.
PYSITE   ?= $(PREFIX)/lib/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)/dist-packages

REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)

.PHONY: pytest all test check fuzz bench frontier demo install uninstall clean help headertest

all: $(WDREPO) $(LIBA) $(LIBSO) $(TOOL_BIN) ## build the library, the wdrepo program and the test tools

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PIC) -Isrc -MMD -MP -c $< -o $@

# (issue 9) The library's objects go into libwdrepo.so too, so they are
# position-independent (the CLI's are not). No semantic interposition: the
# library's own calls may still be inlined and bound locally, as in a static
# build (nothing outside may replace a wd__ function; the map hides them).
$(LIB_OBJ): PIC := -fPIC -fno-semantic-interposition

# The schema is compiled in, so an installed wdrepo needs no data files.
$(GEN_SCHEMA): $(SCHEMA) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from the schema/ SQL files by the Makefile; do not edit */'; \
	   echo '#include <stddef.h>'; \
	   i=0; for f in $(SCHEMA); do \
	     echo "static const char sql_$$i[] = {"; \
	     od -An -v -tx1 $$f | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	     echo '0x00};'; i=$$((i+1)); done; \
	   echo 'extern const char *const wd__schema_sql[]; const char *const wd__schema_sql[] = {'; \
	   i=0; for f in $(SCHEMA); do echo "sql_$$i,"; i=$$((i+1)); done; echo 'NULL};'; \
	   echo 'extern const size_t wd__schema_count; const size_t wd__schema_count = '$(words $(SCHEMA))';'; \
	} > $@

$(BUILD)/gen/schema_sql.o: $(GEN_SCHEMA)
	$(CC) $(ALL_CFLAGS) -fPIC -Wno-missing-prototypes -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBSO): $(LIB_OBJ) src/libwdrepo.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,libwdrepo.so.$(SOMAJOR) -Wl,--version-script=src/libwdrepo.map \
	  $(if $(findstring -fsanitize,$(OPT)),,-Wl,-z,defs) -o $@ $(LIB_OBJ) $(LIBS)
	ln -sf libwdrepo.so.$(SOVER) $(BUILD)/libwdrepo.so.$(SOMAJOR)
	ln -sf libwdrepo.so.$(SOMAJOR) $(BUILD)/libwdrepo.so

# The pytest suite (tests/python) against $(LIBSO); tests/run.sh runs it as
# one of its tests. It skips (exit 0, says so) when numpy or pytest is absent.
pytest: $(LIBSO) ## run the Python package's tests against the built shared library
	@BUILD=$(BUILD) sh tests/python/run.sh

$(WDREPO): $(CLI_OBJ) $(LIBA)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(LIBA) $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBA) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -Itests/unit -o $@ $< $(LIBA) $(LIBS)

$(BUILD)/tools/%: tests/tools/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(LIBA) $(LIBS)

# Replay drivers run each fuzz target over its saved corpus without libFuzzer.
$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< tests/fuzz/replay.c $(LIBA) $(LIBS)

headertest: ## the public header compiles alone under -pedantic
	@mkdir -p $(BUILD)
	echo '#include "wdrepo.h"' | $(CC) -std=c11 -pedantic -Werror -Wall -Wextra -Isrc -x c -fsyntax-only -

test: all $(UNIT_BIN) $(REPLAY_BIN) headertest ## run unit, fuzz-corpus replay and CLI end-to-end tests
	@BUILD=$(BUILD) sh tests/run.sh

# Under the sanitizers every process start costs ~10x: the fault matrix
# samples every 12th chunk insert and every 6th transaction or file write
# there (make test takes every 3rd and every one).
check: ## run the whole test suite again under ASan+UBSan (clang)
	WD_FAULT_STRIDE=12 WD_FAULT_STRIDE_OTHER=6 $(MAKE) BUILD=build-san CC=clang OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" test

fuzz: ## build libFuzzer targets (clang) into build-fuzz/; FUZZ_SECONDS=60 make fuzz runs each
	@mkdir -p build-fuzz
	$(MAKE) BUILD=build-fuzz CC=clang OPT="-O1 -g -fsanitize=address,undefined,fuzzer-no-link" build-fuzz/libwdrepo.a
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang $(BASE_CFLAGS) -O1 -g -fsanitize=address,undefined,fuzzer -Isrc -o build-fuzz/$$n $$f build-fuzz/libwdrepo.a $(LIBS) || exit 1; \
	  if [ -n "$(FUZZ_SECONDS)" ]; then mkdir -p build-fuzz/corpus-$$n; \
	    build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; fi; \
	done

# (issue 11) not in CI: needs ../shared/realmodel and Debian's python3-torch
frontier: all ## lowbit's size/loss frontier on ../shared/realmodel's ft_b (minutes; see tests/bench/frontier.sh)
	@BUILD=$(BUILD) sh tests/bench/frontier.sh

bench: all ## time add-base/commit/checkout on a generated Qwen2.5-0.5B-shaped model against cp/zstd/openssl
	@BUILD=$(BUILD) sh tests/bench/bench.sh

demo: all ## build a small demo model and walk through init/add-base/commit/checkout/log/inspect
	@BUILD=$(BUILD) sh tests/demo.sh

install: all ## install wdrepo, libwdrepo.a, libwdrepo.so, the Python package, wdrepo.h, wdrepo.pc, the man page and the bash completion under $(DESTDIR)$(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(WDREPO) $(DESTDIR)$(PREFIX)/bin/wdrepo
	install -m 644 wdrepo.1 $(DESTDIR)$(PREFIX)/share/man/man1/wdrepo.1
	install -m 644 completion/wdrepo.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/wdrepo
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libwdrepo.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libwdrepo.so.$(SOVER)
	ln -sf libwdrepo.so.$(SOVER) $(DESTDIR)$(PREFIX)/lib/libwdrepo.so.$(SOMAJOR)
	ln -sf libwdrepo.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libwdrepo.so
	@# the Python package loads the library from $(PREFIX)/lib, written into _libpath.py
	d=$(DESTDIR)$(PYSITE)/wdrepo && \
	  install -d $$d && install -m 644 python/wdrepo/*.py $$d/ && \
	  printf '# written by make install\nLIBRARY = %s\n' "'$(PREFIX)/lib/libwdrepo.so.$(SOMAJOR)'" > $$d/_libpath.py
	-[ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && ldconfig 2>/dev/null || true
	install -m 644 src/wdrepo.h $(DESTDIR)$(PREFIX)/include/wdrepo.h
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: wdrepo\nDescription: content-addressed repository for model weights\nVersion: 0.1.0\nRequires.private: $(PKGS)\nLibs: -L$${libdir} -lwdrepo\nLibs.private: -lm -pthread\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/wdrepo.pc

uninstall: ## remove what install put in place
	rm -f $(DESTDIR)$(PREFIX)/lib/libwdrepo.so $(DESTDIR)$(PREFIX)/lib/libwdrepo.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libwdrepo.so.$(SOVER)
	rm -rf $(DESTDIR)$(PYSITE)/wdrepo
	rm -f $(DESTDIR)$(PREFIX)/bin/wdrepo $(DESTDIR)$(PREFIX)/lib/libwdrepo.a \
	      $(DESTDIR)$(PREFIX)/include/wdrepo.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/wdrepo.pc \
	      $(DESTDIR)$(PREFIX)/share/man/man1/wdrepo.1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions/wdrepo

clean: ## remove build outputs
	rm -rf build build-san build-fuzz

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 12

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
