-- The emulator's database: the TaskRun rows, one global change log, and the blobs behind
-- presigned URLs.
--
-- Every change gets the next sequence number; an Electric offset `<seq>_0` means "every change up
-- to seq applied". Log entries keep full copies of the row before and after (raw for filtering,
-- encoded for the wire), so any shape can be replayed from any offset and a snapshot can be
-- rebuilt as of any past sequence number.
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"

local NULL = values.NULL

local Store = {}
Store.__index = Store

local store = {}

-- opts: bool_style, timestamp_style, now_ms (a clock function, for tests).
function store.new(opts)
  local self = setmetatable({ opts = opts or {} }, Store)
  self.now_ms = self.opts.now_ms or util.now_ms
  self:clear()
  return self
end

-- `version` goes up on every change of anything below (persist.lua saves when it moved).
function Store:clear()
  self.version = (self.version or 0) + 1
  self.runs = {}          -- internal id -> { row = raw, enc = encoded, order = n }
  self.by_friendly = {}   -- friendlyId -> internal id
  self.batches = {}       -- batch id -> true, once any run has carried it
  self.log = {}           -- seq -> entry
  self.head = 0
  self.floor = 0          -- log entries up to here were compacted into `base`
  self.base = {}          -- internal id -> { row, enc, order } as of `floor`
  self.next_number = 1
  self.next_order = 1
  self.blobs = {}         -- path -> { content_type, body }
  self.cache = nil        -- the last snapshot built by rows_at
end

local function encode(self, row)
  return values.encode_row(row, self.opts)
end

local function append(self, entry)
  self.head = self.head + 1
  entry.seq = self.head
  self.log[self.head] = entry
  self.cache = nil
  self.version = self.version + 1
  return self.head
end

local function apply_patch(row, patch)
  for k, v in pairs(patch) do
    if v == NULL then row[k] = nil else row[k] = v end
  end
end

local function default_row(self)
  local now = self.now_ms()
  return {
    id = "cm" .. util.random_string(23),
    friendlyId = "run_" .. util.random_string(21),
    taskIdentifier = "demo-task",
    status = "PENDING",
    createdAt = now,
    updatedAt = now,
    queuedAt = now,
    isTest = false,
    usageDurationMs = 0,
    costInCents = 0.0,
    baseCostInCents = 0.0,
    payload = "{}",
    payloadType = "application/json",
    metadataType = "application/json",
    outputType = "application/json",
    runTags = {},
    realtimeStreams = {},
  }
end

-- fields: friendly scenario fields (see values.normalize). Returns friendlyId, internal id, or
-- raises a message (the admin API turns it into a 400).
function Store:create_run(fields)
  local patch, err = values.normalize(fields or {})
  if not patch then error(err, 0) end
  local row = default_row(self)
  if patch.number == nil then
    row.number = self.next_number
  end
  apply_patch(row, patch)
  if patch.createdAt and not patch.updatedAt then row.updatedAt = row.createdAt end
  if patch.createdAt and not patch.queuedAt then row.queuedAt = row.createdAt end
  if self.runs[row.id] then error(("a run with id %q exists"):format(row.id), 0) end
  if self.by_friendly[row.friendlyId] then
    error(("a run with friendlyId %q exists"):format(row.friendlyId), 0)
  end
  self.next_number = math.max(self.next_number, row.number + 1)
  local enc = encode(self, row)
  self.runs[row.id] = { row = row, enc = enc, order = self.next_order }
  self.next_order = self.next_order + 1
  self.by_friendly[row.friendlyId] = row.id
  if row.batchId then self.batches[row.batchId] = true end
  append(self, { op = "insert", id = row.id, after = row, after_enc = enc,
                 order = self.runs[row.id].order })
  return row.friendlyId, row.id
end

function Store:find(friendly_id)
  local id = self.by_friendly[friendly_id]
  return id and self.runs[id]
end

-- Partial change of a run. updatedAt moves forward on every change (by at least 1 ms, so that
-- it always shows up in the update), unless the fields set it.
function Store:update_run(friendly_id, fields)
  local rec = self:find(friendly_id)
  if not rec then error(("no run %q"):format(tostring(friendly_id)), 0) end
  local patch, err = values.normalize(fields or {})
  if not patch then error(err, 0) end
  if (patch.id and patch.id ~= rec.row.id) or
     (patch.friendlyId and patch.friendlyId ~= rec.row.friendlyId) then
    error("id and friendlyId cannot change", 0)
  end
  local before, before_enc = rec.row, rec.enc
  local row = util.copy(before)
  apply_patch(row, patch)
  if patch.updatedAt == nil then
    row.updatedAt = math.max(self.now_ms(), before.updatedAt + 1)
  end
  rec.row, rec.enc = row, encode(self, row)
  if row.batchId then self.batches[row.batchId] = true end
  return append(self, { op = "update", id = row.id, before = before, before_enc = before_enc,
                        after = row, after_enc = rec.enc, order = rec.order })
end

function Store:delete_run(friendly_id)
  local rec = self:find(friendly_id)
  if not rec then error(("no run %q"):format(tostring(friendly_id)), 0) end
  self.runs[rec.row.id] = nil
  self.by_friendly[friendly_id] = nil
  return append(self, { op = "delete", id = rec.row.id, before = rec.row, before_enc = rec.enc,
                        order = rec.order })
end

local function by_order(a, b) return a.order < b.order end

-- Every row as of sequence number `seq` (<= head), in creation order: a list of
-- { row, enc, order }. Rebuilt by replaying the log; the last result is cached because a
-- chunked initial sync asks for the same snapshot again and again.
function Store:rows_at(seq)
  if self.cache and self.cache.seq == seq then return self.cache.rows end
  local map = {}
  if seq == self.head then
    for id, rec in pairs(self.runs) do map[id] = rec end
  else
    if seq < self.floor then error(("offset %d_0 was compacted away"):format(seq), 0) end
    for id, rec in pairs(self.base) do map[id] = rec end
    for i = self.floor + 1, seq do
      local e = self.log[i]
      if e.op == "delete" then
        map[e.id] = nil
      else
        map[e.id] = { row = e.after, enc = e.after_enc, order = e.order }
      end
    end
  end
  local rows = {}
  for _, rec in pairs(map) do rows[#rows + 1] = rec end
  table.sort(rows, by_order)
  self.cache = { seq = seq, rows = rows }
  return rows
end

-- Forget the log entries up to `seq` (they live on in the base snapshot that rows_at starts
-- from). A shape asked for changes since an offset before the floor can no longer answer: only
-- for callers that know their clients are past it (the benchmark's million updates).
-- -> the number of entries dropped
function Store:compact(seq)
  seq = math.min(seq, self.head)
  local dropped = 0
  for i = self.floor + 1, seq do
    local e = self.log[i]
    if e.op == "delete" then
      self.base[e.id] = nil
    else
      self.base[e.id] = { row = e.after, enc = e.after_enc, order = e.order }
    end
    self.log[i] = nil
    dropped = dropped + 1
  end
  if seq > self.floor then self.floor = seq end
  if dropped > 0 then self.version = self.version + 1 end
  return dropped
end

function Store:put_blob(path, content_type, body)
  assert(type(path) == "string" and path ~= "", "blob path must be a non-empty string")
  assert(type(body) == "string", "blob body must be a string")
  self.blobs[path] = { content_type = content_type or "application/json", body = body }
  self.version = self.version + 1
end

function Store:get_blob(path)
  return self.blobs[path]
end

return store
