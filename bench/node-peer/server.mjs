// The Node peer of the socketio-sessions benchmarks: socket.io 4.8 + express-session 1.19
// (MemoryStore, or connect-redis on a redis client), wired as socket.io's how-to shows
// (https://socket.io/how-to/use-with-express-session), with the same event contract as
// bench-server (bench/src/bin/bench-server.rs):
//
//   POST /login?name=N  starts a session {user: N, count: 0}; answers {"user", "bytes"} and the
//                       session cookie (connect.sid)
//   Socket.IO `echo`    reads the session's `user`, acks its payload
//   Socket.IO `incr`    count + 1 in the session, acks the new count
//
// Modes: `per-connection` reads the session once, at the handshake (`io.engine.use`), and saves
// changes at disconnect; `per-message` reloads it before every event (`socket.use` +
// `req.session.reload`) and saves after every write (`req.session.save`), acking after the save.
//
// Usage: node server.mjs --mode per-connection|per-message --store memory|redis://HOST:PORT
//        [--port 0]. Prints `node-peer: listening on 127.0.0.1:PORT` when ready.

import http from "node:http";
import express from "express";
import session from "express-session";
import { Server } from "socket.io";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const mode = arg("mode", "per-message");
const storeUrl = arg("store", "memory");
const port = Number(arg("port", "0"));
if (mode !== "per-connection" && mode !== "per-message") {
  console.error(`node-peer: unknown --mode ${mode}`);
  process.exit(2);
}
const perMessage = mode === "per-message";

let store;
let redisClient;
if (storeUrl === "memory") {
  store = new session.MemoryStore();
} else if (storeUrl.startsWith("redis://")) {
  const { createClient } = await import("redis");
  const { RedisStore } = await import("connect-redis");
  redisClient = createClient({ url: storeUrl });
  redisClient.on("error", (err) => console.error(`node-peer: redis: ${err}`));
  await redisClient.connect();
  store = new RedisStore({ client: redisClient });
} else {
  console.error(`node-peer: unknown --store ${storeUrl}`);
  process.exit(2);
}

const sessionMiddleware = session({
  secret: "socketio-sessions-bench-secret-0123456789",
  resave: false,
  saveUninitialized: false,
  store,
  cookie: { maxAge: 3600 * 1000 },
});

const app = express();
app.use(sessionMiddleware);
app.post("/login", (req, res) => {
  const name = String(req.query.name ?? "");
  if (!name) {
    res.status(400).json({ error: "name required" });
    return;
  }
  req.session.user = name;
  req.session.count = 0;
  res.json({ user: name, bytes: JSON.stringify({ user: name, count: 0 }).length });
});

const server = http.createServer(app);
const io = new Server(server, { transports: ["websocket"] });

// The how-to's `onlyForHandshake`: the session middleware runs on the handshake request only.
io.engine.use((req, res, next) => {
  if (req._query.sid === undefined) {
    sessionMiddleware(req, res, next);
  } else {
    next();
  }
});

// Refuse sockets without a logged-in session, as bench-server does.
io.use((socket, next) => {
  const s = socket.request.session;
  if (!s || s.user === undefined) {
    next(new Error("session_invalid"));
  } else {
    next();
  }
});

function lastFn(args) {
  const f = args[args.length - 1];
  return typeof f === "function" ? f : () => {};
}

io.on("connection", (socket) => {
  const req = socket.request;
  if (perMessage) {
    socket.use((packet, next) => {
      req.session.reload((err) => {
        if (err) {
          lastFn(packet)({ error: "session_unavailable" });
        } else {
          next();
        }
      });
    });
  }
  socket.on("echo", (...args) => {
    const ack = lastFn(args);
    if (req.session.user === undefined) {
      ack({ error: "session_invalid" });
      return;
    }
    ack(args[0]);
  });
  socket.on("incr", (...args) => {
    const ack = lastFn(args);
    req.session.count = (req.session.count || 0) + 1;
    const n = req.session.count;
    if (perMessage) {
      req.session.save((err) => ack(err ? { error: "session_unavailable" } : n));
    } else {
      ack(n);
    }
  });
  if (!perMessage) {
    socket.on("disconnect", () => {
      req.session.save(() => {});
    });
  }
});

function shutdown() {
  io.close();
  if (redisClient) redisClient.destroy();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

// The same listen backlog as bench-server (Node's default is 511).
server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`node-peer: listening on 127.0.0.1:${server.address().port}`);
});
