# Build in place:   make              (Lua 5.4)      make LUA=luajit   (LuaJIT 2.1 / OpenResty)
# Variable names follow LuaRocks' (CFLAGS, LIBFLAG, LUA_INCDIR). The rockspecs do not use this
# Makefile: LuaRocks builds the rock with its builtin backend (rockspec/, mk/rock.mk).
.DEFAULT_GOAL := all
LUA        ?= lua5.4
ifeq ($(LUA),luajit)
LUA_TAG    ?= luajit
LUA_INCDIR ?= /usr/include/luajit-2.1
else
LUA_TAG    ?= 5.4
LUA_INCDIR ?= /usr/include/lua5.4
endif
CC         ?= cc
CFLAGS     ?= -O2 -g
LIBFLAG    ?= -shared
WARN       := -std=c99 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-function
# Only luaopen_* leave a module (TR_EXPORT in compat.h).
HIDDEN     := -fvisibility=hidden
CURL_LIBS  ?= -lcurl
CRYPTO_LIBS ?= -lcrypto
BUILD      ?= build/$(LUA_TAG)

# Two layers, as cqueues' src/lib: csrc/lib/ holds the plain C cores (<name>.c/<name>.h: no Lua
# header, no I/O, except hub.c, the one that drives libcurl), each testable with a C harness
# (spec/c/) and fuzzable (fuzz/); csrc/ holds their Lua bindings, l<name>.c binding lib/<name>.c
# and adding its functions through a tr_open_<name>() listed in lcore.h (lhub.c binds hub.c as
# the trigger.curl module; lcore.c holds only luaopen_trigger_core). A binding calls no other
# binding's functions: what they share is laux.c (scratch boxes, size options) and lvalue.c (the
# Lua values of the cores' values: the JSON value builder, Postgres arrays, row blob members), as
# lauxlib serves Lua's own libraries. Bindings include "lib/<name>.h", so no build needs -I.
CORE_C   := csrc/lib/buf.c csrc/lib/runfields.c csrc/lib/shape.c csrc/lib/shapelog.c csrc/lib/pgtext.c csrc/lib/jwt.c csrc/lib/json.c csrc/lib/http1.c \
            csrc/lib/sse.c csrc/lib/rowblob.c csrc/lib/superjson.c
CORE_L   := csrc/lcore.c csrc/laux.c csrc/lvalue.c csrc/lshape.c csrc/lpgtext.c csrc/lrunfields.c csrc/lrowblob.c csrc/ljwt.c \
            csrc/lclock.c csrc/ljson.c csrc/lsuperjson.c csrc/lhttp1.c \
            csrc/lsse.c
