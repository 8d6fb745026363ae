# sitesrv - top-level build.
#
#   make            build everything under build/ (runs `make deps` first)
#   make check      build and run every unit and scenario test
#   make bench      build and run the benchmarks
#   make demo       build and run the demo site under demo/
#   make install    PREFIX=/usr/local DESTDIR=
#
#   WERROR=1                   warnings are errors (CI)
#   SANITIZE=address,undefined build into build/sanitize/ with the sanitizers
#   CFLAGS=... LDFLAGS=...     appended to ours, never replacing them

PREFIX  ?= /usr/local
DESTDIR ?=

ifeq ($(strip $(SANITIZE)),)
B := build
else
B := build/sanitize
endif

PKGS     := libuv sqlite3 libcrypto libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

OPT      ?= -O2
XCFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Wformat=2 -Wshadow -Wno-unused-parameter \
            -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Ilib -Iinboxes $(PKG_CFLAGS)
XLDFLAGS :=
ifeq ($(WERROR),1)
XCFLAGS  += -Werror
endif
ifneq ($(strip $(SANITIZE)),)
XCFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
XLDFLAGS += -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS  = $(XCFLAGS) $(CFLAGS)
# Link lines get CFLAGS too: --coverage, -flto and the like are needed at both.
ALL_LDFLAGS = $(XLDFLAGS) $(CFLAGS) $(LDFLAGS)
LIBS        = $(PKG_LIBS) -lpthread

LIB_SRC   := $(sort $(wildcard lib/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/obj/%.o)
LIB_A     := $(B)/lib/libsitesrv.a
DAEMONS   := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard daemons/*/*.c)))))
DAEMON_BIN := $(DAEMONS:%=$(B)/libexec/sitesrv/%)
SITECTL_SRC := $(sort $(wildcard sitectl/*.c))
SITECTL_OBJ := $(SITECTL_SRC:%.c=$(B)/obj/%.o)
SITECTL   := $(B)/bin/sitectl
TEST_SRC  := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(B)/tests/%)
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN  := $(TOOL_SRC:tests/tools/%.c=$(B)/tests/tools/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

# Link options some unit tests need (symbol wrapping to force faults).
LDFLAGS_test_uniqname := -Wl,--wrap=getrandom
# Daemon objects a unit test links beside the library (the daemon's own
# main() stays out), and its headers.
OBJS_test_distmgr   := $(B)/obj/daemons/distmgr/tasks.o
CFLAGS_test_distmgr := -Idaemons/distmgr
OBJS_test_despool   := $(B)/obj/daemons/despool/install.o
CFLAGS_test_despool := -Idaemons/despool
OBJS_test_sender    := $(B)/obj/daemons/sender/xfer.o
CFLAGS_test_sender  := -Idaemons/sender
OBJS_test_statmgr   := $(B)/obj/daemons/statmgr/ingest.o $(B)/obj/daemons/statmgr/replicate.o
CFLAGS_test_statmgr := -Idaemons/statmgr

.PHONY: all build deps check check-build bench demo install clean
all: deps
	@$(MAKE) --no-print-directory build

build: $(LIB_A) $(DAEMON_BIN) $(SITECTL)

deps:
	@tools/deps.sh

check: deps
	@$(MAKE) --no-print-directory check-build
	@B=$(B) tests/run.sh

check-build: build $(TEST_BIN) $(TOOL_BIN)

bench: deps
	@$(MAKE) --no-print-directory build $(BENCH_BIN) $(TOOL_BIN)
	@B=$(B) bench/run.sh

demo: deps
	@$(MAKE) --no-print-directory build
	@B=$(B) tools/demo.sh

$(B)/obj/%.o: %.c $(wildcard lib/*.h) inboxes/inboxes.def
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

.SECONDEXPANSION:
$(B)/libexec/sitesrv/%: $$(addprefix $(B)/obj/,$$(subst .c,.o,$$(wildcard daemons/$$*/*.c))) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIB_A) $(LIBS)

$(SITECTL): $(SITECTL_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(SITECTL_OBJ) $(LIB_A) $(LIBS)

$(B)/tests/%: tests/unit/%.c tests/unit/testutil.h $$(OBJS_$$*) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CFLAGS_$*) $(CMOCKA_CFLAGS) $(ALL_LDFLAGS) $(LDFLAGS_$*) -o $@ $< $(OBJS_$*) $(LIB_A) $(CMOCKA_LIBS) $(LIBS)

$(B)/tests/tools/%: tests/tools/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) $(LIBS)

$(B)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) $(LIBS)

install: build
	tools/install.sh "$(B)" "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf build

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
