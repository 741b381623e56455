// Mistakes the declarations must catch: `tsc --noEmit -p tsconfig.misuse.json` has to fail with
// exactly the error marked on each line (`// error TSnnnn`) and no other (e2e/typed-app.test.mjs).
// Each line is otherwise right, as src/main.ts shows.
import { io } from "socket.io-client";
import { createSessionSocket } from "socketio-sessions-client";
import type { ClientToServerEvents, ServerToClientEvents } from "../src/events";

const s = createSessionSocket<ServerToClientEvents, ClientToServerEvents>(io);

// Event names.
s.emit("incrr", () => {}); // error TS2345
s.on("welcom", () => {}); // error TS2345
await s.emitWithAck("whoamii"); // error TS2345

// Payloads.
s.emit("chat", { txt: "hi" }); // error TS2561
s.emit("chat", "hi"); // error TS2345
s.on("chat", (msg: { text: number }) => msg); // error TS2345
s.on("presence", ({ online }) => online.toUpperCase()); // error TS2339
const count: string = await s.emitWithAck("incr"); // error TS2322

// The session socket's own events.
s.on("sinvalid", ({ reason }) => reason === "session_rotated"); // error TS2367
s.on("retrying", ({ reason }) => reason === "logged_out"); // error TS2367
s.on("retrying", ({ delay }) => delay.toUpperCase()); // error TS2339
s.on("state", (state) => state === "online"); // error TS2367
s.on("sconnect", (user: string) => user); // error TS2345

// Options.
createSessionSocket(io, undefined, { backoff: { minimum: 100 } }); // error TS2353
createSessionSocket(io, undefined, { rotationGrace: "3s" }); // error TS2322
createSessionSocket(io, undefined, { sid: 42 }); // error TS2322

export { count };
