--- The rows of one shape, kept from the messages of the shape log, and the bookkeeping of
-- what the user has already been given. No I/O: bodies are parsed in C (`core.shape_messages`).
--
-- Rows are immutable once stored: an update copies the row with its changes, so a row the
-- user was given can be compared with the current one by reference first, then by value.
-- @module trigger.shape_rows

local core = require "trigger.core"
local shape_messages = core.shape_messages
local pg_timestamp = core.pg_timestamp
local null = require("trigger.json").null

local M = {}
local Rows = {}
Rows.__index = Rows

--- A new store.
-- @tparam[opt] table delivered key → row as last handed to the user (from a saved position)
-- @tparam[opt] boolean rebuild the shape is read again from the start (a saved position without
--   a shape handle): runs of `delivered` that the new read does not hold have left the shape
function M.new(delivered, rebuild)
  local self = setmetatable({
    rows = {},          -- key → current row
    delivered = {},     -- key → row as last handed to the user
    changed = {},       -- key → true, since the last take
    order = {},         -- changed keys in the order they first changed
    resyncing = rebuild == true,
  }, Rows)
  if delivered then
    for key, row in pairs(delivered) do
      self.delivered[key] = row
      -- Catching up from a saved offset merges changes onto the rows as they were; a read
      -- from the start brings every row whole.
      if not rebuild then self.rows[key] = row end
    end
  end
  return self
end

local function mark(self, key)
  if not self.changed[key] then
    self.changed[key] = true
    self.order[#self.order + 1] = key
  end
end

--- Read a response body of the shape log: the messages as a flat list (operation, key, value
-- for each row message; control, false, false for each control message), checked before
-- anything of it is applied, so a bad response leaves the store as it was.
-- @function parse
-- @tparam string body
-- @treturn[1] table the list
-- @treturn[2] nil
-- @treturn[2] string what is wrong
M.parse = function(body) return shape_messages(body, null) end

--- Apply a list from `parse`.
-- @treturn boolean an up-to-date control message was seen
-- @treturn boolean a must-refetch control message was seen
function Rows:apply(list)
  local up_to_date, refetch = false, false
  local rows = self.rows
  for i = 1, #list, 3 do
    local op, key, value = list[i], list[i + 1], list[i + 2]
    if op == "insert" then
      rows[key] = value
      mark(self, key)
    elseif op == "update" then
      local old = rows[key]
      if old then
        -- Default replica mode: only changed columns come; absent means unchanged and
        -- JSON null means NULL, so copy the old row and overlay what came.
        local row = {}
        for k, v in pairs(old) do row[k] = v end
        for k, v in pairs(value) do row[k] = v end
        value = row
      end
      rows[key] = value
      mark(self, key)
    elseif op == "delete" then
      rows[key] = nil
      self.delivered[key] = nil
    elseif key == false and op == "up-to-date" then
      up_to_date = true
    elseif key == false and op == "must-refetch" then
      refetch = true
    end
  end
  return up_to_date, refetch
end

--- The shape must be fetched again: forget the rows, keep what was delivered so that runs
-- whose state did not change are not handed out again.
function Rows:reset()
  self.rows = {}
  self.changed = {}
  self.order = {}
  self.resyncing = true
end

-- Is `row` an older state of the run than `given` (by updatedAt)? The native feed can answer a
-- re-snapshot from a lagging read replica: such a row must not undo what the user already saw.
local function older(row, given)
  local new, old = row.updatedAt, given.updatedAt
  if type(new) ~= "string" or type(old) ~= "string" or new == old then return false end
  local a, b = pg_timestamp(new), pg_timestamp(old)
  return a ~= nil and b ~= nil and a < b
end

local function same(a, b)
  if a == b then return true end
  if a == nil or b == nil then return false end
  for k, v in pairs(a) do
    if b[k] ~= v then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

--- At an up-to-date boundary: the rows whose state the user has not seen yet, in the order
-- they first changed. Each returned row counts as delivered (see `handed` for a saved
-- position).
-- @treturn {table,...} rows
function Rows:take()
  -- out[i] is handed out in place of previous[i] (false: none) under keys[i].
  local out, keys, previous = {}, {}, {}
  local rows, delivered = self.rows, self.delivered
  for _, key in ipairs(self.order) do
    local row, given = rows[key], delivered[key]
    if row and given and older(row, given) then
      rows[key] = given -- later changes merge onto the newest state
    elseif row and not same(given, row) then
      local n = #out + 1
      keys[n], previous[n], out[n] = key, delivered[key] or false, row
      delivered[key] = row
    end
  end
  self.batch_keys, self.batch_previous, self.handed_count = keys, previous, #out
  if self.resyncing then
    -- Runs that left the shape while it was being rebuilt are forgotten.
    for key in pairs(delivered) do
      if rows[key] == nil then delivered[key] = nil end
    end
    self.resyncing = false
  end
  self.changed = {}
  self.order = {}
  return out
end

--- Only the first `n` rows of the last `take` have been handed to the user so far: until the
-- others are, a saved position holds them as the user last saw them, so that a subscription
-- resumed from it hands them out. Without a call every row taken counts as handed out.
-- @tparam integer n
function Rows:handed(n)
  self.handed_count = n
end

--- The delivered rows, for a saved position. Values are strings or JSON null.
function Rows:snapshot()
  local copy = {}
  for key, row in pairs(self.delivered) do copy[key] = row end
  local keys, previous = self.batch_keys, self.batch_previous
  if keys then
    for i = self.handed_count + 1, #keys do copy[keys[i]] = previous[i] or nil end
  end
  return copy
end


return M
