//! The Rust server under test: plain socketioxide (the baseline B0, no sessions) or socketioxide
//! with socketio-sessions in either mode over memory, SQLite or Redis. Every variant, and the
//! Node peer (`bench/node-peer/server.mjs`), serves the same contract:
//!
//! - `POST /login?name=N`: starts a session `{user: N, count: 0}` and answers
//!   `{"user", "bytes"}` (`bytes`: the session data as JSON) with the session cookie. B0 answers
//!   the same with a cookie it ignores.
//! - Socket.IO `echo`: reads the session's `user` (per-connection: in memory; per-message: a
//!   store load), acks the payload; `{"error": ...}` if the read fails. B0: acks the payload.
//! - Socket.IO `incr`: `count + 1` in the session (per-message: load + conditional save before
//!   the ack; per-connection: in memory, saved at disconnect), acks the new count. B0: a
//!   per-socket counter.
//!
//! ```text
//! bench-server --kind b0|sessions --mode per-connection|per-message
//!              --store memory|sqlite://PATH|redis://HOST:PORT
//!              [--addr 127.0.0.1:0] [--workers 1] [--max-buffer-size 1024] [--redis-pool 4]
//!              [--sqlite-pool 1]
//! ```
//!
//! Prints `bench-server: listening on ADDR` when ready; exits 0 on SIGINT or SIGTERM (so that
//! `valgrind --tool=callgrind` writes its profile).

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use socketio_sessions::store::fred::prelude::{ClientLike, Config, Pool, ReconnectPolicy};
use socketio_sessions::store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use socketio_sessions::store::{MemoryStore, RedisStore, SqliteStore};
use socketio_sessions::{HttpScopeLayer, Mode, SessionError, SocketSession, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, Extension, SocketRef};
use socketioxide::handler::ConnectHandler;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Events handled (every variant counts the same way), printed at exit: the denominator of
/// instructions per event in a profile.
static EVENTS: AtomicU64 = AtomicU64::new(0);

fn counted() {
    EVENTS.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone)]
struct Args {
    sessions: bool,
    mode: Mode,
    store: String,
    addr: String,
    workers: usize,
    max_buffer_size: usize,
    redis_pool: usize,
    sqlite_pool: u32,
}

fn usage(msg: &str) -> ! {
    eprintln!("bench-server: {msg}");
    eprintln!(
        "usage: bench-server --kind b0|sessions --mode per-connection|per-message \
         --store memory|sqlite://PATH|redis://HOST:PORT [--addr 127.0.0.1:0] [--workers 1] \
         [--max-buffer-size 1024] [--redis-pool 4] [--sqlite-pool 1]"
    );
    std::process::exit(2);
}

/// A count flag's value: a number above zero, or the usage message.
fn positive<T: FromStr + PartialOrd + Default>(flag: &str, value: String) -> T {
    value
        .parse()
        .ok()
        .filter(|n| *n > T::default())
        .unwrap_or_else(|| usage(&format!("{flag} must be a positive number")))
}

