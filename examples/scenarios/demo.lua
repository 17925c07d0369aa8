-- The `make demo` scenario ships with the server (`trigger-realtime-server --scenario demo`):
-- server/lua/trigger_realtime_server/scenarios/demo.lua. This file keeps
-- `--scenario examples/scenarios/demo.lua` working; the server has put its own modules on
-- package.path.
return require "trigger_realtime_server.scenarios.demo"
