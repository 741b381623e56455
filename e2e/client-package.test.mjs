// The npm package in client/: its version is the crate's, its JSDoc type-checks against its
// declarations (`tsc --checkJs`, client/tsconfig.json), and that check does catch the two
// drifting apart (each change below, made to a copy, must fail it).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT } from "./fixture.mjs";

const CLIENT = resolve(ROOT, "client");
const TSC = join(CLIENT, "node_modules/.bin/tsc");
const JS = "socketio-sessions.js";
const DTS = "socketio-sessions.d.ts";
const T = { timeout: 60000 };

/** `tsc -p dir`: resolves with {code, out}. */
function tsc(dir) {
  return new Promise((res, rej) => {
    const child = spawn(TSC, ["-p", dir, "--pretty", "false"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", rej);
    child.on("exit", (code) => res({ code, out }));
  });
}

/** Each: [what drifted, file, text in that file, what replaces it, (more pairs)]. */
const DRIFTS = [
  ["a state declared but not in STATES", DTS, `  "closed",\n];`, `  "closed",\n  "paused",\n];`],
  ["STATES in another order than declared", JS, `"disconnected", "closed"]`, `"closed", "disconnected"]`],
  ["a server sinvalid reason the code does not handle", DTS, `  | "server_shutdown";`, `  | "server_shutdown"\n  | "session_moved";`],
  ["a retrying reason the code sends but the union lacks", DTS,
    `export type RetryingReason = "session_unavailable" | "server_shutdown" | "session_rotated";`,
    `export type RetryingReason = "session_unavailable" | "session_rotated";`],
  ["a sinvalid event with a reason outside its union", JS, `fire("sinvalid", { reason });`, `fire("sinvalid", { reason: "session_rotated" });`],
  ["a retrying payload field renamed", DTS, `  delay: number;`, `  delayMs: number;`],
  ["an option renamed", DTS, `  rotationGrace?: number;`, `  rotationGraceMs?: number;`],
  ["a backoff option renamed", DTS, `  jitter?: number;`, `  spread?: number;`],
  ["a method declared but not implemented", DTS, `  close(): void;`, `  close(): void;\n  pause(): void;`],
  ["a parameter required that the declaration makes optional", JS,
    ` * @param {SessionSocketOptions} [options]`, ` * @param {SessionSocketOptions} options`,
    `export function createSessionSocket(io, url, options = {}) {`,
    `export function createSessionSocket(io, url, options) {`],
];

describe("client/: the npm package", () => {
  before(() => {
    if (!existsSync(TSC)) throw new Error("client/node_modules is missing: run e2e/run.sh (npm ci in client/)");
  });

  it("has the crate's version (Cargo.toml), in package.json and package-lock.json", () => {
    const cargo = readFileSync(resolve(ROOT, "Cargo.toml"), "utf8");
    const crate = cargo.match(/^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m)?.[1];
    assert.ok(crate, "no [package] version in Cargo.toml");
    const pkg = JSON.parse(readFileSync(join(CLIENT, "package.json"), "utf8"));
    const lock = JSON.parse(readFileSync(join(CLIENT, "package-lock.json"), "utf8"));
    assert.equal(pkg.version, crate, "client/package.json's version differs from the crate's");
    assert.equal(lock.version, crate, "client/package-lock.json is stale (npm install in client/)");
    assert.equal(lock.packages[""].version, crate, "client/package-lock.json is stale (npm install in client/)");
  });

  it("tsc --checkJs: the module agrees with its declarations", T, async () => {
    const { code, out } = await tsc(CLIENT);
    assert.equal(code, 0, out);
  });

  describe("the check catches drift", () => {
    const dir = mkdtempSync(join(tmpdir(), "sios-drift-"));
    const sources = {};
    before(() => {
      for (const f of [JS, DTS]) sources[f] = readFileSync(join(CLIENT, f), "utf8");
      copyFileSync(join(CLIENT, "tsconfig.json"), join(dir, "tsconfig.json"));
      symlinkSync(join(CLIENT, "node_modules"), join(dir, "node_modules"));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));
    const write = (changed = {}) => {
      for (const f of [JS, DTS]) writeFileSync(join(dir, f), changed[f] ?? sources[f]);
    };

    it("an unchanged copy passes", T, async () => {
      write();
      const { code, out } = await tsc(dir);
      assert.equal(code, 0, out);
    });

    for (const [what, file, ...edits] of DRIFTS) {
      it(what, T, async () => {
        let text = sources[file];
        for (let i = 0; i < edits.length; i += 2) {
          assert.ok(text.includes(edits[i]), `${file} no longer contains ${JSON.stringify(edits[i])}: update this test`);
          text = text.replace(edits[i], edits[i + 1]);
        }
        write({ [file]: text });
        const { code, out } = await tsc(dir);
        assert.notEqual(code, 0, "tsc passed");
        assert.match(out, /error TS\d+/, out);
      });
    }
  });
});
