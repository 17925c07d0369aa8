--- trigger-realtime: follow Trigger.dev runs live from Lua.
--
--     local trigger = require "trigger"
--     trigger.configure { access_token = os.getenv("TRIGGER_SECRET_KEY") }
--     for run in trigger.runs.subscribe_to_tag("user:1234") do
--       print(run.id, run.status)
--       if run.isCompleted then break end
--     end
--
-- @module trigger
local M = {}

--- The library's version.
M._VERSION = "0.2.0"

local config = require "trigger.config"

--- Set defaults for every later call.
-- Subscriptions and `trigger.auth.create_public_token` take the same options per call, which
-- win over these; a later `configure` adds to (and overrides) what an earlier one set.
-- @tparam table opts the settings:
-- @tparam[opt] string opts.access_token the secret key (`tr_dev_…`, `tr_prod_…`) or a public
--   access token (subscriptions only); default: env `TRIGGER_ACCESS_TOKEN`, else
--   `TRIGGER_SECRET_KEY`
-- @tparam[opt] string opts.base_url the API's root URL (`http://` or `https://`, without
--   `user:password@`: refused, a `bad_request` error at the call); default: env
--   `TRIGGER_API_URL`, else `https://api.trigger.dev`
-- @tparam[opt] string opts.preview_branch the preview (or dev) branch to work on: sent as
--   `x-trigger-branch` with every request (realtime, streams, packets, tokens, triggers);
--   default: env `TRIGGER_PREVIEW_BRANCH`. A `tr_preview_…` key needs it
-- @tparam[opt] string opts.ca_file a PEM file of CA certificates to verify the server with
-- @tparam[opt=60] number opts.read_timeout seconds one request may take (a live request is
--   held open by the server for about 20 s)
-- @tparam[opt=10] number opts.connect_timeout seconds to connect
-- @tparam[opt=1] number opts.retry_base first backoff ceiling in seconds, doubled per retry
-- @tparam[opt=32] number opts.retry_cap the backoff ceiling never grows past this
-- @tparam[opt] number opts.max_retries give up after this many retries in a row: the
--   subscription raises the last error (with `fatal = true`); default: retry for ever. The
--   same policy bounds a server that answers without progress (the request budget of
--   `trigger.shape.loop`: a must-refetch after a must-refetch, a live request answered at once
--   with nothing new, ...): after the first such answer each one backs off as a failure does
-- @tparam[opt=268435456] number opts.max_body bytes one response body may have (256 MiB)
-- @tparam[opt] function opts.on_error `function(err)`, called with each error object
--   (`trigger.errors.Error`) before it is retried, and with `protocol` errors (`fatal =
--   false`) for column values and packets that cannot be decoded; never with the error that is
--   raised at the end. Without it, the first failure of each streak of failed requests is
--   written once to stderr (`ngx.log` at WARN inside nginx), so a wrong URL or a server down
--   is never silent; `next(timeout)` also returns the error being retried as its third value.
--   A streak of answers without progress is told once (kind `protocol`, `idle = true`). It may
--   close or read the subscription it is told about: `next` and `poll` called from inside it
--   return at once (nil, `"timeout"` and the error)
-- @tparam[opt] number opts.timeout seconds `for run in sub do` waits for the next run before
--   it raises a `timeout` error; default: for ever
-- @tparam[opt=true] boolean opts.share subscriptions of this Lua state with the same path,
--   filter, credentials and request settings share one upstream request and one copy of the
--   rows (fan-out: see `trigger.runs`), each keeping its own delivery and `position()`;
--   false gives each subscription its own. Inside nginx the subscriptions of a worker share
--   (an `ngx.timer` reads for them), and of every worker with `lua_shared_dict
--   trigger_realtime` (docs/fan-out.md)
-- @tparam[opt] table opts.transport the transport requests go through, any table that keeps
--   the contract of `trigger.transport`; default: the host's (`trigger.transport.current`:
--   cosockets inside nginx, else libcurl)
-- @raise (a string) when `opts` is not a table, has an unknown option or an option of the
--   wrong type
-- @usage trigger.configure { access_token = os.getenv("TRIGGER_SECRET_KEY"), max_retries = 10 }
function M.configure(opts)
  config.configure(opts)
end

