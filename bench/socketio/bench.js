// The Socket.IO side of `pigeon bench ws`: N websocket-only socket.io-client clients join room
// "bench", P pushes are published at R/s through the server's `POST /publish`, and it reports
// the same figures as `pigeon bench ws` (connect, server RSS per connection, delivered frames,
// frames/s, latency p50/p99/max).
//
//   node bench.js [--url http://127.0.0.1:10021] [--clients 1000] [--pushes 200] [--rate 50]
//                 [--payload 100] [--connect-concurrency 64] [--connect-timeout 120]
//                 [--timeout 30] [--procs <cores>] [--server-pid PID] [--secret bench-secret]
//
// The clients run in --procs child processes (default: one per core, as the Rust tool's tokio
// runtime has one worker thread per core); the main process publishes and collects. t0 and the
// receipt time are both process.hrtime (CLOCK_MONOTONIC, one clock for every process).

"use strict";

const { fork } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");

const TOPIC = "bench";
const FD_MARGIN = 64;

function args(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !(m[1] in out)) {
      console.error(`unknown argument ${argv[i]}; known: ${Object.keys(out).map((k) => "--" + k).join(" ")}`);
      process.exit(2);
    }
    out[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const now = () => process.hrtime.bigint();

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1] / 1000; // µs -> ms
}

