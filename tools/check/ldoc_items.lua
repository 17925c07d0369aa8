-- An LDoc filter (run inside LDoc: `ldoc --all --filter ldoc_items.dump .`, see mk/rock.mk):
-- prints what the reference documents, one tab-separated line per item, for
-- tools/check/types.lua:
--   module  type  name  local|public  params,…  opts.subparams,…
-- `type` is LDoc's (function, lfunction, field, table); `local` marks `@local` items (shown
-- because of --all: the check needs them to know an undeclared name is internal on purpose).
local M = {}

function M.dump(modules)
  for _, m in ipairs(modules) do
    for _, item in ipairs(m.items) do
      local params, subs = {}, {}
      for _, p in ipairs(item.params or {}) do params[#params + 1] = p end
      for _, list in pairs(item.subparams or {}) do
        for _, p in ipairs(list) do subs[#subs + 1] = p end
      end
      table.sort(subs)
      local is_local = item.type == "lfunction" or (item.tags and item.tags["local"] ~= nil)
      print(table.concat({ m.name, item.type, item.name, is_local and "local" or "public",
        table.concat(params, ","), table.concat(subs, ",") }, "\t"))
    end
  end
end

return M
