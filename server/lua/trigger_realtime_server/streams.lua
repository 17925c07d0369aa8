-- Realtime run streams (../shared/protocol/streams.md): the chunks a task writes with
-- streams.pipe/append, and the SSE route clients read them from, in both framings.
--
--   v2 (S2):    X-Stream-Version: v2; `event: batch` with {"records":[…],"tail":…}, `event: ping`,
--               `data: [DONE]` at the idle close; Last-Event-ID = the last seq_num.
--   v1 (Redis): no version header; `id: <ms>-<n>` + `data: <line>` per line, `: ping`, plain EOF;
--               Last-Event-ID = a Redis id, entries strictly after it.
--
-- A stream belongs to (run friendlyId, key) and has one framing, fixed when it is first made: the
-- run's `realtimeStreamsVersion` field, else the server's `stream_version` (an admin call can
-- change that default, and create_stream can name one). Records live here, not in the store; the
-- store only sees the run's `realtimeStreams` column change, which is what the run feed shows.
--
-- Each open SSE response is the connection's own coroutine: it sends what is there, then waits
-- on the stream's condition (woken by every append), the next ping, or the idle deadline.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local auth = require "trigger_realtime_server.auth"
local http = require "trigger_realtime_server.http"
local json = require "trigger_realtime_server.json"
local util = require "trigger_realtime_server.util"

local streams = {}

streams.MAX_RECORD_BYTES = 1024 * 1024       -- S2's metered record limit
streams.MAX_APPEND_BODY = 512 * 1024         -- the raw append route's body cap
local MAX_BATCH_BYTES = 1024 * 1024          -- S2 read batches: <= 1 MiB metered
local WRITE_TIMEOUT = 30
local PING_V2_MS, PING_V1_MS = 5000, 10000
local NANOID = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
local TARGETS = { self = true, parent = true, root = true }

---------------------------------------------------------------------------------------------------
-- Small pieces

