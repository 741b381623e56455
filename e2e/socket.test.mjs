// The demo's contract over the real socket.io-client, on WebSocket and on HTTP long-polling,
// with the cookie from `POST /login`; and the client helper (client/socketio-sessions.js) with
// that same client injected.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { createSessionSocket } from "../client/socketio-sessions.js";
import {
  TRANSPORTS, REQUIRE_ALL, call, connect, have, io, ioOptions, login, logout, next, session,
  sleep, startDemo, startRedis, waitFor,
} from "./fixture.mjs";

const T = { timeout: 30000 };
const FORGED = "id=AAAAAAAAAAAAAAAAAAAAAA";
const EVIL = "http://evil.example";

/** Status of a bare Engine.IO request (polling handshake or WebSocket upgrade) from `origin`. */
function engineStatus(url, transport, origin) {
  const headers = { origin };
  if (transport === "websocket") {
    Object.assign(headers, {
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    });
  }
  return new Promise((res, rej) => {
    const req = request(`${url}/socket.io/?EIO=4&transport=${transport}`, { headers });
    req.on("response", (r) => {
      r.resume();
      res(r.statusCode);
    });
    req.on("upgrade", (r, sock) => {
      sock.destroy();
      res(r.statusCode);
    });
    req.on("error", rej);
    req.end();
  });
}

/** Collects everything a helper reports, for assertions. */
function record(s) {
  const seen = { sconnect: 0, sinvalid: [], retrying: [], states: [] };
  s.on("sconnect", () => seen.sconnect++);
  s.on("sinvalid", (e) => seen.sinvalid.push(e));
  s.on("retrying", (e) => seen.retrying.push(e));
  s.on("state", (st) => seen.states.push(st));
  return seen;
}

describe("demo over socket.io-client", () => {
  let demo;
  const sockets = [];
  const track = (s) => (sockets.push(s), s);
  before(async () => {
    demo = await startDemo();
  });
  after(async () => {
    for (const s of sockets) s.close();
    await demo?.stop();
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      it("whoami acks the logged-in user", T, async () => {
        const cookie = await login(demo.url, `ann-${transport}`);
        const s = track(await connect(demo.url, transport, cookie));
        assert.equal(s.io.engine.transport.name, transport);
        assert.deepEqual(await call(s, "whoami"), { user: `ann-${transport}` });
      });

      it("incr acks the new count, visible over HTTP as soon as the ack arrives", T, async () => {
        const cookie = await login(demo.url, "counter");
        const s = track(await connect(demo.url, transport, cookie));
        for (const expected of [1, 2, 3]) {
          assert.equal(await call(s, "incr"), expected);
          const { status, body } = await session(demo.url, cookie);
          assert.equal(status, 200);
          assert.deepEqual([body.user, body.count], ["counter", expected]);
        }
      });

      it("chat is broadcast to the other sockets, and echoed", T, async () => {
        const a = track(await connect(demo.url, transport, await login(demo.url, "alice")));
        const b = track(await connect(demo.url, transport, await login(demo.url, "bob")));
        const atB = next(b, "chat");
        const atA = next(a, "chat");
        a.emit("chat", { text: `hello over ${transport}` });
        assert.deepEqual(await atB, { user: "alice", text: `hello over ${transport}` });
        assert.deepEqual(await atA, { user: "alice", text: `hello over ${transport}` });
      });

      it("a disallowed Origin gets 403 on the handshake; the demo's own origin does not", T, async () => {
        assert.equal(await engineStatus(demo.url, transport, EVIL), 403);
        assert.notEqual(await engineStatus(demo.url, transport, demo.origin), 403);
        const cookie = await login(demo.url, "victim");
        const err = await connect(demo.url, transport, cookie, {
          extraHeaders: { cookie, origin: EVIL },
        }).then(
          (s) => (s.close(), null),
          (e) => e,
        );
        assert.ok(err, "a socket from a disallowed origin connected");
        assert.notEqual(err.message, "session_invalid", "refused only after the cookie was read");
      });

      it("a forged cookie is refused with session_invalid", T, async () => {
        await assert.rejects(connect(demo.url, transport, FORGED), { message: "session_invalid" });
      });

      it("no cookie is refused with session_invalid", T, async () => {
        await assert.rejects(connect(demo.url, transport, null), { message: "session_invalid" });
      });

      it("a logged-out session's cookie is refused with session_invalid", T, async () => {
        const cookie = await login(demo.url, "gone");
        assert.equal(await logout(demo.url, cookie), 204);
        await assert.rejects(connect(demo.url, transport, cookie), { message: "session_invalid" });
      });

      it("helper: connects with the cookie and passes events through", T, async () => {
        const cookie = await login(demo.url, "helped");
        const s = track(createSessionSocket(io, demo.url, ioOptions(transport, cookie)));
        const seen = record(s);
        const welcome = next(s, "welcome");
        await next(s, "sconnect");
        assert.deepEqual(await welcome, { user: "helped" });
        assert.equal(s.state, "connected");
        assert.deepEqual(await call(s.socket, "whoami"), { user: "helped" });
        assert.deepEqual(seen.states, ["connecting", "connected"]);
      });

      it("helper: session_invalid → one sinvalid event and no reconnect loop", T, async () => {
        const s = track(
          createSessionSocket(io, demo.url, ioOptions(transport, FORGED, { reconnection: true })),
        );
        const seen = record(s);
        let opens = 0;
        s.socket.io.on("open", () => opens++);
        assert.deepEqual(await next(s, "sinvalid"), { reason: "session_invalid" });
        await sleep(2000); // long enough for socket.io's own loop (1 s first delay) or ours
        assert.deepEqual(seen.sinvalid, [{ reason: "session_invalid" }]);
        assert.deepEqual(seen.retrying, []);
        assert.equal(opens, 1, "the helper opened the connection again");
        assert.equal(s.state, "invalid");
        assert.equal(s.socket.active, false);
      });

      it("helper: reconnect() after a new login connects with the new cookie", T, async () => {
        const headers = { cookie: FORGED };
        const s = track(createSessionSocket(io, demo.url, ioOptions(transport, null, { extraHeaders: headers })));
        const seen = record(s);
        await next(s, "sinvalid");
        headers.cookie = await login(demo.url, "again"); // what a browser's cookie jar does
        s.reconnect();
        await next(s, "sconnect");
        assert.deepEqual(await call(s.socket, "whoami"), { user: "again" });
        assert.equal(seen.sinvalid.length, 1);
        assert.deepEqual(seen.states, ["connecting", "invalid", "connecting", "connected"]);
      });

      it("helper: close() disconnects for good", T, async () => {
        const s = track(createSessionSocket(io, demo.url, ioOptions(transport, await login(demo.url, "bye"))));
        await next(s, "sconnect");
        s.close();
        assert.equal(s.state, "closed");
        assert.equal(s.connected, false);
        assert.throws(() => s.reconnect(), /after close/);
      });
    });
  }
});

