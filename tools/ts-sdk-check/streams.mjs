// The official SDK (4.8.3) reading the local server's realtime streams, in both framings:
// runs.subscribeToRun(id).withStreams(), streams.read (with from: "latest"), and a reconnect
// after a connection cut mid-stream (resume with Last-Event-ID: no loss, no repeat).
//
//   cd tools/ts-sdk-check && npm install && node streams.mjs
//
// Starts ../../server/bin/trigger-realtime-server on a free port (or uses TRIGGER_API_URL) and
// drives it over the /_emulator admin API. Exits 0 when every check passed.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { configure, runs, streams } from "@trigger.dev/sdk";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const secretKey = process.env.TRIGGER_SECRET_KEY ?? "tr_dev_local_emulator_secret_key";

async function startServer() {
  if (process.env.TRIGGER_API_URL) return { url: process.env.TRIGGER_API_URL, stop() {} };
  const child = spawn("lua5.4", [path.join(root, "server/bin/trigger-realtime-server"), "--port", "0",
    "--hold-ms", "2000", "--stream-timeout-s", "3"], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    lines.once("line", (line) => resolve(line.replace(/^listening /, "")));
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url, stop: () => child.kill("SIGTERM") };
}

const server = await startServer();
configure({ baseURL: server.url, secretKey });

async function admin(method, p, body) {
  const res = await fetch(server.url + p, {
    method, headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${await res.text()}`);
  return res.json();
}
const createRun = async (fields) => (await admin("POST", "/_emulator/runs", fields)).id;
const append = (id, key, chunks) => admin("POST", `/_emulator/streams/${id}/${key}/append`, { chunks });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CHUNKS = ["Hello", { n: 2 }, "!"];
const results = [];
function check(name, got, want) {
  const ok = JSON.stringify(got) === JSON.stringify(want);
  results.push({ name, ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : `\n     got  ${JSON.stringify(got)}\n     want ${JSON.stringify(want)}`}`);
}

async function withStreams(version) {
  const id = await createRun({ status: "EXECUTING", realtimeStreamsVersion: version });
  const got = [];
  let sawList = false;
  const writer = (async () => {
    await sleep(300);
    await admin("POST", `/_emulator/streams/${id}/default`, {}); // listed: a run update
    await sleep(200);
    for (const c of CHUNKS) { await append(id, "default", [c]); await sleep(100); }
  })();
  for await (const part of runs.subscribeToRun(id).withStreams()) {
    if (part.type === "run") {
      if ((part.run.realtimeStreams ?? []).includes("default")) sawList = true;
    } else {
      got.push([part.type, part.chunk]);
      if (got.length === CHUNKS.length) break;
    }
  }
  await writer;
  check(`${version} withStreams(): run lists the key`, sawList, true);
  check(`${version} withStreams(): chunks`, got, CHUNKS.map((c) => ["default", c]));
}

async function read(version) {
  const id = await createRun({ status: "EXECUTING", realtimeStreamsVersion: version });
  await append(id, "out", CHUNKS);
  const got = [];
  const started = Date.now();
  for await (const chunk of await streams.read(id, "out", { timeoutInSeconds: 1 })) got.push(chunk);
  check(`${version} streams.read: chunks, then the end after the idle wait`, got, CHUNKS);
  check(`${version} streams.read: ended by itself`, Date.now() - started < 10000, true);

  const latest = [];
  for await (const chunk of await streams.read(id, "out", { timeoutInSeconds: 1, from: "latest" })) {
    latest.push(chunk);
  }
  check(`${version} streams.read from latest`, latest, ["!"]);
}

async function resume(version) {
  const id = await createRun({ status: "EXECUTING", realtimeStreamsVersion: version });
  const { ids } = await append(id, "default", CHUNKS); // v2 seq_nums / v1 Redis ids
  const prefix = `/realtime/v1/streams/${id}/`;
  await admin("POST", "/_emulator/faults", { kind: "truncate", after: 2, match: { path_prefix: prefix } });
  const got = [];
  for await (const chunk of await streams.read(id, { timeoutInSeconds: 1 })) got.push(chunk);
  const log = (await admin("GET", "/_emulator/stats")).log.filter((e) => e.path.startsWith(prefix));
  check(`${version} cut after 2 records: every chunk once`, got, CHUNKS);
  check(`${version} cut: the reconnect sent Last-Event-ID`, log.map((e) => e.headers["last-event-id"] ?? null),
    [null, ids[1]]);
}

const timer = setTimeout(() => { console.error("timed out"); server.stop(); process.exit(1); }, 60000);
try {
  for (const v of ["v2", "v1"]) {
    await withStreams(v);
    await read(v);
    await resume(v);
  }
} finally {
  clearTimeout(timer);
  server.stop();
}
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
