# The release (issue 31): the LuaLS definition check.
#
#   make lint-types    types/library/trigger.lua (LuaLS definitions, shipped with the rock)
#                      declares what the reference documents, the library has what it declares,
#                      and the option classes match the options each call accepts
#                      (tools/check/types.lua)
# lint-types is an item of `make lint` (LINT_GATES below).

.PHONY: lint-types
LINT_GATES += types

# The reference's items come from LDoc itself (tools/check/ldoc_items.lua as its filter, with
# --all so that @local items are known to be internal); the library is loaded for real.
lint-types:
	@$(MAKE) --no-print-directory LUA=lua5.4 all >/dev/null || exit 1; \
	mkdir -p $(LINT_DIR); \
	$(LINT_LUA) tools/doc/split.lua lua/trigger/streams.lua build/doc-src || exit 1; \
	LUA_PATH="tools/check/?.lua;;" $(LDOC) --all --filter ldoc_items.dump . > $(LINT_DIR)/ldoc-items.tsv || exit 1; \
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/5.4/?.so;;" \
	  $(LINT_LUA) tools/check/types.lua $(LINT_DIR)/ldoc-items.tsv types/library/trigger.lua
