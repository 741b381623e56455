//! What an app relies on when it drops the crate in: the one installation point (logout and
//! rotation reach sockets, `on_end` and `SessionEnded` say why), the `require` check, the
//! mistakes that are logged once instead of failing silently (scope inside the session layer,
//! no client address, a store without compare-and-set that has a twin here), and the stores'
//! constructors.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::routing::post;
use common::{Dial, Outcome, RedisServer, TestSocket, Transport, eventually, http, polling_open};
use serde_json::json;
use socketio_sessions::store::{ConditionalStore, MemoryStore, RedisStore, SqliteStore};
use socketio_sessions::{EndReason, HttpScopeLayer, SessionEnded, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;
use tower_sessions::session::{Id, Record};
use tower_sessions::{Session, SessionManagerLayer};

/// Everything logged by this test binary (the "logged once" warnings are per process).
fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || Sink(writer.clone()))
            .try_init()
            .ok();
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn count(text: &str) -> usize {
    logs().matches(text).count()
}

/// `POST /login` (new id, then `user`), `/logout` (flush) and `/theme` (anonymous data).
fn routes() -> Router {
    Router::new()
        .route(
            "/login",
            post(async |session: Session| {
                session.cycle_id().await.unwrap();
                session.insert("user", "alice").await.unwrap();
            }),
        )
        .route(
            "/logout",
            post(async |session: Session| session.flush().await.unwrap()),
        )
        .route(
            "/theme",
            post(async |session: Session| session.insert("theme", "dark").await.unwrap()),
        )
}

async fn serve(app: Router, connect_info: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if connect_info {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });
    addr
}

