# make check: the memory-safety and robustness gate (issue 9).
#
#   make check          check-asan + check-valgrind + fuzz + soak-short; ends with
#                       "N passed, N failed"
#   make check-asan     the C unit tests, the busted suite and tools/check/lifetimes.lua with
#                       the modules built under clang ASan+UBSan (+ LeakSanitizer)
#   make check-allocfail only the allocation-failure sweep (tools/check/allocfail.c, one item of
#                       check-asan): every trigger.core binding under an allocator failing after
#                       N allocations, N swept, LeakSanitizer after each case
#   make check-valgrind the C unit tests, tools/check/lifetimes.lua and the busted suite under
#                       valgrind memcheck (normal -O2 -g build)
#   make fuzz           every libFuzzer target in fuzz/ for FUZZ_SECONDS each (default 60)
#                       FUZZ_REPORT=1 also writes fuzz/RESULTS.md; FUZZ_TARGETS="fuzz_x ..." picks
#   make fuzz-build     only build the fuzz targets (build/fuzz/fuzz_*)
#   make soak-short     the seeded chaos soak's short run (mk/soak.mk, tools/soak/README.md):
#                       seeds 11-14, 20 s each, both backends; one item of make check
#
# Every sub-check is one item of the closing count. The log of each is kept in build/check/
# (the path is printed when it fails). Lua 5.4 only: these targets use lua5.4 whatever LUA says.
# See tools/check/README.md for what each check covers and why it is set up the way it is.

CHECK_CC     ?= clang
CHECK_LUA    ?= lua5.4
CHECK_LUAINC ?= /usr/include/lua5.4
CHECK_DIR    := build/check
CHECK_PLAIN  := build/5.4
ASAN_BUILD   := build/asan
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_REPORT  ?= 0
FUZZ_JOBS    ?= 1

SAN_FLAGS    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS  ?= -O1 -g
FUZZ_CFLAGS  ?= -O1 -g
ASAN_RT       = $(shell $(CHECK_CC) -print-file-name=libclang_rt.asan-x86_64.so)

# intercept_tls_get_addr=0: LLVM 14's runtime mistakes some dynamic-TLS blocks of glibc >= 2.25
# for an old glibc layout and reads a bogus range, so LeakSanitizer's tracer dies at exit
# ("Tracer caught signal 11", google/sanitizers#1322) by chance of where malloc put the block.
# The library keeps no heap pointer in thread-local storage, so nothing is lost by it.
ASAN_COMMON = detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:intercept_tls_get_addr=0

# Sanitizer settings for every process of an ASan run. Children of the specs inherit them: the
# example scripts that spec/examples_spec.lua starts run on the ASan build too (BUILD,
# TRIGGER_EXAMPLES_LUA); the local server (pure Lua, third-party C modules) runs without them.
ASAN_ENV = LD_PRELOAD="$(ASAN_RT)" \
  ASAN_OPTIONS="$(ASAN_COMMON):check_initialization_order=1:abort_on_error=0" \
  LSAN_OPTIONS="suppressions=$(CURDIR)/tools/check/lsan.supp:print_suppressions=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  TRIGGER_SERVER_LUA="env -u LD_PRELOAD $(CHECK_LUA)" TRIGGER_EXAMPLES_LUA="$(CHECK_LUA)" \
  BUILD=$(ASAN_BUILD)
ASAN_TEST_ENV = ASAN_OPTIONS="$(ASAN_COMMON)" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# The allocation-failure sweep: without detect_stack_use_after_return, whose fake stack frames
# outlive a longjmp and would hold the very pointers a Lua error made unreachable (a leak not seen).
ALLOCFAIL_ENV = ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=0:strict_string_checks=1:intercept_tls_get_addr=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ALLOCFAIL_RUN = $(CHECK_TAP) env $(ALLOCFAIL_ENV) $(ASAN_BUILD)/allocfail tools/check/allocfail.lua

# tools/check/preload.lua loads trigger.core/trigger.curl from the given build directory before
# anything else, so spec/helper.lua's own cpath (build/5.4) cannot swap in the plain build.
# For the ASan build it also pins them (tools/check/pin.c) so that LeakSanitizer, which reports at
# exit after lua_close has dlclosed them, can still name their frames.
CHECK_LUA_RUN = $(CHECK_LUA) -e "TRIGGER_CHECK_BUILD='$(1)'; $(if $(filter $(ASAN_BUILD),$(1)),TRIGGER_CHECK_PIN='$(ASAN_BUILD)/checkpin.so'; )dofile'tools/check/preload.lua'"
CHECK_BUSTED  = $(call CHECK_LUA_RUN,$(1)) /usr/bin/busted --lpath='lua/?.lua;lua/?/init.lua' \
  --cpath='$(1)/?.so' -o TAP

# The specs valgrind runs (space separated; busted takes files or directories). The whole suite
# by default: ~225 specs, fault matrix included, take about a minute under memcheck, because the
# local server and the example scripts run in their own processes, which valgrind does not trace.
VALGRIND_SPECS ?= spec
VALGRIND      := valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 \
  --keep-debuginfo=yes --num-callers=30 --suppressions=tools/check/valgrind.supp