-- A JSON string as JSON.stringify / serde_json write it: only `"`, `\` and bytes below 0x20 are
-- escaped (json.quote also escapes DEL; the bytes of a record body matter here).
local SHORT = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
                ['\r'] = '\\r', ['\t'] = '\\t' }
local function jstr(s)
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    return SHORT[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end
streams.json_string = jstr

-- S2's metered size of a record: 8 + 2·(header count) + header bytes + body bytes.
local function metered(headers, body)
  local n = 8 + #body
  for _, h in ipairs(headers) do n = n + 2 + #h[1] + #h[2] end
  return n
end
streams.metered_size = metered

-- JS parseInt(s, 10): an optional sign and the leading digits; nil for NaN.
local function js_parse_int(s)
  local sign, digits = (s or ""):match("^%s*([+-]?)(%d+)")
  if not digits then return nil end
  return tonumber(sign .. digits)
end

-- JS Number(s) for the text before the first "-" of a Last-Event-ID; nil for NaN / Infinity.
local function js_number(s)
  s = s:match("^%s*(.-)%s*$")
  if s == "" then return 0 end
  local radix = { x = 16, X = 16, o = 8, O = 8, b = 2, B = 2 }
  local p, digits = s:match("^0([xXoObB])(%w+)$")
  if p then return tonumber(digits, radix[p]) end
  if not (s:match("^%+?%d+%.?%d*$") or s:match("^%+?%.%d+$") or
          s:match("^%+?%d+%.?%d*[eE][+-]?%d+$") or s:match("^%+?%.%d+[eE][+-]?%d+$")) then
    return nil
  end
  local n = tonumber(s)
  if not n or n ~= n or n == math.huge then return nil end
  return n
end

-- v2: the first seq a Last-Event-ID asks for (the real server's parseLastEventId: Number of the
-- text before the first "-", plus one; anything non-numeric is 0, a full replay).
function streams.v2_start(last_event_id)
  local n = js_number(last_event_id:match("^[^-]*"))
  if not n then return 0 end
  return math.floor(n) + 1
end

-- v1 ids are kept as two decimal strings, compared as the whole numbers they write: Redis bounds
-- each part to 2^64-1, the emulator does not (a scenario can give a client ids past 64 bits).
local function dec(s) return (s:gsub("^0+(%d)", "%1")) end
local function dec_cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  return a < b and -1 or (a == b and 0 or 1)
end
local function dec_inc(s) -- s + 1
  local head, nines = s:match("^(.-)(9*)$")
  local zeros = ("0"):rep(#nines)
  if head == "" then return "1" .. zeros end
  return head:sub(1, -2) .. string.char(head:byte(-1) + 1) .. zeros
end

-- v1: a Redis stream id "ms-n" or "ms" -> ms, n (decimal strings); nil when it is not one.
local function parse_redis_id(text)
  local ms, n = text:match("^%s*(%d+)%-(%d+)%s*$")
  if not ms then
    ms = text:match("^%s*(%d+)%s*$")
    n = "0"
  end
  if not ms then return nil end
  return dec(ms), dec(n)
end

local function after_id(e, ms, n)
  local c = dec_cmp(e.ms, ms)
  return c > 0 or (c == 0 and dec_cmp(e.n, n) > 0)
end

local function nanoid()
  return util.random_string(7, NANOID)
end

local function is_final(row)
  return row.completedAt ~= nil
end

---------------------------------------------------------------------------------------------------
-- The registry: every stream of the server

local Registry = {}
Registry.__index = Registry

function streams.new(srv)
  local self = setmetatable({ srv = srv }, Registry)
  self.config = {
    version = srv.opts.stream_version,
    timeout_s = srv.opts.stream_timeout_s,
    ping_ms = srv.opts.stream_ping_ms,
    batch_records = srv.opts.stream_batch_records,
    v1_max_length = srv.opts.stream_v1_max_length,
  }
  self:clear()
  return self
end

-- Forget every stream; open readers of them end (their connection closes).
function Registry:clear()
  for _, keys in pairs(self.runs or {}) do
    for _, st in pairs(keys) do
      st.dead = true
      st.cond:signal()
    end
  end
  self.runs = {}   -- friendlyId -> key -> stream
end

local function check_version(v)
  if v ~= "v1" and v ~= "v2" then error("stream version must be \"v1\" or \"v2\"", 0) end
  return v
end

-- Change the defaults: { version, timeout_s, ping_ms (false = 5 s v2 / 10 s v1), batch_records,
-- v1_max_length }. -> the whole config
function Registry:configure(cfg)
  if type(cfg) ~= "table" then error("stream config must be an object", 0) end
  for k, v in pairs(cfg) do
    if self.config[k] == nil then
      error(("unknown stream config %q"):format(tostring(k)), 0)
    end
    if k == "version" then
      check_version(v)
    elseif not ((k == "ping_ms" and (v == false or v == json.null)) or
                (type(v) == "number" and v % 1 == 0 and v >= 1)) then
      error(("%s must be a positive integer"):format(k), 0)
    end
  end
  for k, v in pairs(cfg) do
    if v == json.null then v = false end
    self.config[k] = type(v) == "number" and math.tointeger(v) or v
  end
  return self.config
end

local function run_row(self, run_id)
  local rec = self.srv.store:find(run_id)
  if not rec then error(("no run %q"):format(tostring(run_id)), 0) end
  return rec.row
end

-- The stream of (run, key), made on first use (reads make it too, as S2's create_stream_on_read
-- does; a read of a Redis key that was never written is simply empty).
function Registry:get(run_id, key, version)
  local keys = self.runs[run_id]
  if not keys then
    keys = {}
    self.runs[run_id] = keys
  end
  local st = keys[key]
  if not st then
    local row = self.srv.store:find(run_id)
    local v = version or (row and row.row.realtimeStreamsVersion) or self.config.version
    if v ~= "v1" and v ~= "v2" then v = self.config.version end
    st = { run = run_id, key = key, version = v, cond = condition.new(),
           records = {}, count = 0,                    -- v2: records[seq + 1]
           entries = {}, head = 1, tail = 0,           -- v1: entries[head..tail]
           last_ms = 0, clients = {} }                 -- v1: top_ms, top_n (the last id)
    keys[key] = st
  end
  return st
end

function Registry:find(run_id, key)
  local keys = self.runs[run_id]
  return keys and keys[key]
end

-- Add `key` to the run's realtimeStreams (once): a change in the store's log, so shape
-- subscribers get an update. -> true when it was added
function Registry:list(run_id, key)
  local row = run_row(self, run_id)
  local list = row.realtimeStreams or {}
  for _, k in ipairs(list) do
    if k == key then return false end
  end
  local new = util.copy(list)
  new[#new + 1] = key
  self.srv:update_run(run_id, { realtimeStreams = new })
  return true
end

-- The pre-4.1 way: the key in metadata `$$streams` (plus $$streamsVersion, $$streamsBaseUrl).
function Registry:list_legacy(run_id, key, version)
  local row = run_row(self, run_id)
  local meta = row.metadata and json.decode(row.metadata)
  if type(meta) ~= "table" or meta == json.null or meta[1] ~= nil then meta = {} end
  local list = type(meta["$$streams"]) == "table" and meta["$$streams"] or {}
  for _, k in ipairs(list) do
    if k == key then return false end
  end
  list[#list + 1] = key
  meta["$$streams"] = json.array(list)
  meta["$$streamsVersion"] = version
  meta["$$streamsBaseUrl"] = (self.srv.base_url or "") .. "/realtime/v1/streams"
  self.srv:update_run(run_id, { metadata = json.encode(meta), metadataType = "application/json" })
  return true
end

-- Scenario call: make the stream as the PUT route would (listing it), without its checks.
-- opts: version ("v1"|"v2", else the run's / server's), legacy (list it in metadata $$streams
-- instead of realtimeStreams), list = false (make it without listing it).
function Registry:create(run_id, key, opts)
  opts = opts or {}
  if type(key) ~= "string" or key == "" then error("stream key must be a non-empty string", 0) end
  run_row(self, run_id)
  if opts.version ~= nil then check_version(opts.version) end
  local st = self:get(run_id, key, opts.version)
  if opts.list ~= false then
    if opts.legacy then
      self:list_legacy(run_id, key, st.version)
    else
      self:list(run_id, key)
    end
  end
  return st
end

-- v2: append records { body = string, headers = {{name, value}…}, timestamp = ms }; all or none.
local function append_v2(self, st, list)
  local prepared = {}
  for i, r in ipairs(list) do
    local headers, body = r.headers or {}, r.body or ""
    if type(body) ~= "string" then error(("record %d: body must be a string"):format(i), 0) end
    for _, h in ipairs(headers) do
      if type(h) ~= "table" or type(h[1]) ~= "string" or type(h[2]) ~= "string" then
        error(("record %d: headers must be [name, value] string pairs"):format(i), 0)
      end
    end
    local size = metered(headers, body)
    if size > streams.MAX_RECORD_BYTES then
      error(("Record metered size %d exceeds the maximum of %d bytes"):format(size,
            streams.MAX_RECORD_BYTES), 0)
    end
    prepared[i] = { headers = headers, body = body, bytes = size, timestamp = r.timestamp }
  end
  local cursors = {}
  for i, r in ipairs(prepared) do
    -- S2 keeps timestamps non-decreasing: an earlier one is raised to the last.
    local ts = math.max(math.tointeger(r.timestamp) or self.srv.now_ms(), st.last_ms)
    st.last_ms = ts
    r.seq, r.timestamp = st.count, ts
    st.count = st.count + 1
    st.records[st.count] = r
    cursors[i] = tostring(r.seq)
  end
  st.cond:signal()
  return cursors
end

-- v1: XADD entries { data = string, timestamp = ms, client, index }; MAXLEN ~ v1_max_length.
local function append_v1(self, st, list)
  for i, e in ipairs(list) do
    if type(e.data) ~= "string" then error(("entry %d: data must be a string"):format(i), 0) end
  end
  local cursors = {}
  for i, e in ipairs(list) do
    local ms, n
    if e.id ~= nil then -- XADD with an explicit id: above the top one
      if type(e.id) == "string" then ms, n = parse_redis_id(e.id) end
      if not ms or (st.top_ms and not after_id({ ms = ms, n = n }, st.top_ms, st.top_n)) then
        error(("entry %d: the id must be a Redis id above the stream's last"):format(i), 0)
      end
    else
      ms, n = string.format("%d", math.tointeger(e.timestamp) or self.srv.now_ms()), "0"
      if st.top_ms and dec_cmp(ms, st.top_ms) <= 0 then ms, n = st.top_ms, dec_inc(st.top_n) end
    end
    st.top_ms, st.top_n = ms, n
    st.tail = st.tail + 1
    st.entries[st.tail] = { ms = ms, n = n, id = ms .. "-" .. n, data = e.data }
    if e.client then st.clients[e.client] = e.index end
    cursors[i] = st.entries[st.tail].id
  end
  while st.tail - st.head + 1 > self.config.v1_max_length do
    st.entries[st.head] = nil
    st.head = st.head + 1
  end
  st.cond:signal()
  return cursors
end

-- A chunk as the SDK writer stores it: v2 envelope {"data":<json>,"id":<nanoid>}, v1 one line.
local function chunk_text(chunk)
  return json.encode(chunk)
end

-- Scenario call: append chunks (any JSON values) the way the SDK writer does, listing the
-- stream first if it is not yet (opts.list = false: don't). opts.ids: envelope ids (v2),
-- opts.timestamps: ms per chunk. -> version, cursors (v2 seq_nums / v1 Redis ids, as text)
function Registry:append_chunks(run_id, key, chunks, opts)
  opts = opts or {}
  if type(chunks) ~= "table" then error("chunks must be an array", 0) end
  local st = self:create(run_id, key, { list = opts.list, version = opts.version })
  local ids, times = opts.ids or {}, opts.timestamps or {}
  local list = {}
  for i = 1, #chunks do
    local text = chunk_text(chunks[i])
    if st.version == "v2" then
      list[i] = { body = '{"data":' .. text .. ',"id":' .. jstr(ids[i] or nanoid()) .. '}',
                  timestamp = times[i] }
    else
      list[i] = { data = text .. "\n", timestamp = times[i] }
    end
  end
  local cursors = (st.version == "v2" and append_v2 or append_v1)(self, st, list)
  return st.version, cursors
end

-- Scenario call: raw records, for what the SDK writer never makes. v2: { body, headers,
-- timestamp } (a command record is headers {{"", "trim"}}); v1: { body = entry data (several
-- lines, or part of one), timestamp, id = an explicit Redis id "ms-n" above the last (decimal, of
-- any size) }. -> version, cursors
function Registry:append_records(run_id, key, records, opts)
  opts = opts or {}
  if type(records) ~= "table" then error("records must be an array", 0) end
  local st = self:create(run_id, key, { list = opts.list, version = opts.version })
  if st.version == "v2" then return st.version, append_v2(self, st, records) end
  local list = {}
  for i, r in ipairs(records) do
    list[i] = { data = r.body or r.data, timestamp = r.timestamp, id = r.id }
  end
  return st.version, append_v1(self, st, list)
end

-- What a stream holds, for specs: { version, records = {…} } (v2 records with seq_num,
-- timestamp, headers, body; v1 entries with id, data).
function Registry:dump(run_id, key)
  local st = self:find(run_id, key)
  if not st then return nil end
  local out = {}
  if st.version == "v2" then
    for i = 1, st.count do
      local r = st.records[i]
      out[i] = json.ordered({ seq_num = r.seq, timestamp = r.timestamp,
                              headers = json.array(r.headers), body = r.body },
                            { "seq_num", "timestamp", "headers", "body" })
    end
  else
    for i = st.head, st.tail do
      local e = st.entries[i]
      out[#out + 1] = json.ordered({ id = e.id, data = e.data }, { "id", "data" })
    end
  end
  return json.ordered({ version = st.version, records = json.array(out) }, { "version", "records" })
end

---------------------------------------------------------------------------------------------------
-- SSE output: a chunked response written as it goes

local Out = {}
Out.__index = Out

local function head_text(status, headers, keep_alive)
  local lines = { ("HTTP/1.1 %d %s"):format(status, http.REASONS[status] or "Unknown") }
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  lines[#lines + 1] = "transfer-encoding: chunked"
  lines[#lines + 1] = "date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT")
  if not keep_alive then lines[#lines + 1] = "connection: close" end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function raw_send(self, data)
  local ok = self.sock:xwrite(data, "b", WRITE_TIMEOUT)
  if ok then ok = self.sock:flush(WRITE_TIMEOUT) end
  if not ok then self.broken = true end
  return ok and true or false
end

-- One piece of the body; a drip fault cuts it into chunk_size-byte HTTP chunks, delay_ms apart.
function Out:send(text)
  if self.broken then return false end
  self.sent_at = cqueues.monotime()
  local size = self.drip and math.max(1, self.drip.chunk_size or 1) or #text
  for i = 1, #text, size do
    local piece = text:sub(i, i + size - 1)
    if not raw_send(self, ("%x\r\n%s\r\n"):format(#piece, piece)) then return false end
    if self.drip and self.drip.delay_ms and self.drip.delay_ms > 0 then
      cqueues.sleep(self.drip.delay_ms / 1000)
    end
  end
  return true
end

-- Half of `text`, not even a whole HTTP chunk of it: a connection cut mid-event.
function Out:send_half(text)
  local half = text:sub(1, math.max(1, #text // 2))
  raw_send(self, ("%x\r\n%s"):format(#text, half))
end

function Out:finish()
  return not self.broken and raw_send(self, "0\r\n\r\n")
end

---------------------------------------------------------------------------------------------------
-- Reading: both framings

local function v2_record_json(r)
  local parts = { '{"seq_num":', tostring(r.seq), ',"timestamp":', tostring(r.timestamp) }
  if #r.headers > 0 then
    local hs = {}
    for i, h in ipairs(r.headers) do hs[i] = "[" .. jstr(h[1]) .. "," .. jstr(h[2]) .. "]" end
    parts[#parts + 1] = ',"headers":[' .. table.concat(hs, ",") .. "]"
  end
  if r.body ~= "" then parts[#parts + 1] = ',"body":' .. jstr(r.body) end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

-- Wait until the stream changes, `deadline` passes, or the client goes away. -> "gone" or nil
-- Without an input watch (a pipelined request came) the wait is cut to 0.5 s, so `over` is
-- looked at.
local function wait(ctx, deadline)
  local conn = ctx.conn
  if not conn.watch_input then deadline = math.min(deadline, cqueues.monotime() + 0.5) end
  if ctx.srv:wait_change(conn, deadline, ctx.st.cond) == "gone" then return "gone" end
end

local function over(ctx)
  return ctx.conn.dropped or ctx.st.dead or ctx.srv.closed or ctx.out.broken
end

-- The fault that ends this response, once `after` records went out. -> false (connection ends)
local function terminal_fault(ctx, next_event)
  local f, out = ctx.fault, ctx.out
  if f.kind == "reset_mid_body" then
    out:send_half(next_event or (ctx.st.version == "v2" and
      ('event: ping\ndata: {"timestamp":%d}\n\n'):format(ctx.srv.now_ms()) or ": ping\n\n"))
  elseif f.kind == "sse_error" then
    out:send("event: error\ndata: " .. (f.body or "backend restarting"):gsub("[\r\n]", " ") .. "\n\n")
  elseif f.kind == "invalid_json" and ctx.st.version == "v2" then
    out:send('event: batch\nid: 0,0,0\ndata: {"records":[{"seq_num":\n\n')
  end
  -- truncate (and the rest): stop at an event boundary, without [DONE] or the last chunk.
  return false
end

local TERMINAL = { truncate = true, reset_mid_body = true, sse_error = true, invalid_json = true }

local function ping_interval(ctx, default_ms)
  local p = ctx.registry.config.ping_ms
  return (p or default_ms) / 1000
end

-- v2: S2's SSE read session, as Trigger.dev passes it through.
local function serve_v2(ctx, start)
  local st, out = ctx.st, ctx.out
  local pos = math.min(start, st.count)           -- clamp = true: past the tail waits at the tail
  local total, bytes, sent = 0, 0, 0
  local idle_deadline = cqueues.monotime() + ctx.wait_s
  local ping_s = ping_interval(ctx, PING_V2_MS)
  local fault = ctx.fault and TERMINAL[ctx.fault.kind] and ctx.fault
  local after = fault and (fault.after or 0)
  local function batch_event(first, n)
    local recs, last = {}, first
    local size = 0
    for seq = first, first + n - 1 do
      local r = st.records[seq + 1]
      if #recs > 0 and size + r.bytes > MAX_BATCH_BYTES then break end
      recs[#recs + 1] = v2_record_json(r)
      size = size + r.bytes
      last = seq
    end
    local tail = st.records[st.count]
    local text = ("event: batch\nid: %d,%d,%d\ndata: {\"records\":[%s],\"tail\":{\"seq_num\":%d,"
      .. "\"timestamp\":%d}}\n\n"):format(last, total + #recs, bytes + size, table.concat(recs, ","),
      st.count, tail.timestamp)
    return text, #recs, size
  end
  if ctx.overlap and pos > 0 then pos = pos - 1 end  -- overlap fault: one record again
  while true do
    if over(ctx) then return false end
    local avail = st.count - pos
    if fault and sent >= after then
      return terminal_fault(ctx, avail > 0 and (batch_event(pos, 1)) or nil)
    end
    if avail > 0 then
      local n = math.min(avail, ctx.registry.config.batch_records)
      if fault then n = math.min(n, after - sent) end
      local text, k, size = batch_event(pos, n)
      if not out:send(text) then return false end
      pos, sent, total, bytes = pos + k, sent + k, total + k, bytes + size
      idle_deadline = cqueues.monotime() + ctx.wait_s
    else
      local now = cqueues.monotime()
      if now >= idle_deadline then
        out:send("data: [DONE]\n\n")
        return out:finish()
      end
      local ping_at = out.sent_at + ping_s
      if now >= ping_at then
        if not out:send(('event: ping\ndata: {"timestamp":%d}\n\n'):format(ctx.srv.now_ms())) then
          return false
        end
      elseif wait(ctx, math.min(idle_deadline, ping_at)) == "gone" then
        return false
      end
    end
  end
end

-- v1: the Redis reader: entries after the cursor, split into complete non-blank lines (a partial
-- line waits for the entry that completes it and carries that entry's id).
local function serve_v1(ctx, cursor_ms, cursor_n, latest)
  local st, out = ctx.st, ctx.out
  local i = st.head
  if cursor_ms then
    i = st.tail + 1
    for j = st.tail, st.head, -1 do
      if after_id(st.entries[j], cursor_ms, cursor_n) then i = j else break end
    end
    if ctx.overlap and i - 1 >= st.head then i = i - 1 end  -- overlap fault: the cursor's entry again
  elseif latest then
    i = math.max(st.head, st.tail)
  end
  local buffer, sent = "", 0
  local idle_deadline = cqueues.monotime() + ctx.wait_s
  local ping_s = ping_interval(ctx, PING_V1_MS)
  local fault = ctx.fault and TERMINAL[ctx.fault.kind] and ctx.fault
  local after = fault and (fault.after or 0)
  local pending = {}   -- events split from the last entry, not yet sent
  while true do
    if over(ctx) then return false end
    if #pending == 0 and i <= st.tail then
      if i < st.head then i = st.head end            -- trimmed under us: Redis gives what is left
      local e = st.entries[i]
      i = i + 1
      local text = buffer .. e.data
      local from = 1
      while true do
        local nl = text:find("\n", from, true)
        if not nl then break end
        local line = text:sub(from, nl - 1)
        from = nl + 1
        if line:find("%S") and line ~= "<<CLOSE_STREAM>>" then
          pending[#pending + 1] = "id: " .. (ctx.v1_id or e.id) .. "\ndata: " .. line .. "\n\n"
        end
      end
      buffer = text:sub(from)
      idle_deadline = cqueues.monotime() + ctx.wait_s
    end
    if fault and sent >= after then return terminal_fault(ctx, pending[1]) end
    if #pending > 0 then
      local n = #pending
      if fault then n = math.min(n, after - sent) end
      local texts = {}
      for k = 1, n do texts[k] = table.remove(pending, 1) end
      if not out:send(table.concat(texts)) then return false end
      sent = sent + n
    elseif i > st.tail then
      local now = cqueues.monotime()
      if now >= idle_deadline then return out:finish() end
      local ping_at = out.sent_at + ping_s
      if now >= ping_at then
        if not out:send(": ping\n\n") then return false end
      elseif wait(ctx, math.min(idle_deadline, ping_at)) == "gone" then
        return false
      end
    end
  end
end

---------------------------------------------------------------------------------------------------
-- Routes

local function text_response(status, text, headers)
  headers = headers or {}
  table.insert(headers, 1, { "content-type", "text/plain; charset=utf-8" })
  return http.response(status, headers, text)
end

local function json_response(status, value, headers)
  headers = headers or {}
  table.insert(headers, 1, { "content-type", "application/json; charset=utf-8" })
  return http.response(status, headers, json.encode(value))
end

local CORS = { "access-control-allow-origin", "*" }

local function authenticate(srv, req)
  return auth.authenticate(req.headers, {
    secret_key = srv.opts.secret_key, environment_id = srv.opts.environment_id,
    now_ms = srv.now_ms,
  })
end

local function run_resource(row)
  return { kind = "run", id = row.friendlyId, task = row.taskIdentifier, tags = row.runTags,
           batch = row.batchId }
end

-- GET /realtime/v1/streams/{run}/{key}: 401, 404, 403, 400 (Timeout-Seconds), then the SSE.
local function read_route(srv, req, run_id, key)
  if req.method == "OPTIONS" then
    return http.response(204, { CORS, { "access-control-allow-methods", "GET, OPTIONS" },
      { "access-control-allow-headers", "*" }, { "access-control-max-age", "86400" } })
  end
  if req.method ~= "GET" then return json_response(405, { error = "Method not allowed" }, { CORS }) end
  local principal, why = authenticate(srv, req)
  if not principal then return json_response(401, { error = why }, { CORS }) end
  local rec = srv.store:find(run_id)
  if not rec then
    return json_response(404, { error = "Not found" }, { CORS, { "x-should-retry", "false" } })
  end
  if not auth.allows(principal, run_resource(rec.row)) then
    return json_response(403, auth.FORBIDDEN, { CORS })
  end
  local registry = srv.streams
  local wait_s = registry.config.timeout_s
  local t = js_parse_int(req.headers["timeout-seconds"])
  if t and t ~= 0 then   -- NaN and 0 are falsy on the real server: the default applies
    if t < 1 then return text_response(400, "Timeout seconds must be greater than 0", { CORS }) end
    if t > 600 then return text_response(400, "Timeout seconds must be less than 600", { CORS }) end
    wait_s = t
  end
  local st = registry:get(run_id, key)
  local headers = { { "content-type", "text/event-stream" }, { "cache-control", "no-cache" } }
  if st.version == "v2" then
    headers[#headers + 1] = { "x-stream-version", "v2" }
    headers[#headers + 1] = { "access-control-expose-headers", "*" }
  else
    headers[#headers + 1] = { "connection", "keep-alive" }
  end
  headers[#headers + 1] = CORS
  local fault = req.fault
  if fault and fault.kind == "strip_headers" then
    local kept = {}
    for _, h in ipairs(headers) do
      if h[1] ~= "x-stream-version" and h[1] ~= "access-control-expose-headers" then
        kept[#kept + 1] = h
      end
    end
    headers = kept
  end
  local res = http.response(200, headers, "")
  res.stream = function(conn)
    local keep_alive = req.keep_alive
    local out = setmetatable({ sock = conn.sock, sent_at = cqueues.monotime(),
                               drip = fault and fault.kind == "drip" and fault }, Out)
    if not out:send_head(head_text(200, headers, keep_alive)) then return false end
    local ctx = { srv = srv, conn = conn, st = st, out = out, wait_s = wait_s, registry = registry,
                  fault = fault, overlap = fault and fault.kind == "overlap",
                  v1_id = fault and fault.kind == "v1_id" and fault.id }
    local last = req.headers["last-event-id"]
    if last == "" then last = nil end
    local latest = not last and (req.headers["x-trigger-stream-start"] or ""):lower() == "latest"
    local ok
    if st.version == "v2" then
      local start = last and streams.v2_start(last) or 0
      if latest then start = math.max(0, st.count - 1) end
      ok = serve_v2(ctx, start)
    else
      local ms, n
      if last then ms, n = parse_redis_id(last) end
      ok = serve_v1(ctx, ms, n, latest)
    end
    if not ok then conn.close_mode = "truncate" end
    return ok and keep_alive
  end
  return res
end

function Out:send_head(text)
  return raw_send(self, text)
end

local function secret_only(srv, req)
  local principal, why = authenticate(srv, req)
  if not principal then return nil, json_response(401, { error = why }) end
  if principal.kind ~= "secret" then
    return nil, json_response(401, { error = "Invalid or Missing API key" })
  end
  return principal
end

-- The run a writer route names and the target run it writes to. -> target row or nil, response
local function writer_target(srv, run_id, target)
  local rec = srv.store:find(run_id)
  if not rec then return nil, text_response(404, "Run not found") end
  local target_id = run_id
  if target == "parent" then
    target_id = rec.row.parentRunId
  elseif target == "root" then
    target_id = rec.row.rootRunId
  end
  if not target_id then return nil, text_response(404, "Target not found") end
  local trec = srv.store:find(target_id)
  if not trec then return nil, text_response(404, "Run not found") end
  return trec.row
end

-- PUT /realtime/v1/streams/{run}/{target}/{key}: create. As the real route, the key is pushed
-- before the completed-run check.
local function create_route(srv, row, key)
  local registry = srv.streams
  registry:list(row.friendlyId, key)
  if is_final(row) then
    return text_response(400, "Cannot initialize a realtime stream on a completed run")
  end
  local st = registry:get(row.friendlyId, key)
  local headers = {}
  if st.version == "v2" then
    local env = srv.opts.environment_id
    headers = {
      { "x-s2-access-token", "emulator-s2-token-not-a-credential" },
      { "x-s2-stream-name", ("env/dev/%s/runs/%s/%s"):format(env, row.friendlyId, key) },
      { "x-s2-basin", "trigger-local-emulator" },
      { "x-s2-flush-interval-ms", "100" },
      { "x-s2-max-retries", "10" },
      { "x-s2-endpoint", (srv.base_url or "") .. "/_s2/v1" },
    }
  end
  return json_response(202, { version = st.version }, headers)
end

-- POST /realtime/v1/streams/{run}/{target}/{key}/append: one raw part.
local function append_route(srv, req, row, key)
  local registry = srv.streams
  if is_final(row) then
    return text_response(400, "Cannot append to a realtime stream on a completed run")
  end
  registry:list(row.friendlyId, key)
  local st = registry:get(row.friendlyId, key)
  local part = req.body
  local ok, err
  if st.version == "v2" then
    local id = req.headers["x-part-id"] or nanoid()
    ok, err = pcall(append_v2, registry, st,
                    { { body = '{"data":' .. jstr(part) .. ',"id":' .. jstr(id) .. '}' } })
    if not ok then return json_response(413, json.ordered({ ok = false, error = tostring(err) },
                                                          { "ok", "error" })) end
  else
    append_v1(registry, st, { { data = jstr(part) .. "\n" } })
  end
  return json_response(200, { ok = true })
end

-- POST /realtime/v1/streams/{run}/{target}/{key}: the v1 writer's body, JSON lines. The body is
-- read whole before this runs, so each line becomes one entry when the request ends.
local function ingest_route(srv, req, row, key)
  if req.body == "" then return text_response(400, "No body provided") end
  local resume = req.headers["x-resume-from-chunk"]
  local index = 0
  if resume then
    local n = js_parse_int(resume)
    if not n or n < 0 then
      return text_response(400, "Invalid X-Resume-From-Chunk header value: " .. resume)
    end
    index = n
  end
  local version = req.headers["x-stream-version"] or "v1"
  local registry = srv.streams
  local st = registry:get(row.friendlyId, key)
  if version == "v1" and st.version == "v1" then
    local client = req.headers["x-client-id"] or "default"
    local list = {}
    for line in req.body:gmatch("[^\n]*\n?") do
      if line ~= "" then
        list[#list + 1] = { data = line:sub(-1) == "\n" and line or line .. "\n",
                            client = client, index = index }
        index = index + 1
      end
    end
    append_v1(registry, st, list)
  end
  -- A v1 write to a run whose streams are v2 lands in Redis, which its readers never see.
  return http.response(200, {}, "")
end

-- HEAD /realtime/v1/streams/{run}/{target}/{key}: the v1 writer's resume probe.
local function last_chunk_route(srv, req, row, key)
  local st = srv.streams:find(row.friendlyId, key)
  local client = req.headers["x-client-id"] or "default"
  local index = st and st.clients[client] or -1
  return http.response(200, { { "x-last-chunk-index", tostring(index) } }, "")
end

local function writer_route(srv, req, run_id, target, key, append)
  if not TARGETS[target] then
    return json_response(400, { error = "Invalid params: target must be self, parent or root" })
  end
  local _, denied = secret_only(srv, req)
  if denied then return denied end
  if append then
    if req.method ~= "POST" then return json_response(405, { error = "Method not allowed" }) end
    local length = tonumber(req.headers["content-length"] or "")
    if not length or length > streams.MAX_APPEND_BODY then
      return json_response(413, { error = "Request body too large" })
    end
  elseif req.method ~= "PUT" and req.method ~= "POST" and req.method ~= "HEAD" then
    return text_response(405, "Only HEAD requests are allowed for this endpoint")
  end
  local row, missing = writer_target(srv, run_id, target)
  if not row then return missing end
  if append then return append_route(srv, req, row, key) end
  if req.method == "PUT" then return create_route(srv, row, key) end
  if req.method == "POST" then return ingest_route(srv, req, row, key) end
  return last_chunk_route(srv, req, row, key)
end

---------------------------------------------------------------------------------------------------
-- Admin: /_emulator/streams/{run}/{key}[/append], /_emulator/stream_config

local function reply(status, value)
  return json_response(status, value)
end

local function admin_call(fn, ...)
  local ok, a, b = pcall(fn, ...)
  if ok then return true, a, b end
  local message = tostring(a)
  return false, reply(message:match("^no run ") and 404 or 400, { error = message })
end

local function body_object(req)
  if req.body == "" then return {} end
  local v = json.decode(req.body)
  if type(v) ~= "table" then return nil end
  return v
end

local function admin_route(srv, req, run_id, key, action)
  local body = body_object(req)
  if not body then return reply(400, { error = "body must be a JSON object" }) end
  local registry = srv.streams
  if action == "append" and req.method == "POST" then
    local ok, version, cursors
    if body.records ~= nil then
      ok, version, cursors = admin_call(registry.append_records, registry, run_id, key,
                                        body.records, body)
    else
      ok, version, cursors = admin_call(registry.append_chunks, registry, run_id, key,
                                        body.chunks or {}, body)
    end
    if not ok then return version end
    return reply(200, json.ordered({ version = version, ids = json.array(cursors) },
                                   { "version", "ids" }))
  elseif not action and req.method == "POST" then
    local ok, st = admin_call(registry.create, registry, run_id, key, body)
    if not ok then return st end
    return reply(200, { version = st.version })
  elseif not action and req.method == "GET" then
    local dump = registry:dump(run_id, key)
    if not dump then return reply(404, { error = "No such stream" }) end
    return reply(200, dump)
  end
  return reply(404, { error = "No such emulator route: " .. req.method .. " " .. req.path })
end

---------------------------------------------------------------------------------------------------

-- -> response (res.stream set for an SSE body), or false when the path is not ours.
function streams.dispatch(srv, _, req)
  local path = req.path
  if path:sub(1, 21) == "/realtime/v1/streams/" then
    local segs = {}
    for seg in path:sub(22):gmatch("[^/]+") do segs[#segs + 1] = util.path_decode(seg) end
    if path:sub(-1) == "/" then return false end
    if #segs == 2 then return read_route(srv, req, segs[1], segs[2]) end
    if #segs == 3 then return writer_route(srv, req, segs[1], segs[2], segs[3], false) end
    if #segs == 4 and segs[4] == "append" then
      return writer_route(srv, req, segs[1], segs[2], segs[3], true)
    end
    return false
  end
  if path == "/_emulator/stream_config" then
    if req.method == "GET" then return reply(200, srv.streams.config) end
    if req.method ~= "POST" then return reply(405, { error = "Method not allowed" }) end
    local body = body_object(req)
    if not body then return reply(400, { error = "body must be a JSON object" }) end
    local ok, cfg = admin_call(srv.streams.configure, srv.streams, body)
    if not ok then return cfg end
    return reply(200, cfg)
  end
  if path:sub(1, 19) == "/_emulator/streams/" then
    local segs = {}
    for seg in path:sub(20):gmatch("[^/]+") do segs[#segs + 1] = util.path_decode(seg) end
    if #segs == 2 then return admin_route(srv, req, segs[1], segs[2], nil) end
    if #segs == 3 and segs[3] == "append" then return admin_route(srv, req, segs[1], segs[2], "append") end
  end
  return false
end

return streams
