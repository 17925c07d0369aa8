--- The rows of one shape, kept from the messages of the shape log, and the batches of what
-- changed at each up-to-date boundary. What each reader was given is `trigger.shape.delivery`'s
-- business (several readers can share one store). No I/O: bodies are parsed in C
-- (`core.shape_messages`).
--
-- Rows are immutable once stored: an update copies the row with its changes, so a row a reader
-- was given can be compared with the current one by reference first, then by value.
--
-- A row is stored as the parser gave it: a row blob (a string: `core.row_table` makes it a
-- table of columns, `core.row_column` reads one column) for each whole value of the log, a
-- table where a partial update was merged into the row before it or a saved position's rows
-- were loaded. An initial sync keeps every row until its last page is in; as one string each
-- instead of a table of ~30 strings the rows cost the collector and the builder nothing until
-- each is built into a run object (issue 16). `get` gives a table either way, `raw` the row as
-- stored; `M.column` and `M.table` read either.
-- @module trigger.shape.rows

local core = require "trigger.core"
local null = require("trigger.json").null

local shape_messages, shape_reader = core.shape_messages, core.shape_reader
local row_table, row_column, row_merge = core.row_table, core.row_column, core.row_merge

local M = {}

--- The columns of a stored row as a table (a blob decoded, a table as it is).
function M.table(row)
  if type(row) == "string" then return row_table(row, null) end
  return row
end

--- One column of a stored row (a blob or a table), or nil.
function M.column(row, name)
  if type(row) == "string" then return row_column(row, name, null) end
  return row[name]
end

local Rows = {}
Rows.__index = Rows

