// Proof that the local realtime server is faithful: the official TypeScript SDK follows the demo
// scenario through it. Prints one line per run update and a final JSON summary of every run.
//
//   cd tools/ts-sdk-check && npm install && node check.mjs [TAG] [--public-token] [--backend B]
//
// B is electric, native or both (the default: one server per backend, one after the other).
// Starts ../../server/bin/trigger-realtime-server --backend B with examples/scenarios/demo.lua on a
// free port (or uses TRIGGER_API_URL when set, once, whatever backend that server speaks) and
// stops after every user:1234 run has finished.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { configure, runs, auth } from "@trigger.dev/sdk";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const secretKey = process.env.TRIGGER_SECRET_KEY ?? "tr_dev_local_emulator_secret_key";
const args = process.argv.slice(2);
const backendAt = args.findIndex((a) => a === "--backend" || a.startsWith("--backend="));
const backendChoice = backendAt < 0 ? "both"
  : args[backendAt].includes("=") ? args[backendAt].split("=")[1] : args[backendAt + 1];
const tag = args.find((a, i) => !a.startsWith("--") && !(backendAt >= 0 && i === backendAt + 1 &&
  args[backendAt] === "--backend")) ?? "user:1234";
const usePublicToken = args.includes("--public-token");
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
for (const backend of backends) {
  if (!(await check(backend))) failures += 1;
}
process.exit(failures === 0 ? 0 : 1);
