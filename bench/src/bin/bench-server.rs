//! The Rust server under test: plain socketioxide (the baseline B0, no sessions) or socketioxide
//! with socketio-sessions in either mode over memory, SQLite, Postgres, MySQL or Redis. Every
//! variant, and the
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
//!              --store memory|sqlite://PATH|postgres://...|mysql://.../DB|redis://HOST:PORT
//!                      |redis-cluster://HOST:PORT,HOST:PORT
//!              [--addr 127.0.0.1:0] [--workers 1] [--max-buffer-size 1024] [--redis-pool 4]
//!              [--sqlite-pool 1] [--sql-pool 8]
//! bench-server --kind ceiling --store sqlite://PATH|postgres://...|mysql://.../DB
//!              [--tasks 100] [--rows 100] [--warmup 1] [--duration 5] [--workers 1]
//!              [--sqlite-pool 1] [--sql-pool 8]
//! ```
//!
//! Prints `bench-server: listening on ADDR` when ready; exits 0 on SIGINT or SIGTERM (so that
//! `valgrind --tool=callgrind` writes its profile).
//!
//! `--kind ceiling` is the SQL stores' ceiling: no sessions and no Socket.IO, the store's pool
//! opened exactly as the server opens it, and `tasks` tasks each looping over a row of its own
//! (`rows` rows in the sessions table): the store's load statement, then its conditional update
//! of the bytes just read (the statements of `src/store/sql.rs`). It prints
//! `bench-server: ceiling N ops/s conflicts C errors E (...)` (one op: the select and the
//! update), then deletes its rows and exits when its standard input closes.

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
use socketio_sessions::store::fred::prelude::{ClientLike, Pool, ReconnectPolicy};
use socketio_sessions::store::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use socketio_sessions::store::sqlx::postgres::PgPoolOptions;
use socketio_sessions::store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use socketio_sessions::store::sqlx::{self, MySqlPool, PgPool, SqlitePool};
use socketio_sessions::store::{MemoryStore, MySqlStore, PostgresStore, RedisStore, SqliteStore};
use socketio_sessions::{Mode, SessionError, SocketSession, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, Extension, SocketRef};
use socketioxide::handler::ConnectHandler;
use tower_sessions::{Expiry, Session};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Events handled (every variant counts the same way), printed at exit: the denominator of
/// instructions per event in a profile.
static EVENTS: AtomicU64 = AtomicU64::new(0);

fn counted() {
    EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// What the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Plain socketioxide.
    B0,
    /// socketioxide + socketio-sessions.
    Sessions,
    /// The SQL ceiling loop (no server).
    Ceiling,
}

#[derive(Debug, Clone)]
struct Args {
    kind: Kind,
    mode: Mode,
    store: String,
    addr: String,
    workers: usize,
    max_buffer_size: usize,
    redis_pool: usize,
    sqlite_pool: u32,
    sql_pool: u32,
    tasks: usize,
    rows: usize,
    warmup: f64,
    duration: f64,
}

