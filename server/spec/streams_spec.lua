-- Realtime run streams (../shared/protocol/streams.md) served by the local server, over real HTTP
-- with a raw client so that every byte of both framings is visible.
-- luacheck: max line length 130
local helper = require "spec.helper"
local cjson = require "cjson"
local hmac = require "openssl.hmac"
local socket = require "socket"

---------------------------------------------------------------------------------------------------
-- A raw HTTP/1.1 client that reads a chunked SSE body piece by piece

local function send(port, method, target, headers, body, conn)
  conn = conn or assert(socket.connect("127.0.0.1", port))
  conn:settimeout(10)
  local lines = { ("%s %s HTTP/1.1"):format(method, target), "Host: 127.0.0.1:" .. port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  return conn
end

-- The status line and headers. -> { conn, status, headers, body = "" }
local function read_head(conn)
  local line = assert(conn:receive("*l"))
  local r = { conn = conn, status = tonumber(line:match("^HTTP/1%.1 (%d+)")), headers = {}, body = "" }
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s?(.*)$")
    r.headers[name:lower()] = value
  end
  return r
end

-- One HTTP chunk into r.body. -> true, or false at the last chunk (r.ended), or nil when the
-- connection broke off (r.cut).
local function read_chunk(r)
  local line = r.conn:receive("*l")
  local size = line and tonumber(line, 16)
  if not size then r.cut = true return nil end
  if size == 0 then
    r.conn:receive("*l")
    r.ended = true
    return false
  end
  local data, _, partial = r.conn:receive(size)
  if not data then
    r.body = r.body .. (partial or "")
    r.cut = true
    return nil
  end
  r.conn:receive("*l")
  r.body = r.body .. data
  return true
end

-- A plain (content-length) body.
local function read_plain(r)
  local n = tonumber(r.headers["content-length"] or "0")
  r.body = n > 0 and r.conn:receive(n) or ""
  return r
end

local function read_all(r)
  if not r.headers["transfer-encoding"] then return read_plain(r) end
  while read_chunk(r) do end
  return r
end

local function read_until(r, pred)
  while not pred(r.body) do
    if not read_chunk(r) then break end
  end
  return r
end

local function request(port, method, target, headers, body)
  local conn = send(port, method, target, headers, body)
  local r = read_all(read_head(conn))
  conn:close()
  return r
end

-- SSE events of a body: { {event=, id=, data=, comment=} ... } (data lines joined by "\n").
local function events(body)
  local out = {}
  for block in (body .. "\n\n"):gmatch("(.-)\n\n") do
    if block ~= "" then
      local e = {}
      for line in (block .. "\n"):gmatch("(.-)\n") do
        local field, value = line:match("^([^:]*):? ?(.*)$")
        if field == "" then
          e.comment = value
        elseif field == "data" then
          e.data = e.data and (e.data .. "\n" .. value) or value
        else
          e[field] = value
        end
      end
      out[#out + 1] = e
    end
  end
  return out
end

-- v2: the chunks of the batch events (envelope data), and their seq_nums.
local function v2_chunks(body)
  local chunks, seqs = {}, {}
  for _, e in ipairs(events(body)) do
    if e.event == "batch" then
      for _, rec in ipairs(cjson.decode(e.data).records) do
        local env = rec.body and cjson.decode(rec.body)
        chunks[#chunks + 1] = env and env.data
        seqs[#seqs + 1] = rec.seq_num
      end
    end
  end
  return chunks, seqs
end

-- v1: the data lines, decoded as the SDK does (JSON, else the raw text), and their ids.
local function v1_chunks(body)
  local chunks, ids = {}, {}
  for _, e in ipairs(events(body)) do
    if e.data then
      local ok, v = pcall(cjson.decode, e.data)
      chunks[#chunks + 1] = ok and v or e.data
      ids[#ids + 1] = e.id
    end
  end
  return chunks, ids
end

---------------------------------------------------------------------------------------------------
-- Tokens, signed here independently of the server

local function b64url(s)
  return (require("mime").b64(s):gsub("=+$", ""):gsub("+", "-"):gsub("/", "_"))
end

local function public_token(srv, scopes)
  local claims = { sub = srv.environment_id, pub = true, iss = "https://id.trigger.dev",
                   aud = "https://api.trigger.dev", iat = os.time(), exp = os.time() + 900,
                   scopes = scopes }
  local header = b64url(cjson.encode({ alg = "HS256", typ = "JWT" }))
  local body = b64url(cjson.encode(claims))
  local sig = hmac.new(srv.secret_key, "sha256"):final(header .. "." .. body)
  return header .. "." .. body .. "." .. b64url(sig)
end

---------------------------------------------------------------------------------------------------

describe("realtime streams", function()
  local srv, K

  local function auth(extra, token)
    local h = { Authorization = "Bearer " .. (token or K), Accept = "text/event-stream",
                ["trigger-version"] = "4.8.3" }
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
  end

  local function open(run, key, extra, token)
    local conn = send(srv.port, "GET", "/realtime/v1/streams/" .. run .. "/" .. (key or "default"),
                      auth(extra, token))
    return read_head(conn)
  end

  local function read(run, key, extra, token)
    local r = read_all(open(run, key, extra, token))
    r.conn:close()
    return r
  end

  local n = 0
  local function new_run(fields)
    n = n + 1
    fields = fields or {}
    fields.friendlyId = fields.friendlyId or ("run_s" .. n)
    fields.status = fields.status or "EXECUTING"
    fields.tags = fields.tags or { "user:" .. n }
    return (srv:create_run(fields))
  end

  local VECTOR = {
    chunks = { "Hello", { n = 2 }, "!" },
    ids = { "a1B2c3D", "e4F5g6H", "i7J8k9L" },
    timestamps = { 1761825601000, 1761825601200, 1761825601400 },
  }

  setup(function()
    srv = helper.start_server { hold_ms = 500, stream_timeout_s = 1, stream_ping_ms = 300 }
    K = srv.secret_key
  end)

  teardown(function()
    srv:stop()
  end)

  describe("v2 framing (S2)", function()
    it("serves test vector (a): batch events, ping, [DONE] after the idle wait", function()
      local run = new_run()
      local r = open(run, "default", { ["Timeout-Seconds"] = "1" })
      for i = 1, 3 do -- live, one at a time: one record per batch, the tail just past it
        srv:append_stream(run, "default", { VECTOR.chunks[i] },
                          { ids = { VECTOR.ids[i] }, timestamps = { VECTOR.timestamps[i] } })
        read_until(r, function(b) return #v2_chunks(b) >= i end)
      end
      read_all(r)
      r.conn:close()
      assert.are.equal(200, r.status)
      assert.are.equal("text/event-stream", r.headers["content-type"])
      assert.are.equal("v2", r.headers["x-stream-version"])
      assert.are.equal("*", r.headers["access-control-expose-headers"])
      assert.is_true(r.ended)
      -- metered bytes: 8 + body (no headers) = 39, 39, 35 (the doc's formula, §4)
      local expected = table.concat({
        'event: batch\nid: 0,1,39\ndata: {"records":[{"seq_num":0,"timestamp":1761825601000,' ..
        '"body":"{\\"data\\":\\"Hello\\",\\"id\\":\\"a1B2c3D\\"}"}],"tail":{"seq_num":1,"timestamp":1761825601000}}\n\n',
        'event: batch\nid: 1,2,78\ndata: {"records":[{"seq_num":1,"timestamp":1761825601200,' ..
        '"body":"{\\"data\\":{\\"n\\":2},\\"id\\":\\"e4F5g6H\\"}"}],"tail":{"seq_num":2,"timestamp":1761825601200}}\n\n',
        'event: batch\nid: 2,3,113\ndata: {"records":[{"seq_num":2,"timestamp":1761825601400,' ..
        '"body":"{\\"data\\":\\"!\\",\\"id\\":\\"i7J8k9L\\"}"}],"tail":{"seq_num":3,"timestamp":1761825601400}}\n\n',
      })
      assert.are.equal(expected, r.body:sub(1, #expected))
      local evs = events(r.body:sub(#expected + 1))
      assert.is_true(#evs >= 2)
      for i = 1, #evs - 1 do
        assert.are.equal("ping", evs[i].event)
        assert.is_truthy(evs[i].data:match('^{"timestamp":%d+}$'))
      end
      assert.are.same({ data = "[DONE]" }, evs[#evs])
      assert.are.same(VECTOR.chunks, (v2_chunks(r.body)))
    end)

    it("groups a catch-up into one batch and delivers live appends at once", function()
      local run = new_run()
      srv:append_stream(run, "default", { 1, 2 })
      local r = open(run, "default", { ["Timeout-Seconds"] = "5" })
      read_until(r, function(b) return #events(b) >= 1 end)
      local first = events(r.body)[1]
      assert.are.equal("1,2,", first.id:sub(1, 4))
      assert.are.equal(2, #cjson.decode(first.data).records)
      srv:append_stream(run, "default", { { text = "live" } })
      read_until(r, function(b) return #v2_chunks(b) >= 3 end)
      r.conn:close()
      local chunks, seqs = v2_chunks(r.body)
      assert.are.same({ 1, 2, { text = "live" } }, chunks)
      assert.are.same({ 0, 1, 2 }, seqs)
    end)

    it("passes command records and non-JSON bodies through with headers", function()
      local run = new_run()
      srv:append_stream_records(run, "default", {
        { body = "not json" }, { headers = { { "", "trim" } }, body = "\0\0\0\0\0\0\0\1" },
      })
      local r = read(run)
      local recs = cjson.decode(events(r.body)[1].data).records
      assert.are.equal("not json", recs[1].body)
      assert.is_nil(recs[1].headers)
      assert.are.same({ { "", "trim" } }, recs[2].headers)
      assert.are.equal("\\u0000", events(r.body)[1].data:match('"body":"(\\u0000)'))
    end)

    it("resumes from Last-Event-ID = seq_num, never from the id: triple", function()
      local run = new_run()
      srv:append_stream(run, "default", { "a", "b", "c" })
      local function seqs(last)
        return select(2, v2_chunks(read(run, "default", { ["Last-Event-ID"] = last }).body))
      end
      assert.are.same({ 2 }, seqs("1"))
      assert.are.same({ 0, 1, 2 }, seqs("1,2,80"))   -- not a number: full replay
      assert.are.same({ 0, 1, 2 }, seqs("abc"))
      assert.are.same({ 1, 2 }, seqs("-1"))          -- "" before the "-" is 0, start at 1
      assert.are.same({}, seqs("1761825601200-0"))   -- past the tail: clamped, waits there
      assert.are.same({}, seqs("2"))
    end)

    it("starts at the most recent record with X-Trigger-Stream-Start: latest", function()
      local run = new_run()
      srv:append_stream(run, "default", { "a", "b", "c" })
      local r = read(run, "default", { ["X-Trigger-Stream-Start"] = "latest" })
      assert.are.same({ "c" }, (v2_chunks(r.body)))
      local empty = new_run()
      assert.are.same({}, (v2_chunks(read(empty, "default", { ["X-Trigger-Stream-Start"] = "latest" }).body)))
    end)

    it("answers an unknown key with 200, no records, then [DONE]", function()
      local r = read(new_run(), "never-written")
      assert.are.equal(200, r.status)
      assert.is_true(r.ended)
      local evs = events(r.body)
      assert.are.same({ data = "[DONE]" }, evs[#evs])
      assert.are.same({}, (v2_chunks(r.body)))
    end)

    it("keeps the connection for the next request after a clean end", function()
      local run = new_run()
      srv:append_stream(run, "default", { "x" })
      local conn = send(srv.port, "GET", "/realtime/v1/streams/" .. run .. "/default", auth())
      local r = read_all(read_head(conn))
      assert.is_true(r.ended)
      send(srv.port, "GET", "/realtime/v1/streams/" .. run .. "/default",
           auth { ["Last-Event-ID"] = "0" }, nil, conn)
      local again = read_all(read_head(conn))
      conn:close()
      assert.are.equal(200, again.status)
      assert.are.same({}, (v2_chunks(again.body)))
    end)
  end)

  describe("v1 framing (Redis)", function()
    it("serves the v1 vector: id/data lines, : ping, plain EOF, no version header", function()
      local run = new_run { realtimeStreamsVersion = "v1" }
      local res = srv:append_stream(run, "default", VECTOR.chunks, { timestamps = VECTOR.timestamps })
      assert.are.equal("v1", res.version)
      assert.are.same({ "1761825601000-0", "1761825601200-0", "1761825601400-0" }, res.ids)
      local r = read(run)
      assert.are.equal(200, r.status)
      assert.is_nil(r.headers["x-stream-version"])
      assert.are.equal("keep-alive", r.headers["connection"])
      assert.are.equal("no-cache", r.headers["cache-control"])
      local expected = 'id: 1761825601000-0\ndata: "Hello"\n\nid: 1761825601200-0\ndata: {"n":2}\n\n' ..
                       'id: 1761825601400-0\ndata: "!"\n\n'
      assert.are.equal(expected, r.body:sub(1, #expected))
      assert.is_true(r.ended)
      local rest = events(r.body:sub(#expected + 1))
      assert.is_true(#rest >= 1)
      for _, e in ipairs(rest) do assert.are.same({ comment = "ping" }, e) end
    end)

    it("resumes strictly after the Redis id", function()
      local run = new_run { realtimeStreamsVersion = "v1" }
      local ids = srv:append_stream(run, "default", { "a", "b", "c" }).ids
      local chunks, got = v1_chunks(read(run, "default", { ["Last-Event-ID"] = ids[2] }).body)
      assert.are.same({ "c" }, chunks)
      assert.are.same({ ids[3] }, got)
      assert.are.same({ "c" }, (v1_chunks(read(run, "default", { ["X-Trigger-Stream-Start"] = "latest" }).body)))
    end)

    it("splits entries into complete lines; a line completed later carries the later id", function()
      local run = new_run { realtimeStreamsVersion = "v1" }
      local ids = srv:append_stream_records(run, "default", {
        { body = '"a"\n"b"\n' }, { body = '"par' }, { body = 't"\n<<CLOSE_STREAM>>\n\n' },
      }).ids
      local chunks, got = v1_chunks(read(run).body)
      assert.are.same({ "a", "b", "part" }, chunks)
      assert.are.same({ ids[1], ids[1], ids[3] }, got)
    end)

    it("trims the head past MAXLEN", function()
      local run = new_run { realtimeStreamsVersion = "v1" }
      srv:stream_config { v1_max_length = 3 }
      srv:append_stream(run, "default", { 1, 2, 3, 4, 5 })
      srv:stream_config { v1_max_length = 1000 }
      assert.are.same({ 3, 4, 5 }, (v1_chunks(read(run).body)))
    end)

    it("takes the v1 writer's body and answers its resume probe", function()
      local run = new_run { realtimeStreamsVersion = "v1" }
      local put = request(srv.port, "PUT", "/realtime/v1/streams/" .. run .. "/self/default",
                          { Authorization = "Bearer " .. K })
      assert.are.equal(202, put.status)
      assert.are.same({ version = "v1" }, cjson.decode(put.body))
      assert.is_nil(put.headers["x-s2-access-token"])
      local h = { Authorization = "Bearer " .. K, ["X-Client-Id"] = "abcd1234",
                  ["X-Resume-From-Chunk"] = "0", ["X-Stream-Version"] = "v1" }
      local post = request(srv.port, "POST", "/realtime/v1/streams/" .. run .. "/self/default", h,
                           '{"t":"x"}\n"y"\n')
      assert.are.equal(200, post.status)
      local head = request(srv.port, "HEAD", "/realtime/v1/streams/" .. run .. "/self/default", h)
      assert.are.equal("1", head.headers["x-last-chunk-index"])
      local other = request(srv.port, "HEAD", "/realtime/v1/streams/" .. run .. "/self/default",
                            { Authorization = "Bearer " .. K, ["X-Client-Id"] = "zzzz" })
      assert.are.equal("-1", other.headers["x-last-chunk-index"])
      assert.are.same({ { t = "x" }, "y" }, (v1_chunks(read(run).body)))
    end)
  end)

  describe("writer routes", function()
    it("PUT creates: 202, version, S2 headers, realtimeStreams listed once (a run change)", function()
      local run = new_run()
      local before = srv:stats()
      local path = "/realtime/v1/streams/" .. run .. "/self/default"
      local r = request(srv.port, "PUT", path, { Authorization = "Bearer " .. K })
      assert.are.equal(202, r.status)
      assert.are.same({ version = "v2" }, cjson.decode(r.body))
      for _, h in ipairs({ "x-s2-access-token", "x-s2-stream-name", "x-s2-basin",
                           "x-s2-flush-interval-ms", "x-s2-max-retries", "x-s2-endpoint" }) do
        assert.is_truthy(r.headers[h], h)
      end
      assert.are.equal("{default}", srv:get_run(run).realtimeStreams)
      request(srv.port, "PUT", path, { Authorization = "Bearer " .. K })
      request(srv.port, "PUT", "/realtime/v1/streams/" .. run .. "/self/b%20c", { Authorization = "Bearer " .. K })
      assert.are.equal('{default,"b c"}', srv:get_run(run).realtimeStreams)
      assert.is_truthy(before)
      -- the run feed sees it as an update
      local shape = request(srv.port, "GET", "/realtime/v1/runs/" .. run .. "?offset=-1",
        { Authorization = "Bearer " .. K, ["x-trigger-electric-version"] = "1.0.0-beta.1" })
      assert.are.equal(200, shape.status)
      assert.is_truthy(shape.body:find('"realtimeStreams":"{default,\\"b c\\"}"', 1, true))
    end)

    it("the shape's live request wakes with the realtimeStreams update", function()
      local run = new_run()
      local h = { Authorization = "Bearer " .. K, ["x-trigger-electric-version"] = "1.0.0-beta.1" }
      local path = "/realtime/v1/runs/" .. run
      local first = request(srv.port, "GET", path .. "?offset=-1", h)
      local handle = first.headers["electric-handle"]
      local second = request(srv.port, "GET", path .. "?offset=" .. first.headers["electric-offset"] ..
                             "&handle=" .. handle, h)
      local conn = send(srv.port, "GET", path .. "?live=true&offset=" .. second.headers["electric-offset"] ..
                        "&handle=" .. handle .. "&cursor=", h)
      socket.sleep(0.1)
      srv:append_stream(run, "default", { "x" })
      local live = read_all(read_head(conn))
      conn:close()
      local msgs = cjson.decode(live.body)
      assert.are.equal("update", msgs[1].headers.operation)
      assert.are.equal("{default}", msgs[1].value.realtimeStreams)
    end)

    it("POST append stores the raw body as a JSON string, with X-Part-Id", function()
      local run = new_run()
      local r = request(srv.port, "POST", "/realtime/v1/streams/" .. run .. "/self/default/append",
                        { Authorization = "Bearer " .. K, ["X-Part-Id"] = "part-1" }, '{"n":2}')
      assert.are.equal(200, r.status)
      assert.are.same({ ok = true }, cjson.decode(r.body))
      assert.are.equal("{default}", srv:get_run(run).realtimeStreams)
      local rec = srv:get_stream(run, "default").records[1]
      assert.are.equal('{"data":"{\\"n\\":2}","id":"part-1"}', rec.body)
      assert.are.same({ '{"n":2}' }, (v2_chunks(read(run).body)))
      local v1 = new_run { realtimeStreamsVersion = "v1" }
      request(srv.port, "POST", "/realtime/v1/streams/" .. v1 .. "/self/default/append",
              { Authorization = "Bearer " .. K }, '{"n":2}')
      assert.are.same({ '{"n":2}' }, (v1_chunks(read(v1).body)))
    end)

    it("refuses as the real server does", function()
      local run = new_run()
      local sk = { Authorization = "Bearer " .. K }
      local base = "/realtime/v1/streams/"
      local r = request(srv.port, "PUT", base .. "run_nope/self/default", sk)
      assert.are.same({ 404, "Run not found" }, { r.status, r.body })
      r = request(srv.port, "PUT", base .. run .. "/parent/default", sk)
      assert.are.same({ 404, "Target not found" }, { r.status, r.body })
      local child = new_run { parentRunId = run, rootRunId = run }
      r = request(srv.port, "PUT", base .. child .. "/root/out", sk)
      assert.are.equal(202, r.status)
      assert.are.equal("{out}", srv:get_run(run).realtimeStreams)
      r = request(srv.port, "PUT", base .. run .. "/self/default",
                  { Authorization = "Bearer " .. public_token(srv, { "read:all", "admin" }) })
      assert.are.equal(401, r.status)
      r = request(srv.port, "PUT", base .. run .. "/self/default", {})
      assert.are.equal(401, r.status)
      -- Content-Length is required on append, and at most 512 KiB
      local conn = send(srv.port, "POST", base .. run .. "/self/default/append",
                        { Authorization = "Bearer " .. K, ["Transfer-Encoding"] = "chunked" })
      conn:send("2\r\nhi\r\n0\r\n\r\n")
      r = read_all(read_head(conn))
      conn:close()
      assert.are.same({ 413, { error = "Request body too large" } }, { r.status, cjson.decode(r.body) })
      r = request(srv.port, "POST", base .. run .. "/self/default/append", sk, ("x"):rep(512 * 1024 + 1))
      assert.are.equal(413, r.status)
      r = request(srv.port, "POST", base .. run .. "/self/default/append", sk, ('"'):rep(512 * 1024))
      assert.are.equal(413, r.status)
      assert.is_false(cjson.decode(r.body).ok)
      srv:update_run(run, { status = "COMPLETED_SUCCESSFULLY", completedAt = os.time() * 1000 })
      r = request(srv.port, "PUT", base .. run .. "/self/late", sk)
      assert.are.same({ 400, "Cannot initialize a realtime stream on a completed run" }, { r.status, r.body })
      r = request(srv.port, "POST", base .. run .. "/self/late/append", sk, "x")
      assert.are.same({ 400, "Cannot append to a realtime stream on a completed run" }, { r.status, r.body })
    end)

    it("lists a legacy stream in metadata $$streams when asked", function()
      local run = new_run { metadata = '{"progress":1}' }
      assert.are.equal("v1", srv:create_stream(run, "openai", { legacy = true, version = "v1" }))
      local meta = cjson.decode(srv:get_run(run).metadata)
      assert.are.same({ "openai" }, meta["$$streams"])
      assert.are.equal("v1", meta["$$streamsVersion"])
      assert.are.equal(1, meta.progress)
      assert.are.equal("{}", srv:get_run(run).realtimeStreams)
    end)
  end)

  describe("auth and status codes of the read route", function()
    it("401 without credentials or with a bad token", function()
      local run = new_run()
      local r = request(srv.port, "GET", "/realtime/v1/streams/" .. run .. "/default", {})
      assert.are.equal(401, r.status)
      assert.are.same({ error = "Invalid or Missing API key" }, cjson.decode(r.body))
      assert.are.equal(401, read(run, "default", nil, "tr_dev_wrong").status)
      assert.are.equal(401, read(run, "default", nil, "a.b.c").status)
    end)

    it("404 for an unknown run, with x-should-retry: false", function()
      local r = read("run_unknown", "default")
      assert.are.equal(404, r.status)
      assert.are.equal("false", r.headers["x-should-retry"])
      assert.are.same({ error = "Not found" }, cjson.decode(r.body))
    end)

    it("403 for a public token without the run's scope; its scopes let it read", function()
      local run = new_run { tags = { "team:red" }, taskIdentifier = "writer-task" }
      srv:append_stream(run, "default", { "ok" })
      local r = read(run, "default", nil, public_token(srv, { "read:runs:run_other" }))
      assert.are.equal(403, r.status)
      assert.are.equal("Unauthorized", cjson.decode(r.body).error)
      for _, scope in ipairs({ "read:runs:" .. run, "read:tags:team:red", "read:tasks:writer-task",
                               "read:runs", "read:all" }) do
        local ok = read(run, "default", nil, public_token(srv, { scope }))
        assert.are.equal(200, ok.status, scope)
        assert.are.same({ "ok" }, (v2_chunks(ok.body)), scope)
      end
    end)

    it("Timeout-Seconds: 1-600; 0 and junk mean the default", function()
      local run = new_run()
      local r = read(run, "default", { ["Timeout-Seconds"] = "601" })
      assert.are.same({ 400, "Timeout seconds must be less than 600" }, { r.status, r.body })
      assert.are.equal("text/plain; charset=utf-8", r.headers["content-type"])
      r = read(run, "default", { ["Timeout-Seconds"] = "-3" })
      assert.are.same({ 400, "Timeout seconds must be greater than 0" }, { r.status, r.body })
      assert.are.equal(200, read(run, "default", { ["Timeout-Seconds"] = "0" }).status)
      assert.are.equal(200, read(run, "default", { ["Timeout-Seconds"] = "soon" }).status)
      local long = open(run, "default", { ["Timeout-Seconds"] = "600" })
      long.conn:close()
      assert.are.equal(200, long.status)
    end)

    it("logs the stream request headers (never the token)", function()
      local run = new_run()
      read(run, "default", { ["Last-Event-ID"] = "7", ["Timeout-Seconds"] = "1" })
      local log = srv:stats().log
      local e = log[#log]
      assert.are.equal("/realtime/v1/streams/" .. run .. "/default", e.path)
      assert.are.equal("7", e.headers["last-event-id"])
      assert.are.equal("1", e.headers["timeout-seconds"])
      assert.are.equal("text/event-stream", e.headers.accept)
      assert.is_true(e.headers.has_authorization)
    end)
  end)

  describe("faults", function()
    local function fault(run, spec)
      spec.match = { path_prefix = "/realtime/v1/streams/" .. run .. "/" }
      srv:fault(spec)
    end

    for _, version in ipairs({ "v2", "v1" }) do
      local chunks_of = version == "v2" and v2_chunks or v1_chunks
      it(version .. ": a cut after 2 records, then a resume: no loss, no repeat (vector b)", function()
        local run = new_run { realtimeStreamsVersion = version }
        local ids = srv:append_stream(run, "default", VECTOR.chunks).ids
        fault(run, { kind = "truncate", after = 2 })
        local r = read(run)
        assert.is_true(r.cut)
        assert.is_nil(r.body:find("[DONE]", 1, true))
        local first, cursors = chunks_of(r.body)
        assert.are.same({ "Hello", { n = 2 } }, first)
        local cursor = version == "v2" and ("%d"):format(cursors[2]) or cursors[2]
        assert.are.equal(ids[2], cursor)
        local again = read(run, "default", { ["Last-Event-ID"] = cursor })
        assert.is_true(again.ended)
        assert.are.same({ "!" }, (chunks_of(again.body)))
      end)

      it(version .. ": reset_mid_body cuts inside the next event", function()
        local run = new_run { realtimeStreamsVersion = version }
        srv:append_stream(run, "default", { "a", "b" })
        fault(run, { kind = "reset_mid_body", after = 1 })
        local r = read(run)
        assert.is_true(r.cut)
        assert.are.same({ "a" }, (chunks_of(r.body:match("^(.-\n\n)"))))
        assert.is_truthy(#r.body > #r.body:match("^(.-\n\n)"))
        assert.is_nil(r.body:sub(-2) == "\n\n" and true or nil)
      end)

      it(version .. ": overlap re-sends the cursor's record on a resume", function()
        local run = new_run { realtimeStreamsVersion = version }
        local ids = srv:append_stream(run, "default", { "a", "b", "c" }).ids
        fault(run, { kind = "overlap" })
        assert.are.same({ "b", "c" }, (chunks_of(read(run, "default", { ["Last-Event-ID"] = ids[2] }).body)))
      end)
    end

    it("v2: event: error mid-stream, then the connection closes without [DONE]", function()
      local run = new_run()
      srv:append_stream(run, "default", { "a", "b" })
      fault(run, { kind = "sse_error", after = 1 })
      local r = read(run)
      local evs = events(r.body)
      assert.are.equal(2, #evs)
      assert.are.same({ event = "error", data = "backend restarting" }, evs[2])
      assert.is_true(r.cut)
    end)

    it("cuts before the first record (after = 0) and after the writer is done", function()
      local run = new_run()
      fault(run, { kind = "truncate" })
      local r = read(run)
      assert.are.same({ true, "" }, { r.cut, r.body })
      srv:append_stream(run, "default", { "a" })
      srv:update_run(run, { status = "COMPLETED_SUCCESSFULLY", completedAt = os.time() * 1000 })
      fault(run, { kind = "truncate", after = 1 })
      r = read(run)
      assert.is_true(r.cut)
      assert.are.same({ "a" }, (v2_chunks(r.body)))
    end)

    it("status faults (500, 429) and strip_headers, drip", function()
      local run = new_run()
      srv:append_stream(run, "default", { "a" })
      fault(run, { kind = "status", status = 500 })
      assert.are.equal(500, read(run).status)
      fault(run, { kind = "status", status = 429, count = 2 })
      assert.are.equal(429, read(run).status)
      assert.are.equal(429, read(run).status)
      fault(run, { kind = "strip_headers" })
      local r = read(run)
      assert.is_nil(r.headers["x-stream-version"])
      fault(run, { kind = "drip", chunk_size = 7 })
      r = read(run)
      assert.is_true(r.ended)
      assert.are.same({ "a" }, (v2_chunks(r.body)))
    end)

    it("a dropped connection ends an open stream", function()
      local run = new_run()
      local r = open(run, "default", { ["Timeout-Seconds"] = "10" })
      socket.sleep(0.1)
      srv:drop_connections()
      read_all(r)
      r.conn:close()
      assert.is_true(r.cut)
    end)
  end)
end)
