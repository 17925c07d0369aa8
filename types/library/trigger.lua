---@meta trigger
-- LuaLS (lua-language-server) definitions of trigger-realtime's public API: the modules, the
-- run objects (realtime and management API), the handles, the options, Subscription /
-- RunStreams / Stream and the error object. Types only,
-- never loaded by the library. Kept true by tools/check/types.lua (make lint, item "types"):
-- every entry the reference (LDoc) documents is declared here and every declaration names
-- something the library has. See types/README.md for how to point an editor at it.

-- -------------------------------------------------------------------------------------------
-- Values

---A run's public status (the database's status mapped as the TypeScript SDK maps it).
---@alias trigger.RunStatus
---| "QUEUED"
---| "PENDING_VERSION"
---| "DELAYED"
---| "DEQUEUED"
---| "EXECUTING"
---| "WAITING"
---| "COMPLETED"
---| "CANCELED"
---| "FAILED"
---| "CRASHED"
---| "SYSTEM_FAILURE"
---| "EXPIRED"
---| "TIMED_OUT"

---An error object's kind (`trigger.errors.kinds`).
---@alias trigger.ErrorKind
---| "auth"         # 401, or no access token
---| "forbidden"    # 403
---| "not_found"    # 404
---| "bad_request"  # 400 and bad options
---| "protocol"     # a response that cannot be made sense of
---| "network"      # connection failures, 5xx, bodies cut short
---| "rate_limited" # 429
---| "timeout"      # no run within the `timeout` option

---Why `next` returned no value.
---@alias trigger.EndReason "timeout"|"closed"|"finished"

---A JSON value as the library decodes it: `cjson.null` for null, arrays as marked tables.
---@alias trigger.Json nil|boolean|number|string|table|lightuserdata

