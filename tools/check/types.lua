-- Keeps the LuaLS definitions (types/library/trigger.lua) true (make lint, item "types"):
--
--   lua5.4 tools/check/types.lua ITEMS types/library/trigger.lua
--
-- ITEMS is what the reference documents (tools/check/ldoc_items.lua's lines, made by LDoc from
-- config.ld's files). The reference decides what is public: an item LDoc documents is public,
-- one marked `@local` is internal, a name starting with "_" is internal too. Checked:
--   1. every public item of the reference is declared, and every declaration is documented:
--      a module function `f` of `trigger.x` is `function <trigger.x>.f`, a module field a
--      `---@field` of class `trigger.x`, a method `C:m` of class `C` (or `Stream:m` of
--      trigger.streams) `function <trigger.C>:m`, `__call` an `---@overload` of the class, a
--      documented table `T` (Run, Error) the fields of class `trigger.T`, `errors.kinds` the
--      values of alias `trigger.ErrorKind`;
--   2. the library has what is declared (loaded for real: functions are functions, fields are
--      there), and every name of a public module or class table is documented (public or
--      `@local`) or starts with "_";
--   3. the options: `trigger.Options` has exactly the options `trigger.configure` accepts
--      (trigger.config's KNOWN); the opts class (`---@param opts?` or `filters?`) of each call
--      that takes options (the subscribe functions, runs.list/list_page/wait, tasks.trigger/
--      batch_trigger/batch_trigger_by_id, streams.read, auth.create_public_token) extends it
--      and declares beyond it exactly that call's own options (the call's options table, read
--      from its upvalues); `trigger.TaskRunOptions` (a batch item's options) has exactly
--      trigger.tasks' RUN_OPTIONS; each option `with_streams` is declared with is accepted by it.
-- Each problem is one line naming the entry to add, remove or fix; exit status 1 if any.
local items_file, meta_file = arg[1], arg[2]
if not items_file or not meta_file then
  io.stderr:write("usage: tools/check/types.lua ITEMS types/library/trigger.lua\n")
  os.exit(2)
end

local problems = 0
local function problem(fmt, ...)
  problems = problems + 1
  print(string.format(fmt, ...))
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list, function(a, b) return tostring(a) < tostring(b) end)
  return list
end

-- ---------------------------------------------------------------------------------------------
-- The definitions file: classes (fields, functions, methods, overloads, parents), aliases, and
-- the `opts` parameter's class of each function.

local classes, aliases = {}, {}
local function class(name)
  local c = classes[name]
  if not c then
    c = { fields = {}, functions = {}, methods = {}, opts = {}, line = {} }
    classes[name] = c
  end
  return c
end

do
  local bound = {} -- expression a class is assigned to (`local Stream`, `trigger.runs`) -> class
  local current, pending_class, pending_params, alias = nil, nil, {}, nil
  local n = 0
  for line in io.lines(meta_file) do
    n = n + 1
    local cname, parents = line:match("^%-%-%-@class%s+([%w_.]+)%s*:?%s*([%w_., ]*)")
    local alias_name = line:match("^%-%-%-@alias%s+([%w_.]+)")
    if cname then
      current, pending_class, alias = class(cname), cname, nil
      current.declared = n
      current.parents = {}
      for parent in (parents or ""):gmatch("[%w_.]+") do
        current.parents[#current.parents + 1] = parent
      end
    elseif alias_name then
      alias = { values = {} }
      aliases[alias_name] = alias
      for v in line:gmatch('"([^"]*)"') do alias.values[v] = true end
    elseif alias and line:match("^%-%-%-|") then
      local v = line:match('^%-%-%-|%s*"([^"]*)"')
      if v then alias.values[v] = true end
    elseif line:match("^%-%-%-@field%s") then
      local fname = line:match("^%-%-%-@field%s+([%w_]+)")
      if current and fname then
        current.fields[fname] = n
      else
        problem("%s:%d: a ---@field outside a class", meta_file, n)
      end
    elseif line:match("^%-%-%-@overload%s") then
      if current then current.overload = n end
    elseif line:match("^%-%-%-@param%s") then
      local pname, ptype = line:match("^%-%-%-@param%s+([%w_]+)%??%s+([%w_.]+)")
      if pname == "filters" then pname = "opts" end -- runs.list's options are its filters
      if pname then pending_params[pname] = ptype end
    else
      local lhs = line:match("^local%s+([%w_]+)%s*=%s*{}") or line:match("^([%w_.]+)%s*=%s*{}")
      if lhs and pending_class then bound[lhs] = pending_class end
      local target, sep, fname = line:match("^function%s+([%w_.]-)([.:])([%w_]+)%s*%(")
      if target then
        local cname2 = bound[target]
        if not cname2 then
          problem("%s:%d: function %s%s%s: %s is not a table declared with ---@class", meta_file,
            n, target, sep, fname, target)
        else
          local c = class(cname2)
          local where = sep == ":" and c.methods or c.functions
          where[fname] = n
          c.opts[fname] = pending_params.opts
        end
      end
      if not line:match("^%-%-%-") then
        pending_params = {}
        if not lhs then pending_class = nil end
        alias = nil
      end
    end
  end
end

-- Every field of a class, its parents' included (`---@class A: B, C`: every parent). A class
-- in `skip` and its parents are left out.
local function all_fields(cname, skip, out, seen)
  out, seen = out or {}, seen or {}
  local c = classes[cname]
  if not c or seen[cname] or (skip and skip[cname]) then return out end
  seen[cname] = true
  for f in pairs(c.fields) do out[f] = true end
  for _, parent in ipairs(c.parents) do all_fields(parent, skip, out, seen) end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- The reference

local documented = {} -- "module\tname" -> item
local items = {}
for line in io.lines(items_file) do
  local f = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
  if #f >= 4 then
    local item = { module = f[1], type = f[2], name = f[3], is_local = f[4] == "local",
      params = {}, subparams = {} }
    for p in (f[5] or ""):gmatch("[^,]+") do item.params[#item.params + 1] = p end
    for p in (f[6] or ""):gmatch("[^,]+") do item.subparams[#item.subparams + 1] = p end
    items[#items + 1] = item
    documented[item.module .. "\t" .. item.name] = item
  end
end
if #items == 0 then
  problem("%s: no items (did LDoc run with tools/check/ldoc_items.lua?)", items_file)
end

-- The class that stands for a reference module or class: trigger.x is trigger.x, a classmod
-- C (and the `C:m` items of a module, as trigger.streams' Stream) is trigger.C.
local function class_name(name)
  return name:match("^trigger") and name or ("trigger." .. name)
end

local META = "types/library/trigger.lua"
local declared_seen = {} -- "class\tkind\tname" -> true, for the other direction
local function need(cname, kind, name, what)
  declared_seen[cname .. "\t" .. kind .. "\t" .. name] = true
  local c = classes[cname]
  local have
  if kind == "overload" then
    have = c and c.overload
  else
    have = c and c[kind][name]
  end
  if not have then
    local how = ({ functions = "function %s.%s(…) end", methods = "function %s:%s(…) end",
      fields = "---@field %s.%s", overload = "---@overload fun(…) on class %s (%s)" })[kind]
    problem("%s: %s is documented but not declared: add %s", META, what,
      string.format(how, cname, name))
  end
end

for _, item in ipairs(items) do
  if not item.is_local then
    local owner, sep, method = item.name:match("^([%w_]+)([:.])([%w_]+)$")
    local what = item.module .. (owner and " " or ".") .. item.name
    if owner and (sep == ":" or method:match("^__")) then
      local cname = class_name(owner)
      if method == "__call" then
        need(cname, "overload", method, what)
      elseif method:match("^__") then -- luacheck: ignore 542
        -- other metamethods (__tostring, __close) need no declaration
      else
        need(cname, "methods", method, what)
      end
    elseif item.type == "function" then
      need(class_name(item.module), "functions", item.name, what)
    elseif item.type == "field" then
      need(class_name(item.module), "fields", item.name, what)
    elseif item.type == "table" and item.name:match("^%u") then
      local cname = class_name(item.name)
      declared_seen[cname .. "\tclass"] = true
      if not classes[cname] then
        problem("%s: %s is documented but not declared: add ---@class %s", META, what, cname)
      else
        local want = set_of(item.params)
        for _, f in ipairs(item.params) do
          if not classes[cname].fields[f] then
            problem("%s: field %s of %s is documented but not declared: add ---@field %s to "
              .. "class %s", META, f, what, f, cname)
          end
        end
        for _, f in ipairs(sorted_keys(classes[cname].fields)) do
          if not want[f] then
            problem("%s:%d: class %s declares field %s, which %s does not document", META,
              classes[cname].fields[f], cname, f, what)
          end
        end
      end
    elseif item.type == "table" then
      need(class_name(item.module), "fields", item.name, what)
    end
  end
end

-- errors.kinds: the alias of the kinds.
local kinds_item = documented["trigger.errors\tkinds"]
local kinds_alias = aliases["trigger.ErrorKind"]
if kinds_item and not kinds_alias then
  problem("%s: no ---@alias trigger.ErrorKind (the kinds of trigger.errors.kinds)", META)
elseif kinds_item then
  local want = set_of(kinds_item.params)
  for k in pairs(want) do
    if not kinds_alias.values[k] then problem('%s: alias trigger.ErrorKind lacks "%s"', META, k) end
  end
  for k in pairs(kinds_alias.values) do
    if not want[k] then problem('%s: alias trigger.ErrorKind has "%s", not a documented kind', META, k) end
  end
end

-- Declarations the reference does not document. Module classes are those named like a module
-- of the reference; helper classes (options, positions, items) are not checked this way.
local modules, ref_classes = {}, {}
for _, item in ipairs(items) do
  modules[item.module] = true
  local owner = item.name:match("^([%w_]+)[:.]")
  if owner then ref_classes[class_name(owner)] = true end
  if item.type == "table" and item.name:match("^%u") then ref_classes[class_name(item.name)] = true end
end
for cname in pairs(modules) do ref_classes[class_name(cname)] = true end
for _, cname in ipairs(sorted_keys(classes)) do
  local c = classes[cname]
  if ref_classes[cname] then
    for _, kind in ipairs({ "functions", "methods", "fields" }) do
      for _, name in ipairs(sorted_keys(c[kind])) do
        local documented_too = declared_seen[cname .. "\t" .. kind .. "\t" .. name]
          or declared_seen[cname .. "\tclass"] -- a documented table's fields: checked above
        -- a classmod's readable fields (closed, finished) are told in prose, not as items
        if not documented_too and not (kind == "fields" and not modules[cname]) then
          problem("%s:%d: %s %s of %s is declared but not documented (document it, or remove "
            .. "the declaration)", META, c[kind][name], kind:sub(1, -2), name, cname)
        end
      end
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- The library itself

local trigger = require "trigger"

-- The table a class stands for: a module (trigger, trigger.x as a field of trigger or by
-- require), or a class table kept in a module.
local CLASS_TABLES = {
  ["trigger.Subscription"] = { "trigger.subscription", "Subscription" },
  ["trigger.RunStreams"] = { "trigger.streams.run_streams", "RunStreams" },
  ["trigger.Stream"] = { "trigger.streams", "Stream" },
}
local function runtime_table(cname)
  if CLASS_TABLES[cname] then
    local mod = require(CLASS_TABLES[cname][1])
    return mod[CLASS_TABLES[cname][2]]
  end
  if cname == "trigger" then return trigger end
  local field = cname:match("^trigger%.([%w_]+)$")
  local t = field and trigger[field]
  if type(t) == "table" then return t end
  local ok, mod = pcall(require, cname)
  return ok and type(mod) == "table" and mod or nil
end

for _, cname in ipairs(sorted_keys(ref_classes)) do
  local c = classes[cname]
  local t = runtime_table(cname)
  if c and (next(c.functions) or next(c.methods) or modules[cname]) then
    if not t then
      problem("%s: class %s: no such table in the library (CLASS_TABLES of tools/check/types.lua "
        .. "names where a class lives)", META, cname)
    else
      for _, kind in ipairs({ "functions", "methods" }) do
        for _, name in ipairs(sorted_keys(c[kind])) do
          if type(t[name]) ~= "function" then
            problem("%s:%d: %s.%s is declared but the library has no such function", META,
              c[kind][name], cname, name)
          end
        end
      end
      if modules[cname] then
        for _, name in ipairs(sorted_keys(c.fields)) do
          if t[name] == nil then
            problem("%s:%d: field %s.%s is declared but the library has no such field", META,
              c.fields[name], cname, name)
          end
        end
      end
      -- Every name of the table is documented (public or @local), or starts with "_".
      local ref_module = modules[cname] and cname or nil
      for _, name in ipairs(sorted_keys(t)) do
        if type(name) == "string" and not name:match("^_") then
          local found
          if ref_module then
            found = documented[ref_module .. "\t" .. name]
          else
            for m in pairs(modules) do
              local owner = cname:match("^trigger%.(.*)$")
              found = found or documented[m .. "\t" .. owner .. ":" .. name]
                or documented[m .. "\t" .. owner .. "." .. name]
            end
          end
          if not found then
            problem("%s.%s: in the library but not in the reference: document it (and declare it "
              .. "in %s) or mark it @local", cname, name, META)
          end
        end
      end
    end
  end
end

-- errors.kinds at run time
if kinds_alias then
  for k in pairs(trigger.errors.kinds) do
    if not kinds_alias.values[k] then
      problem('%s: alias trigger.ErrorKind lacks "%s" (trigger.errors.kinds has it)', META, k)
    end
  end
  for k in pairs(kinds_alias.values) do
    if not trigger.errors.kinds[k] then
      problem('%s: alias trigger.ErrorKind has "%s", which trigger.errors.kinds has not', META, k)
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- Options

-- A table kept in an upvalue `name` of `fn` or of the functions it reaches through upvalues.
local function upvalue(fn, name, depth, seen)
  seen = seen or {}
  if seen[fn] or (depth or 0) > 4 then return nil end
  seen[fn] = true
  local i = 1
  while true do
    local n, v = debug.getupvalue(fn, i)
    if not n then return nil end
    if n == name and type(v) == "table" then return v end
    if type(v) == "function" then
      local found = upvalue(v, name, (depth or 0) + 1, seen)
      if found then return found end
    end
    i = i + 1
  end
end

local function compare(what, want, have, where)
  for _, k in ipairs(sorted_keys(want)) do
    if not have[k] then
      problem("%s: %s accepts option '%s': add ---@field %s to %s", META, what, k, k, where)
    end
  end
  for _, k in ipairs(sorted_keys(have)) do
    if not want[k] then
      problem("%s: %s declares option '%s', which %s does not accept", META, where, k, what)
    end
  end
end

local config = require "trigger.config"
local KNOWN = upvalue(config.check, "KNOWN")
local base = all_fields("trigger.Options")
if not KNOWN then
  problem("tools/check/types.lua: no KNOWN table found behind trigger.config.check")
else
  compare("trigger.configure", KNOWN, base, "class trigger.Options")
end
local configure_item = documented["trigger\tconfigure"]
if configure_item then
  local doc = {}
  for _, p in ipairs(configure_item.subparams) do doc[p:match("^opts%.(.*)$") or p] = true end
  compare("trigger.configure's reference (@tparam opts.…)", doc, base, "class trigger.Options")
end

-- Each call's own options: the fields its opts class declares beyond trigger.Options (those of
-- the classes between them; one redeclared there, as wait's `timeout`, counts as its own).
local function own_options(cname)
  return all_fields(cname, { ["trigger.Options"] = true })
end
-- module, function, the name of its options table (an upvalue of the function or of one it
-- reaches), and the key of the call's own table in it (runs' OPTIONS is per call)
local calls = {
  { "trigger.runs", "subscribe_to_tag", "OPTIONS", "subscribe_to_tag" },
  { "trigger.runs", "subscribe_to_runs_with_tag", "OPTIONS", "subscribe_to_runs_with_tag" },
  { "trigger.runs", "subscribe_to_run", "OPTIONS", "subscribe_to_run" },
  { "trigger.runs", "subscribe_to_batch", "OPTIONS", "subscribe_to_batch" },
  { "trigger.runs", "list", "LIST_OPTIONS" }, { "trigger.runs", "list_page", "LIST_OPTIONS" },
  { "trigger.runs", "wait", "WAIT_OPTIONS" },
  { "trigger.tasks", "trigger", "TRIGGER_OPTIONS" },
  { "trigger.tasks", "batch_trigger", "BATCH_OPTIONS" },
  { "trigger.tasks", "batch_trigger_by_id", "BATCH_OPTIONS" },
  { "trigger.streams", "read", "OPTIONS" }, { "trigger.auth", "create_public_token", "TOKEN_OPTIONS" },
}
for _, call in ipairs(calls) do
  local mname, fname, tname, key = call[1], call[2], call[3], call[4]
  local c = classes[mname]
  local opts_class = c and c.opts[fname]
  local t = runtime_table(mname)
  local fn = t and t[fname]
  local tbl = type(fn) == "function" and upvalue(fn, tname)
  if key and tbl then tbl = tbl[key] end
  local what = mname .. "." .. fname
  if not opts_class then
    problem("%s: %s: declare its options with ---@param opts? <class>", META, what)
  elseif not classes[opts_class] then
    problem("%s: %s: opts class %s is not declared", META, what, opts_class)
  elseif not tbl then
    problem("tools/check/types.lua: %s: no options table %s found behind it", what, tname)
  else
    if not all_fields(opts_class).access_token then
      problem("%s: class %s must extend trigger.Options (%s takes every option of configure)",
        META, opts_class, what)
    end
    compare(what, tbl, own_options(opts_class), "class " .. opts_class)
  end
end

-- A batch item's options: exactly those of one run (trigger.tasks' RUN_OPTIONS, which
-- batch_trigger checks each item's options against).
do
  local tasks = runtime_table("trigger.tasks")
  local run_options = tasks and type(tasks.batch_trigger) == "function"
    and upvalue(tasks.batch_trigger, "RUN_OPTIONS")
  if not classes["trigger.TaskRunOptions"] then
    problem("%s: no ---@class trigger.TaskRunOptions (the options of one run, a batch item's)", META)
  elseif not run_options then
    problem("tools/check/types.lua: trigger.tasks.batch_trigger: no options table RUN_OPTIONS "
      .. "found behind it")
  else
    compare("a batch item (trigger.tasks RUN_OPTIONS)", run_options,
      all_fields("trigger.TaskRunOptions"), "class trigger.TaskRunOptions")
  end
end

-- with_streams: no options table to read; each declared option must not be refused as unknown
-- (and an undeclared one must be, or the probe proves nothing).
do
  local ws = classes["trigger.Subscription"] and classes["trigger.Subscription"].opts.with_streams
  if not ws or not classes[ws] then
    problem("%s: Subscription:with_streams: declare its options with ---@param opts? <class>", META)
  else
    local function refused(name)
      local sub = trigger.runs.subscribe_to_run("run_types_check", {
        access_token = "tr_dev_types_check", base_url = "http://127.0.0.1:9" })
      local ok, err = pcall(sub.with_streams, sub, { [name] = coroutine.create(print) })
      if ok and type(err) == "table" and err.close then err:close() end
      sub:close()
      return not ok and tostring(err):find("unknown option '" .. name .. "'", 1, true) ~= nil
    end
    if not refused("no_such_option_types_check") then
      problem("tools/check/types.lua: with_streams no longer says \"unknown option '…'\": "
        .. "update the probe")
    else
      for _, f in ipairs(sorted_keys(all_fields(ws))) do
        if refused(f) then
          problem("%s: class %s declares option '%s', which with_streams refuses", META, ws, f)
        end
      end
    end
  end
end

local nclasses = #sorted_keys(classes)
print(string.format("types: %d documented items, %d classes declared, %d problem(s)", #items,
  nclasses, problems))
os.exit(problems == 0 and 0 or 1)
