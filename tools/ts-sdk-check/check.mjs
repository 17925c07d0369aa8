// Proof that the local realtime server is faithful: the official TypeScript SDK follows the demo
// scenario through it. Prints one line per run update and a final JSON summary of every run.
// Then (unless --no-tasks) it triggers the demo catalogue's tasks through the management API with
// SDK 4.8.3 (tasks.trigger, idempotency keys, an offloaded payload, tasks.batchTrigger,
// runs.retrieve / list / cancel, batch.retrieve) and follows them with runs.subscribeToRun using
// each handle's own token (withStreams for stream-story).
//
//   cd tools/ts-sdk-check && npm install && node check.mjs [TAG] [--public-token] [--backend B] [--no-tasks]
//
// B is electric, native or both (the default: one server per backend, one after the other).
// Starts ../../server/bin/trigger-realtime-server --backend B with examples/scenarios/demo.lua on a
// free port (or uses TRIGGER_API_URL when set, once, whatever backend that server speaks) and
// stops after every user:1234 run has finished.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { configure, runs, auth, tasks, batch } from "@trigger.dev/sdk";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const secretKey = process.env.TRIGGER_SECRET_KEY ?? "tr_dev_local_emulator_secret_key";
const args = process.argv.slice(2);
const backendAt = args.findIndex((a) => a === "--backend" || a.startsWith("--backend="));
const backendChoice = backendAt < 0 ? "both"
  : args[backendAt].includes("=") ? args[backendAt].split("=")[1] : args[backendAt + 1];
const tag = args.find((a, i) => !a.startsWith("--") && !(backendAt >= 0 && i === backendAt + 1 &&
  args[backendAt] === "--backend")) ?? "user:1234";
const usePublicToken = args.includes("--public-token");
const withTasks = !args.includes("--no-tasks");
if (!["electric", "native", "both"].includes(backendChoice)) {
  console.error(`--backend must be electric, native or both (got ${backendChoice})`);
  process.exit(2);
}
const backends = process.env.TRIGGER_API_URL ? ["(external)"]
  : backendChoice === "both" ? ["electric", "native"] : [backendChoice];

async function startServer(backend) {
  if (process.env.TRIGGER_API_URL) return { url: process.env.TRIGGER_API_URL, stop() {} };
  const child = spawn("lua5.4", [path.join(root, "server/bin/trigger-realtime-server"), "--port", "0",
    "--backend", backend,
    "--scenario", path.join(root, "examples/scenarios/demo.lua")], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    lines.once("line", (line) => resolve(line.replace(/^listening /, "")));
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url, stop: () => child.kill("SIGTERM") };
}

// superjson gives BigInt and Date values: show them readably.
const show = (v) => JSON.stringify(v, (k, x) => (typeof x === "bigint" ? `${x}n` : x));

// Follow one run to its end with the handle's token; -> the last run object and the statuses seen.
// With streams, until the run is finished and `withStreams` chunks came (an open stream keeps the
// SDK's subscription going until the stream's idle timeout, as on the real server).
async function follow(handle, withStreams) {
  const statuses = [];
  const chunks = [];
  let last;
  await auth.withAuth({ accessToken: handle.publicAccessToken }, async () => {
    const sub = withStreams ? runs.subscribeToRun(handle.id).withStreams() : runs.subscribeToRun(handle.id);
    for await (const item of sub) {
      const run = withStreams ? (item.type === "run" ? item.run : undefined) : item;
      if (withStreams && item.type !== "run") chunks.push(item.chunk);
      else {
        last = run;
        if (statuses.at(-1) !== run.status) statuses.push(run.status);
      }
      if (withStreams && last?.finishedAt && chunks.length >= withStreams) break;
    }
  });
  return { run: last, statuses, chunks };
}

