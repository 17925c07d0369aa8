-- The module's former name (0.2.0), kept for programs that require it: see `trigger.fanout.ngx_pump`.
return require "trigger.fanout.ngx_pump"
