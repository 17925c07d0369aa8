-- trigger.core.http1_parser: the Lua face of the sans-I/O HTTP/1.1 response parser
-- (csrc/lib/http1.c, unit-tested in C by spec/c/test_http1.c; fed by trigger.transport.ngx).
local core = require "trigger.core"

describe("http1_parser", function()
  local CHUNKED = "HTTP/1.1 200 OK\r\nElectric-Handle: h-1\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "4;ext=1\r\n[1,2\r\n3\r\n,3]\r\n0\r\nX-Trailer: t\r\n\r\n"

  it("parses a chunked response fed one byte at a time", function()
    local p = core.http1_parser()
    for i = 1, #CHUNKED - 1 do
      assert.equal("more", p:feed(CHUNKED:sub(i, i)))
    end
    local state, left = p:feed(CHUNKED:sub(-1))
    assert.equal("done", state)
    assert.equal(0, left)
    local status, reason = p:status()
    assert.equal(200, status)
    assert.equal("OK", reason)
    assert.same({ ["electric-handle"] = "h-1", ["transfer-encoding"] = "chunked" }, p:headers())
    assert.same({ ["x-trailer"] = "t" }, p:trailers())
    assert.equal("[1,2,3]", p:body())
    assert.is_true(p:keepalive())
    assert.equal("done", p:state())
    assert.is_nil(p:error())
  end)

  it("says how many bytes after the response it did not take", function()
    local p = core.http1_parser()
    local state, left = p:feed("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1")
    assert.equal("done", state)
    assert.equal(8, left)
  end)

  it("reads a body until the connection closes", function()
    local p = core.http1_parser()
    assert.equal("more", p:feed("HTTP/1.0 200 OK\r\n\r\npartial "))
    assert.equal("more", p:feed("body"))
    assert.equal("done", (p:finish()))
    assert.equal("partial body", p:body())
    assert.is_false(p:keepalive())
  end)

  it("reports a truncated body as nil, message, code", function()
    local p = core.http1_parser()
    p:feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    local ok, message, code = p:finish()
    assert.is_nil(ok)
    assert.equal("truncated", code)
    assert.matches("closed before the response ended", message)
    assert.equal("error", p:state())
    assert.equal("abc", p:body())
    local name, _, offset = p:error()
    assert.equal("truncated", name)
    assert.equal(42, offset)
  end)

  it("enforces max_body", function()
    local p = core.http1_parser { max_body = 3 }
    local ok, _, code = p:feed("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    assert.is_nil(ok)
    assert.equal("body_too_large", code)
  end)

  it("enforces header limits", function()
    local p = core.http1_parser { max_headers = 1 }
    local _, _, code = p:feed("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    assert.equal("too_many_headers", code)
    p = core.http1_parser { max_header_bytes = 20 }
    _, _, code = p:feed("HTTP/1.1 200 OK\r\nLong: " .. ("x"):rep(30) .. "\r\n\r\n")
    assert.equal("header_too_large", code)
  end)

  it("ignores the body of a HEAD response", function()
    local p = core.http1_parser { head = true }
    assert.equal("done", p:feed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"))
    assert.equal("", p:body())
  end)

  it("refuses what is not HTTP/1.x", function()
    local ok, message, code = core.http1_parser():feed("SSH-2.0-OpenSSH_9.2\r\n")
    assert.is_nil(ok)
    assert.equal("status_line", code)
    assert.matches("malformed status line", message)
  end)

  it("closes idempotently and refuses use after close", function()
    local p = core.http1_parser()
    p:close()
    p:close()
    assert.matches("closed", tostring(p))
    assert.has_error(function() p:feed("x") end)
  end)

  it("checks its arguments", function()
    assert.has_error(function() core.http1_parser { max_body = 0 } end)
    assert.has_error(function() core.http1_parser { max_body = "big" } end)
    assert.has_error(function() core.http1_parser(5) end)
    assert.has_error(function() core.http1_parser():feed() end)
  end)
end)
