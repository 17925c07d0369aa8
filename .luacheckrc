-- luacheck configuration: `make lint` runs `luacheck lua spec examples bench tools`.
std = "max"
max_line_length = 110
codes = true
files["spec/**/*.lua"] = { std = "+busted" }
files["lua/trigger/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["examples/openresty/**/*.lua"] = { read_globals = { "ngx" } }
exclude_files = { "build/**", "tree/**", "node_modules/**", "tools/ts-sdk-check/node_modules/**" }