fn usage(msg: &str) -> ! {
    eprintln!("bench-server: {msg}");
    eprintln!(
        "usage: bench-server --kind b0|sessions|ceiling --mode per-connection|per-message \
         --store memory|sqlite://PATH|postgres://...|mysql://.../DB|redis://HOST:PORT \
         [--addr 127.0.0.1:0] [--workers 1] [--max-buffer-size 1024] [--redis-pool 4] \
         [--sqlite-pool 1] [--sql-pool 8] [--tasks 100] [--rows 100] [--warmup 1] [--duration 5]"
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
        kind: Kind::Sessions,
        mode: Mode::PerMessage,
        store: "memory".into(),
        addr: "127.0.0.1:0".into(),
        workers: 1,
        max_buffer_size: 1024,
        redis_pool: 4,
        sqlite_pool: 1,
        sql_pool: 8,
        tasks: 100,
        rows: 100,
        warmup: 1.0,
        duration: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--kind" => {
                args.kind = match value().as_str() {
                    "b0" => Kind::B0,
                    "sessions" => Kind::Sessions,
                    "ceiling" => Kind::Ceiling,
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
            "--sql-pool" => args.sql_pool = positive(&flag, value()),
            "--tasks" => args.tasks = positive(&flag, value()),
            "--rows" => args.rows = positive(&flag, value()),
            "--warmup" => {
                args.warmup = value()
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.0)
                    .unwrap_or_else(|| usage("--warmup must be a number of seconds"))
            }
            "--duration" => args.duration = positive(&flag, value()),
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
    if args.kind == Kind::Ceiling {
        let done = rt.block_on(ceiling(args));
        rt.shutdown_timeout(Duration::from_millis(100));
        if let Err(e) = done {
            eprintln!("bench-server: {e}");
            std::process::exit(1);
        }
        return;
    }
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
    let app = if args.kind == Kind::Sessions {
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
    } else if let Some(sql) = open_sql(args).await? {
        match sql {
            Database::Sqlite(pool) => {
                let store = SqliteStore::new(pool);
                store.migrate().await?;
                SocketSessions::builder(store)
            }
            Database::Postgres(pool) => {
                let store = PostgresStore::new(pool);
                store.migrate().await?;
                SocketSessions::builder(store)
            }
            Database::MySql(pool, schema) => {
                let store = MySqlStore::new(pool).with_schema_name(&schema)?;
                store.migrate().await?;
                SocketSessions::builder(store)
            }
        }
    } else if args.store.starts_with("redis://") || args.store.starts_with("redis-cluster://") {
        let config = socketio_sessions::store::redis_config(&args.store)?;
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

    // Installed as the README installs it: two layers (the session layer, then the origin
    // gate, Socket.IO and the HTTP scope as one), not one `Router::layer` per part, each of
    // which axum boxes and clones again on every request.
    Ok(Router::new()
        .route("/login", post(login))
        .layer(sessions.session_layer().with_secure(false))
        .layer(sessions.layer(layer)))
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

// ---- the SQL stores and their ceiling ----

/// A SQL store's pool, opened the same way for the server and for its ceiling.
enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    /// The pool and the schema: the URL's database, where the sessions table goes.
    MySql(MySqlPool, String),
}

/// The pool for a SQL `--store`, or `None` for another store.
async fn open_sql(args: &Args) -> Result<Option<Database>, BoxError> {
    let url = args.store.as_str();
    if url.starts_with("sqlite://") {
        // WAL + synchronous=NORMAL, as SQLite recommends for WAL; sqlx's default is the
        // rollback journal with synchronous=FULL (an fsync per commit). One connection by
        // default: SQLite has one writer at a time, and with sqlx's default pool of 10 the
        // writers retry SQLITE_BUSY with backoff, which under saturation starved one store
        // call past the 2 s store timeout about once per 8 s (see BENCHMARKS.md).
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(args.sqlite_pool)
            .connect_with(options)
            .await?;
        return Ok(Some(Database::Sqlite(pool)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // As the demo opens it: a database that went away is noticed at the next call.
        let pool = PgPoolOptions::new()
            .max_connections(args.sql_pool)
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await?;
        return Ok(Some(Database::Postgres(pool)));
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let options = MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))?;
        let schema = options
            .get_database()
            .ok_or("a mysql:// --store needs a database (mysql://HOST/DB)")?
            .to_owned();
        let pool = MySqlPoolOptions::new()
            .max_connections(args.sql_pool)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await?;
        return Ok(Some(Database::MySql(pool, schema)));
    }
    Ok(None)
}

/// The ceiling's statements, in one dialect. `load` and `update_if` are the store's own, taken
/// from it so that the ceiling cannot drift from what the store runs; the others prepare the
/// rows of its table.
struct CeilingSql {
    load: String,
    update_if: String,
    sample: String,
    clear: String,
    insert: String,
}

impl CeilingSql {
    /// From the store's statements; `p(n)` the dialect's n-th bind parameter.
    fn new(
        store: socketio_sessions::store::SqlStatements<'_>,
        p: impl Fn(usize) -> String,
    ) -> CeilingSql {
        let table = store.table;
        CeilingSql {
            load: store.load.to_owned(),
            update_if: store.update_if.to_owned(),
            sample: format!("select data from {table} where id not like 'ceiling%' limit 1"),
            clear: format!("delete from {table} where id like 'ceiling%'"),
            insert: format!(
                "insert into {table} (id, data, expiry_date) values ({}, {}, {})",
                p(1),
                p(2),
                p(3)
            ),
        }
    }
}

/// What the ceiling loop counted.
#[derive(Debug, Default)]
struct Counts {
    ops: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
}

/// A 22-character row id (MySQL's `id` is `char(22)`, a session id's length).
fn ceiling_id(i: usize) -> String {
    format!("ceiling{i:015}")
}

/// Runs the ceiling loop on one pool type (sqlx's query results have no common trait for
/// `rows_affected`, hence a macro). Evaluates to the record size used.
macro_rules! ceiling_loop {
    ($pool:expr, $pool_size:expr, $sql:expr, $args:expr, $counts:expr, $stop:expr) => {{
        let pool = $pool;
        let sql: Arc<CeilingSql> = Arc::new($sql);
        let args: &Args = $args;
        // The size of a session record already stored (an S3 server ran first), else about
        // the size of the benchmark's `{user, count}` record.
        let sampled: Option<(Vec<u8>,)> = sqlx::query_as(&sql.sample).fetch_optional(&pool).await?;
        let bytes = sampled.map_or(81, |(d,)| d.len()).max(8);
        sqlx::query(&sql.clear).execute(&pool).await?;
        let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        for i in 0..args.rows {
            sqlx::query(&sql.insert)
                .bind(ceiling_id(i))
                .bind(vec![0u8; bytes])
                .bind(expiry)
                .execute(&pool)
                .await?;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..args.tasks {
            let (pool, sql, counts, stop) = (
                pool.clone(),
                sql.clone(),
                Arc::clone($counts),
                Arc::clone($stop),
            );
            let id = ceiling_id(t % args.rows);
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let now = time::OffsetDateTime::now_utc();
                    let read: Result<Option<(Vec<u8>,)>, _> = sqlx::query_as(&sql.load)
                        .bind(&id)
                        .bind(now)
                        .fetch_optional(&pool)
                        .await;
                    let Ok(Some((old,))) = read else {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    // A new value of the same size: a counter in the first 8 bytes.
                    let mut new = old.clone();
                    let n = u64::from_le_bytes(new[..8].try_into().unwrap_or([0; 8]));
                    new[..8].copy_from_slice(&n.wrapping_add(1).to_le_bytes());
                    let done = sqlx::query(&sql.update_if)
                        .bind(&new)
                        .bind(now + time::Duration::hours(1))
                        .bind(&id)
                        .bind(&old)
                        .bind(now)
                        .execute(&pool)
                        .await;
                    match done {
                        Ok(r) if r.rows_affected() == 1 => &counts.ops,
                        Ok(_) => &counts.conflicts,
                        Err(_) => &counts.errors,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let measured = measure_ceiling(args, $counts).await;
        $stop.store(true, Ordering::Relaxed);
        while tasks.join_next().await.is_some() {}
        report_ceiling(args, $counts, measured, bytes, $pool_size).await;
        sqlx::query(&sql.clear).execute(&pool).await?;
        pool.close().await;
    }};
}

/// Sleeps through the warm-up, then counts operations for the measured time: (ops, seconds).
async fn measure_ceiling(args: &Args, counts: &Counts) -> (u64, f64) {
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = counts.ops.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let ops = counts.ops.load(Ordering::Relaxed) - before;
    (ops, t0.elapsed().as_secs_f64())
}

/// Prints the ceiling's line, then waits for standard input to close (the harness reads the
/// CPU time of this process meanwhile) before the rows are deleted and the pool closed.
async fn report_ceiling(
    args: &Args,
    counts: &Counts,
    (ops, secs): (u64, f64),
    bytes: usize,
    pool: u32,
) {
    use tokio::io::AsyncReadExt;
    println!(
        "bench-server: ceiling {:.1} ops/s conflicts {} errors {} ({ops} ops in {secs:.2} s; {} tasks on {} rows of {bytes} B; pool {pool})",
        ops as f64 / secs,
        counts.conflicts.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        args.tasks,
        args.rows,
    );
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
}

/// `--kind ceiling`: the raw conditional-update loop on the store's table, no sessions.
async fn ceiling(args: Args) -> Result<(), BoxError> {
    let sql = open_sql(&args)
        .await?
        .ok_or_else(|| format!("--kind ceiling needs a SQL --store, not {}", args.store))?;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let question = |_: usize| "?".to_owned();
    // The table as the store creates it (its `migrate`), and the statements it runs on it.
    match sql {
        Database::Sqlite(pool) => {
            let store = SqliteStore::new(pool.clone());
            store.migrate().await?;
            let sql = CeilingSql::new(store.statements(), question);
            ceiling_loop!(pool, args.sqlite_pool, sql, &args, &counts, &stop);
        }
        Database::Postgres(pool) => {
            let store = PostgresStore::new(pool.clone());
            store.migrate().await?;
            let sql = CeilingSql::new(store.statements(), |n| format!("${n}"));
            ceiling_loop!(pool, args.sql_pool, sql, &args, &counts, &stop);
        }
        Database::MySql(pool, schema) => {
            let store = MySqlStore::new(pool.clone()).with_schema_name(&schema)?;
            store.migrate().await?;
            let sql = CeilingSql::new(store.statements(), question);
            ceiling_loop!(pool, args.sql_pool, sql, &args, &counts, &stop);
        }
    }
    Ok(())
}
