--- What one reader of a shape was given: the rows as last handed out, and the rows of the
-- batch being handed out, so that a saved position holds exactly what the reader saw. Several
-- readers (consumers of one shared upstream) keep one each over the same `trigger.shape.rows`
-- store. No I/O.
-- @module trigger.shape.delivery
local core = require "trigger.core"
local json = require "trigger.json"
local shape_rows = require "trigger.shape.rows"

local pg_timestamp, pg_array = core.pg_timestamp, core.pg_array
local null = json.null
local row_column, as_table = shape_rows.column, shape_rows.table

local M = {}
local Delivery = {}
Delivery.__index = Delivery

--- A new record.
-- @tparam[opt] table given key → row as handed out before (a saved position's rows)
-- @tparam[opt] boolean rebuild the reader's rows are checked against a read of the whole
--   shape at its first batch: runs no longer there have left it
function M.new(given, rebuild)
  local self = setmetatable({ given = {}, forget_missing = rebuild == true }, Delivery)
  for key, row in pairs(given or {}) do self.given[key] = row end
  return self
end

-- Is `row` an older state of the run than `given` (by updatedAt)? The native feed can answer a
-- re-snapshot from a lagging read replica: such a row must not undo what the reader already saw.
local function older(row, given)
  local new, old = row_column(row, "updatedAt"), row_column(given, "updatedAt")
  if type(new) ~= "string" or type(old) ~= "string" or new == old then return false end
  local a, b = pg_timestamp(new), pg_timestamp(old)
  return a ~= nil and b ~= nil and a < b
end

-- The two realtime backends write the same values differently (native-backend.md §6):
-- timestamps with a space or a T and any number of fraction digits, floats as Postgres or as
-- JavaScript prints them, booleans, arrays with or without quotes (an empty runTags as NULL),
-- jsonb with its own spacing and key order; and the native feed has no idempotencyKey. When a
-- running server flips backends, each run comes again in the other dialect: the same state.
local KIND = core.run_columns -- column -> "timestamp", "number", "array", "boolean", "json"…
local BOOLEAN = { t = true, ["true"] = true, f = false, ["false"] = false }

local function deep_equal(x, y)
  if type(x) ~= "table" or type(y) ~= "table" then return x == y end
  for k, v in pairs(x) do
    if not deep_equal(v, y[k]) then return false end
  end
  for k in pairs(y) do
    if x[k] == nil then return false end
  end
  return true
end

local function as_array(v)
  if v == null or v == nil then return {} end
  return pg_array(v, null) or v
end

local function same_value(column, x, y)
  if x == y then return true end
  if x == nil or y == nil then return true end -- a column one dialect does not send
  local kind = KIND[column]
  if kind == "array" then return deep_equal(as_array(x), as_array(y)) end
  if x == null or y == null then return false end
  if kind == "timestamp" then return pg_timestamp(x) ~= nil and pg_timestamp(x) == pg_timestamp(y) end
  if kind == "number" then return tonumber(x) ~= nil and tonumber(x) == tonumber(y) end
  if kind == "boolean" then return BOOLEAN[x] ~= nil and BOOLEAN[x] == BOOLEAN[y] end
  if kind == "json" then
    local dx, dy = json.decode(x), json.decode(y)
    return dx ~= nil and deep_equal(dx, dy)
  end
  return false
end

-- The same state in the other backend's dialect? Only asked when the text differs.
local function equivalent(a, b)
  if not same_value("updatedAt", a.updatedAt, b.updatedAt) then return false end
  for k, v in pairs(a) do
    if not same_value(k, v, b[k]) then return false end
  end
  return true
end

local function same(a, b)
  if a == b then return true end -- (two blobs of the same bytes too)
  if a == nil or b == nil then return false end
  -- Another updatedAt is another state (as `equivalent` finds first): a live change is told
  -- from its row blobs' one column, without making tables of them.
  if not same_value("updatedAt", row_column(a, "updatedAt"), row_column(b, "updatedAt")) then
    return false
  end
  a, b = as_table(a), as_table(b)
  local exact = true
  for k, v in pairs(a) do
    if b[k] ~= v then
      exact = false
      break
    end
  end
  if exact then
    for k in pairs(b) do
      if a[k] == nil then
        exact = false
        break
      end
    end
  end
  return exact or equivalent(a, b)
end

-- Handing out a large batch (an initial sync) makes a run object per row, each garbage soon
-- after, while the rows kept are most of the heap. Lua 5.4's generational collector (the mode
-- the `lua` command runs in) falls back to full collections when the heap grows by live data,
-- as it does while a sync's pages are stored, and then lets the heap double before the next
-- one: the run objects of the batch pile up (peak RSS of a 20,000-run sync 93 MB, bare
-- curl + cjson 73 MB). A step every PACE runs of a batch brings it back to young collections,
-- which take the run objects at little cost (69 MB; 100,000 runs: 407 -> 257 MB; bench/NOTES.md).
-- In incremental mode (LuaJIT, Lua 5.4 hosts that keep the default) a step restarts a whole
-- cycle over every row kept, and the cost of that is the host's choice of pause: no steps.
-- Lua 5.4 tells the mode only by switching it: to incremental and back, once, at load (one
-- collection, while the heap is small).
local function generational()
  if _VERSION ~= "Lua 5.4" then return false end
  local ok, was = pcall(collectgarbage, "incremental")
  if not ok or was ~= "generational" then return false end
  collectgarbage("generational")
  return true
