// Proof that the local realtime server is faithful: the official TypeScript SDK follows the demo
// scenario through it. Prints one line per run update and a final JSON summary of every run.
//
//   cd tools/ts-sdk-check && npm install && node check.mjs [TAG] [--public-token]
//
// Starts ../../server/bin/trigger-realtime-server with examples/scenarios/demo.lua on a free port (or
// uses TRIGGER_API_URL when set) and stops after every user:1234 run has finished.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { configure, runs, auth } from "@trigger.dev/sdk";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const secretKey = process.env.TRIGGER_SECRET_KEY ?? "tr_dev_local_emulator_secret_key";
const tag = process.argv.slice(2).find((a) => !a.startsWith("--")) ?? "user:1234";
const usePublicToken = process.argv.includes("--public-token");

async function startServer() {
  if (process.env.TRIGGER_API_URL) return { url: process.env.TRIGGER_API_URL, stop() {} };
  const child = spawn("lua5.4", [path.join(root, "server/bin/trigger-realtime-server"), "--port", "0",
    "--scenario", path.join(root, "examples/scenarios/demo.lua")], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    lines.once("line", (line) => resolve(line.replace(/^listening /, "")));
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url, stop: () => child.kill("SIGTERM") };
}

const server = await startServer();
configure({ baseURL: server.url, secretKey });
let accessToken = secretKey;
if (usePublicToken) {
  accessToken = await auth.createPublicToken({ scopes: { read: { tags: [tag] } } });
  configure({ baseURL: server.url, accessToken });
}
console.log(`following ${tag} on ${server.url} with ${usePublicToken ? "a public token" : "the secret key"}`);

// superjson gives BigInt and Date values: show them readably.
const show = (v) => JSON.stringify(v, (k, x) => (typeof x === "bigint" ? `${x}n` : x));

const seen = new Map();
const timer = setTimeout(() => { console.error("timed out"); server.stop(); process.exit(1); }, 30000);
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
console.log(expectFinished ? "OK: 5 runs, all finished" : "UNEXPECTED: see the summary above");
process.exit(expectFinished ? 0 : 1);
