// The demo page in headless Chromium (playwright-core driving the system's chromium): the
// page uses the client helper; two tabs of one browser profile share the session cookie.
// Without chromium this file skips, unless SOCKETIO_SESSIONS_REQUIRE_ALL=1 (then it fails).
// DEMO_SCREENSHOT=docs/demo.png (relative to the repository) saves a screenshot of the
// logged-in page with a few chat lines.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { REQUIRE_ALL, ROOT, call, connect, login, startDemo } from "./fixture.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  "--disable-crash-reporter", "--disable-breakpad", // no crashpad handler left behind
];
const T = { timeout: 60000 };

let chromium = null;
let why = null;
if (!existsSync(CHROMIUM)) why = `${CHROMIUM} not found (Debian: apt-get install chromium)`;
else {
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    why = `playwright-core is not installed (npm ci in e2e/): ${e.message}`;
  }
}
if (why) console.log(`# skip: browser tests: ${why}`);

/** A fresh browser profile (its own temp dir); tabs opened in it share cookies. */
async function browser() {
  const dir = mkdtempSync(join(tmpdir(), "sios-chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 820, height: 760 },
  });
  const errors = [];
  const tab = async (url) => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(`${e.message}`));
    page.on("console", (m) => {
      // 401 is /api/session while logged out; the demo has no favicon.
      const expected = /status of 401/.test(m.text()) || /favicon\.ico$/.test(m.location().url);
      if (m.type() === "error" && !expected) errors.push(`${m.text()} (${m.location().url})`);
    });
    let navigations = 0;
    page.on("framenavigated", (f) => f === page.mainFrame() && navigations++);
    await page.goto(url);
    await page.evaluate(() => (window.__loadedOnce = true)); // gone if the page reloads
    page.navigations = () => navigations;
    return page;
  };
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  return { context, tab, errors, close };
}

const text = (page, sel) => page.locator(sel).textContent();
const expectText = (page, sel, want, timeout = 10000) =>
  page.waitForFunction(
    ([s, w]) => document.querySelector(s)?.textContent === w,
    [sel, want],
    { timeout },
  ).catch(async (e) => {
    throw new Error(`${sel}: wanted ${JSON.stringify(want)}, have ${JSON.stringify(await text(page, sel))} (${e.message.split("\n")[0]})`);
  });
/** The user the page's socket is connected as, asked over that socket. */
const socketUser = (page) =>
  page.evaluate(() => new Promise((res) => window.demo.sock.emit("whoami", (r) => res(r.user))));

async function logInThroughForm(page, name) {
  await page.bringToFront();
  await page.fill("#name", name);
  await page.click("#login-button");
  await expectText(page, "#who", `signed in as ${name}`);
  await expectText(page, "#state", "connected");
}

