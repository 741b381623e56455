// socketio-sessions client helper: a Socket.IO connection that follows the login session.
// An ES module with no build step, on top of socket.io-client 4. Pass in its `io` function:
//   import { io } from "/vendor/socket.io.esm.min.js";            // browser (the demo serves it)
//   import { io } from "socket.io-client";                        // Node
//   import { createSessionSocket } from "/socketio-sessions.js";
//   const s = createSessionSocket(io, undefined, {});             // url: undefined = this page
//   s.on("sconnect", () => ...);                                   // connected with a valid session
//   s.on("sinvalid", ({ reason }) => ...);                         // no session: show a login form
//   s.on("chat", (msg) => ...); s.emit("incr", (n) => ...);        // other events: the socket's
//   // after a new login: s.reconnect(); when done: s.close()
//
// Local events: `sconnect`; `sinvalid` {reason: "session_invalid" | "session_revoked" |
// "session_expired"} (no more reconnects until `reconnect()`); `retrying` {reason, attempt,
// delay} before each scheduled attempt; `state` (one of STATES) on every change.
// Server contract: a refused handshake is `connect_error` "session_invalid" (final) or
// "session_unavailable" (retry); the server emits "sinvalid" {reason} right before it
// disconnects a socket whose session was revoked, expired or rotated (new id: reconnect).

export const STATES = ["connecting", "connected", "retrying", "invalid", "disconnected", "closed"];
const LOCAL = new Set(["sconnect", "sinvalid", "retrying", "state"]);
const FINAL = new Set(["session_invalid", "session_revoked", "session_expired"]);

/**
 * Opens a Socket.IO connection that carries the session (cookie, or `sid` when given).
 * @param {Function} io  socket.io-client's `io`
 * @param {string|undefined} url  server URL, or undefined for the page's own origin
 * @param {object} [options]  socket.io-client options, plus:
 *   sid: string | () => string — send the session id as `auth: {sid}` (for clients without
 *        cookies; the server must allow it). Off by default: the cookie is the source.
 *   backoff: {min = 500, max = 10000, factor = 2, jitter = 0.5} (ms) for session_unavailable.
 *   rotationGrace: ms after "session_rotated" during which a refused handshake is retried,
 *        since the new cookie may still be on its way (default 3000).
 */
export function createSessionSocket(io, url, options = {}) {
  const { sid, backoff = {}, rotationGrace = 3000, ...ioOptions } = options;
  const { min = 500, max = 10000, factor = 2, jitter = 0.5 } = backoff;
  const opts = { withCredentials: true, ...ioOptions, autoConnect: false };
  if (sid !== undefined) {
    // A function, so that every handshake reads the current value.
    opts.auth = (cb) => cb({ ...ioOptions.auth, sid: typeof sid === "function" ? sid() : sid });
  }
  const socket = url === undefined ? io(opts) : io(url, opts);
  const listeners = new Map();
  let state = null;
  let attempt = 0;
  let timer = null;
  let graceUntil = 0;
  let stopped = false; // after sinvalid or close(): no reconnects until reconnect()
  let closed = false;

  const fire = (event, arg) => {
    for (const fn of [...(listeners.get(event) || [])]) fn(arg);
  };
  const setState = (next) => {
    if (next !== state) fire("state", (state = next));
  };
  const clearTimer = () => void (clearTimeout(timer), (timer = null));
  // Schedules the next handshake: exponential, capped, with jitter.
  const retry = (reason) => {
    clearTimer();
    const ceiling = Math.min(max, min * factor ** attempt);
    const delay = Math.round(ceiling * (1 - jitter * Math.random()));
    attempt += 1;
    setState("retrying");
    fire("retrying", { reason, attempt, delay });
    timer = setTimeout(() => {
      timer = null;
      if (!stopped) connect();
    }, delay);
  };
  const invalid = (reason) => {
    clearTimer();
    stopped = true;
    socket.disconnect(); // also stops socket.io's own reconnection loop
    setState("invalid");
    fire("sinvalid", { reason });
  };
  const connect = () => {
    setState("connecting");
    socket.connect();
  };

  socket.on("connect", () => {
    attempt = 0;
    graceUntil = 0;
    setState("connected");
    fire("sconnect");
  });
  socket.on("connect_error", (err) => {
    if (stopped) return;
    const msg = err && err.message;
    if (msg === "session_invalid" && Date.now() < graceUntil) retry("session_rotated");
    else if (msg === "session_invalid") invalid(msg);
    else if (msg === "session_unavailable") retry(msg);
    else setState(socket.active ? "connecting" : "disconnected"); // transport: socket.io retries
  });
  socket.on("sinvalid", (data) => {
    const reason = data && data.reason;
    if (stopped) return;
    if (FINAL.has(reason)) return invalid(reason);
    // "session_rotated" (or a reason this helper does not know): a new handshake sends
    // the current cookie, which names the new session.
    graceUntil = Date.now() + rotationGrace;
    attempt = 0;
    retry(reason || "session_rotated"); // first, so that the disconnect below reads as a retry
    socket.disconnect();
  });
  socket.on("disconnect", () => {
    if (!stopped && !timer) setState(socket.active ? "connecting" : "disconnected");
  });

  const api = {
    socket,
    get state() { return state; },
    get connected() { return socket.connected; },
    on(event, fn) {
      if (!LOCAL.has(event)) socket.on(event, fn);
      else listeners.set(event, [...(listeners.get(event) || []), fn]);
      return api;
    },
    off(event, fn) {
      if (!LOCAL.has(event)) socket.off(event, fn);
      else listeners.set(event, (listeners.get(event) || []).filter((f) => f !== fn));
      return api;
    },
    emit(...args) {
      socket.emit(...args);
      return api;
    },
    /** A new handshake now, e.g. after a new login: sends the current cookie. */
    reconnect() {
      if (closed) throw new Error("socketio-sessions: reconnect() after close()");
      clearTimer();
      stopped = true; // quiet: this disconnect is not news
      socket.disconnect();
      stopped = false;
      attempt = 0;
      connect();
      return api;
    },
    /** Disconnects for good. */
    close() {
      clearTimer();
      stopped = closed = true;
      socket.disconnect();
      setState("closed");
    },
  };
  // Connect once the caller has attached its listeners (unless it already called reconnect()).
  queueMicrotask(() => state === null && connect());
  return api;
}
