rockspec_format = "3.0"
package = "trigger-realtime"
version = "scm-1"
source = {
  url = "git+https://github.com/trigger-realtime/trigger-realtime.git",
}
description = {
  summary = "Follow Trigger.dev runs live from Lua (5.1/LuaJIT/OpenResty, 5.3, 5.4)",
  detailed = [[
A realtime client for Trigger.dev: subscribe to the runs of a tag, one run or a batch and
get the documented run objects as they change. A C core (libcurl multi hub, the Electric
shape protocol, Postgres values, JWT signing) under a small Lua API; one hub per thread
drives any number of subscriptions without blocking an event loop. The local realtime
server for tests and demos is its own rock, trigger-realtime-server.

Needs libcurl and libcrypto (OpenSSL) with their headers (Debian: libcurl4-openssl-dev
libssl-dev). lua-cjson is a dependency: LuaRocks installs it from the rocks server. With a
distribution's lua-cjson instead (Debian: apt-get install lua-cjson, which puts cjson.so in
/usr/lib/<arch>/lua/<version>/), LuaRocks cannot see it: install this rock with
--deps-mode=none (or --nodeps); `require "cjson"` then finds the distribution's module
through the interpreter's default package.cpath, which `luarocks path` keeps.
On Lua 5.1, build with the headers of the interpreter you run: for LuaJIT/OpenResty pass
LUA_INCDIR=/usr/include/luajit-2.1 (or your OpenResty's luajit/include/luajit-2.1) if
LuaRocks is not configured for it. LuaLS (lua-language-server) annotations of the public API
are installed with the rock, in its folder's types/ (see types/README.md).
]],
  homepage = "https://github.com/trigger-realtime/trigger-realtime",
  license = "MIT",
  labels = { "trigger.dev", "realtime", "electric", "curl" },
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  -- Debian keeps curl/curl.h under a multiarch include dir: check the library, not the header.
  CURL = { library = "curl" },
  CRYPTO = { library = "crypto" },
}
-- LuaRocks' builtin backend: it compiles with its own CFLAGS against the LUA_INCDIR of the Lua
-- it builds for and installs exactly what it built (no -Werror: that is for our own `make`).
-- The C sources are the Makefile's CORE_SRC and CURL_SRC, the Lua modules every file of lua/;
-- tools/check/rockspec.lua (make lint) checks both lists, and that every rockspec of
-- trigger-realtime has the same build table.
build = {
  type = "builtin",
  modules = {
    ["trigger.core"] = {
      sources = {
        "csrc/lib/buf.c", "csrc/lib/runfields.c", "csrc/lib/shape.c", "csrc/lib/shapelog.c", "csrc/lib/pgtext.c", "csrc/lib/jwt.c", "csrc/lib/json.c",
        "csrc/lib/http1.c", "csrc/lib/sse.c", "csrc/lib/rowblob.c", "csrc/lib/superjson.c",
        "csrc/lcore.c", "csrc/laux.c", "csrc/lvalue.c", "csrc/lshape.c", "csrc/lpgtext.c",
        "csrc/lrunfields.c", "csrc/lrowblob.c", "csrc/ljwt.c", "csrc/lclock.c",
        "csrc/ljson.c", "csrc/lsuperjson.c", "csrc/lhttp1.c", "csrc/lsse.c",
      },
      incdirs = { "csrc", "$(CRYPTO_INCDIR)" },
      libdirs = { "$(CRYPTO_LIBDIR)" },
      libraries = { "crypto" },
    },
    ["trigger.curl"] = {
      sources = { "csrc/lib/buf.c", "csrc/lib/hub.c", "csrc/lhub.c" },
      incdirs = { "csrc", "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl" },
    },
    ["trigger"] = "lua/trigger/init.lua",
    ["trigger.api"] = "lua/trigger/api.lua",
    ["trigger.auth"] = "lua/trigger/auth.lua",
    ["trigger.clock"] = "lua/trigger/clock.lua",
    ["trigger.config"] = "lua/trigger/config.lua",
    ["trigger.shape.delivery"] = "lua/trigger/shape/delivery.lua",
    ["trigger.driver"] = "lua/trigger/driver.lua",
    ["trigger.errors"] = "lua/trigger/errors.lua",
    ["trigger.json"] = "lua/trigger/json.lua",
    ["trigger.run.packets"] = "lua/trigger/run/packets.lua",
    ["trigger.transport.request"] = "lua/trigger/transport/request.lua",
    ["trigger.retry"] = "lua/trigger/retry.lua",
    ["trigger.run.lookup"] = "lua/trigger/run/lookup.lua",
    ["trigger.run.object"] = "lua/trigger/run/object.lua",
    ["trigger.streams.run_streams"] = "lua/trigger/streams/run_streams.lua",
    ["trigger.runs"] = "lua/trigger/runs.lua",
    ["trigger.shape.body"] = "lua/trigger/shape/body.lua",
    ["trigger.shape.loop"] = "lua/trigger/shape/loop.lua",
    ["trigger.shape.rows"] = "lua/trigger/shape/rows.lua",
    ["trigger.streams.share"] = "lua/trigger/streams/share.lua",
    ["trigger.streams"] = "lua/trigger/streams.lua",
    ["trigger.subscription"] = "lua/trigger/subscription.lua",
    ["trigger.run.superjson"] = "lua/trigger/run/superjson.lua",
    ["trigger.tasks"] = "lua/trigger/tasks.lua",
    ["trigger.transport"] = "lua/trigger/transport/init.lua",
    ["trigger.transport.curl"] = "lua/trigger/transport/curl.lua",
    ["trigger.transport.ngx"] = "lua/trigger/transport/ngx.lua",
    ["trigger.fanout.upstream"] = "lua/trigger/fanout/upstream.lua",
    ["trigger.fanout.ngx_pump"] = "lua/trigger/fanout/ngx_pump.lua",
    ["trigger.upstream_ngx"] = "lua/trigger/upstream_ngx.lua",
    ["trigger.fanout.shm_relay"] = "lua/trigger/fanout/shm_relay.lua",
    ["trigger.upstream_shm"] = "lua/trigger/upstream_shm.lua",
  },
  -- The LuaLS definitions (---@meta): installed as <tree>/lib/luarocks/rocks-X/trigger-realtime/
  -- <version>/types/, the folder to give lua-language-server as a library (types/README.md).
  copy_directories = { "types" },
  -- The command line: LuaRocks writes a wrapper that runs it with the Lua it built for.
  install = { bin = { ["trigger-realtime"] = "bin/trigger-realtime" } },
}