end
local PACE = generational() and 256 or nil
local collect = collectgarbage

-- The collector as a large batch begins: while a sync's pages were stored, every major
-- collection found the heap grown by live data (the rows), and Lua 5.4 then counts the last one
-- as bad and makes each later step a full collection until one frees enough. The first steps of
-- the batch were two such (88 ms of a 20,000-run sync's ~700) where young collections (~25 ms)
-- take the run objects as well: the heap no longer grows. Asking for generational mode, which
-- it is in, ends that state without a collection (a host that went incremental since this
-- module was loaded is put back).
local function settle_collector()
  if collect("generational") ~= "generational" then collect("incremental") end
end

--- The rows of `keys` whose state this reader has not been given yet, in that order; each counts
-- as given (see `handed` for a saved position).
-- @param store the `trigger.shape.rows` store
-- @tparam {string,...} keys changed keys (repeats allowed: batches merged)
-- @tparam[opt] table dropped key → true: deleted since (even if stored again): given anew
-- @tparam[opt] boolean resync the store was read again from the start: runs it no longer holds
--   are forgotten
-- @treturn {table,...} rows
function Delivery:take(store, keys, dropped, resync)
  -- out[i] is handed out in place of previous[i] (false: none) under okeys[i].
  local out, okeys, previous, n = {}, {}, {}, 0
  local given, get = self.given, store.raw
  -- A key that comes again (batches merged) finds its row given already, unless it was
  -- dropped: forgotten once only.
  local forgotten = dropped and next(dropped) ~= nil and {} or nil
  for i = 1, #keys do
    local key = keys[i]
    if forgotten and dropped[key] and not forgotten[key] then
      forgotten[key] = true
      given[key] = nil
    end
    local row, had = get(store, key), given[key]
    if row == nil then
      given[key] = nil
    elseif had == nil or (had ~= row and not older(row, had)) then
      if had ~= nil and same(had, row) then
        -- The state given already (a resumed position's copy, the other dialect after a flip,
        -- a re-read): keep the store's row rather than a second copy of the same run.
        given[key] = row
      else
        n = n + 1
        okeys[n], previous[n], out[n] = key, had or false, row
        given[key] = row
      end
    end
  end
  if resync or self.forget_missing then
    for key in pairs(given) do
      if store:raw(key) == nil then given[key] = nil end
    end
    self.forget_missing = false
  end
  self.batch_keys, self.batch_previous, self.handed_count = okeys, previous, n
  if PACE and n > PACE then settle_collector() end
  return out
end

--- Only the first `n` rows of the last `take` have been handed out so far: until the others are,
-- a saved position holds them as the reader last saw them, so that a subscription resumed from
-- it hands them out. Without a call every row taken counts as handed out.
-- @tparam integer n
function Delivery:handed(n)
  self.handed_count = n
  if PACE and n % PACE == 0 and collect("isrunning") then collect("step", 0) end
end

--- The rows handed out, for a saved position: key → table of columns (strings or JSON null).
function Delivery:snapshot()
  local copy = {}
  for key, row in pairs(self.given) do copy[key] = as_table(row) end
  local keys, previous = self.batch_keys, self.batch_previous
  if keys then
    for i = self.handed_count + 1, #keys do
      copy[keys[i]] = previous[i] and as_table(previous[i]) or nil
    end
  end
  return copy
end

return M
