-- Electric shapes over the TaskRun change log.
--
-- A shape is one distinct (route, filter, skipColumns). It has a handle; clearing the registry
-- (rotation, reset) gives every shape a new handle on its next request, so clients still holding
-- an old one get 409 must-refetch. Offsets are global log positions (see store.lua); a shape turns
-- each log entry into at most one message: an insert when a row starts to match, a partial update
-- when it keeps matching, a delete when it stops matching.
local json = require "trigger_realtime_server.json"
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"

local shape = {}

local DAY_MS = 86400000
shape.MAX_CREATED_AT_MS = DAY_MS

local Shape = {}
Shape.__index = Shape

local Registry = {}
Registry.__index = Registry

-- `version` goes up whenever a shape (a handle) is made or forgotten (persist.lua saves then).
function shape.registry()
  return setmetatable({ by_key = {}, version = 0 }, Registry)
end

function Registry:clear()
  self.by_key = {}
  self.version = self.version + 1
end

-- Electric handles look like `38207091-1734617232345`: a hash and a creation time.
local function new_handle(now_ms)
  return util.random_digits(8) .. "-" .. now_ms
end

-- The columns a shape sends, in table order.
local function included_columns(skip)
  local names = {}
  for _, col in ipairs(values.COLUMNS) do
    if values.UNSKIPPABLE[col.name] or not skip[col.name] then names[#names + 1] = col.name end
  end
  return names
end

local function sorted_set_list(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- def: { route = "tags"|"run"|"batch", tags = {..}, created_at = "1h"|nil (tags route),
--        run_id = internal id, batch_id = id, skip = { column = true } }
local function shape_key(def, columns)
  local parts = { def.route }
  if def.route == "tags" then
    local tags = {}
    for _, t in ipairs(def.tags or {}) do tags[t] = true end
    parts[#parts + 1] = table.concat(sorted_set_list(tags), "\0")
    parts[#parts + 1] = def.created_at or ""
  elseif def.route == "run" then
    parts[#parts + 1] = def.run_id
  else
    parts[#parts + 1] = def.batch_id
  end
  parts[#parts + 1] = table.concat(columns, ",")
  return table.concat(parts, "\1")
end

-- The createdAt window of the tags route: default and cap 24h. An unparseable value removes the
-- filter altogether, as the real server does. The cutoff is fixed when the shape is made, so a
-- run never ages out of a live shape.
local function created_cutoff(def, now_ms)
  if def.route ~= "tags" then return nil end
  local window = DAY_MS
  if def.created_at then
    window = values.parse_duration(def.created_at)
    if not window then return nil end
    window = math.min(window, DAY_MS)
  end
  return now_ms - window
end

local function make_shape(def, handle, cutoff)
  local columns = included_columns(def.skip or {})
  return setmetatable({
    key = shape_key(def, columns), def = def, columns = columns, handle = handle, cutoff = cutoff,
  }, Shape)
end

function Registry:lookup(def, now_ms)
  local columns = included_columns(def.skip or {})
  local key = shape_key(def, columns)
  local s = self.by_key[key]
  if not s then
    s = make_shape(def, new_handle(now_ms), created_cutoff(def, now_ms))
    self.by_key[key] = s
    self.version = self.version + 1
  end
  return s
end

-- A shape read back from a state file (persist.lua), with the handle and cutoff it had.
function Registry:restore(def, handle, cutoff)
  local s = make_shape(def, handle, cutoff)
  s.restored = true
  self.by_key[s.key] = s
  return s
end

-- Forget one shape: its next request gets a new handle, so its clients get 409 must-refetch.
function Registry:forget(s)
  if self.by_key[s.key] == s then
    self.by_key[s.key] = nil
    self.version = self.version + 1
  end
end

-- Is `s` still the live shape of its key (not rotated away or reset)?
function Registry:current(s)
  return self.by_key[s.key] == s
end

---------------------------------------------------------------------------------------------------

local function has_all_tags(row, tags)
  local have = {}
  for _, t in ipairs(row.runTags or {}) do have[t] = true end
  for _, t in ipairs(tags) do
    if not have[t] then return false end
  end
  return true
end

function Shape:matches(row)
  if row == nil then return false end
  local def = self.def
  if def.route == "run" then return row.id == def.run_id end
  if def.route == "batch" then return row.batchId == def.batch_id end
  if self.cutoff and row.createdAt <= self.cutoff then return false end
  return has_all_tags(row, def.tags or {})
end

local RELATION = json.array({ "public", "TaskRun" })
local HEADER_ORDER = { "operation", "relation" }
local MESSAGE_ORDER = { "key", "value", "headers" }

local function row_key(id)
  return '"public"."TaskRun"/"' .. id .. '"'
end

-- opts.legacy_status: without x-trigger-api-version the server reports DEQUEUED as EXECUTING.
local function wire_value(enc, name, opts)
  local v = enc[name]
  if name == "status" and opts.legacy_status and v == "DEQUEUED" then return "EXECUTING" end
  return v
end

local function message(id, op, value, order)
  return json.ordered({
    key = row_key(id),
    value = json.ordered(value, order),
    headers = json.ordered({ operation = op, relation = RELATION }, HEADER_ORDER),
  }, MESSAGE_ORDER)
end

function Shape:insert_message(enc, opts)
  local value = {}
  for _, name in ipairs(self.columns) do value[name] = wire_value(enc, name, opts) end
  return message(enc.id, "insert", value, self.columns)
end

-- Default replica mode: the key column plus the columns whose text changed.
function Shape:update_message(before, after, opts)
  local value, changed = { id = after.id }, false
  for _, name in ipairs(self.columns) do
    if name ~= "id" and before[name] ~= after[name] then
      value[name] = wire_value(after, name, opts)
      changed = true
    end
  end
  if not changed then return nil end
  return message(after.id, "update", value, self.columns)
end

local function delete_message(before)
  return message(before.id, "delete", { id = before.id }, { "id" })
end

-- The message one log entry means for this shape, or nil.
function Shape:message_for(entry, opts)
  local was, is = self:matches(entry.before), self:matches(entry.after)
  if is and not was then return self:insert_message(entry.after_enc, opts) end
  if was and not is then return delete_message(entry.before_enc) end
  if was and is then return self:update_message(entry.before_enc, entry.after_enc, opts) end
  return nil
end

-- Messages for log entries after `from_seq`, at most `limit` (nil: no limit). Returns the
-- messages and the sequence number they bring the client to.
function Shape:changes(store, from_seq, limit, opts)
  local msgs, last = {}, from_seq
  for seq = from_seq + 1, store.head do
    local m = self:message_for(store.log[seq], opts)
    if m then
      if limit and #msgs >= limit then break end
      msgs[#msgs + 1] = m
    end
    last = seq
  end
  return msgs, last
end

-- The encoded rows matching this shape as of `seq`, in creation order.
function Shape:snapshot(store, seq)
  local rows = {}
  for _, rec in ipairs(store:rows_at(seq)) do
    if self:matches(rec.row) then rows[#rows + 1] = rec.enc end
  end
  return rows
end

function Shape:schema()
  return values.schema_json(self.columns)
end

return shape