---The run object: what a subscription hands out for each state of a run (a fresh table per
---change). Field names are the TypeScript SDK's (`runs.subscribeToRunsWithTag`); timestamps
---are ISO-8601 UTC strings such as `"2025-01-10T12:00:00.123Z"`.
---@class trigger.Run
---@field id string the run's id, `run_…` (friendlyId)
---@field taskIdentifier string the task's id
---@field status trigger.RunStatus the public status
---@field payload trigger.Json the input payload, decoded by its packet type
---@field output trigger.Json the output, decoded as `payload` is; nil until there is one
---@field metadata trigger.Json the metadata, decoded as `payload` is
---@field createdAt string when the run was created
---@field updatedAt string when the run last changed
---@field startedAt string? when it started
---@field queuedAt string? when it was queued
---@field expiredAt string? when it expired
---@field finishedAt string? when it finished (completedAt)
---@field delayedUntil string? until when it is delayed (delayUntil)
---@field number integer the run's sequential number
---@field durationMs number its duration in milliseconds (0 when NULL)
---@field costInCents number its total cost in cents (0 when NULL)
---@field baseCostInCents number its base cost in cents (0 when NULL)
---@field tags string[] its tags (`{}` when none; a marked JSON array)
---@field realtimeStreams string[] the keys of its realtime streams (`{}` when none)
---@field isTest boolean whether it is a test run
---@field ttl string? its time-to-live, such as `"10m"`
---@field idempotencyKey string? the key that made it idempotent
---@field error trigger.RunError? why it failed (the SDK's SerializedError)
---@field isQueued boolean status is QUEUED, PENDING_VERSION or DELAYED
---@field isExecuting boolean status is DEQUEUED or EXECUTING
---@field isWaiting boolean status is WAITING
---@field isCompleted boolean `isSuccess` or `isFailed` (not CANCELED: test `isCancelled` too)
---@field isSuccess boolean status is COMPLETED
---@field isFailed boolean status is FAILED, CRASHED, SYSTEM_FAILURE, EXPIRED or TIMED_OUT
---@field isCancelled boolean status is CANCELED

---Why a run failed: `{name, message, stackTrace}` for a built-in error, else `{message}`.
---@class trigger.RunError
---@field name string?
---@field message string
---@field stackTrace string?

---A run as the management API gives it (`trigger.runs.retrieve`; each run of `list` and
---`list_page` has the fields up to `region` plus `env` and `taskKind`). Its status flags are the
---management API's and differ from `trigger.Run`'s: an EXPIRED or TIMED_OUT run has every flag
---false, CANCELED counts as completed and failed. Decide "finished" from `status`.
---@class trigger.ApiRun
---@field id string the run's id, `run_…` (opaque)
---@field status trigger.RunStatus|"INTERRUPTED" its status (`x-trigger-api-version: 2025-07-16` names; INTERRUPTED is legacy)
---@field taskIdentifier string the task's id
---@field idempotencyKey string? the user's key when one was given (`retrieve`), else the stored (hashed) key
---@field version string? the deployed version the run is locked to
---@field createdAt string when it was created (ISO 8601, milliseconds, `Z`)
---@field updatedAt string when it last changed
---@field startedAt string? when it started
---@field finishedAt string? when it finished
---@field expiredAt string? when it expired
---@field delayedUntil string? until when it is delayed
---@field ttl string? its time to live, such as `"10m"`
---@field costInCents number its cost in cents
---@field baseCostInCents number its base cost in cents
---@field durationMs number its compute time in milliseconds
---@field isTest boolean whether it is a test run
---@field depth integer 0 for a root run, else how deep under its root
---@field tags string[] its tags, sorted
---@field isQueued boolean the management API's flag
---@field isExecuting boolean the management API's flag
---@field isWaiting boolean the management API's flag
---@field isCompleted boolean the management API's flag (CANCELED included; EXPIRED and TIMED_OUT not)
---@field isSuccess boolean the management API's flag
---@field isFailed boolean the management API's flag (CANCELED included)
---@field isCancelled boolean the management API's flag
---@field triggerFunction "trigger"|"triggerAndWait"|"batchTrigger"|"batchTriggerAndWait" how it was triggered
---@field batchId string? its batch, `batch_…`
---@field metadata table? its metadata (decoded JSON)
---@field region string? the region it ran in
---@field payload trigger.Json the input payload, decoded (fetched once when kept in object storage); `retrieve` only
---@field output trigger.Json the output, decoded as `payload`; only when COMPLETED; `retrieve` only
---@field error trigger.RunError? why it failed; `retrieve` only
---@field schedule trigger.ApiRunSchedule? the schedule of a scheduled run; `retrieve` only
---@field attemptCount integer? attempts so far; `retrieve` only
---@field attempts table? always empty (deprecated); `retrieve` only
---@field relatedRuns { root: trigger.ApiRun?, parent: trigger.ApiRun?, children: trigger.ApiRun[] }? related runs (each with the fields up to `region`); `retrieve` only
---@field env { id: string, name: string, user: string? }? the run's environment; `list` and `list_page` only
---@field taskKind string? the kind of task (`"STANDARD"`…); `list` and `list_page` only

---The schedule of a scheduled run (`trigger.ApiRun.schedule`).
---@class trigger.ApiRunSchedule
---@field id string
---@field externalId string?
---@field deduplicationKey string?
---@field generator { type: "CRON", expression: string, description: string }

---One page of `trigger.runs.list_page`.
---@class trigger.ApiRunPage
---@field data trigger.ApiRun[] the runs of this page
---@field next string? the cursor of the next page (`after`), nil on the last
---@field previous string? the cursor of the previous page (`before`)

---The handle of a triggered run (`trigger.tasks.trigger`): every call that takes a run id takes
---it too, and uses its `publicAccessToken` when no access token is configured.
---@class trigger.Handle
---@field id string the run's id, `run_…`
---@field isCached boolean true when an idempotency key of yours found an existing run (no option of this call was applied)
---@field publicAccessToken string? a token that can read this run (and write its input streams) for one hour
---@field taskIdentifier string the task's id

---The handle of a batch (`trigger.tasks.batch_trigger`): `trigger.runs.subscribe_to_batch` takes it.
---@class trigger.BatchHandle
---@field id string the batch's id, `batch_…`
---@field runCount integer how many runs it makes
---@field isCached boolean phase 1 found an existing batch by its idempotency key
---@field publicAccessToken string? a token that can read the batch and its runs for one hour

---The error object every call raises or returns (`trigger.errors`).
---@class trigger.Error
---@field idle boolean? true on the error on_error hears once when the server answers without progress again and again
---@field where string? the script line that called the library when the error was raised there
---@field kind trigger.ErrorKind what kind of failure
---@field status integer? the HTTP status; nil when there was no response
---@field code string? with no HTTP answer: the transport's name of the failure (`"ECONNREFUSED"`, `"CURLE_COULDNT_CONNECT"`, `"body_too_large"`…)
---@field message string what went wrong (credentials masked)
---@field request string? the method and URL of the request (`GET https://…`), masked
---@field fatal boolean? true when the subscription or stream ended because of it
---@field attempt integer? for a failure that is retried, its place in the current streak
---@field retry_after number? seconds the server asked to wait
---@field run_id string? under `with_streams()`: the run of a stream that failed for good
---@field stream string? with `run_id`, the key of that stream

-- -------------------------------------------------------------------------------------------
-- Options

---The options of `trigger.configure`; every call that takes options takes these too.
---@class trigger.Options
---@field access_token string? the secret key (`tr_dev_…`, `tr_prod_…`) or a public access token; default: env TRIGGER_ACCESS_TOKEN, else TRIGGER_SECRET_KEY
---@field base_url string? the API's root URL; default: env TRIGGER_API_URL, else https://api.trigger.dev
---@field preview_branch string? the preview (or dev) branch to work on, sent as `x-trigger-branch` with every request; default: env TRIGGER_PREVIEW_BRANCH (a `tr_preview_…` key needs it)
---@field ca_file string? a PEM file of CA certificates to verify the server with
---@field read_timeout number? seconds one request may take (default 60)
---@field connect_timeout number? seconds to connect (default 10)
---@field retry_base number? first backoff ceiling in seconds, doubled per retry (default 1)
---@field retry_cap number? the backoff ceiling never grows past this (default 32)
---@field max_retries integer? give up after this many retries in a row; default: for ever
---@field max_body integer? bytes one response body may have (default 256 MiB)
---@field on_error fun(err: trigger.Error)? called with each error before it is retried, and with undecodable values (fatal = false)
---@field timeout number? seconds `for run in sub do` waits for the next run before raising a `timeout` error; default: for ever
---@field share boolean? share one upstream request between subscriptions of the same shape (default true)
---@field transport trigger.Transport? the transport requests go through (`trigger.transport`)

---A saved `Subscription:position()`, accepted by the `resume` option.
---@class trigger.Position
---@field handle string?
---@field offset string?
---@field cursor string?
---@field schema string?
---@field rows table<string, table>

---The options of every subscribe function.
---@class trigger.SubscribeOptions: trigger.Options
---@field skip_columns string[]? columns the server should leave out, e.g. `{"payload", "output"}`
---@field resume trigger.Position? what `Subscription:position()` returned earlier

---The options of `subscribe_to_tag`.
---@class trigger.TagOptions: trigger.SubscribeOptions
---@field created_at string? only runs created within this duration (`"1h"`, `"30m"`, `"1h30m"`; cap 24 h)

---The options of `subscribe_to_run`.
---@class trigger.RunOptions: trigger.SubscribeOptions
---@field stop_on_completion boolean? end the iteration after the run's final state (default true)

---The options of `Subscription:with_streams`.
---@class trigger.WithStreamsOptions
---@field resume table<string, table<string, trigger.StreamPosition>>? the `streams` part of an earlier `RunStreams:position()`
---@field drain_timeout number? seconds a finished run's streams may take to end (default 30)
---@field max_streams integer? streams read at once (default 32); the others wait their turn

---A saved `Stream:position()`: `{version = "v2", seq_num = n}` or `{version = "v1", id = "ms-n", count = k}`.
---@class trigger.StreamPosition
---@field version ("v1"|"v2")?
---@field seq_num integer?
---@field id string?
---@field count integer?

---The options of `trigger.streams.read`.
---@class trigger.StreamOptions: trigger.Options
---@field from "latest"? start at the end of the stream; default: from the beginning
---@field timeout_seconds number? how long (1–600 s) the server keeps a quiet stream open
---@field reopen boolean? reopen a stream the server closed for idleness (default true)
---@field stop_on_completion boolean? end once the run is finished and the stream read to its end (default true)
---@field resume trigger.StreamPosition? what `Stream:position()` returned earlier

---What a public access token may do: `read` and/or `write`, each mapping resources (`runs`,
---`tasks`, `tags`, `batch`) to `true`, an id or a list of ids.
---@class trigger.TokenScopes
---@field read table<string, boolean|string|string[]>?
---@field write table<string, boolean|string|string[]>?

---The options of `trigger.auth.create_public_token`.
---@class trigger.TokenOptions: trigger.Options
---@field scopes trigger.TokenScopes what the token may do
---@field expiration_time (string|number)? a duration (`"15m"`, `"1h"`, `"1 week"`) or an expiry in seconds since the epoch (default `"15m"`)
---@field realtime { skip_columns: string[]? }? columns every subscription made with this token leaves out

---A duration: a string such as `"30s"`, `"10m"`, `"1h30m"` (units w d h/hr m s), or whole seconds.
---@alias trigger.Duration string|integer

---The options of one run: `trigger.tasks.trigger`'s own, and the `options` of a batch item.
---Each is checked at the call (an error there, never a run that does something else).
---@class trigger.TaskRunOptions
---@field tags (string|string[])? up to 10 tags of up to 128 characters each
---@field idempotency_key (string|string[]|false)? a key that makes the trigger idempotent, hashed as the TypeScript SDK hashes it (a list is joined with `-`; 64 characters are sent as they are); false: no key at all, not even the library's own (then only 429s are retried)
---@field idempotency_key_ttl (string|integer)? how long the key holds: a number and one unit (`"30s"`, `"10m"`, `"24h"`, `"7d"`) or whole seconds; default 30 days
---@field delay (trigger.Duration)? start the run later: a duration, whole seconds, or an ISO 8601 date-time in the future (`"2026-12-24T18:00:00Z"`)
---@field ttl (trigger.Duration)? expire the run if it has not started within this; `0`: no time to live
---@field queue string? the name of a queue declared in the task's code
---@field concurrency_key (string|integer)? a key that gives the run its own copy of the queue
---@field max_attempts integer? attempts before the run fails (at least 1)
---@field max_duration number? seconds of compute before the run is stopped (at least 5)
---@field priority number? seconds of head start in the queue
---@field machine ("micro"|"small-1x"|"small-2x"|"medium-1x"|"medium-2x"|"large-1x"|"large-2x")? the machine preset
---@field region string? the region to run in
---@field version string? the deployed version to run (`"20250208.1"`)
---@field metadata table? the run's metadata (JSON, at most 256 KiB)
---@field test boolean? mark the run as a test run

---The options of `trigger.tasks.trigger`: one run's, and every option of `trigger.configure` for this call.
---@class trigger.TriggerOptions: trigger.Options, trigger.TaskRunOptions

---An item of `trigger.tasks.batch_trigger`: one run.
---@class trigger.BatchItem
---@field payload any any value JSON can hold (nil: no payload)
---@field options trigger.TaskRunOptions? the run's options

---An item of `trigger.tasks.batch_trigger_by_id`: one run of the task `id`.
---@class trigger.BatchItemById: trigger.BatchItem
---@field id string the task's id

---The options of a whole batch (`batch_trigger`, `batch_trigger_by_id`), with every option of `trigger.configure` for this call.
---@class trigger.BatchOptions: trigger.Options
---@field idempotency_key (string|string[])? the batch's key: an item without its own key gets `<key>-<index>`, as the SDK does
---@field idempotency_key_ttl (string|integer)? how long the batch's key (and the items' derived keys) hold, as for a run

