-- bin/trigger-realtime, run as a subprocess (the Lua running the specs, with LUA_PATH/LUA_CPATH
-- as examples/demo.sh sets them) against the local server: each command, --json as NDJSON,
-- exit codes, stdin payloads, --help, and Ctrl-C.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"

local LUA = jit and "luajit" or "lua5.4" -- luacheck: ignore jit
local TASKS = {
  hello = { queue_ms = 10, steps = { { sleep = 0.05 }, { output = { message = "hi" } } } },
  fails = { queue_ms = 10, steps = { { fail = "boom" } } },
  echo = { queue_ms = 10, steps = { { echo = true } } },
  story = { queue_ms = 10, steps = { { stream = "default", chunks = { "a", "b", "c" } },
    { output = { words = 3 } } } },
}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local srv, tmp

local function env(extra)
  local e = {
    "LUA_PATH=" .. q(helper.root .. "/lua/?.lua;" .. helper.root .. "/lua/?/init.lua;;"),
    "LUA_CPATH=" .. q(helper.cpath .. ";"),
    "TRIGGER_API_URL=" .. q(srv.base_url), "TRIGGER_SECRET_KEY=" .. q(srv.secret_key),
    "TRIGGER_ACCESS_TOKEN=", "TRIGGER_PREVIEW_BRANCH=",
  }
  for k, v in pairs(extra or {}) do e[#e + 1] = k .. "=" .. q(v) end
  return "env " .. table.concat(e, " ")
end

-- Run the command: -> stdout, stderr, exit code
local function cli(args, opts)
  opts = opts or {}
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  local stdin = opts.stdin and (tmp .. "/in") or "/dev/null"
  if opts.stdin then
    local f = assert(io.open(stdin, "w"))
    f:write(opts.stdin)
    f:close()
  end
  local cmd = string.format("%s %s %s %s <%s >%s/out 2>%s/err; echo $? >%s/rc", env(opts.env),
    LUA, q(helper.root .. "/bin/trigger-realtime"), table.concat(parts, " "), stdin, tmp, tmp, tmp)
  os.execute(cmd)
  return slurp(tmp .. "/out"), slurp(tmp .. "/err"), tonumber(slurp(tmp .. "/rc"))
end

local function lines(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Every stdout line is one JSON document. -> the decoded documents
local function ndjson(s)
  local docs = {}
  for i, l in ipairs(lines(s)) do
    local ok, v = pcall(cjson.decode, l)
    assert(ok and type(v) == "table", "line " .. i .. " is not a JSON object: " .. l)
    docs[#docs + 1] = v
  end
  return docs
end

describe("trigger-realtime (the command)", function()
  setup(function()
    srv = helper.start_server { hold_ms = 1000 }
    srv:admin("POST", "/_emulator/tasks", { tasks = TASKS })
    tmp = os.tmpname()
    os.remove(tmp)
    assert(helper.sh("mkdir -p " .. tmp))
  end)
  teardown(function()
    srv:stop()
    helper.sh("rm -rf " .. tmp)
  end)

  it("--help for every command, with the exit codes; usage errors exit 2", function()
    for _, c in ipairs { "trigger", "watch", "run", "stream", "get", "cancel", "list", "token" } do
      local out, _, rc = cli { c, "--help" }
      assert.are.equal(0, rc, c)
      assert.matches("^Usage: trigger%-realtime " .. c, out)
      assert.matches("130  interrupted", out, 1, true)
    end
    local out, _, rc = cli { "--help" }
    assert.are.equal(0, rc)
    assert.matches("Commands:", out, 1, true)
    local cases = {
      { {}, "Usage:" }, { { "bogus" }, "unknown command bogus" },
      { { "trigger" }, "which task" }, { { "trigger", "hello", "--nope" }, "unknown option --nope" },
      { { "trigger", "hello", "--delay", "5 minutes" }, "--delay must be a duration" },
      { { "trigger", "hello", "--delay", "2001-01-01T00:00:00Z" }, "in the past" },
      { { "trigger", "hello", "--payload", "{nope" }, "--payload is not JSON" },
      { { "trigger", "hello", "--wait", "--follow" }, "not both" },
      { { "get", "a", "b" }, "unexpected argument b" },
      { { "list", "--limit", "x" }, "--limit must be" },
    }
    for _, c in ipairs(cases) do
      local o, err, code = cli(c[1])
      assert.are.equal(2, code, table.concat(c[1], " "))
      assert.is_truthy((err .. o):find(c[2], 1, true), err .. o)
    end
  end)

  it("trigger prints the run id; --wait gives only the output on stdout, exit 0", function()
    local out, _, rc = cli { "trigger", "hello", "--payload", '{"name":"Ada"}', "--tag", "cli:1" }
    assert.are.equal(0, rc)
    assert.matches("^run_[%w]+\n$", out)
    local err
    out, err, rc = cli { "trigger", "hello", "--wait" }
    assert.are.equal(0, rc, err)
    assert.are.same({ message = "hi" }, cjson.decode(out))
    assert.matches("run_", err, 1, true) -- the id and progress on stderr
  end)

  it("the payload from stdin or a file; --wait exits 1 when the run fails", function()
    local out, err, rc = cli({ "trigger", "echo", "--wait" }, { stdin = '{"a":[1,2]}' })
    assert.are.equal(0, rc, err)
    assert.are.same({ a = { 1, 2 } }, cjson.decode(out))
    local f = assert(io.open(tmp .. "/payload.json", "w"))
    f:write('{"from":"file"}')
    f:close()
    out, err, rc = cli { "trigger", "echo", "--wait", "--payload-file", tmp .. "/payload.json" }
    assert.are.equal(0, rc, err)
    assert.are.same({ from = "file" }, cjson.decode(out))
    out, err, rc = cli { "trigger", "fails", "--wait" }
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.matches("FAILED", err, 1, true)
  end)

  it("--follow --json: NDJSON run objects, arrays kept as arrays, exit by the verdict", function()
    local _
    local out, err, rc = cli { "trigger", "hello", "--follow", "--json" }
    assert.are.equal(0, rc, err)
    local docs = ndjson(out)
    assert.is_true(#docs >= 1)
    assert.are.equal("COMPLETED", docs[#docs].status)
    assert.matches('"tags":%[%]', lines(out)[1])
    out, _, rc = cli { "trigger", "fails", "--follow", "--json" }
    assert.are.equal(1, rc)
    assert.are.equal("FAILED", ndjson(out)[#ndjson(out)].status)
  end)

  it("--follow --streams: each chunk as {run, stream, chunk}", function()
    local out, err, rc = cli { "trigger", "story", "--follow", "--streams", "--json" }
    assert.are.equal(0, rc, err)
    local chunks, run_id = {}, nil
    for _, d in ipairs(ndjson(out)) do
      if d.stream then
        assert.are.equal("default", d.stream)
        chunks[#chunks + 1] = d.chunk
        run_id = run_id or d.run
      end
    end
    assert.are.same({ "a", "b", "c" }, chunks)
    assert.matches("^run_", run_id)
    -- human output: aligned lines, one per change
    out, err, rc = cli { "trigger", "story", "--follow", "--streams" }
    assert.are.equal(0, rc, err)
    assert.matches("^updatedAt%s+run%s+task%s+status", out)
    assert.matches("COMPLETED", out, 1, true)
  end)

  it("get, run, cancel, list, stream: exit codes 0, 1 (canceled), 4 (not found)", function()
    local _
    local id = cli { "trigger", "never-defined", "--ttl", "1h" }:match("run_%w+")
    local out, err, rc = cli { "get", id, "--json" }
    assert.are.equal(0, rc, err)
    local docs = ndjson(out)
    assert.are.equal(1, #docs)
    assert.are.equal(id, docs[1].id)
    assert.are.equal("QUEUED", docs[1].status)
    out, err, rc = cli { "cancel", id }
    assert.are.equal(0, rc, err)
    assert.are.equal(id .. "\n", out)
    out, _, rc = cli { "run", id, "--json" }
    assert.are.equal(1, rc, "a canceled run did not succeed")
    assert.are.equal("CANCELED", ndjson(out)[#ndjson(out)].status)
    _, err, rc = cli { "get", "run_doesnotexist", "--max-retries", "0" }
    assert.are.equal(4, rc)
    assert.matches("not_found", err, 1, true)
    local tag = helper.fresh_tag("cli:")
    cli { "trigger", "hello", "--tag", tag }
    cli { "trigger", "hello", "--tag", tag }
    out, err, rc = cli { "list", "--tag", tag, "--json", "--page-size", "1", "--limit", "0" }
    assert.are.equal(0, rc, err)
    assert.are.equal(2, #ndjson(out))
    -- stream: a finished run's stream is read to its end, then the command exits 0
    out = cli { "trigger", "story", "--follow", "--json" }
    id = ndjson(out)[1].id
    out, err, rc = cli { "stream", id }
    assert.are.equal(0, rc, err)
    assert.are.equal("a\nb\nc\n", out)
    out, err, rc = cli { "stream", id, "default", "--json" }
    assert.are.equal(0, rc, err)
    assert.are.same({ run = id, stream = "default", chunk = "c" }, ndjson(out)[3])
  end)

  it("token prints a public token; auth and network failures have their own codes", function()
    local _
    local out, err, rc = cli { "token", "--tag", "user:1", "--expires", "1h" }
    assert.are.equal(0, rc, err)
    assert.matches("^eyJ[%w_%-]+%.[%w_%-]+%.[%w_%-]+\n$", out)
    _, err, rc = cli({ "get", "run_x" }, { env = { TRIGGER_SECRET_KEY = "tr_dev_wrong_key_xyz" } })
    assert.are.equal(3, rc)
    assert.is_nil(err:find("tr_dev_wrong_key_xyz", 1, true), "the key never shows")
    _, err, rc = cli({ "get", "run_x" }, { env = { TRIGGER_SECRET_KEY = "" } })
    assert.are.equal(3, rc)
    assert.matches("no access token", err, 1, true)
    local port = helper.free_port()
    _, err, rc = cli { "get", "run_x", "--api-url", "http://127.0.0.1:" .. port, "--max-retries", "1" }
    assert.are.equal(5, rc)
    assert.matches("retrying after", err, 1, true)
    -- the key from a file (never from the command line itself)
    local f = assert(io.open(tmp .. "/key", "w"))
    f:write(srv.secret_key, "\n")
    f:close()
    out, err, rc = cli({ "trigger", "hello", "--access-token-file", tmp .. "/key" },
      { env = { TRIGGER_SECRET_KEY = "" } })
    assert.are.equal(0, rc, err)
    assert.matches("^run_", out)
  end)

  it("watch --until-finished exits 0 once every run seen has finished; --timeout exits 7",
    function()
      local _
      local tag = helper.fresh_tag("watch:")
      cli { "trigger", "hello", "--tag", tag }
      cli { "trigger", "fails", "--tag", tag }
      local out, err, rc = cli { "watch", "--tag", tag, "--until-finished", "--json",
        "--created-at", "1h" }
      assert.are.equal(0, rc, err)
      local final = {}
      for _, d in ipairs(ndjson(out)) do final[d.id] = d.status end
      local statuses = {}
      for _, st in pairs(final) do statuses[#statuses + 1] = st end
      table.sort(statuses)
      assert.are.same({ "COMPLETED", "FAILED" }, statuses)
      _, err, rc = cli { "trigger", "never-defined", "--ttl", "1h", "--wait", "--timeout", "0.3" }
      assert.are.equal(7, rc, err)
      assert.matches("did not finish within 0.3 s", err, 1, true)
    end)

  it("Ctrl-C closes the connection and exits 130", function()
    local tag = helper.fresh_tag("sigint:")
    local cmd = string.format("%s %s %s watch --tag %s >%s/out 2>%s/err </dev/null & echo $!; "
      .. "wait $!; echo rc=$?", env(), LUA, q(helper.root .. "/bin/trigger-realtime"), q(tag), tmp,
      tmp)
    os.remove(tmp .. "/out")
    local pipe = assert(io.popen("sh -c " .. q(cmd), "r"))
    local pid = tonumber(pipe:read("l"))
    -- wait for the header line: the command is following (an event, with a generous deadline)
    local deadline = socket.gettime() + 30
    while not slurp(tmp .. "/out"):find("updatedAt", 1, true) do
      assert(socket.gettime() < deadline, "the command never started following")
      socket.sleep(0.02)
    end
    local function held()
      for _, r in ipairs(srv:stats().in_flight) do
        if r.path == "/realtime/v1/runs" then return true end
      end
      return false
    end
    while not held() do -- its live request is open on the server
      assert(socket.gettime() < deadline, "no live request came")
      socket.sleep(0.02)
    end
    os.execute("kill -INT " .. pid)
    local rc = tonumber(pipe:read("a"):match("rc=(%d+)"))
    pipe:close()
    assert.are.equal(130, rc)
    assert.matches("interrupted", slurp(tmp .. "/err"), 1, true)
    while held() do -- the server saw the connection close
      assert(socket.gettime() < deadline, "the live request stayed open")
      socket.sleep(0.02)
    end
  end)
end)