fn parse_args() -> Args {
    let mut args = Args {
        sessions: true,
        mode: Mode::PerMessage,
        store: "memory".into(),
        addr: "127.0.0.1:0".into(),
        workers: 1,
        max_buffer_size: 1024,
        redis_pool: 4,
        sqlite_pool: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--kind" => {
                args.sessions = match value().as_str() {
                    "b0" => false,
                    "sessions" => true,
                    other => usage(&format!("unknown --kind {other}")),
                }
            }
            "--mode" => {
                args.mode = match value().as_str() {
                    "per-connection" => Mode::PerConnection,
                    "per-message" => Mode::PerMessage,
                    other => usage(&format!("unknown --mode {other}")),
                }
            }
            "--store" => args.store = value(),
            "--addr" => args.addr = value(),
            "--workers" => args.workers = positive(&flag, value()),
            "--max-buffer-size" => {
                args.max_buffer_size = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--max-buffer-size must be a number"))
            }
            "--redis-pool" => args.redis_pool = positive(&flag, value()),
            "--sqlite-pool" => args.sqlite_pool = positive(&flag, value()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("cannot start the runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("bench-server: {e}");
        std::process::exit(1);
    }
    println!(
        "bench-server: handled {} events",
        EVENTS.load(Ordering::Relaxed)
    );
    // Do not wait for open sockets: a benchmark server just stops.
    rt.shutdown_timeout(Duration::from_millis(100));
}

async fn serve(args: Args) -> Result<(), BoxError> {
    // A listen backlog of 4096 (net.core.somaxconn's default) rather than tokio's 128, so that
    // hundreds of concurrent dials are not dropped and retried a second later.
    let addr: std::net::SocketAddr = args.addr.parse()?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(4096)?;
    let local = listener.local_addr()?;
    let origin = format!("http://{local}");
    let app = if args.sessions {
        sessions_app(&args, &origin).await?
    } else {
        b0_app(&args)
    };
    // TCP_NODELAY on every accepted socket, as Node's http server sets by default.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("bench-server: listening on {local}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

// ---- B0: plain socketioxide ----

#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicU64>);

fn b0_app(args: &Args) -> Router {
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(args.max_buffer_size)
        .build_layer();
    // Handlers are registered in a connect middleware, which runs before the connect ack, so
    // that an event sent right after it finds them (as `with_setup` does for the sessions).
    let register = async |socket: SocketRef| {
        socket.extensions.insert(Counter::default());
        socket.on("echo", b0_echo);
        socket.on("incr", b0_incr);
        Ok::<(), Infallible>(())
    };
    io.ns("/", (async |_: SocketRef| {}).with(register));
    Router::new().route("/login", post(b0_login)).layer(layer)
}

async fn b0_echo(Data(v): Data<Value>, ack: AckSender) {
    counted();
    ack.send(&v).ok();
}

async fn b0_incr(Extension(counter): Extension<Counter>, ack: AckSender) {
    counted();
    let n = counter.0.fetch_add(1, Ordering::Relaxed) + 1;
    ack.send(&n).ok();
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    name: String,
}

static B0_IDS: AtomicU64 = AtomicU64::new(0);

async fn b0_login(Query(q): Query<LoginQuery>) -> Response {
    let n = B0_IDS.fetch_add(1, Ordering::Relaxed);
    (
        [(header::SET_COOKIE, format!("id=b0-{n}; Path=/"))],
        Json(json!({ "user": q.name, "bytes": 0 })),
    )
        .into_response()
}

// ---- socketioxide + socketio-sessions ----

async fn sessions_app(args: &Args, origin: &str) -> Result<Router, BoxError> {
    let builder = if args.store == "memory" {
        SocketSessions::builder(MemoryStore::default())
    } else if args.store.starts_with("sqlite://") {
        // WAL + synchronous=NORMAL, as SQLite recommends for WAL; sqlx's default is the
        // rollback journal with synchronous=FULL (an fsync per commit). One connection by
        // default: SQLite has one writer at a time, and with sqlx's default pool of 10 the
        // writers retry SQLITE_BUSY with backoff, which under saturation starved one store
        // call past the 2 s store timeout about once per 8 s (see BENCHMARKS.md).
        let options = SqliteConnectOptions::from_str(&args.store)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(args.sqlite_pool)
            .connect_with(options)
            .await?;
        let store = SqliteStore::new(pool);
        store.migrate().await?;
        SocketSessions::builder(store)
    } else if args.store.starts_with("redis://") {
        let config = Config::from_url(&args.store)?;
        let policy = ReconnectPolicy::new_constant(0, 200);
        let pool = Pool::new(config, None, None, Some(policy), args.redis_pool)?;
        pool.connect_pool();
        tokio::time::timeout(Duration::from_secs(5), pool.wait_for_connect())
            .await
            .map_err(|_| format!("Redis at {} did not answer within 5 s", args.store))??;
        SocketSessions::builder(RedisStore::new(pool))
    } else {
        return Err(format!("unknown --store {}", args.store).into());
    };
    let expiry = Expiry::OnInactivity(time::Duration::hours(1));
    let sessions = builder
        .with_mode(args.mode)
        .with_expiry(expiry)
        .with_allowed_origins([origin])
        // The load generator opens every connection from one address.
        .without_handshake_rate()
        .build()?;

    let (layer, io) = SocketIo::builder()
        .max_buffer_size(args.max_buffer_size)
        .build_layer();
    let middleware = sessions.middleware().with_setup(|socket: SocketRef| {
        socket.on("echo", echo);
        socket.on("incr", incr);
    });
    io.ns("/", (async |_: SocketRef| {}).with(middleware));
    sessions.attach(&io);

    let http_sessions = SessionManagerLayer::new(sessions.http_store())
        .with_secure(false)
        .with_expiry(expiry);
    Ok(Router::new()
        .route("/login", post(login))
        .layer(http_sessions)
        .layer(HttpScopeLayer::new())
        .layer(layer)
        .layer(sessions.origin_layer()))
}

fn error_ack(ack: AckSender, e: &SessionError) {
    let code = match e {
        SessionError::Gone => "session_invalid",
        _ => "session_unavailable",
    };
    ack.send(&json!({ "error": code, "detail": e.to_string() }))
        .ok();
}

async fn echo(session: SocketSession, Data(v): Data<Value>, ack: AckSender) {
    counted();
    match session.get::<String>("user").await {
        Ok(Some(_)) => {
            ack.send(&v).ok();
        }
        Ok(None) => {
            ack.send(&json!({ "error": "no_user" })).ok();
        }
        Err(e) => error_ack(ack, &e),
    }
}

async fn incr(session: SocketSession, ack: AckSender) {
    counted();
    match session
        .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await
    {
        Ok(n) => {
            ack.send(&n).ok();
        }
        Err(e) => error_ack(ack, &e),
    }
}

async fn login(session: Session, Query(q): Query<LoginQuery>) -> Response {
    let stored = async {
        session.insert("user", &q.name).await?;
        session.insert("count", 0u64).await
    };
    if let Err(e) = stored.await {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response();
    }
    let bytes = serde_json::to_vec(&json!({ "user": q.name, "count": 0 })).map_or(0, |v| v.len());
    Json(json!({ "user": q.name, "bytes": bytes })).into_response()
}
