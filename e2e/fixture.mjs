// Shared fixture for the end-to-end suites: start the demo binary on a free port, log in over
// HTTP, and open real socket.io-client connections with the session cookie.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

export { io };
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DEMO_BIN = process.env.DEMO_BIN || resolve(ROOT, "target/debug/examples/demo");
export const REQUIRE_ALL = process.env.SOCKETIO_SESSIONS_REQUIRE_ALL === "1";
export const TRANSPORTS = ["websocket", "polling"];

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** Spawns `cmd`, keeps its last output lines, and kills it at exit if still running. */
function track(child, name) {
  const lines = [];
  const keep = (chunk) => {
    for (const line of String(chunk).split("\n")) if (line) lines.push(line);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  children.add(child);
  const exited = new Promise((res) => child.once("exit", (code, sig) => res({ code, sig })));
  exited.then(() => children.delete(child));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  return { child, lines, exited, stop, log: () => `${name} output:\n${lines.join("\n")}` };
}

/**
 * Starts the demo with `DEMO_ADDR=127.0.0.1:0` plus `env`, waits for its
 * `demo: listening on http://ADDR` line. Returns {url, origin, stop, log}.
 */
export async function startDemo(env = {}) {
  if (!existsSync(DEMO_BIN)) {
    throw new Error(`${DEMO_BIN} not found: run \`cargo build --example demo\` (or e2e/run.sh)`);
  }
  const child = spawn(DEMO_BIN, [], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", DEMO_ADDR: "127.0.0.1:0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const t = track(child, "demo");
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`demo did not start in 30 s\n${t.log()}`)), 30000);
    let buf = "";
    child.stdout.on("data", function onData(chunk) {
      buf += chunk;
      const m = buf.match(/^demo: listening on (http:\/\/\S+)\s*$/m);
      if (m) {
        clearTimeout(timer);
        child.stdout.off("data", onData);
        res(m[1]);
      }
    });
    t.exited.then(({ code, sig }) => {
      clearTimeout(timer);
      rej(new Error(`demo exited (${code ?? sig}) before listening\n${t.log()}`));
    });
  });
  return { url, origin: url, stop: t.stop, log: t.log, lines: t.lines };
}

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Whether `cmd` is on the PATH. */
export function have(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** Starts a private redis-server on a free port (no persistence). Returns {url, child, stop}. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const t = track(child, "redis-server");
  await waitFor(() => t.lines.some((l) => /ready to accept connections/i.test(l)), 10000, t.log);
  return { url: `redis://127.0.0.1:${port}`, child, stop: t.stop, log: t.log };
}

/** Polls `cond` every 20 ms until it is truthy, or fails after `ms`. */
export async function waitFor(cond, ms, what = () => "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/** `POST /login` as `name`; returns the `name=value` session cookie. */
export async function login(url, name, cookie) {
  const res = await fetch(`${url}/login`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 200) throw new Error(`login: HTTP ${res.status} ${await res.text()}`);
  const set = res.headers.getSetCookie().find((c) => /^id=/.test(c));
  if (!set) throw new Error("login set no `id` cookie");
  return set.split(";")[0];
}

export async function logout(url, cookie) {
  const res = await fetch(`${url}/logout`, { method: "POST", headers: { cookie } });
  return res.status;
}

/** `GET /api/session` → {status, body}. */
export async function session(url, cookie) {
  const res = await fetch(`${url}/api/session`, { headers: cookie ? { cookie } : {} });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Socket.IO client options carrying `cookie` (Node's client sends extraHeaders on both transports). */
export function ioOptions(transport, cookie, extra = {}) {
  return {
    transports: [transport],
    forceNew: true,
    reconnection: false,
    timeout: 10000,
    extraHeaders: cookie ? { cookie } : {},
    ...extra,
  };
}

/** Connects a plain socket.io-client; resolves with it when connected, rejects on connect_error. */
export function connect(url, transport, cookie, extra = {}) {
  const socket = io(url, ioOptions(transport, cookie, extra));
  return new Promise((res, rej) => {
    socket.once("connect", () => res(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      rej(err);
    });
  });
}

/** The next `event` on `emitter`, with its arguments, or a timeout error after `ms`. */
export function next(emitter, event, ms = 10000) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      rej(new Error(`no \`${event}\` within ${ms} ms`));
    }, ms);
    const on = (...args) => {
      clearTimeout(timer);
      emitter.off(event, on);
      res(args.length > 1 ? args : args[0]);
    };
    emitter.on(event, on);
  });
}

/** Emits with an ack and resolves with the ack's value (fails after `ms`). */
export function call(socket, event, data, ms = 10000) {
  const s = socket.timeout(ms);
  return data === undefined ? s.emitWithAck(event) : s.emitWithAck(event, data);
}
