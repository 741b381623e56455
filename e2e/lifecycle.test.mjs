// Session lifecycle while sockets are open: the server emits `sinvalid` {reason} right before
// it disconnects every socket of a session that was logged out (session_revoked), expired
// (session_expired) or given a new id by a new login (session_rotated). Over WebSocket and
// polling, with the real socket.io-client; the rotation case also drives the client helper.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createSessionSocket } from "../client/socketio-sessions.js";
import {
  TRANSPORTS, call, connect, io, ioOptions, login, logout, next, session, startDemo,
} from "./fixture.mjs";

const T = { timeout: 30000 };
const TTL_SECS = 2;

/** Resolves with {reason, at, disconnect: {reason, at}} once `s` got sinvalid and was dropped. */
function ending(s, ms = 10000) {
  const got = {};
  return new Promise((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`not dropped within ${ms} ms (sinvalid: ${JSON.stringify(got.sinvalid)})`)),
      ms,
    );
    s.once("sinvalid", (data) => {
      got.sinvalid = data;
      got.sinvalidAt = Date.now();
    });
    s.once("disconnect", (reason) => {
      got.disconnect = reason;
      got.disconnectAt = Date.now();
      clearTimeout(timer);
      res(got);
    });
  });
}

describe("session lifecycle", () => {
  let demo;
  let ttlDemo;
  const sockets = [];
  const track = (s) => (sockets.push(s), s);
  before(async () => {
    [demo, ttlDemo] = await Promise.all([
      startDemo(),
      startDemo({ DEMO_SESSION_TTL_SECS: String(TTL_SECS) }),
    ]);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await Promise.all([demo?.stop(), ttlDemo?.stop()]);
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      it("logout: every socket of the session gets session_revoked and is dropped within 1 s", T, async () => {
        const cookie = await login(demo.url, "leaver");
        const a = track(await connect(demo.url, transport, cookie));
        const b = track(await connect(demo.url, transport, cookie));
        const other = track(await connect(demo.url, transport, await login(demo.url, "stayer")));
        let otherEnded = false;
        other.on("sinvalid", () => (otherEnded = true));
        other.on("disconnect", () => (otherEnded = true));
        const ends = [ending(a, 3000), ending(b, 3000)];
        const t0 = Date.now();
        assert.equal(await logout(demo.url, cookie), 204);
        for (const end of await Promise.all(ends)) {
          assert.deepEqual(end.sinvalid, { reason: "session_revoked" }, "sinvalid before disconnect");
          assert.ok(end.sinvalidAt <= end.disconnectAt);
          assert.equal(end.disconnect, "io server disconnect");
          assert.ok(end.disconnectAt - t0 <= 1000, `dropped after ${end.disconnectAt - t0} ms`);
        }
        assert.equal(otherEnded, false, "a socket of another session was touched");
        assert.deepEqual(await call(other, "whoami"), { user: "stayer" });
      });

      it(`expiry: an idle socket gets session_expired at about the TTL (${TTL_SECS} s)`, T, async () => {
        const cookie = await login(ttlDemo.url, "sleeper");
        const s = track(await connect(ttlDemo.url, transport, cookie));
        const t0 = Date.now(); // the last activity: the handshake, which loaded the session
        const end = await ending(s, TTL_SECS * 1000 + 5000);
        const at = end.disconnectAt - t0;
        assert.deepEqual(end.sinvalid, { reason: "session_expired" });
        assert.equal(end.disconnect, "io server disconnect");
        assert.ok(at >= TTL_SECS * 1000 - 500, `dropped early, after ${at} ms`);
        assert.ok(at <= TTL_SECS * 1000 + 2500, `dropped late, after ${at} ms`);
        assert.equal((await session(ttlDemo.url, cookie)).status, 401);
      });

      it("rotation: a new login moves the helper to the new session id", T, async () => {
        const old = await login(demo.url, "before");
        const plain = track(await connect(demo.url, transport, old));
        const headers = { cookie: old }; // stands in for the browser's cookie jar
        const h = track(createSessionSocket(io, demo.url, ioOptions(transport, null, { extraHeaders: headers })));
        const seen = { sinvalid: [], retrying: [], sconnect: 0 };
        h.on("sinvalid", (e) => seen.sinvalid.push(e));
        h.on("retrying", (e) => seen.retrying.push(e));
        h.on("sconnect", () => seen.sconnect++);
        await next(h, "sconnect");
        const plainEnd = ending(plain, 3000);
        const reconnected = next(h, "sconnect", 10000);

        headers.cookie = await login(demo.url, "after", old); // login again, with the old cookie
        assert.notEqual(headers.cookie, old, "login did not rotate the id");

        const end = await plainEnd;
        assert.deepEqual(end.sinvalid, { reason: "session_rotated" });
        assert.equal(end.disconnect, "io server disconnect");
        await reconnected;
        assert.deepEqual(await call(h.socket, "whoami"), { user: "after" });
        assert.deepEqual(seen.sinvalid, []);
        assert.equal(seen.retrying[0]?.reason, "session_rotated");
        assert.equal(seen.sconnect, 2);
        await assert.rejects(connect(demo.url, transport, old), { message: "session_invalid" });
      });
    });
  }
});
