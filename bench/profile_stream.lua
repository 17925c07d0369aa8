-- Offline profile of the throughput test on the streaming path (issue 16): the saved response
-- bodies of an initial sync replayed through a fake background transport, either whole (the
-- path of today: request.await -> shape_rows.parse(body) -> Rows:apply) or in chunks through
-- trigger.shape.body (request:head(), then request:take() pieces fed to core.shape_reader).
-- Meant for `valgrind --tool=callgrind` (instruction counts are repeatable where the clock of
-- this shared machine is not) and for peak RSS (VmHWM, printed in the RESULT line).
--
--   lua5.4 bench/profile_stream.lua save DIR [N] [CHUNK_ROWS] [BACKEND]
--        start the local server, make N (20000) runs, sync them once, save DIR/pageK.json
--   lua5.4 bench/profile_stream.lua whole|stream|bare DIR [PIECE] [KEEP]
--        whole:  each page handed over whole, decoded by core.shape_messages (today)
--        stream: each page handed over in PIECE-byte takes (16384: libcurl's write size)
--        bare:   plain cjson of each page and of every row's packets (bench/sync_bare.lua)
--        KEEP=rows: the whole store is the result (Rows:apply), as in a real sync; the
--        default also builds and drops every run object as the subscription would.
--
-- The transport fake answers the k-th request with page k; the body of a page is only ever
-- held by the fake itself (the "network": the bytes already on the wire), so the RSS difference
-- between whole and stream is what the client holds. To make that visible the fake holds only
-- the current page's text (pages are read from disk one at a time).
local mode, dir = arg[1], arg[2]
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath
local util = require "util"

local read_file = util.read_file

if mode == "save" then
  local n, chunk_rows, backend = tonumber(arg[3] or "20000"), tonumber(arg[4] or "5000"), arg[5]
  local helper = require "spec.helper"
  local rows = require "rows"
  local cjson = require "cjson"
  os.execute("mkdir -p '" .. dir .. "'")
  local srv = helper.start_server { chunk_rows = chunk_rows, hold_ms = 2000, backend = backend }
  srv:admin("POST", "/_emulator/runs/bulk", { count = n, template = rows.template("bench:sync") })
  local transport = require "trigger.transport.curl"
  local result, saved = transport.result, 0
  transport.result = function(h)
    local status, headers, body = result(h)
    if status == 200 and type(body) == "string" and body ~= "" and body ~= "[]" then
      saved = saved + 1
      local f = assert(io.open(("%s/page%d.json"):format(dir, saved), "wb"))
      f:write(body)
      f:close()
      f = assert(io.open(("%s/page%d.headers"):format(dir, saved), "wb"))
      f:write(cjson.encode(headers))
      f:close()
    end
    return status, headers, body
  end
  local trigger = require "trigger"
  trigger.configure { base_url = srv.base_url, access_token = helper.DEFAULT_SECRET_KEY }
  local count = 0
  for _ in trigger.runs.subscribe_to_tag("bench:sync") do
    count = count + 1
    if count == n then break end
  end
  srv:stop()
  print(("saved %d pages of %d runs into %s"):format(saved, count, dir))
  return
end

local piece = tonumber(arg[3] or "16384")
local keep = arg[4] or "runs"
local cjson = require "cjson"
local pages = 0
while read_file(("%s/page%d.headers"):format(dir, pages + 1)) do pages = pages + 1 end
assert(pages > 0, "no pages in " .. tostring(dir) .. " (run the save mode first)")
local function page_headers(k)
  return cjson.decode(read_file(("%s/page%d.headers"):format(dir, k)))
end

collectgarbage()
local t0, cpu0 = util.now(), os.clock()
local count = 0

if mode == "bare" then
  local decode = cjson.decode
  local rows = {}
  for k = 1, pages do
    local body = read_file(("%s/page%d.json"):format(dir, k))
    for _, m in ipairs(decode(body)) do
      local v = m.value
      if v then
        rows[m.key] = v
        count = count + 1
        if v.payload ~= cjson.null then decode(v.payload) end
        if v.output ~= cjson.null then decode(v.output) end
        if v.metadata ~= cjson.null then decode(v.metadata) end
      end
    end
    body = nil -- luacheck: ignore 311
  end
  assert(next(rows) ~= nil) -- kept to the end, as a shape client must
else
  -- One request of the fake: the page's bytes, handed out whole (result) or in takes.
  -- whole: the page read at once (what request:result() hands over); stream: read from the
  -- file PIECE bytes per take, so nothing but the reader holds any of the page.
  local function page_request(k)
    local path = ("%s/page%d.json"):format(dir, k)
    local headers = page_headers(k)
    local f, body, ended
    if mode == "whole" then body = read_file(path) else f = assert(io.open(path, "rb")) end
    local h = {}
    function h.done() return mode == "whole" or ended == true end
    function h.head() return 200, headers end
    function h.take()
      if ended then return nil end
      local s = f:read(piece)
      if not s then
        ended = true
        f:close()
      end
      return s
    end
    function h.close() body = nil end
    h.result = function()
      if mode == "whole" then return 200, headers, body end
      return 200, headers, ""
    end
    return h
  end
  local shape_rows = require "trigger.shape.rows"
  local run_object = require "trigger.run.object"
  local store = shape_rows.new()
  local transport = { background = true, result = function(h) return h.result() end }
  local owner = { transport = transport, inflight = {}, settings = { max_body = 0 } }
  local shape_body = mode == "stream" and require "trigger.shape.body"
  local request = require "trigger.transport.request"
  local co = coroutine.wrap(function()
    for k = 1, pages do
      local h = page_request(k)
      local list, problem
      if shape_body then
        local res = shape_body.read(owner, { handle = h })
        assert(res.status == 200, tostring(res.problem))
        list, problem = res.list, res.problem
      else
        local status, _, body = request.await(owner, { handle = h })
        assert(status == 200)
        list, problem = shape_rows.parse(body)
        body = nil -- luacheck: ignore 311
      end
      assert(list, problem)
      store:apply(list)
      list = nil -- luacheck: ignore 311
    end
    local rows = {}
    if store.take then
      rows = store:take()
    else -- the store of the restructured delivery (publish/get)
      for i, key in ipairs(store:publish().keys) do rows[i] = store:get(key) end
    end
    for _, row in ipairs(rows) do
      count = count + 1
      if keep == "runs" then
        local run = run_object.build(row, function() end, function() end)
        assert(run.id)
      end
    end
  end)
  co()
end
util.emit { mode = mode, piece = piece, runs = count, seconds = util.now() - t0,
  cpu = os.clock() - cpu0, hwm_kb = util.status_kb("VmHWM"),
  lua_kb = math.floor(collectgarbage("count")) }