describe("demo page in headless Chromium", { skip: !REQUIRE_ALL && why ? why : false }, () => {
  let demo;
  before(async () => {
    if (why) throw new Error(`browser tests required (SOCKETIO_SESSIONS_REQUIRE_ALL=1): ${why}`);
    demo = await startDemo();
  });
  after(() => demo?.stop());
  /** Runs `fn` with a fresh browser, closed afterwards whatever happens. */
  const withBrowser = (fn) => async () => {
    const b = await browser();
    try {
      await fn(b);
      assert.deepEqual(b.errors, [], "errors in the page");
    } finally {
      await b.close();
    }
  };

  it("log in through the form; the counter increments live on click; chat", T, withBrowser(async (b) => {
    const page = await b.tab(demo.url);
    assert.equal(await text(page, "#state"), "disconnected", "a socket before login");
    await logInThroughForm(page, "alice");
    assert.equal(await socketUser(page), "alice");
    for (const n of ["1", "2", "3"]) {
      await page.click("#incr");
      await expectText(page, "#count", n);
    }
    const http = await page.evaluate(() => fetch("/api/session").then((r) => r.json()));
    assert.deepEqual([http.user, http.count], ["alice", 3]);

    // Another user, on a Node client, chats with the page.
    const bob = await connect(demo.url, "websocket", await login(demo.url, "bob"));
    try {
      await page.fill("#chat-text", "Hi Bob, the counter lives in my HTTP session.");
      await page.click("#chat button");
      await page.waitForSelector("#chat-log li:has-text('alice: Hi Bob')");
      bob.emit("chat", { text: "And your socket reads and writes it. Nice." });
      await page.waitForSelector("#chat-log li:has-text('bob: And your socket')");
      assert.deepEqual(await call(bob, "whoami"), { user: "bob" });
      if (process.env.DEMO_SCREENSHOT) {
        await page.setViewportSize({ width: 820, height: 520 });
        await page.screenshot({ path: resolve(ROOT, process.env.DEMO_SCREENSHOT), fullPage: true });
      }
    } finally {
      bob.close();
    }
    await page.waitForSelector("#chat-log li:has-text('bob left')");
  }));

  it("logging in again (a new session id) reconnects without a page reload", T, withBrowser(async (b) => {
    const page = await b.tab(demo.url);
    await logInThroughForm(page, "dora");
    await page.click("#incr");
    await expectText(page, "#count", "1");
    await logInThroughForm(page, "dora-again");
    assert.equal(await socketUser(page), "dora-again");
    await page.click("#incr");
    await expectText(page, "#count", "2"); // the session's data moved with the new id
    assert.equal(await page.evaluate(() => window.__loadedOnce), true, "the page reloaded");
    assert.equal(page.navigations(), 1, "the page navigated");
  }));

  it("logout in a second tab: the first shows the banner within 1 s, then logs in again", T, withBrowser(async (b) => {
    const first = await b.tab(demo.url);
    await logInThroughForm(first, "erin");
    const second = await b.tab(demo.url); // same profile: same cookie, already logged in
    await expectText(second, "#state", "connected");
    assert.equal(await socketUser(second), "erin");

    // Timed inside the page: a background tab's polling is throttled, its DOM is not.
    await first.evaluate(() => {
      const el = document.getElementById("banner");
      new MutationObserver(() => {
        if (el.classList.contains("show")) window.__bannerAt ??= Date.now();
      }).observe(el, { attributes: true });
    });
    const t0 = Date.now();
    await second.click("#logout");
    await first.bringToFront();
    await first.waitForFunction(() => window.__bannerAt, null, { timeout: 5000 });
    const elapsed = (await first.evaluate(() => window.__bannerAt)) - t0;
    assert.ok(elapsed <= 1000, `banner after ${elapsed} ms`);
    assert.match(await text(first, "#banner"), /logged out/);
    await expectText(first, "#state", "session ended");
    assert.equal(await first.locator("#app").isHidden(), true, "the app stayed visible");

    await logInThroughForm(first, "erin-back");
    assert.equal(await socketUser(first), "erin-back");
    assert.equal(await first.evaluate(() => window.__loadedOnce), true, "the page reloaded");
    assert.equal(await first.locator("#banner.show").count(), 0);
  }));

  it("login again in a second tab: the first follows to the new session id", T, withBrowser(async (b) => {
    const first = await b.tab(demo.url);
    await logInThroughForm(first, "fay");
    await first.click("#incr");
    await expectText(first, "#count", "1");
    await first.evaluate(() => {
      window.__seen = [];
      for (const ev of ["sinvalid", "retrying", "sconnect"]) {
        window.demo.sock.on(ev, (e) => window.__seen.push([ev, e?.reason ?? null]));
      }
    });
    const second = await b.tab(demo.url);
    await logInThroughForm(second, "fay-renamed"); // rotates the id: the old one is gone
    await first.bringToFront();
    await first.waitForFunction(() => window.__seen.some(([ev]) => ev === "sconnect"), null, { timeout: 10000 });
    assert.deepEqual(await first.evaluate(() => window.__seen), [
      ["retrying", "session_rotated"],
      ["sconnect", null],
    ]);
    assert.equal(await socketUser(first), "fay-renamed");
    await expectText(first, "#who", "signed in as fay-renamed");
    await first.click("#incr");
    await expectText(first, "#count", "2");
    assert.equal(await first.evaluate(() => window.__loadedOnce), true, "the page reloaded");
  }));
});
