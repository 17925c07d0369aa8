-- The module's former name (0.2.0), kept for programs that require it: see `trigger.fanout.shm_relay`.
return require "trigger.fanout.shm_relay"
