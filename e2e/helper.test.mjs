// The client helper (client/socketio-sessions.js) against a small socket.io server in Node that
// plays the server's side of the contract on demand: the `sinvalid` reasons (`server_shutdown`
// included, before the demo sends it), `connect_error` messages, and a node that goes away and
// comes back. Over WebSocket and polling, with the real socket.io-client.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { afterEach, describe, it } from "node:test";
import { Server } from "socket.io";
import { createSessionSocket } from "../client/socketio-sessions.js";
import { TRANSPORTS, freePort, io, next, sleep, waitFor } from "./fixture.mjs";

const T = { timeout: 30000 };
// No jitter: the delays are exactly min · factor^(attempt − 1), capped at max.
const BACKOFF = { min: 200, max: 800, factor: 2, jitter: 0 };

/**
 * A socket.io server on `port`. `refuse` (a connect_error message, or null) is what the next
 * handshakes get; `whoami` acks `{user: "u"}`. `end(reason)` emits `sinvalid` {reason} to every
 * socket and disconnects it, as the Rust server does.
 */
async function fakeServer(port) {
  const http = createServer();
  const server = new Server(http, { pingInterval: 25000 });
  const state = { refuse: null, handshakes: 0, connections: 0 };
  server.use((socket, nextFn) => {
    state.handshakes++;
    nextFn(state.refuse ? new Error(state.refuse) : undefined);
  });
  server.on("connection", (socket) => {
    state.connections++;
    socket.on("whoami", (ack) => ack({ user: "u" }));
  });
  await new Promise((res, rej) => {
    http.once("error", rej);
    http.listen(port, "127.0.0.1", res);
  });
  return {
    state,
    end(reason) {
      for (const socket of server.of("/").sockets.values()) {
        socket.emit("sinvalid", { reason });
        socket.disconnect(true);
      }
    },
    close: () => new Promise((res) => server.close(() => res())),
  };
}

/**
 * Where a node that is down stands, on the same port: refuses every request and upgrade
 * (as a load balancer with no healthy node would), and counts them.
 */
async function downServer(port) {
  const hits = { requests: 0 };
  const http = createServer((req, res) => {
    hits.requests++;
    res.writeHead(503).end();
  });
  http.on("upgrade", (req, sock) => {
    hits.requests++;
    sock.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n");
  });
  await new Promise((res, rej) => {
    http.once("error", rej);
    http.listen(port, "127.0.0.1", res);
  });
  return {
    hits,
    close: () => new Promise((res) => (http.closeAllConnections(), http.close(() => res()))),
  };
}

/** Collects everything a helper reports, and socket.io's own reconnection attempts. */
function record(s) {
  const seen = { sconnect: 0, sinvalid: [], retrying: [], states: [], ownReconnects: 0 };
  s.on("sconnect", () => seen.sconnect++);
  s.on("sinvalid", (e) => seen.sinvalid.push(e));
  s.on("retrying", (e) => seen.retrying.push(e));
  s.on("state", (st) => seen.states.push(st));
  s.socket.io.on("reconnect_attempt", () => seen.ownReconnects++);
  return seen;
}

