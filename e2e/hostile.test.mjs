// Hostile and crowded networks (issue #13) with the real socket.io-client: a client without
// the trailing slash, the helper backing off when its address is rate-limited, signed cookies
// never limited, an oversized auth payload, CSRF on the demo's routes, a large cookie jar.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { createSessionSocket } from "../client/socketio-sessions.js";
import { TRANSPORTS, connect, io, ioOptions, login, next, session, startDemo, waitFor } from "./fixture.mjs";

const T = { timeout: 30000 };
const EVIL = "http://evil.example";

/** `POST path` with these headers; resolves with the status. */
function post(url, path, headers, body = "") {
  return new Promise((res, rej) => {
    const req = request(`${url}${path}`, { method: "POST", headers });
    req.on("response", (r) => {
      r.resume();
      res(r.statusCode);
    });
    req.on("error", rej);
    req.end(body);
  });
}

/** How a connection attempt ends: "connected", or the connect_error's message. */
async function outcome(url, transport, cookie, extra = {}) {
  try {
    const s = await connect(url, transport, cookie, extra);
    s.close();
    return "connected";
  } catch (e) {
    return e.message;
  }
}

describe("hostile networks over socket.io-client", () => {
  let demo;
  let signed;
  const helpers = [];
  before(async () => {
    [demo, signed] = await Promise.all([
      startDemo(),
      startDemo({
        DEMO_SIGNING_SECRET: "a signing secret of at least thirty-two bytes, e2e",
        DEMO_FAILURE_LIMIT: "2/60",
      }),
    ]);
  });
  after(async () => {
    for (const h of helpers) h.close();
    await Promise.all([demo?.stop(), signed?.stop()]);
  });

  for (const transport of TRANSPORTS) {
    it(`addTrailingSlash: false connects from the allowed origin, not from another, over ${transport}`, T, async () => {
      const cookie = await login(demo.url, "slash");
      const noSlash = { addTrailingSlash: false };
      const own = { ...noSlash, extraHeaders: { cookie, origin: demo.origin } };
      assert.equal(await outcome(demo.url, transport, cookie, own), "connected");
      const evil = { ...noSlash, extraHeaders: { cookie, origin: EVIL } };
      const refused = await outcome(demo.url, transport, cookie, evil);
      assert.notEqual(refused, "connected");
      assert.notEqual(refused, "session_invalid", "refused only after the cookie was read");
      assert.notEqual(refused, "session_unavailable", "refused by the middleware, not the gate");
    });

    it(`a cookie jar of 30 KB beside the session cookie connects, over ${transport}`, T, async () => {
      const cookie = await login(demo.url, "jar");
      const jar = Array.from({ length: 20 }, (_, i) => `pref${i}=${"v".repeat(1500)}`).join("; ");
      const all = `${jar}; ${cookie}`;
      assert.equal((await session(demo.url, all)).status, 200);
      const s = await connect(demo.url, transport, all);
      assert.deepEqual(await s.timeout(10000).emitWithAck("whoami"), { user: "jar" });
      s.close();
    });
  }

  it("a rate-limited address: the helper backs off (session_unavailable), signed cookies still connect", T, async () => {
    const valid = await login(signed.url, "signed");
    const unsigned = `id=${valid.slice(-22)}`;
    // Two guesses use up the address's failures (DEMO_FAILURE_LIMIT=2/60).
    for (const transport of TRANSPORTS) {
      assert.equal(await outcome(signed.url, transport, unsigned), "session_invalid");
    }
    // The next guess is told to retry, and the helper backs off instead of showing the login.
    const h = createSessionSocket(io, signed.url, {
      ...ioOptions("websocket", unsigned),
      backoff: { min: 100, max: 200, jitter: 0 },
    });
    helpers.push(h);
    const seen = { retrying: [], sinvalid: [] };
    h.on("retrying", (e) => seen.retrying.push(e));
    h.on("sinvalid", (e) => seen.sinvalid.push(e));
    await waitFor(() => seen.retrying.length >= 2, 10000, () => "two retries");
    h.close();
    assert.deepEqual(seen.sinvalid, []);
    assert.deepEqual(seen.retrying.slice(0, 2).map((r) => [r.reason, r.delay]), [
      ["session_unavailable", 100],
      ["session_unavailable", 200],
    ]);
    // A cookie the app signed is never limited.
    for (const transport of TRANSPORTS) {
      const s = createSessionSocket(io, signed.url, ioOptions(transport, valid));
      helpers.push(s);
      await next(s, "sconnect");
      assert.deepEqual(await s.socket.timeout(10000).emitWithAck("whoami"), { user: "signed" });
    }
  });

  it("a 5 MB auth payload over WebSocket is refused before it is parsed", T, async () => {
    const cookie = await login(demo.url, "big");
    // The server hangs up on the CONNECT packet: the client sees its transport close (a
    // `disconnect` before any connect), not a connect answer.
    const s = io(demo.url, ioOptions("websocket", cookie, { auth: { pad: "x".repeat(5_000_000) } }));
    const big = await new Promise((res) => {
      s.once("connect", () => res("connected"));
      s.once("connect_error", (e) => res(e.message));
      s.once("disconnect", (reason) => res(reason));
    });
    s.close();
    assert.equal(big, "transport close");
    // Under the limit, the same connect is fine; the server is fine.
    assert.equal(await outcome(demo.url, "websocket", cookie, { auth: { pad: "x".repeat(50_000) } }), "connected");
  });

  it("the demo's state-changing routes refuse foreign origins and Origin: null (CSRF)", T, async () => {
    const cookie = await login(demo.url, "csrf");
    const json = { "content-type": "application/json" };
    const body = JSON.stringify({ name: "mallory" });
    for (const path of ["/login", "/logout", "/logout?everywhere=true", "/api/visit"]) {
      for (const hostile of [{ origin: EVIL }, { origin: "null" }, { referer: `${EVIL}/x` }]) {
        const status = await post(demo.url, path, { ...json, cookie, ...hostile }, body);
        assert.equal(status, 403, `${path} ${JSON.stringify(hostile)}`);
      }
    }
    assert.deepEqual((await session(demo.url, cookie)).body.user, "csrf");
    assert.equal(await post(demo.url, "/api/visit", { cookie, origin: demo.origin }), 200);
  });
});
