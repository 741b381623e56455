// The demo page: HTTP login, then a Socket.IO connection that carries the session cookie.
import { io } from "/vendor/socket.io.esm.min.js";

const $ = (id) => document.getElementById(id);
let socket = null;

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
  $("login").classList.toggle("hidden", Boolean(user));
  $("app").classList.toggle("hidden", !user);
  if (count !== undefined) $("count").textContent = count;
}

const REASONS = {
  session_invalid: "Your session is invalid or has expired. Please log in again.",
  session_unavailable: "The session store is unavailable; retrying…",
};

function connect() {
  if (socket) socket.disconnect();
  setState("connecting", "connecting");
  socket = io({ withCredentials: true, reconnection: true });
  socket.on("connect", () => {
    setState("connected", "connected");
    banner("");
    socket.emit("whoami", (res) => showLoggedIn(res && res.user));
  });
  socket.on("connect_error", (err) => {
    if (err.message === "session_unavailable") {
      setState("store unavailable", "connecting");
      banner(REASONS.session_unavailable);
      setTimeout(() => socket && !socket.connected && socket.connect(), 1000);
      return;
    }
    if (err.message === "session_invalid") {
      setState("invalid session", "invalid");
      banner(REASONS.session_invalid);
      showLoggedIn(null);
      socket.disconnect();
      return;
    }
    setState("disconnected", "disconnected");
  });
  socket.on("disconnect", (reason) => {
    if ($("state").className !== "invalid") setState(`disconnected (${reason})`, "disconnected");
  });
  socket.on("presence", (p) => {
    const li = document.createElement("li");
    const em = document.createElement("em");
    em.textContent = `${p.user ?? "someone"} ${p.online ? "joined" : "left"}`;
    li.append(em);
    $("chat-log").append(li);
  });
  socket.on("chat", (msg) => {
    const li = document.createElement("li");
    const who = document.createElement("b");
    who.textContent = `${msg.user ?? "?"}: `;
    li.append(who, document.createTextNode(msg.text));
    $("chat-log").append(li);
    $("chat-log").scrollTop = $("chat-log").scrollHeight;
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
  await refresh();
  connect();
});

$("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST" });
  if (socket) socket.disconnect();
  setState("disconnected", "disconnected");
  showLoggedIn(null);
});

$("incr").addEventListener("click", () => {
  if (!socket || !socket.connected) return;
  socket.timeout(5000).emit("incr", (err, res) => {
    if (err) return banner("The server did not answer in time.");
    if (!onAckError(res)) $("count").textContent = res;
  });
});

$("chat").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-text").value.trim();
  if (!text || !socket || !socket.connected) return;
  socket.emit("chat", { text });
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

if (await refresh()) connect();
