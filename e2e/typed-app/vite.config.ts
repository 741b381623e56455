// The page is served by Vite (`vite` in development, `vite preview` for the built page) and
// talks to the Rust server through Vite's proxy, so that page, HTTP API and Socket.IO share one
// origin and the session cookie. The server must allow this origin (`with_allowed_origins`;
// the demo: DEMO_ALLOWED_ORIGINS).
import { defineConfig } from "vite";

const target = process.env.DEMO_URL ?? "http://127.0.0.1:3000";
const proxy = {
  "/socket.io": { target, ws: true },
  "/login": target,
  "/logout": target,
  "/api": target,
};

export default defineConfig({
  build: { target: "es2022" },
  server: { proxy },
  preview: { proxy },
});
