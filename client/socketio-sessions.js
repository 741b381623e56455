// socketio-sessions client helper: a Socket.IO connection that follows the login session.
// An ES module with no build step, on top of socket.io-client 4. Pass in its `io` function:
//   import { io } from "/vendor/socket.io.esm.min.js";            // browser (the demo serves it)
//   import { io } from "socket.io-client";                        // npm, bundlers, Node
//   import { createSessionSocket } from "socketio-sessions-client"; // or "/socketio-sessions.js"
//   const s = createSessionSocket(io, undefined, {});             // url: undefined = this page
//   s.on("sconnect", () => ...);                                   // connected with a valid session
//   s.on("sinvalid", ({ reason }) => ...);                         // no session: show a login form
//   s.on("chat", (msg) => ...); s.emit("incr", (n) => ...);        // other events: the socket's
//   const n = await s.emitWithAck("incr");
//   // after a new login: s.reconnect(); when done: s.close()
//
// Local events: `sconnect`; `sinvalid` {reason: "session_invalid" | "session_revoked" |
// "session_expired"} (no more reconnects until `reconnect()`); `retrying` {reason:
// "session_unavailable" | "server_shutdown" | "session_rotated", attempt, delay} before each
// scheduled attempt; `state` (one of STATES) on every change.
// Server contract: a refused handshake is `connect_error` "session_invalid" (final) or
// "session_unavailable" (retry); the server emits "sinvalid" {reason} right before it
// disconnects a socket whose session was revoked, expired or rotated (new id: reconnect), or
// because it is shutting down (server_shutdown: reconnect with backoff).
//
// Types: socketio-sessions.d.ts. This file is checked against it (`npm run check` in client/:
// tsc --checkJs), so the two cannot drift apart.
// @ts-check

/**
 * @import { Socket } from "socket.io-client"
 * @import {
 *   DefaultEventsMap, EventsMap, IoFactory, RetryingReason, ServerSinvalidReason, SessionSocket,
 *   SessionSocketEvents, SessionSocketOptions, SessionState, SinvalidReason,
 * } from "./socketio-sessions.js"
 */
/**
 * The events this helper takes from the wire itself (a `session_invalid` reason is not sent
 * by the server, but would end the socket, as a refused handshake does).
 * @typedef {{
 *   sinvalid: (data?: { reason?: ServerSinvalidReason | "session_invalid" }, ack?: () => void) => void,
 * }} WireEvents
 */

/** @type {typeof import("./socketio-sessions.js").STATES} */
export const STATES = ["connecting", "connected", "retrying", "invalid", "disconnected", "closed"];
/** @type {(keyof SessionSocketEvents)[]} */
const LOCAL_EVENTS = ["sconnect", "sinvalid", "retrying", "state"];
/** @type {ReadonlySet<string | symbol>} */
const LOCAL = new Set(LOCAL_EVENTS);

/**
 * Opens a Socket.IO connection that carries the session (cookie, or `sid` when given).
 * @template {EventsMap} [L=DefaultEventsMap]
 * @template {EventsMap} [E=L]
 * @param {IoFactory} io  socket.io-client's `io`
 * @param {string} [url]  server URL, or undefined for the page's own origin
 * @param {SessionSocketOptions} [options]  socket.io-client options, plus:
 *   sid: string | () => string — send the session id as `auth: {sid}` (for clients without
 *        cookies; the server must allow it). Off by default: the cookie is the source.
 *   backoff: {min = 500, max = 10000, factor = 2, jitter = 0.5} (ms) for session_unavailable
 *        and server_shutdown.
 *   rotationGrace: ms after "session_rotated" during which a refused handshake is retried,
 *        since the new cookie may still be on its way (default 3000).
 * @returns {SessionSocket<L, E>}
 */
