//! The shared harness: real stores (memory, a SQLite temp file, a `redis-server` spawned on a
//! free port), the real demo app on `127.0.0.1:0`, real HTTP and a real Socket.IO client
//! (rust_socketio) over WebSocket and polling.
#![allow(dead_code)]

#[path = "../../examples/demo/app.rs"]
pub mod app;
#[path = "../../examples/demo/store.rs"]
pub mod store;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use socketio_sessions::store::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use tokio::sync::{mpsc, oneshot};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

pub use app::DemoOptions;
pub use store::DemoStore;

/// Set (as CI does) to turn "skip: redis-server not found" into a failure.
pub const REQUIRE_ENV: &str = "SOCKETIO_SESSIONS_REQUIRE_ALL";

pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1" || v == "true")
}

/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Redis

/// A `redis-server` of our own on a free port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one, or returns `None` (printing why) when the binary is missing and not required.
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(&["--appendonly", "no"]).await
    }

    /// Starts one that keeps every write on disk (AOF, fsync always), so that it can be killed
    /// and restarted without losing acknowledged writes.
    pub async fn start_durable() -> Option<RedisServer> {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await
    }

    async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                !required(),
                "redis-server not found, and {REQUIRE_ENV} requires it: install redis-server"
            );
            eprintln!("skip: redis-server not found (set {REQUIRE_ENV}=1 to make this a failure)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + SOON;
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------------------
// Stores

/// The backends every store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `socketio_sessions::store::MemoryStore` (conditional saves).
    Memory,
    /// `socketio_sessions::store::SqliteStore` on a temp file (conditional saves).
    Sqlite,
    /// `socketio_sessions::store::RedisStore` on a spawned server (conditional saves).
    Redis,
    /// `tower_sessions::MemoryStore`: any store without conditional saves.
    PlainMemory,
}

/// What a store wrapper does with each call.
const NORMAL: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// Wraps a store: counts every call and can be made to fail or hang (a stopped store).
#[derive(Debug, Clone)]
pub struct Probe<S> {
    inner: S,
    pub calls: Arc<AtomicUsize>,
    fault: Arc<AtomicU8>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            calls: Arc::default(),
            fault: Arc::default(),
        }
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn fail(&self) {
        self.fault.store(FAIL, Ordering::SeqCst);
    }
    pub fn hang(&self) {
        self.fault.store(HANG, Ordering::SeqCst);
    }
    pub fn heal(&self) {
        self.fault.store(NORMAL, Ordering::SeqCst);
    }
    async fn enter(&self) -> session_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.fault.load(Ordering::SeqCst) {
            FAIL => Err(session_store::Error::Backend("probe: store stopped".into())),
            HANG => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl<S: ConditionalStore + Clone> ConditionalStore for Probe<S> {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.enter().await?;
        self.inner.load_versioned(id).await
    }
    async fn reload_versioned(&self, id: &Id, v: &Version) -> session_store::Result<Reloaded> {
        self.enter().await?;
        self.inner.reload_versioned(id, v).await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        self.enter().await?;
        self.inner.save_if(r, v).await
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for Probe<S> {
    async fn create(&self, r: &mut Record) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.create(r).await
    }
    async fn save(&self, r: &Record) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.save(r).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.enter().await?;
        self.inner.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.delete(id).await
    }
}

/// A store of one backend, with whatever keeps it alive.
pub struct TestStore {
    pub backend: Backend,
    /// The store of the conditional backends.
    pub store: Probe<DemoStore>,
    /// The store of `Backend::PlainMemory`.
    pub plain: Probe<tower_sessions::MemoryStore>,
    pub redis: Option<RedisServer>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// Opens a fresh store; `None` when the backend is unavailable and not required.
    pub async fn open(backend: Backend) -> Option<TestStore> {
        let (store, redis, dir) = match backend {
            Backend::Memory | Backend::PlainMemory => {
                (DemoStore::open("memory").await.unwrap(), None, None)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
                (DemoStore::open(&url).await.unwrap(), None, Some(dir))
            }
            Backend::Redis => {
                let redis = RedisServer::start().await?;
                (
                    DemoStore::open(&redis.url()).await.unwrap(),
                    Some(redis),
                    None,
                )
            }
        };
        Some(TestStore {
            backend,
            store: Probe::new(store),
            plain: Probe::new(tower_sessions::MemoryStore::default()),
            redis,
            _dir: dir,
        })
    }

