-- HTTP/2: when the server offers it (TLS + ALPN), all subscriptions of a thread share one
-- multiplexed connection. nginx terminates TLS/h2 in front of the local realtime server.
local helper = require "spec.helper"
local trigger = require "trigger"

describe("HTTP/2 multiplexing", function()
  local srv, dir, port, nginx_pid

  setup(function()
    srv = helper.start_server { hold_ms = 20000 }
    dir = helper.self_signed_cert()
    port = helper.free_port()
    local conf = assert(io.open(dir .. "/nginx.conf", "w"))
    conf:write(string.format([[
pid %s/nginx.pid;
error_log %s/error.log;
worker_processes 1;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  log_format h2 '$connection $server_protocol $status $uri';
  upstream emulator { server 127.0.0.1:%d; keepalive 64; }
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    access_log %s/access.log h2;
    http2_max_concurrent_streams 512;
    location / {
      proxy_pass http://emulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }
  }
}
]], dir, dir, dir, dir, dir, dir, dir, srv.port, port, dir, dir, dir))
    conf:close()
    local p = io.popen(string.format("nginx -p %s -c %s/nginx.conf -g 'daemon off;' "
      .. ">%s/nginx.out 2>&1 & echo $!", dir, dir, dir))
    nginx_pid = p:read("l")
    p:close()
    for _ = 1, 100 do
      if helper.sh(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d'", port)) then break end
      helper.sh("sleep 0.05")
    end
  end)

  teardown(function()
    if nginx_pid then helper.sh("kill " .. nginx_pid) end
    helper.sh("sleep 0.2")
    helper.sh("rm -rf " .. dir)
    srv:stop()
  end)

  it("runs 20 subscriptions over one connection", function()
    local N = 20
    local subs, ids = {}, {}
    for i = 1, N do
      local tag = "user:h2-" .. i
      ids[i] = srv:create_run { runTags = { tag } }
      subs[i] = trigger.runs.subscribe_to_tag(tag, { access_token = srv.secret_key,
        base_url = "https://127.0.0.1:" .. port, ca_file = dir .. "/cert.pem" })
    end
    for i = 1, N do
      local run = subs[i]:next(20)
      assert.is_table(run, "subscription " .. i)
      assert.are.equal(ids[i], run.id)
    end
    -- every subscription is in a live long-poll now; one change each comes through
    for i = 1, N do srv:update_run(ids[i], { status = "EXECUTING" }) end
    for i = 1, N do assert.are.equal("EXECUTING", subs[i]:next(20).status) end
    for i = 1, N do subs[i]:close() end

    helper.sh("sleep 0.3")
    local connections, requests, protocols = {}, 0, {}
    for line in io.lines(dir .. "/access.log") do
      local conn, proto = line:match("^(%d+) (%S+)")
      connections[conn] = true
      protocols[proto] = true
      requests = requests + 1
    end
    local n = 0
    for _ in pairs(connections) do n = n + 1 end
    assert.is_true(requests >= 3 * N, "requests logged: " .. requests)
    assert.are.same({ ["HTTP/2.0"] = true }, protocols)
    assert.are.equal(1, n)
  end)
end)
