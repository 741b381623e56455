// A small page on the packed npm package: log in over HTTP, then a typed session socket that
// follows the session (a logout in another tab ends it, with the reason shown; a new login
// anywhere moves it to the new session id).
import { io } from "socket.io-client";
import {
  STATES,
  createSessionSocket,
  type RetryingReason,
  type SessionSocket,
  type SinvalidReason,
} from "socketio-sessions-client";
import type { ClientToServerEvents, ServerToClientEvents } from "./events";

type DemoSocket = SessionSocket<ServerToClientEvents, ClientToServerEvents>;

declare global {
  interface Window {
    /** For the tests: the page's session socket, once logged in. */
    sessionSocket?: DemoSocket;
  }
}

const REASONS: Record<SinvalidReason | RetryingReason, string> = {
  session_invalid: "Please log in.",
  session_revoked: "You were logged out (in this tab or another one).",
  session_expired: "Your session expired.",
  session_unavailable: "The session store is unavailable; retrying…",
  server_shutdown: "The server is restarting; reconnecting…",
  session_rotated: "Your session changed (a new login); reconnecting…",
};

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
};
const nameInput = $("name") as HTMLInputElement;

function log(line: string): void {
  const li = document.createElement("li");
  li.textContent = line;
  $("log").append(li);
}

function showReason(reason: SinvalidReason | RetryingReason | null): void {
  $("reason").textContent = reason ? REASONS[reason] : "";
  $("reason").dataset.reason = reason ?? "";
}

async function whoami(sock: DemoSocket): Promise<void> {
  const res = await sock.emitWithAck("whoami");
  $("user").textContent = "error" in res ? `(${res.error})` : (res.user ?? "");
}

function connect(): DemoSocket {
  if (window.sessionSocket) return window.sessionSocket.reconnect();
  const sock: DemoSocket = createSessionSocket<ServerToClientEvents, ClientToServerEvents>(io);
  sock.on("state", (state) => {
    $("state").textContent = state;
    $("state").dataset.index = String(STATES.indexOf(state));
  });
  sock.on("sconnect", () => {
    log("sconnect");
    showReason(null);
    void whoami(sock);
  });
  sock.on("sinvalid", ({ reason }) => {
    log(`sinvalid ${reason}`);
    showReason(reason);
    $("user").textContent = "";
  });
  sock.on("retrying", ({ reason, attempt, delay }) => {
    log(`retrying ${reason}`);
    showReason(reason);
    $("state").textContent = `retrying (${attempt}) in ${delay} ms`;
  });
  sock.on("welcome", ({ user }) => log(`welcome ${user ?? "?"}`));
  sock.on("chat", ({ user, text }) => log(`${user ?? "?"}: ${text}`));
  window.sessionSocket = sock;
  return sock;
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: nameInput.value }),
  });
  if (res.ok) connect();
  else showReason("session_invalid");
});

$("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST" });
  window.sessionSocket?.close();
  window.sessionSocket = undefined;
  $("user").textContent = "";
  $("state").textContent = "logged out";
});

$("incr").addEventListener("click", async () => {
  const sock = window.sessionSocket;
  if (!sock) return;
  const n = await sock.emitWithAck("incr");
  $("count").textContent = typeof n === "number" ? String(n) : `(${n.error})`;
});

$("chat").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ($("chat-text") as HTMLInputElement).value;
  window.sessionSocket?.emit("chat", { text });
});

// Already logged in (a second tab): connect at once.
const me = await fetch("/api/session");
if (me.ok) connect();
else $("state").textContent = "logged out";
