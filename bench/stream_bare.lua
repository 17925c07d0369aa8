-- Realtime streams, bare baseline: the same SSE read by hand with luasocket (non-blocking
-- sockets, socket.select, chunked transfer decoding, "\n\n" event splitting) and plain cjson
-- (the v2 batch, then each record's envelope) — no library. Same modes and output as
-- bench/stream_client.lua:
--   latency PORT RUN KEY
--   throughput PORT PREFIX NSTREAMS KEY N
local cjson = require "cjson"
local socket = require "socket"
local util = require "util"
local http = require "http_min"

local decode = cjson.decode
local mode, port = arg[1], tonumber(arg[2])

local function open(run, key)
  local sock = assert(socket.connect("127.0.0.1", port))
  sock:setoption("tcp-nodelay", true)
  assert(sock:send(("GET /realtime/v1/streams/%s/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
    .. "Authorization: Bearer tr_dev_local_emulator_secret_key\r\nAccept: text/event-stream\r\n"
    .. "\r\n"):format(run, key, port)))
  sock:settimeout(0)
  return { sock = sock, raw = "", head = false, chunked = false, size = nil, sse = "" }
end

-- Bytes came for c: un-chunk them into c.sse, then hand each complete SSE event's chunks to
-- on_chunk(c, chunk) (false from it: stop this connection).
local function feed(c, bytes, on_chunk)
  c.raw = c.raw .. bytes
  if not c.head then
    local e = c.raw:find("\r\n\r\n", 1, true)
    if not e then return true end
    local head = c.raw:sub(1, e + 1)
    assert(head:match("^HTTP/1%.1 200"), head)
    c.chunked = head:lower():find("transfer%-encoding: chunked") ~= nil
    c.raw = c.raw:sub(e + 4)
    c.head = true
  end
  if c.chunked then
    local out = {}
    while true do
      if not c.size then
        local e = c.raw:find("\r\n", 1, true)
        if not e then break end
        c.size = tonumber(c.raw:sub(1, e - 1):match("^%x+"), 16)
        c.raw = c.raw:sub(e + 2)
      end
      if #c.raw < c.size + 2 then break end
      out[#out + 1] = c.raw:sub(1, c.size)
      c.raw = c.raw:sub(c.size + 3)
      c.size = nil
    end
    c.sse = c.sse .. table.concat(out)
  else
    c.sse, c.raw = c.sse .. c.raw, ""
  end
  local pos = 1
  while true do
    local e = c.sse:find("\n\n", pos, true)
    if not e then break end
    local event = c.sse:sub(pos, e - 1)
    pos = e + 2
    if event:find("^event: batch") then
      local data = event:match("\ndata: ([^\n]*)")
      for _, rec in ipairs(decode(data).records) do
        if rec.body and not on_chunk(c, decode(rec.body).data) then return false end
      end
    end
  end
  c.sse = c.sse:sub(pos)
  return true
end

-- Read the connections until on_chunk has stopped each.
local function run_all(conns, on_chunk)
  local open_ = {}
  for _, c in ipairs(conns) do open_[#open_ + 1] = c end
  while #open_ > 0 do
    local socks = {}
    for i, c in ipairs(open_) do socks[i] = c.sock end
    local readable = socket.select(socks, nil, 60)
    local by_sock = {}
    for _, s in ipairs(readable) do by_sock[s] = true end
    local keep = {}
    for _, c in ipairs(open_) do
      local going = true
      if by_sock[c.sock] then
        local data, err, partial = c.sock:receive(65536)
        local bytes = data or partial
        if bytes and bytes ~= "" then going = feed(c, bytes, on_chunk) end
        if err == "closed" then error("stream closed early") end
      end
      if going then keep[#keep + 1] = c else c.sock:close() end
    end
    open_ = keep
  end
end

if mode == "latency" then
  local run, key = arg[3], arg[4]
  local latencies = {}
  local cpu0 = os.clock()
  run_all({ open(run, key) }, function(_, chunk)
    local now = util.now()
    if chunk.t then
      latencies[#latencies + 1] = (now - chunk.t) * 1000
    elseif chunk.ready then
      http.request("127.0.0.1", port, "PATCH", "/_emulator/runs/run_bench_stream_ctl",
        '{"status":"EXECUTING"}')
    elseif chunk["end"] then
      return false
    end
    return true
  end)
  util.emit { latencies_ms = latencies, cpu = os.clock() - cpu0 }
  return
end

local prefix, n, key, last = arg[3], tonumber(arg[4]), arg[5], tonumber(arg[6])
collectgarbage()
local cpu0, t0 = os.clock(), util.now()
local conns = {}
for i = 1, n do conns[i] = open(prefix .. i, key) end
local chunks = 0
run_all(conns, function(_, chunk)
  chunks = chunks + 1
  return chunk.i ~= last
end)
local t1, cpu1 = util.now(), os.clock()
util.emit { seconds = t1 - t0, cpu = cpu1 - cpu0, chunks = chunks, hwm_kb = util.status_kb("VmHWM") }
