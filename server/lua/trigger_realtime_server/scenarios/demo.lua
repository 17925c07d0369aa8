-- The `make demo` scenario for trigger-realtime-server (`--scenario demo`; installed with the
-- server rock as the module trigger_realtime_server.scenarios.demo).
--
-- Five runs tagged user:1234 go from queued to finished in about six seconds: four succeed, one
-- fails with a BUILT_IN_ERROR. Between them they carry every packet type: JSON, super+json,
-- text/plain and an application/store payload served through the presigned blob route. A sixth
-- run, tagged user:9999, must never show up in a user:1234 subscription. A batch, batch_1234,
-- holds three resize-image runs (tagged images) that finish in the same six seconds, one of
-- them CANCELED. A seventh user-less run, run_demo_stream (tagged streams:demo), writes its
-- output to a realtime stream after the others (from ~6.5 s to ~9 s).
--
-- All runs are created in one step, before the first pause, so that a watcher which stops once
-- every run it has seen is finished can't stop early. The server stays up afterwards.
local STORE_PATH = "demo/process-upload/payload.json"

-- Tasks the management API can trigger (worker.lua): `curl …/api/v1/tasks/hello-world/trigger`.
-- Any other task id is accepted and waits in the queue until its TTL (10m here) expires it.
local TASKS = {
  ["hello-world"] = { steps = {
    { sleep = 0.3 },
    { metadata = { progress = 0.5 } },
    { sleep = 0.3 },
    { output = { message = "Hello, world!" } },
  } },
  ["stream-story"] = { steps = {
    { stream = "default", interval = 0.15, chunks = {
      "Once ", "upon ", "a ", "time, ", "a ", "run ", "was ", "triggered ", "and ", "followed ", "live." } },
    { output = { words = 11 } },
  } },
  ["always-fails"] = { steps = {
    { sleep = 0.4 },
    { fail = { name = "Error", message = "This task always fails",
               stackTrace = "Error: This task always fails\n    at run (src/trigger/fail.ts:4:11)" } },
  } },
  ["echo"] = { steps = { { sleep = 0.1 }, { echo = true } } },
}