CURL_C   := csrc/lib/buf.c csrc/lib/hub.c
CURL_L   := csrc/lhub.c
CORE_SRC := $(CORE_C) $(CORE_L)
CURL_SRC := $(CURL_C) $(CURL_L)
HEADERS  := $(wildcard csrc/*.h csrc/lib/*.h)

# The build is keyed on the Lua headers and the flags, not only on LUA: every object depends on
# a stamp file holding what it was built with (rewritten only when that changes) and on the Lua
# headers themselves, so a build with other headers into the same BUILD (`make LUA_INCDIR=…`)
# rebuilds instead of keeping the old binaries. tools/check/stamp.sh tests it.
BUILD_KEY   := CC=$(CC) CFLAGS=$(CFLAGS) LIBFLAG=$(LIBFLAG) LUA_INCDIR=$(LUA_INCDIR) WARN=$(WARN) HIDDEN=$(HIDDEN) \
               CRYPTO_LIBS=$(CRYPTO_LIBS) CURL_LIBS=$(CURL_LIBS)
STAMP       := $(BUILD)/build-key
LUA_HEADERS := $(wildcard $(LUA_INCDIR)/lua.h $(LUA_INCDIR)/luaconf.h $(LUA_INCDIR)/lauxlib.h)

$(STAMP): FORCE
	@mkdir -p $(dir $@)
	@new=$@.$$$$; printf '%s\n' '$(subst ','\'',$(BUILD_KEY))' > $$new; \
	if cmp -s $$new $@; then rm -f $$new; else mv $$new $@; fi
.PHONY: FORCE
FORCE:


.PHONY: all test demo clean install check lint doc bench deps
all: $(BUILD)/trigger/core.so $(BUILD)/trigger/curl.so

$(BUILD)/trigger/core.so: $(CORE_SRC) $(HEADERS) $(STAMP) $(LUA_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(HIDDEN) -fPIC -I$(LUA_INCDIR) $(LIBFLAG) -o $@ $(CORE_SRC) $(CRYPTO_LIBS)

$(BUILD)/trigger/curl.so: $(CURL_SRC) $(HEADERS) $(STAMP) $(LUA_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(HIDDEN) -fPIC -I$(LUA_INCDIR) $(LIBFLAG) -o $@ $(CURL_SRC) $(CURL_LIBS)

# make install: the build and lua/ into INST_LIBDIR and INST_LUADIR (LuaRocks does not use it).
INST_LIBDIR ?= $(BUILD)/install/lib
INST_LUADIR ?= $(BUILD)/install/lua
INST_BINDIR ?= $(BUILD)/install/bin
install: all
	mkdir -p $(INST_LIBDIR)/trigger $(INST_LUADIR) $(INST_BINDIR)
	cp $(BUILD)/trigger/core.so $(BUILD)/trigger/curl.so $(INST_LIBDIR)/trigger/
	cp -r lua/trigger $(INST_LUADIR)/
	cp bin/trigger-realtime $(INST_BINDIR)/

test: deps all build/test_core build/test_http1 build/test_sse build/test_shapelog \
      build/test_json build/test_rowblob build/test_runfields build/test_superjson \
      test-stamp
	@LUA=$(LUA) BUILD=$(BUILD) sh spec/run.sh $(SPECS)

# The build stamp: another LUA_INCDIR or CFLAGS rebuilds, the same ones do not (in a build
# folder of its own, removed after).
.PHONY: test-stamp
test-stamp:
	@MAKE="$(MAKE)" sh tools/check/stamp.sh build/stamp-$$$$

demo: deps all
	@sh examples/demo.sh

# (csrc/*.o, csrc/lib/*.o and trigger/*.so: what `luarocks make` leaves in a checkout)
clean:
	rm -rf build trigger
	rm -f csrc/*.o csrc/lib/*.o

build/test_core: spec/c/test_core.c $(CORE_C) $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_core.c $(CORE_C) $(CRYPTO_LIBS) -lm

build/test_shapelog: spec/c/test_shapelog.c spec/c/shapelog_drive.h csrc/lib/shapelog.c csrc/lib/shape.c \
  csrc/lib/json.c csrc/lib/buf.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_shapelog.c csrc/lib/shapelog.c csrc/lib/shape.c csrc/lib/json.c \
	  csrc/lib/buf.c -lm

build/test_json: spec/c/test_json.c csrc/lib/json.c csrc/lib/buf.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_json.c csrc/lib/json.c csrc/lib/buf.c -lm

build/test_rowblob: spec/c/test_rowblob.c csrc/lib/rowblob.c csrc/lib/json.c csrc/lib/buf.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_rowblob.c csrc/lib/rowblob.c csrc/lib/json.c csrc/lib/buf.c -lm

build/test_runfields: spec/c/test_runfields.c csrc/lib/runfields.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_runfields.c csrc/lib/runfields.c

build/test_sse: spec/c/test_sse.c csrc/lib/sse.c csrc/lib/json.c csrc/lib/buf.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_sse.c csrc/lib/sse.c csrc/lib/json.c csrc/lib/buf.c -lm

build/test_superjson: spec/c/test_superjson.c csrc/lib/superjson.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_superjson.c csrc/lib/superjson.c -lm

# Further targets live beside this file, one file per concern (openresty, check, bench, lint).
-include mk/*.mk