CHECK_VG       = env BUILD=$(CHECK_PLAIN) sh tools/check/valgrind.sh "$(VALGRIND)" $(1) --

CHECK_ITEM     = sh tools/check/item.sh $(CHECK_DIR)/results $(CHECK_DIR)
CHECK_TAP      = sh tools/check/tap.sh

CHECK_C_TESTS := $(patsubst spec/c/%.c,%,$(wildcard spec/c/test_*.c))
CHECK_C_SRC   := $(CORE_C)

# One fuzz target per fuzz/fuzz_*.c; fuzz_http1 only once csrc/lib/http1.c exists.
FUZZ_ALL      := $(filter-out $(if $(wildcard csrc/lib/http1.c),,fuzz_http1),\
                   $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c)))
FUZZ_TARGETS  ?= $(FUZZ_ALL)
FUZZ_SRC_fuzz_shape        := csrc/lib/shape.c csrc/lib/buf.c
FUZZ_SRC_fuzz_shapelog     := csrc/lib/shapelog.c csrc/lib/shape.c csrc/lib/json.c csrc/lib/buf.c
FUZZ_SRC_fuzz_pg_array     := csrc/lib/pgtext.c csrc/lib/buf.c
FUZZ_SRC_fuzz_pg_timestamp := csrc/lib/pgtext.c csrc/lib/buf.c
FUZZ_SRC_fuzz_base64url    := csrc/lib/jwt.c csrc/lib/buf.c
FUZZ_SRC_fuzz_json         := csrc/lib/json.c csrc/lib/buf.c
FUZZ_LIBS_fuzz_base64url   := $(CRYPTO_LIBS)
FUZZ_SRC_fuzz_http1        := csrc/lib/http1.c csrc/lib/buf.c
FUZZ_SRC_fuzz_sse          := csrc/lib/sse.c csrc/lib/json.c csrc/lib/buf.c
FUZZ_SRC_fuzz_lua_decode   := csrc/lib/runfields.c csrc/ljson.c csrc/laux.c csrc/lvalue.c csrc/lshape.c csrc/lsuperjson.c csrc/lib/json.c csrc/lib/shape.c csrc/lib/shapelog.c \
                              csrc/lib/buf.c csrc/lib/rowblob.c csrc/lrowblob.c csrc/lrunfields.c csrc/lpgtext.c \
                              csrc/lib/pgtext.c csrc/lib/superjson.c
FUZZ_INC_fuzz_lua_decode   := -I$(CHECK_LUAINC)
FUZZ_LIBS_fuzz_lua_decode  := -llua5.4

.PHONY: check check-asan check-valgrind fuzz fuzz-build check-asan-build check-valgrind-build check-reset
.PHONY: check-asan-run check-valgrind-run fuzz-run check-allocfail

# --- builds ----------------------------------------------------------------------------------

$(ASAN_BUILD)/trigger/core.so: $(CORE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CHECK_CC) $(ASAN_CFLAGS) $(SAN_FLAGS) $(WARN) $(HIDDEN) -fPIC -I$(CHECK_LUAINC) $(LIBFLAG) -o $@ $(CORE_SRC) $(CRYPTO_LIBS)

$(ASAN_BUILD)/trigger/curl.so: $(CURL_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CHECK_CC) $(ASAN_CFLAGS) $(SAN_FLAGS) $(WARN) $(HIDDEN) -fPIC -I$(CHECK_LUAINC) $(LIBFLAG) -o $@ $(CURL_SRC) $(CURL_LIBS)

# The C unit tests (spec/c/test_*.c, TAP), each linked with every plain-C core source.
$(ASAN_BUILD)/test_%: spec/c/test_%.c $(CHECK_C_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CHECK_CC) $(ASAN_CFLAGS) $(SAN_FLAGS) $(WARN) -o $@ $< $(CHECK_C_SRC) $(CRYPTO_LIBS) -lm

$(CHECK_DIR)/bin/test_%: spec/c/test_%.c $(CHECK_C_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -o $@ $< $(CHECK_C_SRC) $(CRYPTO_LIBS) -lm

$(ASAN_BUILD)/checkpin.so: tools/check/pin.c
	@mkdir -p $(dir $@)
	$(CHECK_CC) -O1 -g -Wall -Wextra -Werror -fPIC -I$(CHECK_LUAINC) $(LIBFLAG) -o $@ $< -ldl

# The allocation-failure sweep (tools/check/allocfail.c): trigger.core linked in, ASan + LSan.
$(ASAN_BUILD)/allocfail: tools/check/allocfail.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CHECK_CC) $(ASAN_CFLAGS) $(SAN_FLAGS) $(WARN) -Icsrc -I$(CHECK_LUAINC) -o $@ $< $(CORE_SRC) \
	  -llua5.4 $(CRYPTO_LIBS) -lm