async fn post_to(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Option<String> {
    let mut req = http().post(format!("http://{addr}{path}"));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

async fn socket(addr: SocketAddr, cookie: Option<&str>) -> TestSocket {
    let dial = Dial {
        cookie: cookie.map(str::to_owned),
        ..Dial::default()
    };
    TestSocket::connect_addr(addr, Transport::Websocket, dial)
        .await
        .unwrap()
}

type Seen<T> = Arc<Mutex<Vec<T>>>;

#[tokio::test(flavor = "multi_thread")]
async fn one_layer_installs_it_all_and_ends_say_why() {
    log_buffer();
    let ended: Seen<(EndReason, Option<serde_json::Value>)> = Seen::default();
    let seen = ended.clone();
    let sessions = SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .with_user_key("user")
        .require(|data| data.contains_key("user"))
        .on_end(move |end| seen.lock().unwrap().push((end.reason, end.user.clone())))
        .build()
        .unwrap();
    let disconnects: Seen<Option<EndReason>> = Seen::default();
    let seen = disconnects.clone();
    let (sio_layer, io) = SocketIo::new_layer();
    let middleware = sessions.middleware().with_setup(move |socket: SocketRef| {
        let seen = seen.clone();
        socket.on_disconnect(async move |SessionEnded(reason): SessionEnded| {
            seen.lock().unwrap().push(reason);
        });
    });
    io.ns("/", (async |_: SocketRef| {}).with(middleware));
    sessions.attach(&io);
    let app = routes()
        .layer(sessions.session_layer())
        .layer(sessions.layer(sio_layer));
    let addr = serve(app, true).await;

    // `require`: an anonymous session is refused, a logged-in one accepted.
    let anonymous = post_to(addr, "/theme", None).await.unwrap();
    let refused = socket(addr, Some(&anonymous)).await;
    assert_eq!(refused.outcome, Outcome::Refused("session_invalid".into()));

    // A login on a session with sockets rotates it: told apart from a logout, so the scope is
    // around the session layer.
    let cookie = post_to(addr, "/login", None).await.unwrap();
    let mut first = socket(addr, Some(&cookie)).await;
    assert_eq!(first.outcome, Outcome::Connected);
    let cookie = post_to(addr, "/login", Some(&cookie)).await.unwrap();
    first
        .event_with("sinvalid", &json!({ "reason": "session_rotated" }))
        .await;

    let mut second = socket(addr, Some(&cookie)).await;
    assert_eq!(second.outcome, Outcome::Connected);
    // On the local adapter a session's live copy knows its sockets: only the user's room is
    // kept (an end still reaches the socket, below).
    let rooms = io.rooms().await.unwrap();
    assert!(
        rooms.iter().any(|r| r.starts_with("user:")),
        "the user's room: {rooms:?}"
    );
    assert!(
        !rooms.iter().any(|r| r.starts_with("session:")),
        "no room per session: {rooms:?}"
    );
    post_to(addr, "/logout", Some(&cookie)).await;
    second
        .event_with("sinvalid", &json!({ "reason": "session_revoked" }))
        .await;

    eventually("both disconnect handlers ran", || async {
        (disconnects.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        *disconnects.lock().unwrap(),
        [Some(EndReason::Rotated), Some(EndReason::Revoked)]
    );
    assert_eq!(
        *ended.lock().unwrap(),
        [
            (EndReason::Rotated, Some(json!("alice"))),
            (EndReason::Revoked, Some(json!("alice")))
        ]
    );
}

/// Long-polls the raw Engine.IO session at `url` until `done` holds for the packets seen, and
/// returns them.
async fn poll_until(url: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let body = http().get(url).send().await.unwrap().text().await.unwrap();
        seen.extend(body.split('\u{1e}').map(str::to_owned));
        if done(&seen) {
            return seen;
        }
    }
    panic!("never seen: {seen:?}");
}

/// Serves `app`, logs in, and opens a raw Engine.IO polling session with the login's cookie: the
/// server's address, the cookie, and the polling URL.
async fn login_and_open(app: Router) -> (SocketAddr, String, String) {
    let addr = serve(app, true).await;
    let cookie = post_to(addr, "/login", None).await.unwrap();
    let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let url = polling_open(&http(), &base, &cookie).await;
    (addr, cookie, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_end_reaches_the_bound_namespace_not_the_others_of_the_same_connection() {
    let sessions = SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    let (sio_layer, io) = SocketIo::new_layer();
    // A public namespace without sessions beside one bound to them: a Socket.IO client opens
    // both over one Engine.IO connection, whose id socketioxide gives both sockets.
    io.ns("/", async |_: SocketRef| {});
    io.ns(
        "/app",
        (async |_: SocketRef| {}).with(sessions.middleware()),
    );
    sessions.attach(&io);
    let app = routes()
        .layer(sessions.session_layer())
        .layer(sessions.layer(sio_layer));
    let (addr, cookie, url) = login_and_open(app).await;
    let connect = http()
        .post(&url)
        .body("40\u{1e}40/app,")
        .send()
        .await
        .unwrap();
    assert!(connect.status().is_success());
    let connected = |seen: &[String]| {
        seen.iter().any(|p| p.starts_with("40{")) && seen.iter().any(|p| p.starts_with("40/app,{"))
    };
    poll_until(&url, connected).await;

    post_to(addr, "/logout", Some(&cookie)).await;
    let seen = poll_until(&url, |seen| seen.iter().any(|p| p == "41/app,")).await;
    assert!(
        seen.iter()
            .any(|p| p.starts_with("42/app,") && p.contains("session_revoked")),
        "the bound socket is told why: {seen:?}"
    );
    let sinvalid_told = seen.iter().filter(|p| p.contains("\"sinvalid\"")).count();
    assert_eq!(
        sinvalid_told, 1,
        "told once, in its namespace only: {seen:?}"
    );
    assert!(
        !seen.iter().any(|p| p == "41"),
        "the public namespace stays connected: {seen:?}"
    );
    let default_ns = io.of("/").unwrap();
    assert_eq!(
        default_ns.sockets().len(),
        1,
        "the public socket is still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_socket_that_does_not_read_hears_nothing_more_and_goes_once_it_reads() {
    let sessions = SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    let (sio_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        (async |socket: SocketRef| {
            socket.join("news");
            socket.on("ping", async |ack: socketioxide::extract::AckSender| {
                ack.send(&"pong").ok();
            });
        })
        .with(sessions.middleware()),
    );
    sessions.attach(&io);
    let app = routes()
        .layer(sessions.session_layer())
        .layer(sessions.layer(sio_layer));
    let (addr, cookie, url) = login_and_open(app).await;
    http().post(&url).body("40").send().await.unwrap();
    poll_until(&url, |seen| seen.iter().any(|p| p.starts_with("40{"))).await;

    // Twice socketioxide's outgoing buffer (128 packets) of acknowledged events, never read:
    // the answers fill the buffer, where the end's `sinvalid` and DISCONNECT need room.
    let pings: Vec<String> = (0..256).map(|i| format!("42{i}[\"ping\"]")).collect();
    let posted = http()
        .post(&url)
        .body(pings.join("\u{1e}"))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success());
    let ns = || io.of("/").unwrap();
    eventually("the answers fill the buffer", || async {
        ns().sockets()[0].emit("probe", &1).is_err().then_some(())
    })
    .await;

    post_to(addr, "/logout", Some(&cookie)).await;
    eventually("the ended socket leaves its rooms", || async {
        ns().rooms().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert_eq!(
        ns().sockets().len(),
        1,
        "still connected while it reads nothing"
    );
    // The client reads what was queued; a broadcast to its room then finds room in the buffer
    // but must not reach it. Then it is told why, and disconnected.
    let read = http().get(&url).send().await.unwrap().text().await.unwrap();
    ns().to("news").emit("after", &1).await.ok();
    let mut seen: Vec<String> = read.split('\u{1e}').map(str::to_owned).collect();
    if !seen.iter().any(|p| p == "41") {
        seen.extend(poll_until(&url, |seen| seen.iter().any(|p| p == "41")).await);
    }
    assert!(
        seen.iter()
            .any(|p| p.contains("[\"sinvalid\",{\"reason\":\"session_revoked\"}]")),
        "told why: {:?}",
        seen.iter()
            .filter(|p| !p.starts_with("43"))
            .collect::<Vec<_>>()
    );
    let told = seen.iter().filter(|p| p.contains("\"sinvalid\"")).count();
    assert_eq!(told, 1, "told once");
    assert!(
        !seen.iter().any(|p| p.contains("\"after\"")),
        "a broadcast to its room after the end reached it"
    );
    eventually("the socket is gone", || async {
        ns().sockets().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_inside_the_session_layer_is_reported_once() {
    log_buffer();
    let sessions = SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    // The mistake: the scope inside the session layer, which saves after it returned.
    let app = routes()
        .layer(HttpScopeLayer::new())
        .layer(SessionManagerLayer::new(sessions.http_store()));
    let addr = serve(app, true).await;
    let cookie = post_to(addr, "/login", None).await.unwrap();
    post_to(addr, "/login", Some(&cookie)).await;
    assert_eq!(count("outside `HttpScopeLayer`"), 1, "{}", logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_without_client_addresses_is_reported_once() {
    log_buffer();
    let sessions = SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    let (sio_layer, io) = SocketIo::new_layer();
    io.ns("/", (async |_: SocketRef| {}).with(sessions.middleware()));
    let app = routes()
        .layer(sessions.session_layer())
        .layer(sessions.layer(sio_layer));
    let addr = serve(app, false).await;
    for _ in 0..3 {
        let refused = socket(addr, None).await;
        assert_eq!(refused.outcome, Outcome::Refused("session_invalid".into()));
    }
    assert_eq!(count("no client address"), 1, "{}", logs());
}

#[tokio::test]
async fn a_plain_store_with_a_conditional_twin_is_warned_about() {
    log_buffer();
    SocketSessions::builder(MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    assert_eq!(count("stores the same records with it"), 0);
    SocketSessions::builder_last_writer_wins(tower_sessions::MemoryStore::default())
        .with_any_origin()
        .build()
        .unwrap();
    let line = logs()
        .lines()
        .find(|l| l.contains("stores the same records with it"))
        .map(str::to_owned)
        .expect("a warning");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("`socketio_sessions::store::MemoryStore`"),
        "{line}"
    );
}

/// A record that round-trips through a conditional store.
async fn round_trip(store: &impl ConditionalStore) {
    let mut record = Record {
        id: Id::default(),
        data: [("user".to_owned(), json!("alice"))].into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.unwrap();
    let loaded = store.load_versioned(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.record.data, record.data);
    store.delete(&record.id).await.unwrap();
}

#[tokio::test]
async fn stores_connect_from_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let sqlite = SqliteStore::connect(&url).await.unwrap();
    round_trip(&sqlite).await;
    let custom = SqliteStore::new(sqlite.pool().clone())
        .with_table_name("app_sessions")
        .unwrap();
    custom.migrate().await.unwrap();
    round_trip(&custom).await;
    let table: (String,) =
        socketio_sessions::store::sqlx::query_as("select name from sqlite_master where name = ?")
            .bind("app_sessions")
            .fetch_one(sqlite.pool())
            .await
            .unwrap();
    assert_eq!(table.0, "app_sessions");
    for bad in ["", "a-b", "x; drop table users", "s.t"] {
        assert!(
            SqliteStore::new(sqlite.pool().clone())
                .with_table_name(bad)
                .is_err(),
            "{bad}"
        );
    }

    if let Some(redis) = RedisServer::start().await {
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        round_trip(&store).await;
    }
}