describe("auth: {sid} (DEMO_AUTH_SID=1)", () => {
  let demo;
  let plain;
  const sockets = [];
  before(async () => {
    [demo, plain] = await Promise.all([startDemo({ DEMO_AUTH_SID: "1" }), startDemo()]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await Promise.all([demo?.stop(), plain?.stop()]);
  });

  for (const transport of TRANSPORTS) {
    it(`helper sends the session id without a cookie, over ${transport}`, T, async () => {
      const sid = (await login(demo.url, "nocookie")).split("=")[1];
      const s = createSessionSocket(io, demo.url, { ...ioOptions(transport, null), sid: () => sid });
      sockets.push(s);
      await next(s, "sconnect");
      assert.deepEqual(await call(s.socket, "whoami"), { user: "nocookie" });
    });

    it(`a server without it refuses auth: {sid}, over ${transport}`, T, async () => {
      const sid = (await login(plain.url, "nocookie")).split("=")[1];
      const s = createSessionSocket(io, plain.url, { ...ioOptions(transport, null), sid });
      sockets.push(s);
      assert.deepEqual(await next(s, "sinvalid"), { reason: "session_invalid" });
    });
  }
});

describe("session_unavailable (a stopped redis-server)", () => {
  const missing = !have("redis-server");
  if (missing && REQUIRE_ALL) {
    it("needs redis-server", () => assert.fail("redis-server not found (SOCKETIO_SESSIONS_REQUIRE_ALL=1)"));
    return;
  }
  let redis;
  let demo;
  const sockets = [];
  before(async () => {
    if (missing) return;
    redis = await startRedis();
    demo = await startDemo({ DEMO_STORE: redis.url });
  });
  after(async () => {
    for (const s of sockets) s.close();
    redis?.child.kill("SIGCONT");
    await demo?.stop();
    await redis?.stop();
  });

  for (const transport of TRANSPORTS) {
    const opts = { timeout: 60000, skip: missing && "redis-server not found (apt-get install redis-server)" };
    it(`helper retries with capped backoff, then connects, over ${transport}`, opts, async () => {
      const cookie = await login(demo.url, "patient");
      redis.child.kill("SIGSTOP");
      let s;
      try {
        s = createSessionSocket(io, demo.url, {
          ...ioOptions(transport, cookie),
          backoff: { min: 200, max: 400, jitter: 0.5 },
        });
        sockets.push(s);
        const seen = record(s);
        await waitFor(() => seen.retrying.length >= 3, 30000, () => "three retries");
        assert.deepEqual(seen.sinvalid, []);
        assert.equal(seen.sconnect, 0);
        assert.deepEqual(seen.retrying.slice(0, 3).map((r) => [r.reason, r.attempt]), [
          ["session_unavailable", 1],
          ["session_unavailable", 2],
          ["session_unavailable", 3],
        ]);
        const [d1, d2, d3] = seen.retrying.map((r) => r.delay);
        assert.ok(d1 >= 100 && d1 <= 200, `first delay ${d1} not in [100, 200]`);
        assert.ok(d2 >= 200 && d2 <= 400, `second delay ${d2} not in [200, 400]`);
        assert.ok(d3 >= 200 && d3 <= 400, `third delay ${d3} above the cap`);
      } finally {
        redis.child.kill("SIGCONT");
      }
      await next(s, "sconnect", 30000);
      assert.deepEqual(await call(s.socket, "whoami"), { user: "patient" });
    });
  }
});