// The management API, driven by SDK 4.8.3. -> the list of failed expectations
async function checkTasks(backend, url) {
  configure({ baseURL: url, secretKey });
  const problems = [];
  const expect = (ok, what) => { if (!ok) problems.push(what); console.log(`[${backend}] ${ok ? "ok  " : "FAIL"} ${what}`); };

  const hello = await tasks.trigger("hello-world", { name: "sdk" }, { tags: ["sdk-check"] });
  expect(/^run_/.test(hello.id) && typeof hello.publicAccessToken === "string", `tasks.trigger -> ${hello.id}`);
  const followed = await follow(hello, false);
  expect(followed.run?.status === "COMPLETED" && followed.run.output?.message === "Hello, world!",
    `subscribeToRun with the handle's token: ${followed.statuses.join(" > ")} output=${show(followed.run?.output)}`);
  const got = await runs.retrieve(hello.id);
  expect(got.status === "COMPLETED" && got.isSuccess && got.output?.message === "Hello, world!" &&
    got.payload?.name === "sdk" && got.tags.includes("sdk-check"), `runs.retrieve: ${got.status} payload=${show(got.payload)}`);

  const story = await tasks.trigger("stream-story", {});
  const streamed = await follow(story, 11);
  expect(streamed.run?.status === "COMPLETED" && streamed.chunks.join("") === "Once upon a time, a run was triggered and followed live.",
    `withStreams: ${streamed.chunks.length} chunks "${streamed.chunks.join("")}"`);

  const failing = await tasks.trigger("always-fails", {});
  const failed = await follow(failing, false);
  expect(failed.run?.status === "FAILED" && failed.run.error?.message === "This task always fails",
    `always-fails: ${failed.run?.status} ${failed.run?.error?.message}`);

  const a = await tasks.trigger("hello-world", {}, { idempotencyKey: "sdk-check-key" });
  const b = await tasks.trigger("hello-world", {}, { idempotencyKey: "sdk-check-key" });
  expect(a.id === b.id, `idempotencyKey: the same run twice (${a.id}, ${b.id})`);

  const big = { text: "x".repeat(200000) };
  const offloaded = await tasks.trigger("echo", big);
  const echoed = await follow(offloaded, false);
  expect(echoed.run?.status === "COMPLETED" && echoed.run.output?.text?.length === 200000,
    `an offloaded 200 kB payload (packets presign + PUT) echoed back: ${echoed.run?.output?.text?.length} chars`);

  const waiting = await tasks.trigger("no-such-task", {}, { ttl: "1h" });
  const queued = await runs.retrieve(waiting.id);
  expect(queued.status === "QUEUED", `an unknown task waits: ${queued.status}`);
  await runs.cancel(waiting.id);
  const canceled = await runs.retrieve(waiting.id);
  expect(canceled.status === "CANCELED" && canceled.isCancelled, `runs.cancel: ${canceled.status}`);

  const batchHandle = await tasks.batchTrigger("hello-world", [{ payload: { n: 1 } }, { payload: { n: 2 } }]);
  expect(/^batch_/.test(batchHandle.batchId) && batchHandle.runCount === 2, `tasks.batchTrigger -> ${batchHandle.batchId}`);
  let batchRuns = [];
  for (let i = 0; i < 50 && batchRuns.length < 2; i++) {
    const b2 = await batch.retrieve(batchHandle.batchId);
    batchRuns = b2.runs ?? [];
    if (batchRuns.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  expect(batchRuns.length === 2, `batch.retrieve: runs ${batchRuns.join(", ")}`);

  const page = await runs.list({ taskIdentifier: ["hello-world"], limit: 2 });
  let listed = 0;
  for await (const r of runs.list({ taskIdentifier: ["hello-world"], limit: 2 })) { listed += r.taskIdentifier === "hello-world" ? 1 : 0; }
  expect(page.data.length === 2 && listed >= 4, `runs.list: pages of 2, ${listed} hello-world runs in all`);
  return problems;
}

async function check(backend) {
  const server = await startServer(backend);
  configure({ baseURL: server.url, secretKey });
  let accessToken = secretKey;
  if (usePublicToken) {
    accessToken = await auth.createPublicToken({ scopes: { read: { tags: [tag] } } });
    configure({ baseURL: server.url, accessToken });
  }
  console.log(`[${backend}] following ${tag} on ${server.url} with ${usePublicToken ? "a public token" : "the secret key"}`);

  const seen = new Map();
  const timer = setTimeout(() => { console.error(`[${backend}] timed out`); server.stop(); process.exit(1); }, 30000);
  try {
    for await (const run of runs.subscribeToRunsWithTag(tag)) {
      seen.set(run.id, run);
      const detail = run.error ? `error=${run.error.message}` :
        run.output !== undefined ? `output=${show(run.output)}` : `payload=${show(run.payload)}`;
      console.log(`${run.updatedAt.toISOString()}  ${run.id}  ${run.taskIdentifier.padEnd(20)} ${run.status.padEnd(10)} ${detail}`);
      if ([...seen.values()].every((r) => r.isCompleted || r.isCancelled)) break;
    }
    if (withTasks) {
      clearTimeout(timer);
      const problems = await checkTasks(backend, server.url);
      if (problems.length) taskFailures += problems.length;
    }
  } finally {
    clearTimeout(timer);
    // How the SDK drove this backend (the emulator's own counters; absent on a real server).
    const stats = await fetch(`${server.url}/_emulator/stats`).then((r) => r.json()).catch(() => null);
    if (stats?.realtime_requests !== undefined) {
      console.log(`[${backend}] ${stats.realtime_requests} realtime requests ` +
        `(${stats.live_requests} live, ${stats.non_live_requests} non-live)`);
    }
    server.stop();
  }
  const summary = [...seen.values()].map((r) => ({
    id: r.id, taskIdentifier: r.taskIdentifier, status: r.status, number: r.number, tags: r.tags,
    isTest: r.isTest, durationMs: r.durationMs, costInCents: r.costInCents, createdAt: r.createdAt,
    startedAt: r.startedAt, finishedAt: r.finishedAt, payload: r.payload, output: r.output,
    metadata: r.metadata, error: r.error, idempotencyKey: r.idempotencyKey, ttl: r.ttl,
  }));
  console.log(JSON.stringify(summary, (k, v) => (typeof v === "bigint" ? `${v}n` : v), 2));
  const expectFinished = summary.length === 5 && summary.every((r) => r.status === "COMPLETED" || r.status === "FAILED");
  console.log(`[${backend}] ` + (expectFinished ? "OK: 5 runs, all finished" : "UNEXPECTED: see the summary above"));
  return expectFinished;
}

let failures = 0;
let taskFailures = 0;
for (const backend of backends) {
  if (!(await check(backend))) failures += 1;
}
if (taskFailures) console.log(`${taskFailures} management-API expectations failed`);
process.exit(failures === 0 && taskFailures === 0 ? 0 : 1);
