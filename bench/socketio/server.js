// The Socket.IO reference server for `pigeon bench ws`: one node process, the Redis adapter
// (so a publish would reach the sockets of every node, like Pigeon's pub/sub), clients that
// join room "bench" when they send `subscribe`, and `POST /publish` that emits one push to the
// room. The handshake checks an HS256 token (`auth.token`) as Pigeon's `/ws` checks its JWT.
//
//   node --expose-gc server.js [--port 10021] [--host 127.0.0.1] [--redis redis://127.0.0.1:6379]
//                  [--key pigeon-bench-sio] [--secret bench-secret]
//
// Endpoints: `POST /publish` {"seq", "t0", "message"} -> 200 {"status":"delivered","room":N}
// (the push is {type,id,topic,subject,body,data:{seq,t0},sentAt}, emitted as event "push");
// `GET /stats[?gc=1]` -> {"pid","clients","rss","heapUsed","collected"} (`?gc=1` runs a full
// garbage collection first when started with `node --expose-gc`).

"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

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

const opt = args({
  port: "10021",
  host: "127.0.0.1",
  redis: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  key: "pigeon-bench-sio",
  secret: "bench-secret",
});

const TOPIC = "bench";

/** The payload of a valid, unexpired HS256 token signed with `secret`, else null. */
function verify(token, secret) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
  const sig = Buffer.from(parts[2], "base64url");
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  try {
    const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
    return claims;
  } catch {
    return null;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function reply(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function main() {
  const pub = createClient({ url: opt.redis });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === "POST" && req.url === "/publish") {
        const msg = JSON.parse((await readBody(req)).toString("utf8"));
        const room = io.of("/").adapter.rooms.get(TOPIC);
        io.to(TOPIC).emit("push", {
          type: "push",
          id: crypto.randomUUID(),
          topic: TOPIC,
          subject: "s",
          body: msg.message,
          data: { seq: msg.seq, t0: msg.t0 },
          sentAt: new Date().toISOString(),
        });
        return reply(res, 200, { status: "delivered", room: room ? room.size : 0 });
      }
      if (req.method === "GET" && (req.url === "/stats" || req.url === "/stats?gc=1")) {
        // With `node --expose-gc`, `?gc=1` collects first, so an RSS read right after it
        // counts live memory rather than garbage not yet collected.
        const collected = req.url.endsWith("gc=1") && typeof global.gc === "function";
        if (collected) global.gc();
        const mem = process.memoryUsage();
        return reply(res, 200, { pid: process.pid, clients: io.engine.clientsCount, rss: mem.rss, heapUsed: mem.heapUsed, collected });
      }
      reply(res, 404, { error: "not found" });
    } catch (e) {
      reply(res, 400, { error: String(e && e.message) });
    }
  });

  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    adapter: createAdapter(pub, sub, { key: opt.key }),
  });

  io.use((socket, next) => {
    const claims = verify(socket.handshake.auth && socket.handshake.auth.token, opt.secret);
    if (!claims || typeof claims.sub !== "string") return next(new Error("unauthorized"));
    socket.data.user = claims.sub;
    next();
  });

  io.on("connection", (socket) => {
    socket.on("subscribe", (topics, ack) => {
      const list = Array.isArray(topics) ? topics.filter((t) => typeof t === "string") : [];
      socket.join(list);
      if (typeof ack === "function") ack({ type: "subscribed", topics: list });
    });
  });

  server.listen(Number(opt.port), opt.host, () => {
    console.log(`socket.io reference listening on http://${opt.host}:${opt.port} (pid ${process.pid}, redis ${opt.redis}, key ${opt.key})`);
  });

  const stop = async () => {
    io.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