check-asan-build: $(ASAN_BUILD)/allocfail $(ASAN_BUILD)/trigger/core.so $(ASAN_BUILD)/trigger/curl.so $(ASAN_BUILD)/checkpin.so \
  $(addprefix $(ASAN_BUILD)/,$(CHECK_C_TESTS))
	@test -f "$(ASAN_RT)" || { echo "check: $(ASAN_RT) not found (install libclang-rt-14-dev)"; exit 1; }

check-valgrind-build: $(addprefix $(CHECK_DIR)/bin/,$(CHECK_C_TESTS))
	@$(MAKE) --no-print-directory LUA=$(CHECK_LUA) BUILD=$(CHECK_PLAIN) all

# One rule per target: build/fuzz/<target> from fuzz/<target>.c and its FUZZ_SRC_<target>.
define FUZZ_RULE
$(FUZZ_BUILD)/$(1): fuzz/$(1).c fuzz/fuzz_assert.h spec/c/shapelog_drive.h $(FUZZ_SRC_$(1)) $(HEADERS)
	@mkdir -p $(FUZZ_BUILD)
	$(CHECK_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=undefined $(WARN) -Icsrc $(FUZZ_INC_$(1)) -o $$@ fuzz/$(1).c $(FUZZ_SRC_$(1)) \
	  $(FUZZ_LIBS_$(1)) -lm
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_RULE,$(t))))

fuzz-build: $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))

check-reset:
	@mkdir -p $(CHECK_DIR) && rm -f $(CHECK_DIR)/results

# --- the checks ----------------------------------------------------------------------------------
# The *-run targets record one line per item in build/check/results; the public targets reset
# that file, run, then sum up. A build that fails is recorded as a failed item of its own.

CHECK_BUILD_STEP = $(CHECK_ITEM) --build $(1) -- $(MAKE) --no-print-directory $(2)

check-asan-run:
	@$(call CHECK_BUILD_STEP,asan:build,check-asan-build) || exit 0; \
	for t in $(CHECK_C_TESTS); do \
	  $(CHECK_ITEM) asan:$$t -- $(CHECK_TAP) env $(ASAN_TEST_ENV) $(ASAN_BUILD)/$$t; \
	done; \
	$(CHECK_ITEM) asan:lifetimes -- $(CHECK_TAP) env $(ASAN_ENV) $(call CHECK_LUA_RUN,$(ASAN_BUILD)) tools/check/lifetimes.lua; \
	$(CHECK_ITEM) asan:allocfail -- $(ALLOCFAIL_RUN); \
	$(CHECK_ITEM) asan:busted -- $(CHECK_TAP) env $(ASAN_ENV) $(call CHECK_BUSTED,$(ASAN_BUILD)) spec; \
	exit 0

check-valgrind-run:
	@$(call CHECK_BUILD_STEP,valgrind:build,check-valgrind-build) || exit 0; \
	for t in $(CHECK_C_TESTS); do \
	  $(CHECK_ITEM) valgrind:$$t -- $(CHECK_TAP) $(call CHECK_VG,$(CHECK_DIR)/vg-$$t) $(CHECK_DIR)/bin/$$t; \
	done; \
	$(CHECK_ITEM) valgrind:lifetimes -- $(CHECK_TAP) $(call CHECK_VG,$(CHECK_DIR)/vg-lifetimes) $(call CHECK_LUA_RUN,$(CHECK_PLAIN)) tools/check/lifetimes.lua; \
	$(CHECK_ITEM) valgrind:busted -- $(CHECK_TAP) $(call CHECK_VG,$(CHECK_DIR)/vg-busted) $(call CHECK_BUSTED,$(CHECK_PLAIN)) $(VALGRIND_SPECS); \
	exit 0

fuzz-run:
	@MAKE="$(MAKE)" FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_REPORT=$(FUZZ_REPORT) FUZZ_JOBS=$(FUZZ_JOBS) \
	  sh tools/check/fuzz.sh $(CHECK_DIR)/results $(CHECK_DIR) $(FUZZ_BUILD) $(FUZZ_TARGETS)

# Only the allocation-failure sweep (one item; part of check-asan).
check-allocfail: check-reset
	@$(call CHECK_BUILD_STEP,asan:build,$(ASAN_BUILD)/allocfail) || exit 0; \
	$(CHECK_ITEM) asan:allocfail -- $(ALLOCFAIL_RUN); \
	sh tools/check/summary.sh $(CHECK_DIR)/results

check-asan: check-reset
	@$(MAKE) --no-print-directory check-asan-run; sh tools/check/summary.sh $(CHECK_DIR)/results

check-valgrind: check-reset
	@$(MAKE) --no-print-directory check-valgrind-run; sh tools/check/summary.sh $(CHECK_DIR)/results

fuzz: check-reset
	@$(MAKE) --no-print-directory fuzz-run; sh tools/check/summary.sh $(CHECK_DIR)/results

check: check-reset
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory check-asan-run check-valgrind-run fuzz-run soak-run; \
	echo "make check took $$(( $$(date +%s) - start )) s"; \
	sh tools/check/summary.sh $(CHECK_DIR)/results
