// A real Express app on express-session + connect-redis, for the interop tests.
// Env: REDIS_URL, SECRETS (comma-separated, newest first), MAX_AGE_MS (optional cookie maxAge).
// Prints `express: listening on http://127.0.0.1:PORT` once ready.
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const client = createClient({ url: process.env.REDIS_URL });
client.on("error", (e) => console.error("redis:", e.message));
await client.connect();

const app = express();
app.use(express.json());
app.use(
  session({
    store: new RedisStore({ client }),
    secret: process.env.SECRETS.split(","),
    resave: false,
    saveUninitialized: false,
    cookie: process.env.MAX_AGE_MS ? { maxAge: Number(process.env.MAX_AGE_MS) } : {},
  }),
);

// Logs in: `user`, plus any extra fields to store as they are.
app.post("/login", (req, res) => {
  req.session.user = req.body.name;
  for (const [k, v] of Object.entries(req.body.extra ?? {})) req.session[k] = v;
  req.session.save((err) => (err ? res.status(500).end() : res.json({ user: req.body.name })));
});

app.get("/session", (req, res) => {
  if (!req.session.user) return res.status(401).json({ error: "no session" });
  res.json({ user: req.session.user, count: req.session.count ?? 0 });
});

app.post("/destroy", (req, res) => {
  req.session.destroy((err) => res.status(err ? 500 : 204).end());
});

const server = app.listen(0, "127.0.0.1", () => {
  console.log(`express: listening on http://127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => {
  server.close();
  client.quit().finally(() => process.exit(0));
});