export function createSessionSocket(io, url, options = {}) {
  const { sid, backoff = {}, rotationGrace = 3000, ...ioOptions } = options;
  const { min = 500, max = 10000, factor = 2, jitter = 0.5 } = backoff;
  const opts = { withCredentials: true, ...ioOptions, autoConnect: false };
  if (sid !== undefined) {
    // A function, so that every handshake reads the current value.
    opts.auth = (cb) => cb({ ...ioOptions.auth, sid: typeof sid === "function" ? sid() : sid });
  }
  const created = url === undefined ? io(opts) : io(url, opts);
  /** @type {Socket<L, E>} the caller's typed view */
  const socket = created;
  /** @type {Socket<WireEvents, {}>} the events handled here */
  const wire = created;
  /** @type {Socket<any, any>} what `on`, `off` and `emit` pass through (typed by SessionSocket) */
  const untyped = created;
  /** @type {Map<string | symbol, ((arg?: any) => void)[]>} */
  const listeners = new Map();
  /** @type {SessionState | null} */
  let state = null;
  let attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  let graceUntil = 0;
  let stopped = false; // after sinvalid or close(): no reconnects until reconnect()
  let closed = false;
  let shuttingDown = false; // after server_shutdown, until connected: network errors retried here

  /**
   * Calls the listeners of a local event; typed, so that each payload matches its declaration.
   * @type {<K extends keyof SessionSocketEvents>(
   *   event: K, ...args: Parameters<SessionSocketEvents[K]>) => void}
   */
  const fire = (event, ...args) => {
    for (const fn of [...(listeners.get(event) || [])]) fn(...args);
  };
  /** @param {SessionState} next */
  const setState = (next) => {
    if (next !== state) fire("state", (state = next));
  };
  const clearTimer = () => void (timer !== null && clearTimeout(timer), (timer = null));
  // Schedules the next handshake: exponential, capped, with jitter.
  /** @param {RetryingReason} reason */
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
  /** @param {SinvalidReason} reason */
  const invalid = (reason) => {
    clearTimer();
    stopped = true;
    shuttingDown = false;
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
    shuttingDown = false;
    setState("connected");
    fire("sconnect");
  });
  socket.on("connect_error", (err) => {
    if (stopped) return;
    const msg = err && err.message;
    if (msg === "session_invalid" && Date.now() < graceUntil) retry("session_rotated");
    else if (msg === "session_invalid") invalid(msg);
    else if (msg === "session_unavailable") retry(msg);
    else if (shuttingDown) {
      // The server that shut down (or the way to another node) is not back yet: our backoff,
      // not socket.io's own loop, which this disconnect stops.
      retry("server_shutdown");
      socket.disconnect();
    } else setState(socket.active ? "connecting" : "disconnected"); // network: socket.io retries
  });
  wire.on("sinvalid", (data, ack) => {
    // The server waits for this before it disconnects the socket: acknowledging lets it go at once.
    if (typeof ack === "function") ack();
    if (stopped) return;
    const reason = data && data.reason;
    switch (reason) {
      case "session_revoked":
      case "session_expired":
      case "session_invalid":
        return invalid(reason);
      case "server_shutdown":
        // Reconnect with backoff: to another node, or to this one once it is back.
        shuttingDown = true;
        retry(reason); // first, so that the disconnect below reads as a retry
        socket.disconnect();
        return;
      default: {
        // "session_rotated", or a reason this helper does not know (reported as a rotation):
        // a new handshake soon sends the current cookie, which names the new session.
        /** @type {"session_rotated" | undefined} a declared reason must get its own case */
        const rotated = reason;
        graceUntil = Date.now() + rotationGrace;
        attempt = 0;
        retry("session_rotated");
        socket.disconnect();
      }
    }
  });
  socket.on("disconnect", () => {
    if (!stopped && !timer) setState(socket.active ? "connecting" : "disconnected");
  });

  /** @type {SessionSocket<L, E>} */
  const api = {
    socket,
    get state() { return state; },
    get connected() { return socket.connected; },
    on(event, fn) {
      if (!LOCAL.has(event)) untyped.on(event, /** @type {any} */ (fn));
      else listeners.set(event, [...(listeners.get(event) || []), fn]);
      return api;
    },
    off(event, fn) {
      if (LOCAL.has(event)) {
        const rest = fn === undefined ? [] : (listeners.get(event) || []).filter((f) => f !== fn);
        listeners.set(event, rest);
      } else if (fn === undefined) untyped.off(event);
      else untyped.off(event, /** @type {any} */ (fn));
      return api;
    },
    emit(event, ...args) {
      untyped.emit(event, ...args);
      return api;
    },
    emitWithAck(event, ...args) {
      return untyped.emitWithAck(event, ...args);
    },
    /** A new handshake now, e.g. after a new login: sends the current cookie. */
    reconnect() {
      if (closed) throw new Error("socketio-sessions: reconnect() after close()");
      clearTimer();
      stopped = true; // quiet: this disconnect is not news
      socket.disconnect();
      stopped = false;
      attempt = 0;
      shuttingDown = false;
      connect();
      return api;
    },
    /** Disconnects for good. */
    close() {
      clearTimer();
      stopped = closed = true;
      shuttingDown = false;
      socket.disconnect();
      setState("closed");
    },
  };
  // Connect once the caller has attached its listeners (unless it already called reconnect()).
  queueMicrotask(() => state === null && connect());
  return api;
}

/** @type {typeof import("./socketio-sessions.js").createSessionSocket} the declared signature */
const declared = createSessionSocket;
