-- luacheck configuration: `make lint` runs `luacheck lua server spec examples bench tools`.
std = "max"
max_line_length = 110
codes = true
files["spec/**/*.lua"] = { std = "+busted" }
files["lua/trigger/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["examples/openresty/**/*.lua"] = { read_globals = { "ngx" } }
exclude_files = { "build/**", "tree/**", "node_modules/**", "tools/ts-sdk-check/node_modules/**" }
-- tools/check: globals on purpose. preload.lua takes its arguments as globals set with
-- `lua -e` and clears them; lifetimes.lua keeps objects in globals so that only lua_close
-- finalizes them (the "left open at exit" check).
files["tools/check/preload.lua"] = { globals = { "TRIGGER_CHECK_BUILD", "TRIGGER_CHECK_PIN" } }
files["tools/check/lifetimes.lua"] = {
  globals = { "LEFT_OPEN", "LEFT_OPEN_HUB", "LEFT_OPEN_REQUEST", "LEFT_OPEN_SHAPE" },
}
files["server/spec/**/*.lua"] = { std = "+busted" }