--- A new store.
-- @tparam[opt] table preload key → row, the rows a saved position holds
-- @tparam[opt] boolean rebuild the shape is read again from the start (a saved position without
--   a shape handle): the preloaded rows are not kept, every row comes whole
function M.new(preload, rebuild)
  local self = setmetatable({
    rows = {},          -- key → current row
    order = {},         -- changed keys since the last publish, in the order they changed
    repeats = false,    -- `order` may hold a key twice (publish then keeps the first)
    dropped = {},       -- key → true: deleted since the last publish
    all = {},           -- keys in the order each was first stored (a late reader's order)
    -- A key is in `all` while it has a row or is a ghost (deleted since the last compaction),
    -- so a key new to the store (the rows of an initial sync) costs no look-up in a set of
    -- its own (a 20,000-run sync had two, each growing to 32,768 slots).
    ghosts = {},
    resyncing = false,
  }, Rows)
  if preload and not rebuild then
    -- Catching up from a saved offset merges changes onto the rows as they were.
    for key, row in pairs(preload) do self:_store(key, row) end
  end
  return self
end

function Rows:_store(key, row)
  if self.rows[key] == nil and not self.ghosts[key] then self.all[#self.all + 1] = key end
  self.rows[key] = row
end

--- Messages read between two calls of `between` in `parse` (~1.4 KB each in a sync: ~350 KB).
M.SLICE = 256

--- Read a response body of the shape log: the messages as a flat list (operation, key, value
-- for each row message; control, false, false for each control message), checked before
-- anything of it is applied, so a bad response leaves the store as it was.
-- @function parse
-- @tparam string body
-- @tparam[opt] function between called after every `SLICE` messages of a larger body (the shape
--   loop moves the network on there, so that the next page of a sync, asked for already, keeps
--   coming in while this one is decoded: a socket nobody reads stops its sender)
-- @treturn[1] table the list
-- @treturn[2] nil
-- @treturn[2] string what is wrong
M.parse = function(body, between)
  if between == nil or #body < 64 * M.SLICE then return shape_messages(body, null, true) end
  local reader = shape_reader(null, true)
  while true do
    local done, problem = reader:parse(body, M.SLICE)
    if done == nil then
      reader:close()
      return nil, problem
    end
    if done then break end
    between()
  end
  return reader:finish()
end

--- Apply a list from `parse`.
-- @treturn boolean an up-to-date control message was seen
-- @treturn boolean a must-refetch control message was seen
function Rows:apply(list)
  local up_to_date, refetch = false, false
  local rows, ghosts, all, order = self.rows, self.ghosts, self.all, self.order
  local n_all, n_order, repeats = #all, #order, self.repeats
  -- (`_store` written out: this runs for every row of an initial sync)
  for i = 1, #list, 3 do
    local op, key, value = list[i], list[i + 1], list[i + 2]
    if op == "insert" or op == "update" then
      local old = rows[key]
      if old and op == "update" then
        -- Default replica mode: only changed columns come; absent means unchanged and
        -- JSON null means NULL, so copy the old row and overlay what came.
        if type(old) == "string" and type(value) == "string" then
          value = row_merge(old, value) -- (a blob still)
        else
          local row = {}
          for k, v in pairs(M.table(old)) do row[k] = v end
          for k, v in pairs(M.table(value)) do row[k] = v end
          value = row
        end
      end
      rows[key] = value
      n_order = n_order + 1
      order[n_order] = key
      if old == nil and not ghosts[key] then
        -- New to the store: in neither list yet (a key listed in `order` since the last
        -- publish has a row or is a ghost).
        n_all = n_all + 1
        all[n_all] = key
      else
        repeats = true
      end
    elseif op == "delete" then
      if rows[key] ~= nil then ghosts[key] = true end
      rows[key] = nil
      self.dropped[key] = true
      n_order = n_order + 1
      order[n_order] = key
      repeats = true
    elseif key == false and op == "up-to-date" then
      up_to_date = true
    elseif key == false and op == "must-refetch" then
      refetch = true
    end
  end
  self.repeats = repeats
  return up_to_date, refetch
end

--- The shape must be fetched again: forget the rows. The next batch says so: readers keep what
-- they were given of runs whose state did not change, and forget the runs that left.
function Rows:reset()
  self.rows = {}
  self.order = {}
  self.repeats = false
  self.dropped = {}
  self.all = {}
  self.ghosts = {}
  self.resyncing = true
end

-- Drop deleted keys from `all` (the order stays).
function Rows:_compact()
  local all = {}
  for _, key in ipairs(self.all) do
    if self.rows[key] ~= nil then all[#all + 1] = key end
  end
  self.all, self.ghosts = all, {}
end

-- `keys` with each key once, where it first came.
local function first_of_each(keys)
  local seen, out = {}, {}
  for _, key in ipairs(keys) do
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = key
    end
  end
  return out
end

--- At an up-to-date boundary: what changed since the last one.
-- @treturn table `{keys = {key, ...}` (in the order they first changed; a deleted key has no
--   row), `dropped = {key = true}` (deleted meanwhile, even if stored again), `resync =
--   boolean}` (the rows were read again from the start)
function Rows:publish()
  local keys = self.repeats and first_of_each(self.order) or self.order
  local batch = { keys = keys, dropped = self.dropped, resync = self.resyncing }
  self.order = {}
  self.repeats = false
  self.dropped = {}
  self.resyncing = false
  if #batch.keys > 0 and #self.all > 256 then
    local live = 0
    for _ in pairs(self.rows) do live = live + 1 end
    if #self.all > 2 * live then self:_compact() end
  end
  return batch
end

--- The current row of `key` as a table of columns, or nil.
function Rows:get(key)
  return M.table(self.rows[key])
end

--- The current row of `key` as stored (a blob or a table: see above), or nil.
function Rows:raw(key)
  return self.rows[key]
end

--- Every key with a row, in the order each was first stored (what a reader joining late is
-- given first).
-- @treturn {string,...}
function Rows:keys()
  local out, rows = {}, self.rows
  for _, key in ipairs(self.all) do
    if rows[key] ~= nil then out[#out + 1] = key end
  end
  return out
end

return M
