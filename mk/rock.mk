# The release (issue 31): the source rock, the rock check on every Lua, the rockspec and LuaLS
# definition checks.
#
#   make dist          build/dist/trigger-realtime-X.Y.Z-1.src.rock: the release rockspec
#                      (rockspec/trigger-realtime-X.Y.Z-1.rockspec, X.Y.Z = trigger._VERSION)
#                      and this tree's tracked files, made offline (mk/dist.sh). Installs with
#                      `luarocks install --deps-mode=none build/dist/…src.rock`.
#   make test-rock     make dist, then for Lua 5.1 (run on LuaJIT), 5.3 and 5.4: the source rock
#                      and `luarocks make` of the release rockspec, each into a fresh tree; each
#                      tree must load `trigger` and `trigger.core` from itself and follow a run of
#                      the local server (tools/check/rock.sh; TAP, "N passed, N failed")
#   make lint-rockspec the library's rockspecs list every Lua module of lua/ and the Makefile's C
#                      sources, carry no -Werror, and agree with each other (tools/check/rockspec.lua)
#   make lint-types    types/library/trigger.lua (LuaLS definitions, shipped with the rock)
#                      declares what the reference documents, the library has what it declares,
#                      and the option classes match the options each call accepts
#                      (tools/check/types.lua)
# lint-rockspec and lint-types are items of `make lint` (LINT_GATES below).

VERSION   := $(shell sed -n 's/^M\._VERSION = "\(.*\)"$$/\1/p' lua/trigger/init.lua)
DIST_DIR  ?= build/dist
DIST_ROCK := $(DIST_DIR)/trigger-realtime-$(VERSION)-1.src.rock

.PHONY: dist test-rock lint-rockspec lint-types
LINT_GATES += rockspec types

dist:
	@DIST_DIR=$(DIST_DIR) sh mk/dist.sh

test-rock: dist
	@sh tools/check/rock.sh $(DIST_ROCK)

lint-rockspec:
	@$(LINT_LUA) tools/check/rockspec.lua "$(CORE_SRC)" "$(CURL_SRC)"

# The reference's items come from LDoc itself (tools/check/ldoc_items.lua as its filter, with
# --all so that @local items are known to be internal); the library is loaded for real.
lint-types:
	@$(MAKE) --no-print-directory LUA=lua5.4 all >/dev/null || exit 1; \
	mkdir -p $(LINT_DIR); \
	$(LINT_LUA) tools/doc/split.lua lua/trigger/streams.lua build/doc-src || exit 1; \
	LUA_PATH="tools/check/?.lua;;" $(LDOC) --all --filter ldoc_items.dump . > $(LINT_DIR)/ldoc-items.tsv || exit 1; \
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/5.4/?.so;;" \
	  $(LINT_LUA) tools/check/types.lua $(LINT_DIR)/ldoc-items.tsv types/library/trigger.lua
