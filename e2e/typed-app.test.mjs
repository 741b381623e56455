// The npm package as an app gets it: `npm pack` in client/, the tarball installed into a small
// TypeScript page (e2e/typed-app: Vite, TypeScript and socket.io-client from its lockfile),
// type-checked with `tsc --noEmit`, bundled with `vite build`, served by `vite preview` with its
// proxy to the demo, and driven in headless Chromium: login, the counter, a logout in another
// tab, a new login in another tab. Also: the declarations reject typed mistakes
// (typed-app/misuse/mistakes.ts must fail with exactly the errors marked on its lines).
// The browser part skips without chromium, unless SOCKETIO_SESSIONS_REQUIRE_ALL=1.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { REQUIRE_ALL, ROOT, freePort, startDemo, waitFor } from "./fixture.mjs";

const APP = resolve(ROOT, "e2e/typed-app");
const CLIENT = resolve(ROOT, "client");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  "--disable-crash-reporter", "--disable-breakpad",
];
const T = { timeout: 120000 };
const SHIPPED = ["LICENSE", "README.md", "package.json", "socketio-sessions.d.ts", "socketio-sessions.js"];

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
if (why) console.log(`# skip: typed app in the browser: ${why}`);

/** Runs `cmd args` in `cwd`; resolves with {code, out} (stdout and stderr together). */
function run(cmd, args, cwd, env = {}) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", rej);
    child.on("exit", (code) => res({ code, out }));
  });
}

const bin = (name) => join(APP, "node_modules/.bin", name);

