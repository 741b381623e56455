// The demo page: HTTP login, then a Socket.IO connection that follows the session through the
// client helper (/socketio-sessions.js, the crate's client/socketio-sessions.js).
import { io } from "/vendor/socket.io.esm.min.js";
import { createSessionSocket } from "/socketio-sessions.js";

const $ = (id) => document.getElementById(id);
let sock = null; // the helper's session socket, once logged in

const REASONS = {
  session_invalid: "Your session is invalid or has expired. Please log in again.",
  session_revoked: "You were logged out (in this tab or another one). Log in again to continue.",
  session_expired: "Your session expired. Please log in again.",
  session_unavailable: "The session store is unavailable; retrying…",
  session_rotated: "Your session changed (a new login); reconnecting…",
  server_shutdown: "The server is restarting; reconnecting…",
};
const STATES = {
  connecting: ["connecting", "connecting"],
  connected: ["connected", "connected"],
  retrying: ["retrying", "connecting"],
  invalid: ["session ended", "invalid"],
  disconnected: ["disconnected", "disconnected"],
  closed: ["logged out", "disconnected"],
};

function setState(text, cls) {
  $("state").textContent = text;
  $("state").className = cls;
}

function banner(text) {
  $("banner").textContent = text || "";
  $("banner").classList.toggle("show", Boolean(text));
}

function showLoggedIn(user, count) {
  $("who").textContent = user ? `signed in as ${user}` : "";
  $("login-button").textContent = user ? "Log in again" : "Log in";
  $("app").classList.toggle("hidden", !user);
  if (count !== undefined) $("count").textContent = count;
}

function logLine(...nodes) {
  const li = document.createElement("li");
  li.append(...nodes);
  $("chat-log").append(li);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

// Connects, or after a new login reconnects: the new handshake carries the new cookie.
function connect() {
  if (sock) return sock.reconnect();
  sock = createSessionSocket(io);
  sock.on("state", (s) => setState(...STATES[s]));
  sock.on("sconnect", () => {
    banner("");
    sock.emit("whoami", (res) => res && !res.error && showLoggedIn(res.user));
    refresh();
  });
  sock.on("sinvalid", ({ reason }) => {
    banner(REASONS[reason] || reason);
    showLoggedIn(null);
  });
  sock.on("retrying", ({ reason, delay }) => {
    banner(REASONS[reason] || reason);
    setState(`retrying in ${(delay / 1000).toFixed(1)} s`, "connecting");
  });
  sock.on("presence", (p) => {
    const em = document.createElement("em");
    em.textContent = `${p.user ?? "someone"} ${p.online ? "joined" : "left"}`;
    logLine(em);
  });
  sock.on("chat", (msg) => {
    const who = document.createElement("b");
    who.textContent = `${msg.user ?? "?"}: `;
    logLine(who, document.createTextNode(msg.text));
  });
}

function onAckError(res) {
  if (res && res.error) {
    banner(REASONS[res.error] || res.error);
    return true;
  }
  return false;
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const res = await fetch("/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: $("name").value }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) return banner(body.error || `login failed (${res.status})`);
  banner("");
  $("name").value = "";
  await refresh();
  connect();
});

$("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST" });
  if (sock) sock.close();
  sock = null;
  banner("");
  showLoggedIn(null);
});

$("incr").addEventListener("click", () => {
  if (!sock || !sock.connected) return;
  sock.socket.timeout(5000).emit("incr", (err, res) => {
    if (err) return banner("The server did not answer in time.");
    if (!onAckError(res)) $("count").textContent = res;
  });
});

$("chat").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-text").value.trim();
  if (!text || !sock || !sock.connected) return;
  sock.emit("chat", { text });
  $("chat-text").value = "";
});

async function refresh() {
  const res = await fetch("/api/session");
  if (res.status !== 200) {
    showLoggedIn(null);
    return false;
  }
  const body = await res.json();
  showLoggedIn(body.user, body.count);
  return true;
}

// For the console (and the browser tests): `demo.sock` is the helper's socket.
window.demo = { get sock() { return sock; } };

if (await refresh()) connect();
