-- trigger.transport.ngx: the parts that need no nginx (URL parsing, request bytes). The
-- transport itself runs in nginx under `make test-openresty` (spec/openresty/run.sh).
local t = require "trigger.transport.ngx"

describe("transport.ngx", function()
  it("parses URLs with default and explicit ports", function()
    local u = t._parse_url("https://api.trigger.dev/realtime/v1/runs?tags=a%3Ab")
    assert.same({ scheme = "https", host = "api.trigger.dev", port = 443,
      target = "/realtime/v1/runs?tags=a%3Ab", host_header = "api.trigger.dev" }, u)
    u = t._parse_url("HTTP://127.0.0.1:8288")
    assert.same({ scheme = "http", host = "127.0.0.1", port = 8288, target = "/",
      host_header = "127.0.0.1:8288" }, u)
    u = t._parse_url("http://[::1]:9000?x=1#frag")
    assert.equal("[::1]", u.host)
    assert.equal(9000, u.port)
    assert.equal("/?x=1", u.target)
  end)

  it("refuses URLs it cannot follow", function()
    for _, url in ipairs { "ftp://h/x", "/relative", "http://user:pw@h/", "http:///x",
        "http://h:0/", "http://h:99999/", "http://h/a b" } do
      local u, err = t._parse_url(url)
      assert.is_nil(u, url)
      assert.is_string(err)
    end
  end)

  it("builds the request bytes", function()
    local u = t._parse_url("http://127.0.0.1:8288/api/v1/auth/jwt/claims")
    local bytes, method = t._build_request({ method = "POST", body = "{}",
      headers = { "Authorization: Bearer k", "Content-Type: application/json" } }, u)
    assert.equal("POST", method)
    assert.equal("POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: 127.0.0.1:8288\r\n"
      .. "Authorization: Bearer k\r\nContent-Type: application/json\r\nAccept: */*\r\n"
      .. "User-Agent: trigger-realtime-lua (ngx_lua)\r\nContent-Length: 2\r\n\r\n{}", bytes)
    bytes = t._build_request({ headers = { "accept: x/y" } }, t._parse_url("https://h/p"))
    assert.equal("GET /p HTTP/1.1\r\nHost: h\r\naccept: x/y\r\n"
      .. "User-Agent: trigger-realtime-lua (ngx_lua)\r\n\r\n", bytes)
  end)

  it("refuses header lines that would split the request", function()
    local u = t._parse_url("http://h/")
    for _, h in ipairs { "X: a\r\nInjected: 1", "No colon", "Bad name: v", "X: a\0b" } do
      local bytes, err = t._build_request({ headers = { h } }, u)
      assert.is_nil(bytes, h)
      assert.matches("not a single", err)
    end
  end)

  it("has no pollable fd", function()
    assert.has_error(function() t.pollfd() end)
    assert.is_nil(t.timeout())
    assert.equal(0, t.active())
  end)

  -- The sharing itself runs in nginx (make test-openresty counts the upstreams at the server).
  -- The transport never requires the layers above it: the fan-out layer chooses the pump.
  it("has no background requests; the fan-out's pump serves it, the transport knows no pump", function()
    assert.is_false(t.background)
    assert.is_nil(t.pump)
    local pump = require "trigger.fanout.ngx_pump"
    assert.is_true(pump.serves(t))
    assert.is_false(pump.serves({ background = false, perform = function() end }))
    assert.is_function(pump.new)
    assert.is_true(pump.max_wait > 0 and pump.dead_after > 0)
  end)
end)