describe("the npm package in a TypeScript page built with Vite", () => {
  const tmp = mkdtempSync(join(tmpdir(), "sios-typed-app-"));
  const dist = join(tmp, "dist");
  let tarball = null;
  let built = false;
  before(() => {
    if (!existsSync(bin("vite")) || !existsSync(bin("tsc"))) {
      throw new Error("e2e/typed-app/node_modules is missing: run e2e/run.sh (npm ci in e2e/typed-app)");
    }
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("npm pack ships the module, its declarations, README, LICENSE and package.json only", T, async () => {
    const { code, out } = await run("npm", ["pack", "--json", "--pack-destination", tmp], CLIENT);
    assert.equal(code, 0, out);
    const [info] = JSON.parse(out.slice(out.indexOf("[")));
    assert.deepEqual(info.files.map((f) => f.path).sort(), SHIPPED);
    tarball = join(tmp, info.filename);
  });

  it("installs from the tarball, its lockfile untouched", T, async () => {
    assert.ok(tarball, "no tarball (npm pack failed)");
    const lock = readFileSync(join(APP, "package-lock.json"), "utf8");
    const { code, out } = await run(
      "npm",
      ["install", "--no-save", "--prefer-offline", "--no-audit", "--no-fund", tarball],
      APP,
    );
    assert.equal(code, 0, out);
    assert.equal(readFileSync(join(APP, "package-lock.json"), "utf8"), lock, "npm install changed the lockfile");
    const installed = JSON.parse(
      readFileSync(join(APP, "node_modules/socketio-sessions-client/package.json"), "utf8"),
    );
    const packed = JSON.parse(readFileSync(join(CLIENT, "package.json"), "utf8"));
    assert.equal(installed.version, packed.version);
  });

  it("tsc --noEmit accepts the typed page", T, async () => {
    const { code, out } = await run(bin("tsc"), ["--noEmit", "-p", ".", "--pretty", "false"], APP);
    assert.equal(code, 0, out);
  });

  it("tsc --noEmit rejects each typed mistake with the error marked on its line, and nothing else", T, async () => {
    const file = "misuse/mistakes.ts";
    const lines = readFileSync(join(APP, file), "utf8").split("\n");
    const want = new Map();
    lines.forEach((line, i) => {
      const m = line.match(/\/\/ error (TS\d+)$/);
      if (m) want.set(i + 1, m[1]);
    });
    assert.ok(want.size >= 10, `only ${want.size} marked mistakes`);
    const { code, out } = await run(bin("tsc"), ["--noEmit", "-p", "tsconfig.misuse.json", "--pretty", "false"], APP);
    assert.notEqual(code, 0, "the mistakes type-checked");
    const got = new Map();
    for (const m of out.matchAll(/^(\S+)\((\d+),\d+\): error (TS\d+)/gm)) {
      assert.equal(m[1], file, `an error outside ${file}:\n${out}`);
      got.set(Number(m[2]), [...(got.get(Number(m[2])) || []), m[3]]);
    }
    for (const [line, codeWanted] of want) {
      assert.deepEqual(got.get(line), [codeWanted], `line ${line} (${lines[line - 1].trim()}):\n${out}`);
    }
    for (const line of got.keys()) assert.ok(want.has(line), `unexpected error on line ${line}:\n${out}`);
  });

  it("the READMEs' TypeScript examples type-check", T, async () => {
    const dir = join(APP, ".readme-check"); // inside typed-app: resolves its node_modules
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    try {
      const stubs = "declare const showLogin: (...a: unknown[]) => void, showRetry: typeof showLogin, " +
        "addLine: typeof showLogin, showUser: typeof showLogin;\n";
      const files = [];
      for (const readme of ["README.md", "client/README.md"]) {
        const text = readFileSync(resolve(ROOT, readme), "utf8");
        for (const [, code] of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
          if (!code.includes('from "socketio-sessions-client"')) continue;
          files.push(`example${files.length}.ts`);
          writeFileSync(join(dir, files.at(-1)), `${stubs}${code}export {};\n`);
        }
      }
      assert.ok(files.length >= 2, `${files.length} examples found`);
      writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ extends: "../tsconfig.json", files, include: [] }));
      const { code, out } = await run(bin("tsc"), ["--noEmit", "-p", dir, "--pretty", "false"], APP);
      assert.equal(code, 0, out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("vite build bundles it", T, async () => {
    const { code, out } = await run(bin("vite"), ["build", "--outDir", dist, "--emptyOutDir"], APP);
    assert.equal(code, 0, out);
    const assets = readdirSync(join(dist, "assets")).filter((f) => f.endsWith(".js"));
    assert.equal(assets.length, 1, `bundles: ${assets}`);
    const bundle = readFileSync(join(dist, "assets", assets[0]), "utf8");
    assert.match(bundle, /session_rotated/, "the helper is not in the bundle");
    built = true;
  });

  describe("in headless Chromium, through vite preview's proxy to the demo", { skip: !REQUIRE_ALL && why ? why : false }, () => {
    let demo;
    let preview;
    let origin;
    before(async () => {
      if (why) throw new Error(`browser tests required (SOCKETIO_SESSIONS_REQUIRE_ALL=1): ${why}`);
      if (!built) throw new Error("the page was not built (see the tests above)");
      const port = await freePort();
      origin = `http://127.0.0.1:${port}`;
      demo = await startDemo({ DEMO_ALLOWED_ORIGINS: origin });
      preview = spawn(
        bin("vite"),
        ["preview", "--outDir", dist, "--host", "127.0.0.1", "--port", String(port), "--strictPort"],
        { cwd: APP, env: { ...process.env, DEMO_URL: demo.url }, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      preview.stdout.on("data", (d) => (out += d));
      preview.stderr.on("data", (d) => (out += d));
      await waitFor(
        async () => (await fetch(origin).catch(() => null))?.status === 200,
        30000,
        () => `vite preview on ${origin}:\n${out}`,
      );
    });
    after(async () => {
      if (preview && preview.exitCode === null) {
        const exited = new Promise((res) => preview.once("exit", res));
        preview.kill("SIGTERM");
        await exited;
      }
      await demo?.stop();
    });

    /** A fresh browser profile (tabs share its cookies); closed after `fn` whatever happens. */
    const withBrowser = (fn) => async () => {
      const dir = mkdtempSync(join(tmpdir(), "sios-chromium-"));
      const context = await chromium.launchPersistentContext(dir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
      });
      const errors = [];
      const tab = async () => {
        const page = await context.newPage();
        page.on("pageerror", (e) => errors.push(e.message));
        page.on("console", (m) => {
          // 401: /api/session while logged out; there is no favicon.
          const expected = /status of 401/.test(m.text()) || /favicon\.ico$/.test(m.location().url);
          if (m.type() === "error" && !expected) errors.push(`${m.text()} (${m.location().url})`);
        });
        await page.goto(origin);
        return page;
      };
      try {
        await fn(tab);
        assert.deepEqual(errors, [], "errors in the page");
      } finally {
        await context.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      }
    };
    const expectText = (page, sel, want) =>
      page
        .waitForFunction(([s, w]) => document.querySelector(s)?.textContent === w, [sel, want], { timeout: 15000 })
        .catch(async (e) => {
          const have = await page.locator(sel).textContent();
          throw new Error(`${sel}: wanted ${JSON.stringify(want)}, have ${JSON.stringify(have)} (${e.message.split("\n")[0]})`);
        });
    const logLines = (page) => page.locator("#log li").allTextContents();
    async function logIn(page, name) {
      await page.bringToFront();
      await page.fill("#name", name);
      await page.click("#login button");
      await expectText(page, "#user", name);
      await expectText(page, "#state", "connected");
    }

    it("log in, then the counter over emitWithAck", T, withBrowser(async (tab) => {
      const page = await tab();
      await expectText(page, "#state", "logged out");
      await logIn(page, "tina");
      for (const n of ["1", "2", "3"]) {
        await page.click("#incr");
        await expectText(page, "#count", n);
      }
      // socket.io-client upgrades from polling to WebSocket, through Vite's proxy too.
      await page.waitForFunction(() => window.sessionSocket.socket.io.engine.transport.name === "websocket", null, { timeout: 15000 });
      const http = await page.evaluate(() => fetch("/api/session").then((r) => r.json()));
      assert.deepEqual([http.user, http.count], ["tina", 3]);
      assert.ok((await logLines(page)).includes("welcome tina"));
    }));

    it("a logout in another tab ends this tab's socket, with the reason shown", T, withBrowser(async (tab) => {
      const first = await tab();
      await logIn(first, "uma");
      const second = await tab(); // same profile: same cookie, connects at once
      await expectText(second, "#state", "connected");
      await expectText(second, "#user", "uma");

      await second.click("#logout");
      await expectText(second, "#state", "logged out");
      await first.bringToFront();
      await first.waitForSelector("#reason[data-reason=session_revoked]", { timeout: 15000 });
      assert.equal(await first.locator("#reason").textContent(), "You were logged out (in this tab or another one).");
      await expectText(first, "#state", "invalid");
      assert.deepEqual(
        await first.evaluate(() => [window.sessionSocket.connected, window.sessionSocket.socket.active]),
        [false, false],
        "the socket is still connected or reconnecting",
      );
      assert.deepEqual((await logLines(first)).filter((l) => /^s(invalid|connect)/.test(l)), [
        "sconnect",
        "sinvalid session_revoked",
      ]);
    }));

    it("a new login in another tab: this tab reconnects on the new cookie", T, withBrowser(async (tab) => {
      const first = await tab();
      await logIn(first, "vic");
      await first.click("#incr");
      await expectText(first, "#count", "1");
      const second = await tab();
      await expectText(second, "#user", "vic");
      await logIn(second, "vic-again"); // a new session id; the old one is gone

      await first.bringToFront();
      await expectText(first, "#user", "vic-again");
      await expectText(first, "#state", "connected");
      assert.deepEqual((await logLines(first)).filter((l) => /^(s(invalid|connect)|retrying)/.test(l)), [
        "sconnect",
        "retrying session_rotated",
        "sconnect",
      ]);
      await first.click("#incr");
      await expectText(first, "#count", "2"); // the session's data moved with the new id
    }));
  });
});
