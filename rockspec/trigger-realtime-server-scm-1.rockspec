rockspec_format = "3.0"
package = "trigger-realtime-server"
version = "scm-1"
source = {
  url = "git+https://github.com/trigger-realtime/trigger-realtime.git",
}
description = {
  summary = "A local Trigger.dev realtime server for tests and demos (Electric and native dialects)",
  detailed = [[
Emulates Trigger.dev's realtime API on 127.0.0.1: the Electric shape log and the native runs
feed, public access tokens, packets, and fault injection, driven by scenario files or an
admin HTTP API. Written independently of the trigger-realtime client on purpose, so that it
can hold the client to the real server's behaviour.
]],
  license = "MIT",
  labels = { "trigger.dev", "realtime", "testing" },
}
-- Debian's lua-cqueues, lua-luaossl and lua-cjson satisfy these; LuaRocks cannot see them, so
-- an offline install from this tree uses `luarocks make --deps-mode=none` (see README).
dependencies = {
  "lua >= 5.3",
  "cqueues",
  "luaossl",
  "lua-cjson",
}
build = {
  -- "none": builtin would also install the library's lua/ folder it finds beside this one.
  type = "none",
  install = {
    bin = { ["trigger-realtime-server"] = "server/bin/trigger-realtime-server" },
    lua = {
      ["trigger_realtime_server"] = "server/lua/trigger_realtime_server/init.lua",
      ["trigger_realtime_server.admin"] = "server/lua/trigger_realtime_server/admin.lua",
      ["trigger_realtime_server.auth"] = "server/lua/trigger_realtime_server/auth.lua",
      ["trigger_realtime_server.faults"] = "server/lua/trigger_realtime_server/faults.lua",
      ["trigger_realtime_server.http"] = "server/lua/trigger_realtime_server/http.lua",
      ["trigger_realtime_server.json"] = "server/lua/trigger_realtime_server/json.lua",
      ["trigger_realtime_server.native"] = "server/lua/trigger_realtime_server/native.lua",
      ["trigger_realtime_server.persist"] = "server/lua/trigger_realtime_server/persist.lua",
      ["trigger_realtime_server.realtime"] = "server/lua/trigger_realtime_server/realtime.lua",
      ["trigger_realtime_server.scenarios.demo"] =
        "server/lua/trigger_realtime_server/scenarios/demo.lua",
      ["trigger_realtime_server.shape"] = "server/lua/trigger_realtime_server/shape.lua",
      ["trigger_realtime_server.store"] = "server/lua/trigger_realtime_server/store.lua",
      ["trigger_realtime_server.streams"] = "server/lua/trigger_realtime_server/streams.lua",
      ["trigger_realtime_server.util"] = "server/lua/trigger_realtime_server/util.lua",
      ["trigger_realtime_server.values"] = "server/lua/trigger_realtime_server/values.lua",
    },
  },
}
