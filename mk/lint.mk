# make lint and make doc: the code gates and the reference of issue 10.
#
#   make lint          every gate below; one line per gate, then "N passed, N failed"; fails on
#                      any finding. Each gate's full output is kept in build/lint/<gate>.log.
#   make lint-lua      luacheck on lua/ server/ spec/ examples/ bench/ tools/ bin/ (config: .luacheckrc)
#   make lint-format   clang-format --dry-run --Werror on csrc/ spec/c/ fuzz/ (config: .clang-format)
#                      fix a file with: clang-format -i FILE
#   make lint-cppcheck cppcheck (warning, performance, portability) on csrc/lib/*.c and csrc/*.c
#   make lint-tidy     clang-tidy (LINT_TIDY_CHECKS below) on csrc/lib/*.c and csrc/*.c
#   make lint-version  trigger._VERSION, CHANGELOG.md and the rockspecs agree (spec/version_spec.lua)
#   make doc           the LDoc HTML reference in doc/ (config: config.ld); fails on any warning,
#                      on any link of doc/ that names a missing file or anchor
#                      (tools/doc/check_links.lua), on Markdown emphasis inside a word (a
#                      name like WAITING_FOR_DEPLOY outside backticks) and on a public class
#                      missing from the index (tools/doc/check_html.lua)
#
# Tools are Debian's: lua-check, clang-format (14), clang-tidy (14), cppcheck (2.10), lua-busted,
# lua-ldoc and lua-markdown (LDoc's Markdown; Debian's lua-ldoc only suggests it).

LUACHECK     ?= luacheck
CLANG_FORMAT ?= clang-format
CLANG_TIDY   ?= clang-tidy
CPPCHECK     ?= cppcheck
LDOC         ?= ldoc
LINT_LUA     ?= lua5.4
LINT_LUAINC  ?= /usr/include/lua5.4
LINT_DIR     := build/lint

# What each gate looks at; directories and files that do not exist (yet) are skipped.
LINT_LUA_DIRS := $(wildcard lua server spec examples bench tools bin/trigger-realtime)
LINT_FORMAT   := $(wildcard csrc/*.c csrc/*.h csrc/lib/*.c csrc/lib/*.h spec/c/*.c fuzz/*.c)
LINT_C        := $(wildcard csrc/lib/*.c csrc/*.c)

# The same translation units the Makefile builds: C99, the Lua headers, csrc/ includes. Files
# that need POSIX define _POSIX_C_SOURCE themselves, so it is not forced here.
LINT_CFLAGS := -std=c99 -I$(LINT_LUAINC) -Icsrc

# cppcheck cannot read glibc's <limits.h>; without LLONG_MAX luaconf.h stops with #error.
CPPCHECK_FLAGS := --enable=warning,performance,portability --error-exitcode=1 --quiet \
  --inline-suppr --std=c99 --library=posix -Icsrc -I$(LINT_LUAINC) \
  -DLLONG_MAX=9223372036854775807LL '-DLLONG_MIN=(-LLONG_MAX-1)'

# clang-tidy: the static analyzer, bugprone, performance and portability checks, all as errors.
# Left out: bugprone-easily-swappable-parameters (every (buf, len, ...) API trips it). Options:
# _POSIX_C_SOURCE is the feature-test macro, not a clash with the implementation's names; and
# integer-to-double conversions (timespec and milliseconds to Lua seconds) are wanted, while
# narrowing between integer types and from floating point is still reported.
LINT_TIDY_CHECKS := -*,clang-analyzer-*,bugprone-*,-bugprone-easily-swappable-parameters,performance-*,portability-*
LINT_TIDY_CONFIG := {Checks: '$(LINT_TIDY_CHECKS)', WarningsAsErrors: '*', \
  HeaderFilterRegex: '.*/csrc/.*', CheckOptions: [ \
  {key: bugprone-reserved-identifier.AllowedIdentifiers, value: '_POSIX_C_SOURCE'}, \
  {key: bugprone-narrowing-conversions.WarnOnIntegerToFloatingPointNarrowingConversion, value: false}]}

.PHONY: lint lint-lua lint-format lint-cppcheck lint-tidy lint-version doc

lint-lua:
	$(LUACHECK) --no-color --quiet --codes $(LINT_LUA_DIRS)

# One line per file that needs formatting, with the lines clang-format would change.
lint-format:
	@status=0; \
	for f in $(LINT_FORMAT); do \
	  at=$$($(CLANG_FORMAT) --dry-run --Werror "$$f" 2>&1 | sed -n 's/^[^:]*:\([0-9]*\):[0-9]*: error: .*/\1/p' | uniq); \
	  if [ -n "$$at" ]; then \
	    echo "$$f: needs clang-format -i; lines" $$at; status=1; \
	  fi; \
	done; \
	exit $$status

lint-cppcheck:
	$(CPPCHECK) $(CPPCHECK_FLAGS) $(LINT_C)

# ("N warnings generated" counts what the header filter and check list left out: not shown.)
lint-tidy:
	@out=$$($(CLANG_TIDY) --quiet --config="$(LINT_TIDY_CONFIG)" $(LINT_C) -- $(LINT_CFLAGS) 2>&1); \
	status=$$?; printf '%s\n' "$$out" | grep -v '^[0-9]* warnings* generated\.$$'; exit $$status

lint-version:
	@$(LINT_LUA) /usr/bin/busted -o TAP spec/version_spec.lua

# Each gate is one item of the closing count; a failed gate prints its log.
LINT_GATES := lua format cppcheck tidy version
lint:
	@mkdir -p $(LINT_DIR); passed=0; failed=0; \
	for g in $(LINT_GATES); do \
	  log=$(LINT_DIR)/$$g.log; \
	  if $(MAKE) --no-print-directory lint-$$g > $$log 2>&1; then \
	    echo "ok   lint-$$g"; passed=$$((passed + 1)); \
	  else \
	    echo "FAIL lint-$$g ($$log):"; sed -e 's/^/    /' $$log; failed=$$((failed + 1)); \
	  fi; \
	done; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

# LDoc prints its warnings on stderr and some (a missing Markdown module, other config files)
# on stdout, so anything beyond its two progress lines counts as a warning. Then every
# relative link of doc/ must name a file and anchor that exist, and the text must pass
# tools/doc/check_html.lua. (tools/doc/split.lua first: see config.ld.)
doc:
	@rm -rf doc; \
	$(LINT_LUA) tools/doc/split.lua lua/trigger/streams.lua build/doc-src || exit 1; \
	out=$$($(LDOC) --fatalwarnings . 2>&1); status=$$?; \
	printf '%s\n' "$$out"; \
	warnings=$$(printf '%s\n' "$$out" | grep -v -e '^reading configuration from ' -e '^output written to '); \
	if printf '%s\n' "$$out" | grep -q 'markdown not found'; then \
	  echo "make doc: LDoc needs a Markdown module: apt-get install lua-markdown"; fi; \
	if [ $$status -ne 0 ] || [ -n "$$warnings" ]; then echo "make doc: LDoc reported warnings (above)"; exit 1; fi; \
	$(LINT_LUA) tools/doc/check_links.lua doc || { echo "make doc: broken links (above)"; exit 1; }; \
	$(LINT_LUA) tools/doc/check_html.lua doc types/library/trigger.lua || { echo "make doc: see above"; exit 1; }; \
	echo "make doc: reference in doc/index.html"