return function(s, sleep)
  s:define_tasks(TASKS)
  s:put_blob(STORE_PATH, "application/json",
             '{"file":"avatar.png","bytes":482113,"dimensions":{"width":512,"height":512}}')

  local function create(task, fields)
    fields.taskIdentifier = task
    fields.tags = fields.tags or { "user:1234" }
    return (s:create_run(fields))
  end

  local email = create("send-welcome-email", {
    payload = '{"userId":"1234","email":"ada@example.com"}', -- packet data is stored as given
    idempotencyKey = "welcome-1234",
  })
  local report = create("generate-report", {
    payload = '{"userId":"1234","month":"2025-01"}',
    tags = { "user:1234", "reports" },
  })
  local echo = create("echo-text", {
    payload = "hello from the demo",
    payloadType = "text/plain",
  })
  local upload = create("process-upload", {
    payload = STORE_PATH,
    payloadType = "application/store",
  })
  local charge = create("charge-card", {
    payload = '{"userId":"1234","amount":4200,"currency":"eur"}',
    ttl = "10m",
  })
  local other = create("send-welcome-email", {
    payload = '{"userId":"9999"}',
    tags = { "user:9999" },
  })
  -- A run that streams its output (realtime streams, streams.lua): tagged streams:demo, so it
  -- stays out of the user:1234 runs; its `default` stream gets one text chunk per word.
  -- A batch of three (subscribe_to_batch("batch_1234")), out of the user:1234 runs.
  local images = {}
  for i, size in ipairs { 128, 256, 512 } do
    images[i] = create("resize-image", {
      payload = ('{"image":"avatar.png","size":%d}'):format(size),
      tags = { "images" },
      batchId = "batch_1234",
    })
  end
  local haiku = create("write-haiku", {
    friendlyId = "run_demo_stream",
    payload = '{"topic":"autumn"}',
    tags = { "streams:demo" },
  })

  -- A batch of three hello-world runs, tagged demo:batch (realtime: /realtime/v1/batches/{id}).
  s:trigger_batch({
    { task = "hello-world", payload = { n = 1 }, options = { tags = { "demo:batch" } } },
    { task = "hello-world", payload = { n = 2 }, options = { tags = { "demo:batch" } } },
    { task = "echo", payload = { n = 3 }, options = { tags = { "demo:batch" } } },
  })

  local started = {}
  local function dequeue(id) s:update_run(id, { status = "DEQUEUED" }) end
  local function execute(id, extra)
    started[id] = s.now_ms()
    local fields = { status = "EXECUTING", startedAt = started[id] }
    for k, v in pairs(extra or {}) do fields[k] = v end
    s:update_run(id, fields)
  end
  local function finish(id, status, fields)
    local now = s.now_ms()
    fields.status = status
    fields.completedAt = now
    fields.usageDurationMs = now - (started[id] or now)
    fields.costInCents = fields.usageDurationMs * 0.0017
    fields.baseCostInCents = 0.25
    s:update_run(id, fields)
  end
  local function progress(id, fraction, step)
    s:update_run(id, { metadata = ('{"progress":%s,"step":"%s"}'):format(fraction, step),
                       metadataType = "application/json" })
  end

  s:spawn(function()
    sleep(6.5) -- after the user:1234 runs: make demo follows this one second, live
    execute(haiku)
    s:create_stream(haiku, "default")
    local text = "an old silent pond / a frog jumps into the pond / splash! silence again"
    for word in text:gmatch("%S+") do
      sleep(0.15)
      s:append_stream(haiku, "default", { word .. " " })
    end
    sleep(0.3)
    finish(haiku, "COMPLETED_SUCCESSFULLY", { output = ('{"text":"%s"}'):format(text) })
  end)

  sleep(0.8)
  dequeue(email)
  dequeue(report)
  for _, id in ipairs(images) do execute(id) end

  sleep(0.7)
  execute(email)
  progress(email, 0.25, "rendering")
  execute(report)
  dequeue(echo)
  dequeue(other)

  sleep(0.8)
  progress(email, 0.75, "sending")
  execute(echo)
  dequeue(upload)
  execute(other)

  sleep(0.7)
  finish(email, "COMPLETED_SUCCESSFULLY", { output = '{"messageId":"msg_8f3a","delivered":true}' })
  execute(upload, { metadata = '{"progress":0.1}', metadataType = "application/json" })
  dequeue(charge)
  finish(images[1], "COMPLETED_SUCCESSFULLY", { output = '{"file":"avatar-128.png"}' })

  sleep(0.8)
  finish(report, "COMPLETED_SUCCESSFULLY", {
    output = '{"json":{"at":"2025-01-10T12:00:00.000Z","big":"12345678901234567890"},' ..
             '"meta":{"values":{"at":["Date"],"big":["bigint"]}}}',
    outputType = "application/super+json",
  })
  execute(charge)
  finish(other, "COMPLETED_SUCCESSFULLY", { output = '{"ok":true}' })

  sleep(0.8)
  finish(echo, "COMPLETED_SUCCESSFULLY", { output = "HELLO FROM THE DEMO", outputType = "text/plain" })
  progress(upload, 0.6, "resizing")

  sleep(0.7)
  finish(images[2], "COMPLETED_SUCCESSFULLY", { output = '{"file":"avatar-256.png"}' })
  s:update_run(images[3], { status = "CANCELED", completedAt = s.now_ms() })
  finish(upload, "COMPLETED_SUCCESSFULLY", {
    output = '{"thumbnail":"avatar-128.png","sizes":[128,256,512]}',
  })

  sleep(0.7)
  finish(charge, "COMPLETED_WITH_ERRORS", {
    error = {
      type = "BUILT_IN_ERROR",
      name = "CardDeclinedError",
      message = "The card was declined",
      stackTrace = "CardDeclinedError: The card was declined\n" ..
                   "    at chargeCard (src/trigger/charge.ts:12:11)",
    },
  })
  -- Every user:1234 run has finished (about 6 s in); the server keeps serving until stopped.
end