function procStatusBytes(pid, key) {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(key + ":"));
    return line ? Number(line.split(/\s+/)[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function openFilesLimit(p) {
  try {
    const line = fs.readFileSync(`/proc/${p}/limits`, "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line.slice("Max open files".length).trim().split(/\s+/)[0];
    return soft === "unlimited" ? Infinity : Number(soft);
  } catch {
    return null;
  }
}

const mib = (b) => (b / 1048576).toFixed(1);

function hs256(claims, secret) {
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${enc({ alg: "HS256", typ: "JWT" })}.${enc(claims)}`;
  return `${head}.${crypto.createHmac("sha256", secret).update(head).digest("base64url")}`;
}

// ------------------------------------------------------------------------------------------
// Worker: a share of the clients.

function worker() {
  const { io } = require("socket.io-client");
  let job = null;
  const sockets = [];
  const stats = []; // per client: {subscribed, connectUs, frames, lat: [], first, last, outOfOrder, lastSeq, error}
  let frames = 0;
  let reported = 0;

  function connectOne(url, token, deadline) {
    return new Promise((resolve) => {
      const s = {
        subscribed: false, connectUs: null, frames: 0, lat: [], first: null, last: null,
        repeated: 0, inversions: 0, seen: new Uint8Array(job.pushes), maxSeq: -1, other: 0, error: null,
      };
      stats.push(s);
      const started = now();
      const socket = io(url, {
        transports: ["websocket"],
        reconnection: false,
        forceNew: true,
        timeout: Math.max(1000, deadline - Date.now()),
        auth: { token },
      });
      sockets.push(socket);
      let settled = false;
      const done = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          s.error = err;
          socket.close();
        }
        resolve();
      };
      const timer = setTimeout(() => done("connect timeout"), Math.max(0, deadline - Date.now()));
      socket.on("connect_error", (e) => done(`connect: ${e.message}`));
      socket.on("connect", () => {
        socket.emit("subscribe", [TOPIC], (answer) => {
          if (!answer || answer.type !== "subscribed") return done(`answer to subscribe: ${JSON.stringify(answer)}`);
          s.subscribed = true;
          s.connectUs = Number((now() - started) / 1000n);
          done(null);
        });
      });
      socket.on("push", (p) => {
        const at = now();
        if (!p || !p.data || typeof p.data.t0 !== "string") {
          s.other++;
          return;
        }
        s.lat.push(Number((at - BigInt(p.data.t0)) / 1000n));
        s.frames++;
        frames++;
        if (s.first === null) s.first = at;
        s.last = at;
        const seq = p.data.seq;
        if (!(seq >= 0 && seq < s.seen.length)) s.other++;
        else if (s.seen[seq]) s.repeated++;
        else {
          s.seen[seq] = 1;
          if (seq < s.maxSeq) s.inversions++;
        }
        s.maxSeq = Math.max(s.maxSeq, seq);
      });
      socket.on("disconnect", (reason) => {
        if (s.subscribed && !job.stopping) s.error = `disconnected: ${reason}`;
      });
    });
  }

  process.send({ type: "ready" });
  process.on("message", async (m) => {
    if (m.type === "start") {
      job = { ...m, stopping: false };
      const deadline = Date.now() + m.connectTimeoutMs;
      let next = 0;
      const lane = async () => {
        while (next < m.tokens.length) {
          const token = m.tokens[next++];
          await connectOne(m.url, token, deadline);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, m.concurrency) }, lane));
      process.send({ type: "connected", subscribed: stats.filter((s) => s.subscribed).length, failed: stats.filter((s) => !s.subscribed).length });
      if (process.env.BENCH_DEBUG) {
        setInterval(() => {
          const up = sockets.filter((x) => x.connected).length;
          console.error(`[worker ${process.pid}] frames ${frames}, connected ${up}/${sockets.length}, errors ${stats.filter((x) => x.error).length}, first error ${(stats.find((x) => x.error) || {}).error}`);
        }, 1000).unref();
      }
      setInterval(() => {
        if (frames !== reported) {
          reported = frames;
          process.send({ type: "frames", frames });
        }
      }, 20).unref();
    } else if (m.type === "stop") {
      job.stopping = true;
      for (const s of sockets) s.close();
      const lat = new Uint32Array(stats.reduce((n, s) => n + s.lat.length, 0));
      let k = 0;
      for (const s of stats) for (const v of s.lat) lat[k++] = v;
      // Exit only once the (large) result is handed to the IPC channel.
      process.send({
        type: "result",
        lat,
        clients: stats.map((s) => ({
          subscribed: s.subscribed, connectUs: s.connectUs, frames: s.frames, first: s.first, last: s.last,
          repeated: s.repeated, inversions: s.inversions, other: s.other, error: s.error,
        })),
      }, () => process.exit(0));
    }
  });
}

// ------------------------------------------------------------------------------------------
// Main: publish and report.

async function main() {
  const opt = args({
    url: "http://127.0.0.1:10021",
    clients: "1000",
    pushes: "200",
    rate: "50",
    payload: "100",
    "connect-concurrency": "64",
    "connect-timeout": "120",
    timeout: "30",
    procs: String(os.availableParallelism ? os.availableParallelism() : os.cpus().length),
    "server-pid": "",
    secret: "bench-secret",
  });
  const clients = Math.max(1, Number(opt.clients));
  const pushes = Math.max(1, Number(opt.pushes));
  const rate = Number(opt.rate) > 0 ? Number(opt.rate) : 50;
  const payload = Number(opt.payload);
  const concurrency = Math.max(1, Number(opt["connect-concurrency"]));
  const procs = Math.max(1, Math.min(Number(opt.procs), clients));
  const base = opt.url.replace(/\/+$/, "");

  const perProc = Math.ceil(clients / procs) + FD_MARGIN;
  const limit = openFilesLimit("self");
  if (limit !== null && limit < perProc) {
    console.error(`the open-file limit of this shell is ${limit}, below ${perProc} (clients per process + ${FD_MARGIN}): raise it with \`ulimit -n 65536\` (or as far as \`ulimit -Hn\` allows) first`);
    process.exit(1);
  }
  const stats = await (await fetch(`${base}/stats`)).json();
  const pid = opt["server-pid"] ? Number(opt["server-pid"]) : stats.pid;
  const serverLimit = openFilesLimit(pid);
  if (serverLimit !== null && serverLimit < clients + FD_MARGIN) {
    console.log(`warning: the server (pid ${pid}) may open only ${serverLimit} files, fewer than ${clients} connections need`);
  }

  const tag = crypto.randomBytes(6).toString("hex");
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const tokens = Array.from({ length: clients }, (_, i) => hs256({ sub: `bench-sio-${tag}-${i}`, exp }, opt.secret));

  // The server collects garbage before each memory read when it runs with --expose-gc.
  const settle = async () => (await (await fetch(`${base}/stats?gc=1`)).json()).collected;
  const collected = await settle();
  const rssBefore = procStatusBytes(pid, "VmRSS");
  const children = [];
  const connected = [];
  const frames = new Array(procs).fill(0);
  const results = [];
  let ready = 0;
  for (let w = 0; w < procs; w++) {
    const child = fork(__filename, ["--worker"], { serialization: "advanced" });
    child.on("message", (m) => {
      if (m.type === "ready") ready++;
      else if (m.type === "connected") connected.push(m);
      else if (m.type === "frames") frames[w] = m.frames;
      else if (m.type === "result") results.push(m);
    });
    child.on("exit", (code) => {
      if (code) console.error(`worker ${w} exited with ${code}`);
    });
    children.push(child);
  }
  while (ready < procs) await sleep(5);
  // The clock starts once every worker process is up (socket.io-client loaded).
  const connectStart = now();
  children.forEach((child, w) =>
    child.send({
      type: "start",
      url: base,
      tokens: tokens.filter((_, i) => i % procs === w),
      concurrency: Math.max(1, Math.round(concurrency / procs)),
      connectTimeoutMs: Number(opt["connect-timeout"]) * 1000,
      pushes,
    }),
  );
  while (connected.length < procs) await sleep(10);
  const connectElapsed = Number(now() - connectStart) / 1e9;
  const subscribed = connected.reduce((n, m) => n + m.subscribed, 0);
  const failed = connected.reduce((n, m) => n + m.failed, 0);
  await sleep(500);
  await settle();
  const rssConnected = procStatusBytes(pid, "VmRSS");

  const message = "x".repeat(payload);
  const publishStart = now();
  const calls = [];
  for (let seq = 0; seq < pushes; seq++) {
    const at = publishStart + BigInt(Math.round((seq / rate) * 1e9));
    await sleep(Number(at - now()) / 1e6);
    calls.push((async () => {
      const started = now();
      let outcome;
      try {
        const res = await fetch(`${base}/publish`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ seq, t0: String(started), message }),
        });
        const text = await res.text();
        outcome = res.status === 200 ? JSON.parse(text).status : `HTTP ${res.status}: ${text.slice(0, 200)}`;
      } catch (e) {
        outcome = `error: ${e.message}`;
      }
      return { us: Number((now() - started) / 1000n), outcome };
    })());
  }
  const lastPublish = now();
  const answers = await Promise.all(calls);
  const publishElapsed = Number(now() - publishStart) / 1e9;

  const expectedLive = subscribed * pushes;
  const waitUntil = lastPublish + BigInt(Number(opt.timeout)) * 1000000000n;
  while (frames.reduce((a, b) => a + b, 0) < expectedLive && now() < waitUntil) await sleep(10);
  const waitedOut = frames.reduce((a, b) => a + b, 0) < expectedLive;
  const rssEnd = procStatusBytes(pid, "VmRSS");
  const hwmEnd = procStatusBytes(pid, "VmHWM");

  for (const c of children) c.send({ type: "stop" });
  const collectUntil = Date.now() + 60000;
  while (results.length < procs && Date.now() < collectUntil) await sleep(10);

  // Report, in the shape of `pigeon bench ws`.
  let lat = [];
  const connectUs = [];
  let got = 0, repeated = 0, inversions = 0, other = 0, complete = 0, minFrames = Infinity, maxFrames = 0;
  let first = null, last = null;
  const failures = new Map();
  for (const r of results) {
    lat.push(r.lat);
    for (const c of r.clients) {
      if (c.subscribed) {
        got += c.frames;
        minFrames = Math.min(minFrames, c.frames);
        maxFrames = Math.max(maxFrames, c.frames);
        if (c.frames >= pushes) complete++;
        connectUs.push(c.connectUs);
      }
      repeated += c.repeated;
      inversions += c.inversions;
      other += c.other;
      if (c.first !== null && (first === null || c.first < first)) first = c.first;
      if (c.last !== null && (last === null || c.last > last)) last = c.last;
      if (c.error) failures.set(c.error, (failures.get(c.error) || 0) + 1);
    }
  }
  const all = new Uint32Array(lat.reduce((n, a) => n + a.length, 0));
  let k = 0;
  for (const a of lat) { all.set(a, k); k += a.length; }
  all.sort();
  connectUs.sort((a, b) => a - b);
  const callUs = answers.map((a) => a.us).sort((a, b) => a - b);
  const outcomes = new Map();
  for (const a of answers) outcomes.set(a.outcome, (outcomes.get(a.outcome) || 0) + 1);
  const expected = clients * pushes;
  if (minFrames === Infinity) minFrames = 0;
  const f2 = (x) => x.toFixed(2);

  console.log(`socket.io: ${clients} clients in room '${TOPIC}' over ${procs} processes, ${pushes} pushes at ${rate}/s (one POST /publish each), ${payload}-byte message; server pid ${pid}`);
  console.log(`  connect:   ${subscribed}/${clients} subscribed in ${f2(connectElapsed)} s (${(subscribed / connectElapsed).toFixed(0)}/s, ${concurrency} in flight); connect+subscribe p50 ${f2(percentile(connectUs, 50))} ms, p99 ${f2(percentile(connectUs, 99))} ms, max ${f2(percentile(connectUs, 100))} ms; ${failed} failed`);
  if (rssBefore !== null && rssConnected !== null) {
    console.log(`  memory:    server VmRSS ${mib(rssBefore)} MiB before, ${mib(rssConnected)} MiB with ${subscribed} connections = ${((rssConnected - rssBefore) / Math.max(1, subscribed) / 1024).toFixed(1)} KiB per connection${collected ? " (read after a forced GC)" : ""}; at the end VmRSS ${mib(rssEnd || 0)} MiB, VmHWM ${mib(hwmEnd || 0)} MiB`);
  }
  console.log(`  publish:   ${pushes} publish calls in ${f2(publishElapsed)} s (${(pushes / publishElapsed).toFixed(1)}/s): ${[...outcomes].map(([o, n]) => `${n} ${o}`).join(", ")}; call latency p50 ${f2(percentile(callUs, 50))} ms, p99 ${f2(percentile(callUs, 99))} ms, max ${f2(percentile(callUs, 100))} ms`);
  console.log(`  delivered: ${got}/${expected} frames (${((got * 100) / expected).toFixed(2)} %); ${complete} clients got all ${pushes}, per client min ${minFrames} max ${maxFrames}; ${repeated} repeated, ${other} other frames${waitedOut ? ` -- stopped waiting ${opt.timeout} s after the last publish` : ""}`);
  console.log(`  order:     ${inversions} frames came after a later seq (their publish calls overlapped and the later one was emitted first)`);
  if (first !== null && last !== null) {
    const window = Number(last - first) / 1e9;
    console.log(`  rate:      ${(got / Math.max(window, 1e-9)).toFixed(0)} frames/s over the delivery window (first to last frame, ${f2(window)} s; first frame ${(Number(first - publishStart) / 1e9).toFixed(3)} s after the first publish)`);
  }
  const mean = all.length ? all.reduce((a, b) => a + b, 0) / all.length / 1000 : 0;
  console.log(`  latency:   p50 ${f2(percentile(all, 50))} ms, p99 ${f2(percentile(all, 99))} ms, max ${f2(percentile(all, 100))} ms, mean ${f2(mean)} ms (receipt - t0, t0 taken as the publish call starts)`);
  if (failures.size) console.log(`  clients failed or ended early: ${[...failures].map(([e, n]) => `${n} x ${e}`).join("; ")}`);
  if (results.length < procs) console.log(`  ${procs - results.length} worker process(es) did not report`);
  for (const c of children) c.kill();
  process.exit(0);
}

if (process.argv.includes("--worker")) {
  worker();
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
