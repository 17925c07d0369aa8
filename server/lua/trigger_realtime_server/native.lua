-- The "native" realtime backend: Trigger.dev's runs feed of 2026, a state poller dressed as an
-- Electric shape (../shared/protocol/native-backend.md, sections 2-9 and 12).
--
-- What it does differently from the Electric dialect in realtime.lua/shape.lua:
-- - every data answer is a 200 ending with an up-to-date control message, the first snapshot
--   included; never the `electric-up-to-date` header, never delete / must-refetch / 409 / 204;
-- - full rows on insert and update, values encoded as Prisma objects come out of JavaScript
--   (ISO timestamps with T, JS number text, all-quoted arrays, compact JSON);
-- - handles `run-<id>`, `runs_<floorMs>_<seq>_<hex8>`, `batch_<id>_<seq>_<hex8>`; offsets
--   `<updatedAtMs>_<seq>`; any handle is accepted;
-- - list and batch handles keep a working set (run id -> updatedAt sent) on the server. It is
--   updated when an answer is built, before the answer is written: an answer lost on the way
--   loses its rows for a retry of the same live request (the real server's hazard, on purpose);
-- - a live request holds hold_ms +-15% and ends early only when a row the handle has not seen
--   advanced; change wakes are coalesced (native_coalesce_ms), so intermediate states can be
--   skipped;
-- - tag feeds are capped to the newest native_max_runs runs and use a minute-floored createdAt
--   floor (>=) that slides with now - 24h on every poll;
-- - only live polls are counted against max_connections (429 at once, no retry-after).
--
-- The single-run feed keeps no working set: it diffs the run against the client's offset.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local rand = require "openssl.rand"
local http = require "trigger_realtime_server.http"
local json = require "trigger_realtime_server.json"
local values = require "trigger_realtime_server.values"

local native = {}

native.DEFAULT_COALESCE_MS = 250
native.DEFAULT_MAX_RUNS = 1000

local NULL = json.null
local DAY_MS = 86400000
local BUCKET_MS = 60000        -- REALTIME_BACKEND_NATIVE_RUNSET_CREATED_AT_BUCKET_MS
local JITTER = 0.15            -- the live hold is hold_ms * (1 +- JITTER), uniformly
local IDLE_EVICT_S = 300       -- working sets idle this long are forgotten
local MAX_SETS = 10000         -- and at most this many are kept
local SWEEP_EVERY_S = 10
local API_VERSION = "2025-07-16"

local UP_TO_DATE = '{"headers":{"control":"up-to-date"}}'

---------------------------------------------------------------------------------------------------
-- Columns and value encoding (section 6)

-- The feed's 26 columns in table order: the emulator's column list without idempotencyKey,
-- which neither real backend selects.
native.COLUMNS = {}
for _, col in ipairs(values.COLUMNS) do
  if col.name ~= "idempotencyKey" then native.COLUMNS[#native.COLUMNS + 1] = col end
end

-- The native schema entry: only the type (status is plain text), dims for the two arrays.
local function schema_entry(col)
  if col.kind == "text[]" then return '{"type":"text","dims":1}' end
  return '{"type":' .. json.quote(col.kind == "status" and "text" or col.type) .. "}"
end

-- JavaScript's Number.prototype.toString for a double (ECMA-262 Number::toString): the shortest
-- digits that read back as the same number, plain notation for exponents -7 < e < 21.
function native.js_number(x)
  if math.type(x) == "integer" then
    if x >= -2^53 and x <= 2^53 then return ("%d"):format(x) end
    x = x + 0.0  -- beyond 2^53 JavaScript only has the nearest double
  end
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  if x == 0 then return "0" end
  local sign = ""
  if x < 0 then sign, x = "-", -x end
  local text
  for precision = 0, 16 do
    text = ("%." .. precision .. "e"):format(x)
    if tonumber(text) == x then break end
  end
  local mantissa, exponent = text:match("^([%d%.]+)e([-+]%d+)$")
  local digits = mantissa:gsub("%.", ""):gsub("0+$", "")
  if digits == "" then digits = "0" end
  local k, n = #digits, tonumber(exponent) + 1   -- x = 0.d1...dk * 10^n
  if k <= n and n <= 21 then return sign .. digits .. ("0"):rep(n - k) end
  if 0 < n and n <= 21 then return sign .. digits:sub(1, n) .. "." .. digits:sub(n + 1) end
  if -6 < n and n <= 0 then return sign .. "0." .. ("0"):rep(-n) .. digits end
  local e = n - 1
  local e_text = e >= 0 and ("+" .. e) or tostring(e)
  if k == 1 then return sign .. digits .. "e" .. e_text end
  return sign .. digits:sub(1, 1) .. "." .. digits:sub(2) .. "e" .. e_text
end

local js_number = native.js_number

-- JSON.stringify of a decoded JSON value: compact, numbers as JavaScript prints them.
local function js_json(v, out)
  local tv = type(v)
  if v == nil or v == NULL then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    local ok = v == v and v ~= math.huge and v ~= -math.huge
    out[#out + 1] = ok and js_number(v) or "null"
  elseif tv == "string" then
    out[#out + 1] = json.quote(v)
  elseif tv == "table" then
    local n, count = #v, 0
    for _ in pairs(v) do count = count + 1 end
    if n > 0 and count == n then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        js_json(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json.quote(k)
        out[#out + 1] = ":"
        local item = v[k]
        if item == nil then item = v[tonumber(k)] end
        js_json(item, out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null"
  end
end

function native.js_stringify(v)
  local out = {}
  js_json(v, out)
  return table.concat(out)
end

-- `2025-01-10T12:00:00.000`: Date#toISOString without the Z.
function native.iso_timestamp(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. (".%03d"):format(ms % 1000)
end

-- Every element quoted, `\` and `"` escaped.
local function quoted_array(list)
  local parts = {}
  for i, v in ipairs(list) do
    local s = v == NULL and "NULL" or tostring(v)
    parts[i] = '"' .. s:gsub('[\\"]', "\\%0") .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- One stored value -> its native wire form (a string or NULL).
local function encode_value(col, v)
  local kind = col.kind
  if kind == "text[]" then
    if v == nil or #v == 0 then
      -- Prisma can't tell {} from NULL: runTags comes as null, realtimeStreams as {}.
      return col.name == "runTags" and NULL or "{}"
    end
    return quoted_array(v)
  end
  if v == nil then return NULL end
  if kind == "text" or kind == "status" then return v end
  if kind == "int4" then return ("%d"):format(v) end
  if kind == "float8" then return js_number(v) end
  if kind == "bool" then return v and "t" or "f" end
  if kind == "timestamp" then return native.iso_timestamp(v) end
  if kind == "jsonb" then return native.js_stringify(v) end
  return tostring(v)
end

-- A stored row -> { column = wire value } for every native column.
function native.encode_row(row)
  local out = {}
  for _, col in ipairs(native.COLUMNS) do out[col.name] = encode_value(col, row[col.name]) end
  return out
end

---------------------------------------------------------------------------------------------------
-- The backend's state on one server: the seq counter, working sets, coalesced wakes, live slots

local State = {}
State.__index = State

function native.new(srv)
  return setmetatable({
    srv = srv, seq = 0, sets = {}, nsets = 0, swept = cqueues.monotime(), active = 0,
    wake = condition.new(), pending = false,
    encoded = setmetatable({}, { __mode = "k" }),   -- stored row table -> encoded row
  }, State)
end

function State:next_seq()
  self.seq = self.seq + 1
  return self.seq
end

-- Something changed: wake the held live polls once the coalescing window has passed (one
-- window per environment, i.e. per server here), so that they read the rows as they are then.
function State:changed()
  local ms = self.srv.opts.native_coalesce_ms
  if ms <= 0 then
    self.wake:signal()
    return
  end
  if self.pending then return end
  self.pending = true
  self.srv.cq:wrap(function()
    cqueues.sleep(ms / 1000)
    self.pending = false
    self.wake:signal()
  end)
end

-- Forget every working set (reset).
function State:reset()
  self.sets, self.nsets = {}, 0
end

function State:sweep(now)
  if self.nsets < MAX_SETS and now - self.swept < SWEEP_EVERY_S then return end
  self.swept = now
  local list = {}
  for handle, set in pairs(self.sets) do
    if now - set.used > IDLE_EVICT_S then
      self.sets[handle] = nil
      self.nsets = self.nsets - 1
    else
      list[#list + 1] = { handle = handle, used = set.used }
    end
  end
  if #list >= MAX_SETS then
    table.sort(list, function(a, b) return a.used < b.used end)
    for i = 1, #list - MAX_SETS + 1 do
      self.sets[list[i].handle] = nil
      self.nsets = self.nsets - 1
    end
  end
end

function State:get_set(handle)
  local set = self.sets[handle]
  if set then set.used = cqueues.monotime() end
  return set
end

-- A fresh working set for `handle`, replacing any it had.
function State:new_set(handle)
  local now = cqueues.monotime()
  self:sweep(now)
  if not self.sets[handle] then self.nsets = self.nsets + 1 end
  local set = { seen = {}, max_ms = 0, used = now }
  self.sets[handle] = set
  return set
end

function State:encode(row)
  local enc = self.encoded[row]
  if not enc then
    enc = native.encode_row(row)
    self.encoded[row] = enc
  end
  return enc
end

---------------------------------------------------------------------------------------------------
-- Feeds and membership (section 8)

local function bucket(ms)
  return ms // BUCKET_MS * BUCKET_MS
end

-- The floor a request's createdAt asks for: clamped to 24 h, unparseable or absent -> 24 h.
local function requested_floor(created_at, now)
  local window = values.parse_duration(created_at)
  if not window or window > DAY_MS then window = DAY_MS end
  return bucket(now - window)
end

-- The floor a poll uses: the pinned one, but never older than now - 24h.
local function poll_floor(pinned, now)
  return bucket(math.max(pinned, now - DAY_MS))
end

local function has_all(row_tags, tags)
  local have = {}
  for _, t in ipairs(row_tags or {}) do have[t] = true end
  for _, t in ipairs(tags) do
    if not have[t] then return false end
  end
  return true
end

local function newest_first(a, b)
  if a.row.createdAt ~= b.row.createdAt then return a.row.createdAt > b.row.createdAt end
  return a.order > b.order
end

local function by_order(a, b) return a.order < b.order end

-- The stored records a feed covers now: { rec, ... } in creation order.
local function members(srv, feed)
  local store = srv.store
  if feed.kind == "run" then
    local rec = store.runs[feed.run_id]
    return rec and { rec } or {}
  end
  local list = {}
  local floor = feed.kind == "tags" and poll_floor(feed.pinned, srv.now_ms()) or nil
  for _, rec in pairs(store.runs) do
    local row = rec.row
    if feed.kind == "batch" then
      if row.batchId == feed.batch_id then list[#list + 1] = rec end
    elseif row.createdAt >= floor and has_all(row.runTags, feed.tags) then
      list[#list + 1] = rec
    end
  end
  local cap = srv.opts.native_max_runs
  if #list > cap then
    table.sort(list, newest_first)
    for i = #list, cap + 1, -1 do list[i] = nil end
  end
  table.sort(list, by_order)
  return list
end

---------------------------------------------------------------------------------------------------
-- Wire

local function row_key(id)
  return '"public"."TaskRun"/"' .. id .. '"'
end

local function message(st, rec, op, ctx)
  local enc = st:encode(rec.row)
  local value = {}
  for _, name in ipairs(ctx.columns) do value[name] = enc[name] end
  return json.encode(json.ordered({
    key = row_key(rec.row.id),
    value = json.ordered(value, ctx.columns),
    headers = { operation = op },
  }, { "key", "value", "headers" }))
end

local function hex8()
  return (rand.bytes(4):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function cors(headers)
  headers[#headers + 1] = { "access-control-allow-origin", "*" }
  headers[#headers + 1] = { "access-control-expose-headers", "*" }
  return headers
end

local function schema_header(columns)
  local parts = {}
  for i, name in ipairs(columns) do
    parts[i] = json.quote(name) .. ":" .. schema_entry(values.BY_NAME[name])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A 200: the messages, then up-to-date; schema on non-live answers, cursor on live ones.
local function respond(ctx, handle, offset, msgs, live, seq)
  local headers = {
    { "content-type", "application/json" },
    { "cache-control", "no-store" },
  }
  cors(headers)
  headers[#headers + 1] = { ctx.legacy and "electric-shape-id" or "electric-handle", handle }
  headers[#headers + 1] = { ctx.legacy and "electric-chunk-last-offset" or "electric-offset", offset }
  if live then
    headers[#headers + 1] = { "electric-cursor", tostring(seq) }
  else
    headers[#headers + 1] = { "electric-schema", schema_header(ctx.columns) }
  end
  msgs[#msgs + 1] = UP_TO_DATE
  local body = "[" .. table.concat(msgs, ",") .. "]"
  if ctx.rewrite_dequeued then
    body = body:gsub('"status":"DEQUEUED"', '"status":"EXECUTING"')
  end
  return http.response(200, headers, body)
end

local function too_many()
  return http.response(429, cors({ { "content-type", "application/json" } }),
                       '{"error":"Too many concurrent requests"}')
end

---------------------------------------------------------------------------------------------------
-- Snapshot and live poll

-- The first part of an offset as epoch ms (garbage -> 0).
local function offset_ms(offset)
  local first = (offset or ""):match("^([^_]*)")
  return first:match("^%d+$") and math.tointeger(tonumber(first)) or 0
end

-- A full snapshot: every member as insert. List and batch handles get their working set reset.
local function snapshot(srv, st, feed, handle, ctx)
  local recs = members(srv, feed)
  local set = feed.kind ~= "run" and st:new_set(handle) or nil
  local msgs, max_ms = {}, 0
  for _, rec in ipairs(recs) do
    msgs[#msgs + 1] = message(st, rec, "insert", ctx)
    local updated = rec.row.updatedAt
    if set then set.seen[rec.row.id] = updated end
    if updated > max_ms then max_ms = updated end
  end
  if set then set.max_ms = max_ms end
  local seq = st:next_seq()
  local offset = (feed.kind == "run" and #recs == 0) and "0_0" or ("%d_%d"):format(max_ms, seq)
  return respond(ctx, handle, offset, msgs, false, seq)
end

-- The members whose updatedAt advanced past what the handle was sent: { {rec, op}, ... }.
local function advanced(srv, feed, set, since_ms)
  local out = {}
  for _, rec in ipairs(members(srv, feed)) do
    local row = rec.row
    if set then
      local seen = set.seen[row.id]
      if seen == nil then
        out[#out + 1] = { rec = rec, op = "insert" }
      elseif row.updatedAt > seen then
        out[#out + 1] = { rec = rec, op = "update" }
      end
    elseif row.updatedAt > since_ms then
      out[#out + 1] = { rec = rec, op = "update" }
    end
  end
  return out
end

-- A working set this server never made (another backend's handle, evicted, reset): rebuilt from
-- the client's offset. Rows not newer than it count as seen; the others will come as updates,
-- whether the client has them or not.
local function rebuilt_set(srv, st, feed, handle, since_ms)
  local set = st:new_set(handle)
  for _, rec in ipairs(members(srv, feed)) do
    set.seen[rec.row.id] = rec.row.updatedAt <= since_ms and rec.row.updatedAt or -1
  end
  set.max_ms = since_ms
  return set
end

local function live_answer(st, set, handle, client_offset, changes, ctx)
  local msgs, newest = {}, 0
  for _, c in ipairs(changes) do
    msgs[#msgs + 1] = message(st, c.rec, c.op, ctx)
    local updated = c.rec.row.updatedAt
    -- Marked as sent now, before the answer is written.
    if set then set.seen[c.rec.row.id] = updated end
    if updated > newest then newest = updated end
  end
  local seq = st:next_seq()
  local offset
  if set then
    if newest > set.max_ms then set.max_ms = newest end
    offset = ("%d_%d"):format(set.max_ms, seq)
  elseif #changes > 0 then
    offset = ("%d_%d"):format(newest, seq)
  else
    offset = client_offset   -- the single-run feed echoes the client's offset when empty
  end
  return respond(ctx, handle, offset, msgs, true, seq)
end

-- Hold until a row the handle has not seen advances, or the (jittered) hold ends.
local function live_poll(srv, st, conn, feed, handle, client_offset, ctx)
  local since_ms = offset_ms(client_offset)
  local set
  if feed.kind ~= "run" then
    set = st:get_set(handle) or rebuilt_set(srv, st, feed, handle, since_ms)
  end
  local hold_s = srv.opts.hold_ms * (1 - JITTER + 2 * JITTER * math.random()) / 1000
  local deadline = cqueues.monotime() + hold_s
  while true do
    if conn.dropped then return nil end
    local changes = advanced(srv, feed, set, since_ms)
    if #changes > 0 then return live_answer(st, set, handle, client_offset, changes, ctx) end
    local why = srv:wait_change(conn, deadline, st.wake)
    if why == "gone" or conn.dropped then return nil end
    if why == "timeout" then
      -- The backstop read at the deadline.
      changes = advanced(srv, feed, set, since_ms)
      return live_answer(st, set, handle, client_offset, changes, ctx)
    end
  end
end

---------------------------------------------------------------------------------------------------

-- The internal id a batch handle carries (the emulator's batches only have their friendly id).
local function batch_internal_id(batch_id)
  return (batch_id:gsub("^batch_", ""))
end

-- Serve one realtime request whose route checks (401/404/403/400) passed.
-- def: { route = "tags"|"run"|"batch", tags, created_at, run_id, batch_id, skip }.
-- -> response, or nil when the client went away during a hold.
function native.request(srv, conn, req, def)
  local st = srv.native
  local p = req.params
  local handle = p.handle or p.shape_id
  if handle == "" then handle = nil end
  local initial = p.offset == nil or p.offset == "-1" or handle == nil
  local live = p.live == "true" and not initial
  local columns = {}
  for _, col in ipairs(native.COLUMNS) do
    if values.UNSKIPPABLE[col.name] or not def.skip[col.name] then columns[#columns + 1] = col.name end
  end
  local ctx = {
    columns = columns,
    legacy = (req.headers["x-trigger-electric-version"] or "") == "",
    rewrite_dequeued = req.headers["x-trigger-api-version"] ~= API_VERSION,
  }
  local now = srv.now_ms()
  local feed
  if def.route == "run" then
    feed = { kind = "run", run_id = def.run_id }
    handle = "run-" .. def.run_id
  elseif def.route == "batch" then
    feed = { kind = "batch", batch_id = def.batch_id }
    if not handle then
      handle = ("batch_%s_%d_%s"):format(batch_internal_id(def.batch_id), st:next_seq(), hex8())
    end
  else
    feed = { kind = "tags", tags = def.tags or {} }
    local pinned = handle and p.offset ~= "-1" and handle:match("^runs_(%d+)_")
    if pinned then
      feed.pinned = math.tointeger(tonumber(pinned)) or 0
    else
      feed.pinned = requested_floor(p.createdAt, now)
      if initial then
        handle = ("runs_%d_%d_%s"):format(feed.pinned, st:next_seq(), hex8())
      end
    end
  end
  if not live then return snapshot(srv, st, feed, handle, ctx) end
  if st.active >= srv.opts.max_connections then return too_many() end
  st.active = st.active + 1
  local ok, res = pcall(live_poll, srv, st, conn, feed, handle, p.offset, ctx)
  st.active = st.active - 1
  if not ok then error(res, 0) end
  return res
end

return native
