-- Triggered runs: their creation, the management-only fields the realtime columns don't hold,
-- idempotency keys, batches, and a small worker that runs tasks from a catalogue.
--
-- A run created here is a row of the same store the realtime routes read (store.lua), so a
-- triggered run shows on every feed (Electric and native dialects, batches, streams) the moment
-- it exists. What the realtime columns don't hold (the user's idempotency key, its expiry,
-- maxAttempts, machine, queue, context, the batch it came from…) lives in `meta`, by friendlyId.
--
-- The catalogue (define_tasks) says what each task does once dequeued; a task it doesn't name
-- never starts, as on Trigger.dev when no deployed version has it: the run waits (QUEUED in a
-- development environment, PENDING_VERSION elsewhere) until its TTL expires it. Catalogue entry:
--   ["task-id"] = { queue_ms = 50, ttl = "1h" (the task's TTL), steps = { … } }
-- Steps, in order (each a table with one action):
--   { sleep = seconds }                 pause (cut short by maxDuration: TIMED_OUT)
--   { status = "WAITING_TO_RESUME" }    any non-final DB status (back with { status = "EXECUTING" })
--   { metadata = <JSON value> }         replace the run's metadata
--   { stream = "key", chunks = {…}, interval = seconds }   append chunks to a realtime stream
--   { output = <JSON value> }           finish COMPLETED_SUCCESSFULLY with that output
--   { output_text = "…" }               … with a text/plain output
--   { echo = true }                     … with the payload as output (same packet type)
--   { fail = "message" | { name, message, stackTrace } }  finish COMPLETED_WITH_ERRORS (BUILT_IN_ERROR)
--   { finish = "CRASHED" | "SYSTEM_FAILURE" | …, error = { … } }   any final DB status
-- A run whose steps end without a final status completes with no output.
local cqueues = require "cqueues"
local json = require "trigger_realtime_server.json"
local persist = require "trigger_realtime_server.persist"
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"

local worker = {}

local NULL = json.null

worker.FINAL = { CANCELED = true, COMPLETED_SUCCESSFULLY = true, COMPLETED_WITH_ERRORS = true,
                 SYSTEM_FAILURE = true, CRASHED = true, INTERRUPTED = true, EXPIRED = true,
                 TIMED_OUT = true }
-- A run in one of these loses its idempotency key to the next trigger (§2.4).
worker.KEY_RELEASING = { COMPLETED_WITH_ERRORS = true, SYSTEM_FAILURE = true, CRASHED = true,
                         INTERRUPTED = true, EXPIRED = true, TIMED_OUT = true }

worker.DEFAULT_CONFIG = {
  request_idempotency = false, -- §2.6: off, as at b082e44 (the UUID check never matches)
  queue_size_limit = false,    -- a number: 422 once that many runs wait in the environment
  versions = { "20260101.1" }, -- lockToVersion values that exist; any other is a 500 (§2.1)
  regions = { "us-east-1", "eu-central-1" }, -- outside development, other regions are a 422
  rate_limit = { limit = 750, refill = 250, interval_ms = 10000 },   -- secret key, per env
  jwt_rate_limit = { limit = 60, window_ms = 60000 },                -- per public token
  batch_rate_limit = { limit = 1200, refill = 100, interval_ms = 10000 }, -- runs, per env
  default_queue_ms = 50,       -- how long a catalogued task waits before it is dequeued
}

local Engine = {}
Engine.__index = Engine

function worker.new(srv)
  local self = setmetatable({ srv = srv, version = 0 }, Engine)
  self.config = util.copy(worker.DEFAULT_CONFIG)
  self.catalogue = {}
  self:clear()
  return self
end

-- Forget runs' extra fields, keys and batches (the catalogue and config stay, as the faults'
-- instruments do not: reset() is "a fresh environment").
function Engine:clear()
  self.meta = {}        -- friendlyId -> management fields
  self.keys = {}        -- task .. "\n" .. idempotency key -> { run, expires_ms }
  self.requests = {}    -- request-idempotency key -> { run, expires_ms } (when switched on)
  self.batches = {}     -- batch id -> batch
  self.batch_keys = {}  -- batch idempotency key -> batch id
  self.debounce = nil   -- task .. "\n" .. debounce key -> run (api.lua)
  self.buckets = {}     -- rate limiter state (api.lua; not saved)
  self.generation = (self.generation or 0) + 1 -- lifecycles of an older generation stop
  self:touch()
end

function Engine:touch()
  self.version = self.version + 1
end

---------------------------------------------------------------------------------------------------
-- The environment (from the secret key's prefix)

local ENV_TYPES = { dev = "DEVELOPMENT", stg = "STAGING", prod = "PRODUCTION", preview = "PREVIEW" }

function Engine:environment()
  local slug = self.srv.opts.secret_key:match("^tr_(%a+)_") or "dev"
  return { type = ENV_TYPES[slug] or "DEVELOPMENT", slug = slug, id = self.srv.opts.environment_id }
end

-- The status of a run nothing has dequeued yet: QUEUED (PENDING) when the task has a version
-- (the catalogue names it) or in development; else PENDING_VERSION, waiting for a deploy.
function Engine:waiting_status(task)
  if self.catalogue[task] or self:environment().type == "DEVELOPMENT" then return "PENDING" end
  return "PENDING_VERSION"
end

---------------------------------------------------------------------------------------------------
-- Catalogue and configuration

local STEP_KEYS = { sleep = true, status = true, metadata = true, stream = true, output = true,
                    output_text = true, echo = true, fail = true, finish = true }

local function check_step(task, i, step)
  local where = ("task %q step %d"):format(task, i)
  if type(step) ~= "table" then error(where .. " must be a table", 0) end
  local action
  for k in pairs(step) do
    if STEP_KEYS[k] then
      if action then error(("%s has two actions (%s, %s)"):format(where, action, k), 0) end
      action = k
    elseif not (k == "chunks" or k == "interval" or k == "error") then
      error(("%s: unknown key %q"):format(where, tostring(k)), 0)
    end
  end
  if not action then error(where .. " has no action (sleep, status, metadata, stream, output, "
    .. "output_text, echo, fail, finish)", 0) end
  if action == "sleep" and not (type(step.sleep) == "number" and step.sleep >= 0) then
    error(where .. ": sleep must be a number of seconds >= 0", 0)
  end
  if action == "status" and not (values.STATUSES[step.status] and not worker.FINAL[step.status]) then
    error(where .. ": status must be a non-final TaskRunStatus", 0)
  end
  if action == "finish" and not worker.FINAL[step.finish] then
    error(where .. ": finish must be a final TaskRunStatus", 0)
  end
  if action == "stream" and not (type(step.stream) == "string" and type(step.chunks) == "table") then
    error(where .. ": stream needs a key and a list of chunks", 0)
  end
  if action == "output_text" and type(step.output_text) ~= "string" then
    error(where .. ": output_text must be a string", 0)
  end
end

-- Add (or with replace = true, set) task definitions. -> the names defined
function Engine:define(tasks, replace)
  if type(tasks) ~= "table" then error("tasks must be a table of task id -> definition", 0) end
  for name, def in pairs(tasks) do
    if type(name) ~= "string" or name == "" then error("task ids must be non-empty strings", 0) end
    if type(def) ~= "table" then error(("task %q must be a table"):format(name), 0) end
    for k in pairs(def) do
      if k ~= "steps" and k ~= "queue_ms" and k ~= "ttl" then
        error(("task %q: unknown key %q (steps, queue_ms, ttl)"):format(name, tostring(k)), 0)
      end
    end
    if def.steps ~= nil and type(def.steps) ~= "table" then
      error(("task %q: steps must be a list"):format(name), 0)
    end
    for i, step in ipairs(def.steps or {}) do check_step(name, i, step) end
    if def.queue_ms ~= nil and not (type(def.queue_ms) == "number" and def.queue_ms >= 0) then
      error(("task %q: queue_ms must be a number >= 0"):format(name), 0)
    end
    if def.ttl ~= nil and not values.parse_duration(def.ttl) then
      error(("task %q: ttl must be a duration like 10m"):format(name), 0)
    end
  end
  if replace then self.catalogue = {} end
  local names = {}
  for name, def in pairs(tasks) do
    self.catalogue[name] = def
    names[#names + 1] = name
  end
  table.sort(names)
  self:touch()
  return names
end

function Engine:configure(cfg)
  if type(cfg) ~= "table" then error("config must be an object", 0) end
  for k, v in pairs(cfg) do
    local default = worker.DEFAULT_CONFIG[k]
    if default == nil then error(("unknown config %q"):format(tostring(k)), 0) end
    if type(default) == "table" and type(v) ~= "table" then
      error(("config %s must be an object or list"):format(k), 0)
    end
    if k == "request_idempotency" and type(v) ~= "boolean" then
      error("request_idempotency must be a boolean", 0)
    end
  end
  local function integers(v) -- JSON numbers: 600000.0 -> 600000 (the limiter prints them)
    if type(v) == "number" then return math.tointeger(v) or v end
    if type(v) ~= "table" then return v end
    local out = {}
    for kk, vv in pairs(v) do out[kk] = integers(vv) end
    return out
  end
  for k, v in pairs(cfg) do
    v = integers(v)
    if k:match("rate_limit$") then self.buckets = {} end -- new limits start full
    if v == NULL then v = false end
    if type(v) == "table" and type(worker.DEFAULT_CONFIG[k]) == "table" and v[1] == nil
       and next(v) ~= nil then
      local merged = util.copy(self.config[k])
      for kk, vv in pairs(v) do merged[kk] = vv end
      v = merged
    end
    self.config[k] = v
  end
  self:touch()
  return self.config
end

---------------------------------------------------------------------------------------------------
-- Run changes

local function row_of(self, id)
  local rec = self.srv.store:find(id)
  return rec and rec.row
end

function Engine:finished(id)
  local row = row_of(self, id)
  return not row or worker.FINAL[row.status] == true
end

-- Move a run to a final status with its fields (usage and cost as a real run gets them).
function Engine:finish(id, status, fields)
  local row = row_of(self, id)
  if not row or worker.FINAL[row.status] then return false end
  fields = fields or {}
  local now = self.srv.now_ms()
  fields.status = status
  fields.completedAt = now
  if row.startedAt then
    fields.usageDurationMs = math.min(now - row.startedAt, 2147483647)
    fields.costInCents = fields.usageDurationMs * 0.0017
    fields.baseCostInCents = 0.25
  end
  self.srv:update_run(id, fields)
  return true
end

function Engine:cancel(id)
  return self:finish(id, "CANCELED", {})
end

local function expire(self, id)
  local row = row_of(self, id)
  if not row or worker.FINAL[row.status] then return end
  local now = self.srv.now_ms()
  self.srv:update_run(id, {
    status = "EXPIRED", expiredAt = now, completedAt = now,
    error = { type = "STRING_ERROR", raw = ("Run expired because the TTL (%s) was reached")
      :format(row.ttl or "?") },
  })
end

---------------------------------------------------------------------------------------------------
-- The lifecycle of one run, in its own coroutine on the server's loop

local function sleep_until(self, ms)
  local left = ms - self.srv.now_ms()
  if left > 0 then cqueues.sleep(left / 1000) end
end

local function text_error(e)
  if type(e) == "string" then
    return { type = "BUILT_IN_ERROR", name = "Error", message = e,
             stackTrace = "Error: " .. e .. "\n    at run (src/trigger/task.ts:1:1)" }
  end
  return { type = "BUILT_IN_ERROR", name = e.name or "Error", message = e.message or "",
           stackTrace = e.stackTrace or ((e.name or "Error") .. ": " .. (e.message or "")) }
end

-- Runs the task's steps. -> nothing; the run ends in a final status (unless canceled meanwhile)
local function execute(self, id, def, meta, gen)
  local started = self.srv.now_ms()
  local deadline = meta.max_duration and (started + meta.max_duration * 1000) or nil
  local function gone() return self.generation ~= gen or self:finished(id) end
  local function timed_out()
    if deadline and self.srv.now_ms() >= deadline then
      self:finish(id, "TIMED_OUT", { error = { type = "INTERNAL_ERROR", code = "MAX_DURATION_EXCEEDED",
        message = ("Run exceeded maximum compute time (maxDuration) of %s seconds")
          :format(json.number_text(meta.max_duration)) } })
      return true
    end
  end
  for _, step in ipairs(def.steps or {}) do
    if gone() or timed_out() then return end
    if step.sleep then
      local until_ms = self.srv.now_ms() + step.sleep * 1000
      if deadline and deadline < until_ms then until_ms = deadline end
      sleep_until(self, until_ms)
    elseif step.status then
      self.srv:update_run(id, { status = step.status })
    elseif step.metadata ~= nil then
      self.srv:update_run(id, { metadata = json.encode(step.metadata), metadataType = "application/json" })
    elseif step.stream then
      for i, chunk in ipairs(step.chunks) do
        if gone() or timed_out() then return end
        self.srv.streams:append_chunks(id, step.stream, { chunk })
        if step.interval and step.interval > 0 and i < #step.chunks then
          cqueues.sleep(step.interval)
        end
      end
    elseif step.output ~= nil then
      self:finish(id, "COMPLETED_SUCCESSFULLY", { output = json.encode(step.output),
                                                 outputType = "application/json" })
      return
    elseif step.output_text then
      self:finish(id, "COMPLETED_SUCCESSFULLY", { output = step.output_text, outputType = "text/plain" })
      return
    elseif step.echo then
      local row = row_of(self, id)
      self:finish(id, "COMPLETED_SUCCESSFULLY", { output = row.payload, outputType = row.payloadType })
      return
    elseif step.fail then
      self:finish(id, "COMPLETED_WITH_ERRORS", { error = text_error(step.fail) })
      return
    elseif step.finish then
      self:finish(id, step.finish, { error = step.error })
      return
    end
  end
  if gone() or timed_out() then return end
  self:finish(id, "COMPLETED_SUCCESSFULLY", {})
end

local function lifecycle(self, id, gen)
  local meta = self.meta[id]
  if not meta then return end
  local function gone() return self.generation ~= gen or self:finished(id) end
  local row = row_of(self, id)
  if row.status == "DELAYED" then
    sleep_until(self, row.delayUntil or 0)
    if gone() then return end
    self.srv:update_run(id, { status = self:waiting_status(row.taskIdentifier),
                              queuedAt = self.srv.now_ms() })
    row = row_of(self, id)
  end
  local expires = meta.ttl_ms and (row.queuedAt or row.createdAt) + meta.ttl_ms or nil
  local def = self.catalogue[row.taskIdentifier]
  if not def then
    -- No version has this task: it waits, and only its TTL ends the wait.
    if not expires then return end
    sleep_until(self, expires)
    if not gone() and not row_of(self, id).startedAt then expire(self, id) end
    return
  end
  local queue_ms = def.queue_ms or self.config.default_queue_ms
  local start_at = self.srv.now_ms() + queue_ms
  if expires and expires <= start_at then
    sleep_until(self, expires)
    if not gone() then expire(self, id) end
    return
  end
  sleep_until(self, start_at)
  if gone() then return end
  self.srv:update_run(id, { status = "DEQUEUED" })
  if gone() then return end
  meta.attempt_count = 1
  self.srv:update_run(id, { status = "EXECUTING", startedAt = self.srv.now_ms() })
  self:touch()
  execute(self, id, def, meta, gen)
end

function Engine:start(id)
  local gen = self.generation
  self.srv:spawn(lifecycle, self, id, gen)
end

-- After a restart from a state file: every run not finished starts its lifecycle again (one
-- that was executing starts over, as a retried attempt would).
function Engine:resume_all()
  for id in pairs(self.meta) do
    local row = row_of(self, id)
    if row and not worker.FINAL[row.status] then self:start(id) end
  end
  -- A batch sealed but not processed yet (api.lua sets worker.process_batch).
  for _, b in pairs(self.batches) do
    if b.status == "PROCESSING" and worker.process_batch then worker.process_batch(self.srv, b) end
  end
end

-- The state file (persist.lua) keeps all of it; after a load, unfinished runs start again.
persist.register("tasks", {
  save = function(srv)
    local e = srv.tasks
    return { meta = e.meta, keys = e.keys, requests = e.requests, batches = e.batches,
             batch_keys = e.batch_keys, debounce = e.debounce, catalogue = e.catalogue,
             config = e.config }
  end,
  load = function(srv, data)
    local e = srv.tasks
    for _, k in ipairs({ "meta", "keys", "requests", "batches", "batch_keys", "catalogue" }) do
      e[k] = data[k] or {}
    end
    e.debounce = data.debounce
    for k, v in pairs(data.config or {}) do e.config[k] = v end
    e:touch()
    e:resume_all()
  end,
  version = function(srv) return srv.tasks.version end,
})

return worker
