--- Decoding of `application/super+json` packets: `{"json": value, "meta": {"values": tree}}`.
-- The annotation tree restores what plain JSON cannot carry. In Lua: `Date`, `URL`, `regexp`
-- stay strings; `bigint` becomes an integer when it fits in 64 bits (Lua 5.3+), else its
-- decimal string; `undefined` removes the value; `number` restores NaN and the infinities;
-- `set` stays an array; `map` becomes a table keyed by the map's keys.
-- @module trigger.run.superjson
local core = require "trigger.core"
local json = require "trigger.json"

local M = {}

local MAX_ANNOTATIONS = 100000
local superjson_leaves, superjson_decode = core.superjson_leaves, core.superjson_decode
local null, array_mt = json.null, json.array_mt

-- Split "a.b\.c" into {"a", "b.c"}: dots separate, a backslash escapes a dot or a backslash.
local function parse_path(path)
  if not path:find("\\", 1, true) then
    local parts = {}
    for part in (path .. "."):gmatch("(.-)%.") do parts[#parts + 1] = part end
    return parts
  end
  local parts, seg, i = {}, {}, 1
  while i <= #path do
    local c = path:sub(i, i)
    if c == "\\" then
      local nxt = path:sub(i + 1, i + 1)
      if nxt ~= "." and nxt ~= "\\" then error("invalid superjson path " .. path, 0) end
      seg[#seg + 1] = nxt
      i = i + 2
    elseif c == "." then
      parts[#parts + 1] = table.concat(seg)
      seg = {}
      i = i + 1
    else
      seg[#seg + 1] = c
      i = i + 1
    end
  end
  parts[#parts + 1] = table.concat(seg)
  return parts
end

-- The key of a path segment inside a container: object keys are strings, array indices
-- are 0-based in the path and 1-based in Lua.
local function slot(container, segment)
  if container[segment] ~= nil then return segment end
  local n = tonumber(segment)
  if n and n >= 0 and n % 1 == 0 then return n + 1 end
  return segment
end

local math_type, tointeger = math.type, math.tointeger -- nil on LuaJIT: bigints stay strings

local function bigint(s)
  if type(s) ~= "string" or not math_type then return s end
  -- tonumber takes more than decimal digits ("0x10", " 7", "1e3"): only a number that prints
  -- back as the very same text is the integer the text meant.
  local n = tointeger(tonumber(s) or 0.5)
  if n and math_type(n) == "integer" and tostring(n) == s then return n end
  return s
end

local NUMBERS = { NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge, ["-0"] = -0.0 }

local function untransform(value, annotation)
  if type(annotation) ~= "string" then return value end -- class, custom, symbol: as sent
  if annotation == "undefined" then return nil end
  if annotation == "bigint" then return bigint(value) end
  if annotation == "number" then
    local n = NUMBERS[value]
    if n ~= nil then return n end
    return value
  end
  if annotation == "map" and type(value) == "table" then
    local map = {}
    for _, pair in ipairs(value) do
      if type(pair) == "table" and pair[1] ~= nil and pair[1] ~= json.null then
        map[pair[1]] = pair[2]
      end
    end
    return map
  end
  return value -- Date, URL, regexp, set, Error: their JSON form is the Lua form
end

local budget
local max_depth = json.max_depth

-- Parsed paths, by path text: the same few paths come back in every packet of a task. A path
-- of one segment is kept as that string (the common case, looked at first), a longer one as
-- the list of its segments; lists are only read, never changed. Emptied when it grows large.
local PATH_CACHE_MAX = 1024
local path_cache, path_cache_size = {}, 0

local function cached_path(key)
  local parts = path_cache[key]
  if parts then return parts end
  parts = parse_path(key)
  if #parts == 1 then parts = parts[1] end
  if path_cache_size >= PATH_CACHE_MAX then path_cache, path_cache_size = {}, 0 end
  path_cache[key] = parts
  path_cache_size = path_cache_size + 1
  return parts
end

local apply

-- Apply the annotation tree `sub` to the value at `path` (a segment or a list of them) inside
-- `root`; returns the new root.
local function set_deep(root, path, sub, depth)
  if type(path) == "string" then path = { path } end
  local n = #path
  if n == 0 then return apply(root, sub, depth) end
  local node = root
  for i = 1, n - 1 do
    if type(node) ~= "table" then error("superjson path leads nowhere", 0) end
    node = node[slot(node, path[i])]
  end
  if type(node) ~= "table" then error("superjson path leads nowhere", 0) end
  local key = slot(node, path[n])
  node[key] = apply(node[key], sub, depth)
  return root
end

function apply(value, tree, depth)
  if depth > max_depth then error("superjson annotations nest too deep", 0) end
  budget = budget - 1
  if budget < 0 then error("too many superjson annotations", 0) end
  if type(tree) ~= "table" then error("malformed superjson annotation", 0) end
  local annotation, children
  if tree[1] ~= nil then
    annotation, children = tree[1], tree[2]
  else
    children = tree
  end
  if type(children) == "table" then
    local object = type(value) == "table"
    for key, sub in pairs(children) do
      if type(key) ~= "string" then error("malformed superjson annotation", 0) end
      local path = cached_path(key)
      local leaf = object and type(path) == "string" and type(sub) == "table" and sub[2] == nil
        and sub[1]
      if type(leaf) == "string" and depth < max_depth then
        -- The common case (`{"createdAt": ["Date"]}`): a leaf annotation on a field of this
        -- object. What set_deep and apply do, without the two calls.
        budget = budget - 1
        if budget < 0 then error("too many superjson annotations", 0) end
        local k = value[path] ~= nil and path or slot(value, path)
        if leaf ~= "Date" then value[k] = untransform(value[k], leaf) end
      else
        value = set_deep(value, path, sub, depth + 1)
      end
    end
  end
  if annotation ~= nil then value = untransform(value, annotation) end
  return value
end

-- The general way: the whole annotation tree, in Lua. Returns the value, or nil and why not.
local function walk(value, values)
  budget = MAX_ANNOTATIONS
  local ok, result = pcall(apply, value, values, 1)
  if not ok then return nil, result end
  return result
end

--- Decode a super+json document.
-- @tparam string text the packet data
-- @treturn[1] any the value with its annotations applied
-- @treturn[2] nil
-- @treturn[2] string why it could not be decoded
function M.decode(text)
  -- The common packet (leaves on top-level fields) in one pass in C, without tables for the
  -- document and its annotations; anything else the general way, which says what is wrong.
  local value, done = superjson_decode(text, null, max_depth, array_mt)
  if done then return value end
  return M._general(text)
end

-- The general way: the document as Lua tables, its annotations walked (in C when they are
-- leaves). For the specs too: the one pass must agree with it.
function M._general(text)
  local doc, err = json.decode(text)
  if doc == nil then return nil, err end
  if type(doc) ~= "table" then return nil, "super+json document is not an object" end
  local value, meta = doc.json, doc.meta
  if value == nil then value = json.null end
  if type(meta) ~= "table" or meta.values == nil or meta.values == json.null then
    return value
  end
  -- The usual tree (one plain annotation per top-level field) is applied in C; anything
  -- else is walked here.
  if superjson_leaves(value, meta.values) then return value end
  return walk(value, meta.values)
end

M._parse_path = parse_path
M._walk = walk -- for the specs: the general way, which the C one must agree with

return M