--- The subscriptions: `trigger.runs.subscribe_to_tag`, `subscribe_to_run`, `subscribe_to_batch`;
-- and the run look-ups `trigger.runs.retrieve`, `cancel`, `list`, `list_page`, `wait`.
M.runs = require "trigger.runs"

--- Realtime streams of runs: `trigger.streams.read(run_id, key, opts)` (see `trigger.streams`).
M.streams = require "trigger.streams"

--- Triggering tasks: `trigger.tasks.trigger`, `batch_trigger`, `batch_trigger_by_id` (see
-- `trigger.tasks`).
M.tasks = require "trigger.tasks"

--- Perform the network I/O of every subscription of this thread, waiting at most `seconds`
-- for some to happen (returns early when it does; libcurl's own timers that bring no request
-- anything do not count). A game loop can use it as its sleep, so the network keeps moving
-- between ticks; `sub:poll()` then hands out what arrived.
-- @tparam[opt=0] number seconds the longest wait; 0, a negative number or NaN only do what
--   is ready now and never block (an overrun tick computing `next_tick - now` gets a
--   negative number: it must not freeze the loop)
-- @raise (a string) when `seconds` is not a number
-- @usage
-- while running do
--   game:tick()
--   for run in function() return sub:poll() end do game:on_run(run) end
--   -- sleeps until the next tick, but keeps the network moving; late: no wait at all
--   trigger.step(math.max(0, next_tick - trigger.now()))
-- end
function M.step(seconds)
  if seconds ~= nil and type(seconds) ~= "number" then
    error("bad argument #1 to 'step' (number expected, got " .. type(seconds) .. ")", 2)
  end
  -- `not (seconds > 0)` is also true for NaN: neither a negative nor a NaN wait may block
  if seconds == nil or not (seconds > 0) then seconds = 0 end -- luacheck: ignore 581
  require("trigger.transport").current().step(seconds)
end

--- Counters of this thread's transport, to see that nothing busy-waits: `wakeups` (how many
-- times the network was waited on or looked at, by any subscription, stream, `trigger.step`
-- or event loop), `idle_wakeups` (those that brought nothing: a few per second of waiting are
-- timers coming due, thousands are a busy wait) and `active` (requests in flight); inside
-- nginx also `requests`, `connects`, `reused` and `retried` (see `trigger.transport.ngx`).
-- @treturn table the counters, a fresh table (subtract two of them to measure a span)
-- @usage
-- local before = trigger.stats()
-- for run in sub do … end
-- print(trigger.stats().idle_wakeups - before.idle_wakeups)
function M.stats()
  return require("trigger.transport").current().stats()
end

--- Encode a value as JSON text, faithfully for what this library hands out: a run, a stream's
-- chunk, a `position()`. Lua has one table for arrays and objects, so `cjson.encode(run)` writes
-- an empty `tags` as `{}`; every array the library makes is marked, and comes out as an array
-- (`"tags":[]`). JSON null (`cjson.null`) is `null`. Any other value encodes as lua-cjson does
-- (an empty table you made is `{}`). Encoding uses a private lua-cjson instance: the settings of
-- your `cjson` module are left alone.
-- @param value a run, a chunk, a position, or any value lua-cjson can encode
-- @treturn string JSON text
-- @raise (a string) what lua-cjson raises for a value it cannot encode (a function, nesting
--   past 128 levels)
-- @usage
-- for run in trigger.runs.subscribe_to_tag("user:1234") do
--   io.write(trigger.encode_json(run), "\n")   -- one JSON document per line
-- end
function M.encode_json(value)
  return require("trigger.json").encode(value)
end

--- Seconds on the monotonic clock the library's timeouts use (not the time of day): for a
-- loop that sleeps with `trigger.step` until its next tick.
-- @treturn number seconds
-- @usage
-- local next_tick = trigger.now() + 1 / 20
-- trigger.step(math.max(0, next_tick - trigger.now()))
function M.now()
  return require("trigger.clock").now()
end

--- The error kinds and `trigger.errors.is`: see `trigger.errors`.
M.errors = require "trigger.errors"

--- Public access tokens: `trigger.auth.create_public_token`. Loaded on first use (most
-- scripts only subscribe).
-- @field auth
setmetatable(M, {
  __index = function(t, k)
    if k == "auth" then
      local auth = require "trigger.auth"
      rawset(t, k, auth)
      return auth
    end
  end,
})

return M