---The filters of `trigger.runs.list` and `list_page` (a list means any of them), with every option of `trigger.configure` for these requests.
---@class trigger.ListOptions: trigger.Options
---@field status (trigger.RunStatus|trigger.RunStatus[])? statuses
---@field task (string|string[])? task ids
---@field tag (string|string[])? tags
---@field version (string|string[])? deployed versions
---@field queue (string|string[])? queues (`task/<id>` for a task's own)
---@field machine (string|string[])? machine presets
---@field region (string|string[])? regions
---@field batch string? a batch id
---@field schedule string? a schedule id
---@field bulk_action string? a bulk action id
---@field error string? an error text
---@field is_test boolean? test runs only (true) or none (false)
---@field created_at string? created within this duration (`"1d"`); without a time filter the server looks at the last 7 days
---@field from (number|string)? created at or after: seconds since the epoch or an ISO 8601 date
---@field to (number|string)? created at or before: as `from`
---@field page_size integer? runs per request, 1 to 100 (default 25)
---@field after string? `list_page`: a page's `next` cursor
---@field before string? `list_page`: a page's `previous` cursor

---The options of `trigger.runs.wait`, with every option of `trigger.configure` for this wait.
---@class trigger.WaitOptions: trigger.Options
---@field timeout number? give up after this many seconds (a `timeout` error); default: wait as long as it takes
---@field on_change fun(run: trigger.Run)? called with each state of the run as it comes (the final one included)
---@field skip_columns string[]? columns the server should leave out, as for `subscribe_to_run`

---Any table that keeps the transport contract (see `trigger.transport`).
---@class trigger.Transport
---@field background boolean whether requests run in the background

-- -------------------------------------------------------------------------------------------
-- Classes

---A live subscription: its own iterator (`for run in sub do … end`) and closing value.
---@class trigger.Subscription
---@field closed boolean? true once closed or over
---@field finished boolean? true once the iteration ended by itself
---@overload fun(): trigger.Run?
local Subscription = {}

---Seconds until the subscription needs attention even if its descriptor stays quiet.
---@return number|nil seconds
function Subscription:timeout() end

---The descriptor an event loop should watch (the cqueues pollable protocol).
---@return integer fd
function Subscription:pollfd() end

---The events to watch on `pollfd`.
---@return "r"
function Subscription:events() end

---The next run, never blocking; nil when none is ready (or the subscription ended).
---@return trigger.Run?
function Subscription:poll() end

---The next run, waiting at most `timeout` seconds (nil: as long as it takes).
---@param timeout? number
---@return trigger.Run? run
---@return trigger.EndReason? why nil
---@return trigger.Error? retrying with "timeout": the error being retried
function Subscription:next(timeout) end

---Where the subscription stands, for `opts.resume` later.
---@return trigger.Position
function Subscription:position() end

---The subscription with its runs' realtime streams (it owns the subscription from now on).
---@param opts? trigger.WithStreamsOptions
---@return trigger.RunStreams
function Subscription:with_streams(opts) end

---Close the subscription (idempotent; also `__close` and `__gc`).
function Subscription:close() end

---The same as `close` (the TypeScript SDK's name).
function Subscription:unsubscribe() end

---An item of `RunStreams`: `{type = "run", run = run}`, or a chunk of stream `stream` with
---`type == stream` and the latest state of its `run`.
---@class trigger.RunStreamsItem
---@field type string "run", or the stream's key
---@field run trigger.Run the run (for a chunk: its latest state)
---@field stream string? the stream's key (chunks only)
---@field chunk trigger.Json the chunk (chunks only)

---A saved `RunStreams:position()`.
---@class trigger.RunStreamsPosition
---@field subscription trigger.Position
---@field streams table<string, table<string, trigger.StreamPosition>>

---A subscription with its runs' realtime streams (`sub:with_streams()`).
---@class trigger.RunStreams
---@field closed boolean? true once closed or over
---@field finished boolean? true once it ended by itself
---@overload fun(): trigger.RunStreamsItem?
local RunStreams = {}

---The next item, never blocking.
---@return trigger.RunStreamsItem?
function RunStreams:poll() end

---Seconds until the object needs attention even if its descriptor stays quiet.
---@return number|nil
function RunStreams:timeout() end

---The descriptor to watch.
---@return integer fd
function RunStreams:pollfd() end

---The events to watch on `pollfd`.
---@return "r"
function RunStreams:events() end

---The next item, waiting at most `timeout` seconds.
---@param timeout? number
---@return trigger.RunStreamsItem? item
---@return trigger.EndReason? why nil
function RunStreams:next(timeout) end

---Where it stands: the subscription's position and each open stream's.
---@return trigger.RunStreamsPosition
function RunStreams:position() end

---Close the subscription and every stream (idempotent).
function RunStreams:close() end

---The same as `close` (the TypeScript SDK's name).
function RunStreams:unsubscribe() end

---One realtime stream of a run (`trigger.streams.read`): its own iterator and closing value.
---@class trigger.Stream
---@field closed boolean? true once closed or over
---@field finished boolean? true once it ended by itself
---@overload fun(): trigger.Json
local Stream = {}

---Seconds until the stream needs attention even if its descriptor stays quiet.
---@return number|nil
function Stream:timeout() end

---The descriptor an event loop should watch.
---@return integer fd
function Stream:pollfd() end

---The events to watch on `pollfd`.
---@return "r"
function Stream:events() end

---The next chunk, never blocking; nil when none is ready (or the stream ended).
---@return trigger.Json
function Stream:poll() end

---The next chunk, waiting at most `timeout` seconds.
---@param timeout? number
---@return trigger.Json chunk
---@return trigger.EndReason? why nil
---@return trigger.Error? retrying with "timeout": the error being retried
function Stream:next(timeout) end

---Where the stream stands, for `opts.resume` later.
---@return trigger.StreamPosition
function Stream:position() end

---How many HTTP requests the stream has made.
---@return integer
function Stream:requests() end

---Close the stream (idempotent; also `__close` and `__gc`).
function Stream:close() end

---The same as `close` (the TypeScript SDK's name).
function Stream:unsubscribe() end

-- -------------------------------------------------------------------------------------------
-- Modules

---@class trigger
---@field _VERSION string the library's version
---@field runs trigger.runs the subscriptions
---@field streams trigger.streams realtime streams of runs
---@field errors trigger.errors the error objects
---@field auth trigger.auth public access tokens
---@field tasks trigger.tasks triggering tasks
local trigger = {}

---Set defaults for every later call.
---@param opts trigger.Options
function trigger.configure(opts) end

---Perform the network I/O of every subscription of this thread, waiting at most `seconds`.
---@param seconds? number
function trigger.step(seconds) end

---Counters of this thread's transport, to see that nothing busy-waits.
---@class trigger.Stats
---@field wakeups integer times the network was waited on or looked at
---@field idle_wakeups integer of those, the ones that brought nothing
---@field active integer requests in flight

---The transport's counters (a fresh table).
---@return trigger.Stats
function trigger.stats() end

---Encode a value as JSON text, faithfully for what this library hands out (arrays stay arrays).
---@param value any a run, a chunk, a position, or any value lua-cjson can encode
---@return string
function trigger.encode_json(value) end

---Seconds on the monotonic clock the library's timeouts use.
---@return number
function trigger.now() end

---@class trigger.runs
trigger.runs = {}

---Follow every run that carries a tag (or all of several tags).
---@param tags string|string[]
---@param opts? trigger.TagOptions
---@return trigger.Subscription
function trigger.runs.subscribe_to_tag(tags, opts) end

---`subscribe_to_tag` under the TypeScript SDK's name.
---@param tags string|string[]
---@param opts? trigger.TagOptions
---@return trigger.Subscription
function trigger.runs.subscribe_to_runs_with_tag(tags, opts) end

---Follow one run; the iteration ends once the run reached a final state.
---@param run_id string|trigger.Handle the run's id, or its handle
---@param opts? trigger.RunOptions
---@return trigger.Subscription
function trigger.runs.subscribe_to_run(run_id, opts) end

---Follow every run of a batch.
---@param batch_id string|trigger.BatchHandle the batch's id, or its handle
---@param opts? trigger.SubscribeOptions
---@return trigger.Subscription
function trigger.runs.subscribe_to_batch(batch_id, opts) end

---Retrieve a run as the management API gives it (`GET /api/v3/runs/{id}`).
---@param id string|trigger.Handle the run's id, or its handle
---@param opts? trigger.Options the options of `trigger.configure`, for this call
---@return trigger.ApiRun? run
---@return trigger.Error? err
function trigger.runs.retrieve(id, opts) end

---Cancel a run (it becomes CANCELED shortly after; a finished run stays as it was).
---@param id string|trigger.Handle the run's id, or its handle
---@param opts? trigger.Options the options of `trigger.configure`, for this call
---@return string? id the run's id
---@return trigger.Error? err
function trigger.runs.cancel(id, opts) end

---Every run that matches, newest first, page after page; the iterator raises an error object when a page cannot be had.
---@param filters? trigger.ListOptions
---@return fun(): trigger.ApiRun?
function trigger.runs.list(filters) end

---One page of runs (`GET /api/v1/runs`).
---@param filters? trigger.ListOptions
---@return trigger.ApiRunPage? page
---@return trigger.Error? err
function trigger.runs.list_page(filters) end

---Wait for a run to finish, following it on the realtime feed, and give its final state.
---@param run string|trigger.Handle the run's id, or its handle
---@param opts? trigger.WaitOptions
---@return trigger.Run? run
---@return trigger.Error? err
function trigger.runs.wait(run, opts) end

---@class trigger.tasks
---@field OFFLOAD_BYTES integer payloads of this many bytes of JSON or more are uploaded to object storage first
---@field OWN_KEY_TTL string how long the library's own idempotency key is kept (`"1h"`)
---@field MAX_BATCH_ITEMS integer at most this many items in one batch (1000)
trigger.tasks = {}

---Trigger a task: one new run (or, with an idempotency key that found one, an existing run).
---@param task_id string the task's id
---@param payload? any any value JSON can hold
---@param opts? trigger.TriggerOptions
---@return trigger.Handle? handle
---@return trigger.Error? err
function trigger.tasks.trigger(task_id, payload, opts) end

---Trigger one task many times in one batch (at most `MAX_BATCH_ITEMS` runs).
---@param task_id string the task's id
---@param items trigger.BatchItem[]
---@param opts? trigger.BatchOptions
---@return trigger.BatchHandle? handle
---@return trigger.Error? err
function trigger.tasks.batch_trigger(task_id, items, opts) end

---Trigger several tasks in one batch: each item names its task.
---@param items trigger.BatchItemById[]
---@param opts? trigger.BatchOptions
---@return trigger.BatchHandle? handle
---@return trigger.Error? err
function trigger.tasks.batch_trigger_by_id(items, opts) end

---The wire key of an idempotency key as the TypeScript SDK makes it outside a task.
---@param key string|string[]
---@return string wire the key to send (64 hex digits, or the 64 characters given)
---@return string joined the user's key as given (a list joined with `-`)
function trigger.tasks.idempotency_key(key) end

---@class trigger.streams
---@field retry_base number the reconnect backoff's first ceiling in seconds
---@field retry_cap number the reconnect backoff's cap in seconds
trigger.streams = {}

---Read one stream of a run.
---@param run_id string
---@param key? string the stream's key (default "default")
---@param opts? trigger.StreamOptions
---@return trigger.Stream
function trigger.streams.read(run_id, key, opts) end

---@class trigger.auth
trigger.auth = {}

---Mint a public access token.
---@param opts trigger.TokenOptions
---@return string? token
---@return trigger.Error? err
function trigger.auth.create_public_token(opts) end

---Forget the cached claims.
function trigger.auth.clear_cache() end

---@class trigger.errors
---@field kinds table<trigger.ErrorKind, true> the error kinds
trigger.errors = {}

---Make an error object.
---@param kind trigger.ErrorKind
---@param message string
---@param extra? { status: integer?, request: string?, retry_after: number?, fatal: boolean?, code: string? }
---@return trigger.Error
function trigger.errors.new(kind, message, extra) end

---Is this value one of our error objects (of this kind)?
---@param v any
---@param kind? trigger.ErrorKind
---@return boolean
function trigger.errors.is(v, kind) end

---`require "trigger.transport"` (not a field of `trigger`): the transport contract.
---@class trigger.transport
local transport = {}

---The transport module for the current host.
---@return trigger.Transport
function transport.current() end

---A failed request as a transport gives it.
---@class trigger.TransportFailure
---@field kind "network"
---@field code string the machine-readable name (`"ECONNREFUSED"`, `"CURLE_OPERATION_TIMEDOUT"`, `"body_too_large"`, `"interrupted"`…)
---@field permanent boolean true when no retry can mend it (decided by `code`)
---@field message string what failed, in words

---Make a failure (`permanent` decided by `code`).
---@param code string
---@param message string
---@return trigger.TransportFailure
function transport.failure(code, message) end

---The failure of a read given up for a fresh one (code `"interrupted"`).
---@return trigger.TransportFailure
function transport.interrupted() end

---Is this the failure of a read given up for a fresh one?
---@param failure any
---@return boolean
function transport.is_interrupted(failure) end

return trigger
