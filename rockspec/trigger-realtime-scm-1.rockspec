rockspec_format = "3.0"
package = "trigger-realtime"
version = "scm-1"
source = {
  url = "git+https://github.com/trigger-realtime/trigger-realtime.git",
}
description = {
  summary = "Follow Trigger.dev runs live from Lua (5.4, LuaJIT, OpenResty)",
  detailed = [[
A realtime client for Trigger.dev: subscribe to the runs of a tag, one run or a batch and
get the documented run objects as they change. A C core (libcurl multi hub, the Electric
shape protocol, Postgres values, JWT signing) under a small Lua API; one hub per thread
drives any number of subscriptions without blocking an event loop. The local realtime
server for tests and demos is its own rock, trigger-realtime-server.
]],
  license = "MIT",
  labels = { "trigger.dev", "realtime", "electric", "curl" },
}
-- lua-cjson is needed at run time; it is not listed here because distribution packages
-- (Debian's lua-cjson) are not visible to LuaRocks and offline installs must work.
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  -- Debian keeps curl/curl.h under a multiarch include dir: check the library, not the header.
  CURL = { library = "curl" },
  CRYPTO = { library = "crypto" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
    CURL_LIBS = "-L$(CURL_LIBDIR) -lcurl",
    CRYPTO_LIBS = "-L$(CRYPTO_LIBDIR) -lcrypto",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