describe("client helper against a scripted socket.io server", () => {
  const cleanup = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()();
  });
  /** A helper on `port` over `transport`, with socket.io's own reconnection left on. */
  const helper = (port, transport, extra = {}) => {
    const s = createSessionSocket(io, `http://127.0.0.1:${port}`, {
      transports: [transport],
      forceNew: true,
      timeout: 10000,
      backoff: BACKOFF,
      ...extra,
    });
    cleanup.push(() => s.close());
    return s;
  };

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      it("server_shutdown, node back at once: one retry after the backoff's first delay, no sinvalid", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport);
        const seen = record(s);
        await next(s, "sconnect");
        const again = next(s, "sconnect");
        server.end("server_shutdown");
        await again;
        assert.deepEqual(seen.retrying, [{ reason: "server_shutdown", attempt: 1, delay: 200 }]);
        assert.deepEqual(seen.sinvalid, []);
        assert.deepEqual(seen.states, ["connecting", "connected", "retrying", "connecting", "connected"]);
        assert.equal(server.state.connections, 2);
        assert.deepEqual(await s.emitWithAck("whoami"), { user: "u" });
      });

      it("server_shutdown, node down for a while: growing backoff, ours only, then connects when it is back", T, async () => {
        const port = await freePort();
        let server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport);
        const seen = record(s);
        await next(s, "sconnect");

        // A graceful shutdown: tell the sockets, then stop (over polling, closing at once
        // would drop the queued sinvalid).
        const told = next(s, "retrying");
        server.end("server_shutdown");
        await told;
        await server.close();
        const down = await downServer(port);
        try {
          await waitFor(() => seen.retrying.length >= 4, 20000, () => "four retries");
        } finally {
          await down.close();
        }
        const retries = seen.retrying.slice(0, 4);
        assert.deepEqual(retries.map((r) => [r.reason, r.attempt, r.delay]), [
          ["server_shutdown", 1, 200],
          ["server_shutdown", 2, 400],
          ["server_shutdown", 3, 800],
          ["server_shutdown", 4, 800],
        ]);
        assert.ok(down.hits.requests >= 2, `${down.hits.requests} handshakes reached the down node`);
        assert.equal(seen.ownReconnects, 0, "socket.io's own reconnection ran alongside the helper's");
        assert.deepEqual(seen.sinvalid, []);
        assert.equal(seen.states.includes("invalid"), false);

        server = await fakeServer(port);
        await next(s, "sconnect", 15000);
        assert.equal(s.state, "connected");
        assert.deepEqual(await s.emitWithAck("whoami"), { user: "u" });
        // Connected again: the next shutdown starts from the first delay.
        const again = next(s, "sconnect");
        server.end("server_shutdown");
        await again;
        assert.deepEqual(seen.retrying.at(-1), { reason: "server_shutdown", attempt: 1, delay: 200 });
      });

      it("server_shutdown then session_unavailable: one backoff across both, then connects", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport);
        const seen = record(s);
        await next(s, "sconnect");
        server.state.refuse = "session_unavailable";
        server.end("server_shutdown");
        await waitFor(() => seen.retrying.length >= 3, 10000, () => "three retries");
        server.state.refuse = null;
        await next(s, "sconnect");
        assert.deepEqual(seen.retrying.slice(0, 3).map((r) => [r.reason, r.attempt, r.delay]), [
          ["server_shutdown", 1, 200],
          ["session_unavailable", 2, 400],
          ["session_unavailable", 3, 800],
        ]);
        assert.deepEqual(seen.sinvalid, []);
      });

      it("server_shutdown then session_invalid: ends at once (no rotation grace)", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport, { rotationGrace: 10000 });
        const seen = record(s);
        await next(s, "sconnect");
        server.state.refuse = "session_invalid";
        server.end("server_shutdown");
        assert.deepEqual(await next(s, "sinvalid"), { reason: "session_invalid" });
        await sleep(1000); // a rotation's grace would retry within this
        assert.deepEqual(seen.retrying, [{ reason: "server_shutdown", attempt: 1, delay: 200 }]);
        assert.equal(server.state.handshakes, 2);
        assert.equal(s.state, "invalid");
        assert.equal(s.socket.active, false);
      });

      it("session_revoked, session_expired (and session_invalid) end the socket; no reconnect", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        for (const reason of ["session_revoked", "session_expired", "session_invalid"]) {
          const s = helper(port, transport);
          const seen = record(s);
          await next(s, "sconnect");
          const handshakes = server.state.handshakes;
          server.end(reason);
          assert.deepEqual(await next(s, "sinvalid"), { reason });
          await sleep(500);
          assert.equal(server.state.handshakes, handshakes, `reconnected after ${reason}`);
          assert.deepEqual(seen.retrying, []);
          s.close();
        }
      });

      it("session_rotated, and a reason this helper does not know: reconnect after the first delay, reported as session_rotated", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport);
        const seen = record(s);
        await next(s, "sconnect");
        for (const reason of ["session_rotated", "session_moved_somewhere"]) {
          const again = next(s, "sconnect");
          server.end(reason);
          await again;
        }
        assert.deepEqual(seen.retrying, [
          { reason: "session_rotated", attempt: 1, delay: 200 },
          { reason: "session_rotated", attempt: 1, delay: 200 },
        ]);
        assert.deepEqual(seen.sinvalid, []);
      });

      it("off() without a listener removes every listener of a local event", T, async () => {
        const port = await freePort();
        const server = await fakeServer(port);
        cleanup.push(() => server.close());
        const s = helper(port, transport);
        let calls = 0;
        s.on("sconnect", () => calls++).on("sconnect", () => calls++).off("sconnect");
        const connected = new Promise((res) => s.on("state", (st) => st === "connected" && res()));
        await connected;
        assert.equal(calls, 0);
      });
    });
  }
});