    /// The SQLite file of `Backend::Sqlite`.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("sessions.db"))
    }

    /// The stored record of a session, read behind the library's back.
    pub async fn record(&self, id: &Id) -> Option<Record> {
        match self.backend {
            Backend::PlainMemory => self.plain.inner.load(id).await.unwrap(),
            _ => self.store.inner.load(id).await.unwrap(),
        }
    }

    /// Another session of the same user (as a login on another device would make it, if the
    /// demo had passwords): a copy of this cookie's record under a new id. Returns its cookie.
    pub async fn same_user_elsewhere(&self, cookie: &str) -> String {
        let mut record = self.record(&cookie_id(cookie)).await.expect("a session");
        record.id = Id::default();
        match self.backend {
            Backend::PlainMemory => self.plain.inner.create(&mut record).await.unwrap(),
            _ => self.store.inner.create(&mut record).await.unwrap(),
        }
        let cookie = format!("id={}", record.id);
        secrets::cookie(&cookie);
        cookie
    }

    /// Deletes a session's record behind the library's back.
    pub async fn delete_behind(&self, id: &Id) {
        match self.backend {
            Backend::PlainMemory => self.plain.inner.delete(id).await.unwrap(),
            _ => self.store.inner.delete(id).await.unwrap(),
        }
    }

    /// How many store calls were made so far.
    pub fn calls(&self) -> usize {
        self.store.calls() + self.plain.calls()
    }

    /// Stops the store for real where it can: kills Redis, closes the SQLite pool; the memory
    /// store cannot stop, so its probe hangs every call.
    pub async fn stop(&mut self) {
        match (self.backend, self.redis.as_mut()) {
            (_, Some(redis)) => redis.kill(),
            (Backend::Sqlite, None) => self.store.inner.close().await,
            (Backend::PlainMemory, _) => self.plain.hang(),
            _ => self.store.hang(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// The demo app on a free port, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The demo's sessions (e.g. to shut them down as a deploy would).
    pub sessions: socketio_sessions::SocketSessions,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl TestServer {
    /// The demo over the test store (conditional or plain, as its backend is).
    pub async fn start(st: &TestStore, opts: impl FnOnce(&mut DemoOptions)) -> TestServer {
        let (backend, store, plain) = (st.backend, st.store.clone(), st.plain.clone());
        Self::start_with(
            move |o| async move {
                match backend {
                    Backend::PlainMemory => app::app_last_writer_wins(plain, o).await,
                    _ => app::app(store, o).await,
                }
            },
            opts,
        )
        .await
    }

    /// The demo built by `make` (e.g. over a store of the test's own).
    pub async fn start_with<F>(
        make: impl FnOnce(DemoOptions) -> F,
        opts: impl FnOnce(&mut DemoOptions),
    ) -> TestServer
    where
        F: std::future::Future<Output = Result<app::DemoApp, app::BoxError>>,
    {
        secrets::watch();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = DemoOptions::new(app::own_origins(addr));
        options.store_timeout = Duration::from_millis(500);
        opts(&mut options);
        let app::DemoApp { router, sessions } = make(options).await.expect("the demo app builds");
        let (tx, rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let on_stop = sessions.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                rx.await.ok();
                // As the demo does on SIGTERM: no session work outlives the server.
                on_stop.shutdown().await;
            })
            .await
            .unwrap();
            done_tx.send(()).ok();
        });
        TestServer {
            addr,
            sessions,
            shutdown: Some(tx),
            stopped: Some(done_rx),
        }
    }

    /// Stops the server as a deploy would (sessions shut down first) and waits until it is done.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(done) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(30), done)
                .await
                .ok();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Logs in over HTTP and returns the `Cookie` header value to send on sockets.
    pub async fn login(&self, name: &str) -> String {
        let res = http()
            .post(self.url("/login"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login failed");
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .expect("login sets the session cookie")
            .to_str()
            .unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        secrets::cookie(&cookie);
        cookie
    }

    /// Logs in again on an existing session (the server rotates its id); returns the new cookie.
    pub async fn relogin(&self, cookie: &str, name: &str) -> String {
        let res = http()
            .post(self.url("/login"))
            .header("cookie", cookie)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login failed");
        let set_cookie = res.headers().get("set-cookie").expect("a new cookie");
        let cookie: String = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        secrets::cookie(&cookie);
        cookie
    }

    /// `POST /logout?everywhere=true`: this session and every socket of its user.
    pub async fn logout_everywhere(&self, cookie: &str) {
        let res = http()
            .post(self.url("/logout?everywhere=true"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    /// `GET /api/session` with this cookie: status and body.
    pub async fn session(&self, cookie: &str) -> (u16, Value) {
        self.session_at(cookie).await
    }

    async fn session_at(&self, cookie: &str) -> (u16, Value) {
        let res = http()
            .get(self.url("/api/session"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The session counter as the HTTP side sees it.
    pub async fn count(&self, cookie: &str) -> u64 {
        let (status, body) = self.session(cookie).await;
        assert_eq!(status, 200, "no session: {body}");
        body["count"].as_u64().unwrap()
    }

    /// Polls the HTTP counter until it equals `want`, failing if it overshoots or times out.
    pub async fn wait_count(&self, cookie: &str, want: u64) {
        let deadline = Instant::now() + SOON;
        loop {
            let n = self.count(cookie).await;
            assert!(n <= want, "counter overshot: {n} > {want}");
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "counter stuck at {n}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `POST /api/visit`: an HTTP-side write (`visits` + 1); returns the new value.
    pub async fn visit(&self, cookie: &str) -> u64 {
        let res = http()
            .post(self.url("/api/visit"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "visit failed");
        res.json::<Value>().await.unwrap()["visits"]
            .as_u64()
            .unwrap()
    }

    pub async fn logout(&self, cookie: &str) {
        let res = http()
            .post(self.url("/logout"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if !std::thread::panicking() {
            secrets::check();
        }
    }
}

/// Every test of every suite checks that no session id or cookie value it saw reached the
/// server's logs (captured at DEBUG for every server-side crate) or a client's frames.
pub mod secrets {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    #[derive(Default)]
    struct Watch {
        logs: Vec<u8>,
        frames: Vec<String>,
        secrets: Vec<String>,
        checked_logs: usize,
        checked_frames: usize,
        checked_secrets: usize,
    }

    fn state() -> &'static Mutex<Watch> {
        static WATCH: OnceLock<Mutex<Watch>> = OnceLock::new();
        WATCH.get_or_init(Mutex::default)
    }

    struct Capture;

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
            watch.logs.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the capture (once per test binary); `RUST_LOG` still prints to the test output.
    pub fn watch() {
        // The test's own clients log their requests, cookies included: not under test.
        // socketioxide logs every raw CONNECT packet at DEBUG, `auth` payload included, so an
        // `auth: {sid}` deployment must keep `socketioxide::client` at INFO (README, security).
        let captured = "debug,rust_socketio=off,tungstenite::handshake::client=off,reqwest=off,\
                        hyper_util::client=off,socketioxide::client=info";
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Capture)
            .with_filter(EnvFilter::new(captured));
        let shown = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(EnvFilter::from_default_env());
        tracing_subscriber::registry()
            .with(capture)
            .with(shown)
            .try_init()
            .ok();
    }

    /// A session cookie (`name=value`): its value, and for tower-sessions cookies the bare id
    /// (the last 22 characters of a signed value).
    pub fn cookie(cookie: &str) {
        let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
        let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
        watch.secrets.push(value.to_owned());
        if value.len() >= 22 && !value.contains('%') {
            watch.secrets.push(value[value.len() - 22..].to_owned());
        }
    }

    /// Any other secret text (an express-session sid).
    pub fn text(secret: &str) {
        let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
        watch.secrets.push(secret.to_owned());
    }

    /// Something a client received.
    pub fn frame(text: String) {
        let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
        watch.frames.push(text);
    }

    /// Fails if a recorded secret appears in the captured logs or frames: new secrets are
    /// looked for everywhere, old ones in what was captured since the last check.
    pub fn check() {
        let found = find();
        if let Some(found) = found {
            panic!("{found}");
        }
    }

    fn find() -> Option<String> {
        let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
        let all_logs = String::from_utf8_lossy(&watch.logs).into_owned();
        let new_logs = String::from_utf8_lossy(&watch.logs[watch.checked_logs..]).into_owned();
        let all_frames = watch.frames.join("\n");
        let new_frames = watch.frames[watch.checked_frames..].join("\n");
        for (i, secret) in watch.secrets.iter().enumerate() {
            let (logs, frames) = if i >= watch.checked_secrets {
                (&all_logs, &all_frames)
            } else {
                (&new_logs, &new_frames)
            };
            if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
                panic!("a session secret appears in the server's logs: {line}");
            }
            assert!(
                !frames.contains(secret.as_str()),
                "a session secret reached a client"
            );
        }
        watch.checked_logs = watch.logs.len();
        watch.checked_frames = watch.frames.len();
        watch.checked_secrets = watch.secrets.len();
        // Bound what is kept across a long suite.
        if watch.logs.len() > 64 << 20 {
            watch.logs.clear();
            watch.checked_logs = 0;
        }
        None
    }
}

/// The session id inside a plain `id=...` cookie.
pub fn cookie_id(cookie: &str) -> Id {
    use std::str::FromStr;
    Id::from_str(cookie.strip_prefix("id=").expect("a plain `id` cookie")).unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Socket.IO client

pub const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Websocket,
    Polling,
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    /// `connect_error` with this message.
    Refused(String),
}

/// Options of one client connection.
#[derive(Debug, Default, Clone)]
pub struct Dial {
    pub cookie: Option<String>,
    pub origin: Option<String>,
    pub auth: Option<Value>,
    pub query: Option<String>,
}

/// A real Socket.IO client and what it has received.
pub struct TestSocket {
    pub client: Client,
    pub outcome: Outcome,
    pub events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl TestSocket {
    /// Connects and waits for the connect ack or the `connect_error`.
    pub async fn connect(server: &TestServer, transport: Transport, dial: Dial) -> TestSocket {
        Self::connect_raw(server, transport, dial)
            .await
            .expect("engine.io handshake")
    }

    /// Like [`connect`](Self::connect), but a failed Engine.IO handshake is returned.
    pub async fn connect_raw(
        server: &TestServer,
        transport: Transport,
        dial: Dial,
    ) -> Result<TestSocket, rust_socketio::Error> {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outcome>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel::<(String, Value)>();
        let url = match &dial.query {
            Some(q) => format!("http://{}/?{q}", server.addr),
            None => format!("http://{}/", server.addr),
        };
        let mut builder = ClientBuilder::new(url)
            .transport_type(match transport {
                Transport::Websocket => TransportType::Websocket,
                Transport::Polling => TransportType::Polling,
            })
            .reconnect(false);
        if let Some(cookie) = &dial.cookie {
            builder = builder.opening_header("cookie", cookie.as_str());
        }
        if let Some(origin) = &dial.origin {
            builder = builder.opening_header("origin", origin.as_str());
        }
        if let Some(auth) = dial.auth.clone() {
            builder = builder.auth(auth);
        }
        let close_tx = ev_tx.clone();
        let open_tx = out_tx.clone();
        let err_tx = out_tx;
        let builder = builder
            .on("open", move |_, _| {
                open_tx.send(Outcome::Connected).ok();
                async {}.boxed()
            })
            .on("error", move |payload, _| {
                err_tx
                    .send(Outcome::Refused(connect_error_message(&payload)))
                    .ok();
                async {}.boxed()
            })
            .on("close", move |_, _| {
                close_tx.send(("close".to_owned(), Value::Null)).ok();
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                let value = match payload {
                    Payload::Text(mut v) if v.len() == 1 => v.remove(0),
                    Payload::Text(v) => Value::Array(v),
                    _ => Value::Null,
                };
                secrets::frame(value.to_string());
                ev_tx.send((String::from(event), value)).ok();
                async {}.boxed()
            });
        let client = builder.connect().await?;
        let outcome = tokio::time::timeout(SOON, out_rx.recv())
            .await
            .expect("no connect ack nor connect_error")
            .expect("client gone");
        Ok(TestSocket {
            client,
            outcome,
            events: ev_rx,
        })
    }

    /// Emits `event` and waits for the ack's first argument.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel::<Value>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, SOON, move |payload, _| {
                // rust_socketio hands an ack's arguments over as one JSON array.
                let value = match payload {
                    Payload::Text(mut v) if !v.is_empty() => match v.remove(0) {
                        Value::Array(mut args) if args.len() == 1 => args.remove(0),
                        other => other,
                    },
                    _ => Value::Null,
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    secrets::frame(value.to_string());
                    tx.send(value).ok();
                }
                async {}.boxed()
            })
            .await
            .unwrap();
        tokio::time::timeout(SOON, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack to `{event}` within {SOON:?}"))
            .unwrap_or_else(|_| panic!("the ack to `{event}` was dropped (connection closed?)"))
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.unwrap();
    }

    /// Asserts that no event named `name` arrives within `window`.
    pub async fn no_event(&mut self, name: &str, window: Duration) {
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Err(_) | Ok(None) => return,
                Ok(Some((event, value))) => {
                    assert_ne!(event, name, "unexpected `{name}`: {value}");
                }
            }
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn next_event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, value) = tokio::time::timeout(left, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event"))
                .expect("client gone");
            if event == name {
                return value;
            }
        }
    }

    pub async fn close(self) {
        self.client.disconnect().await.ok();
    }
}

/// The `message` of a `connect_error` as rust_socketio reports it
/// (`Received an ConnectError frame: {"message":"..."}`), or the whole text.
fn connect_error_message(payload: &Payload) -> String {
    let text = match payload {
        Payload::Text(v) => v
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    };
    text.find('{')
        .and_then(|i| serde_json::from_str::<Value>(&text[i..]).ok())
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(text)
}

/// Connects with a cookie over `transport`, whatever the outcome.
pub async fn dial(server: &TestServer, transport: Transport, cookie: &str) -> TestSocket {
    TestSocket::connect(
        server,
        transport,
        Dial {
            cookie: Some(cookie.to_owned()),
            ..Dial::default()
        },
    )
    .await
}

/// Connects with a cookie over `transport` and asserts that the connection is accepted.
pub async fn connected(server: &TestServer, transport: Transport, cookie: &str) -> TestSocket {
    let socket = dial(server, transport, cookie).await;
    assert_eq!(socket.outcome, Outcome::Connected, "{transport:?}");
    socket
}

/// Raw Engine.IO handshake over HTTP polling, for checks that need the status code.
pub async fn polling_handshake(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut req = http().get(server.url("/socket.io/?EIO=4&transport=polling"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Raw WebSocket upgrade request, for checks that need the status code.
pub async fn websocket_handshake(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut req = http()
        .get(server.url("/socket.io/?EIO=4&transport=websocket"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}
