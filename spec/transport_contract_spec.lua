-- The transport contract (spec/transport_contract.lua) against trigger.transport.curl; the same
-- cases run inside nginx against trigger.transport.ngx under `make test-openresty`.
local helper = require "spec.helper"
local contract = require "spec.transport_contract"

describe("transport contract: trigger.transport.curl", function()
  local srv, dir, pid
  local env = { transport = require "trigger.transport.curl", trigger = require "trigger",
    name = "curl" }

  setup(function()
    srv = helper.start_server { hold_ms = 1000 }
    env.base_url = srv.base_url
    env.secret_key = srv.secret_key
    env.closed_port = helper.free_port()
    -- A TLS server with a self-signed certificate: no CA this transport trusts vouches for it.
    dir = helper.self_signed_cert()
    local port = helper.free_port()
    local p = io.popen(string.format("openssl s_server -quiet -accept 127.0.0.1:%d -cert %s/cert.pem "
      .. "-key %s/key.pem -www >/dev/null 2>&1 & echo $!", port, dir, dir))
    pid = p:read("*l")
    p:close()
    for _ = 1, 100 do
      if helper.sh(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d'", port)) then break end
      helper.sh("sleep 0.05")
    end
    env.untrusted_url = "https://127.0.0.1:" .. port
  end)

  teardown(function()
    if pid then helper.sh("kill " .. pid) end
    if dir then helper.sh("rm -rf " .. dir) end
    if srv then srv:stop() end
  end)

  for _, c in ipairs(contract.cases) do
    it(c.name, function() c.run(env) end)
  end
end)
