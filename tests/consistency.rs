//! No lost updates: many sockets, spawned handlers, nodes and the HTTP side writing one
//! session, on every store with conditional saves (and the plain-store guarantee too).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use socketio_sessions::store::{
    ConditionalStore, MemoryStore, Reloaded, SaveOutcome, Version, Versioned,
};
use socketio_sessions::{Mode, SessionError, SocketSession, SocketSessions, SocketSessionsBuilder};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::ConnectHandler;
use tokio::sync::Notify;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// `n` sockets of one session, each firing `per_socket` concurrent `incr`s.
async fn hammer(server: &TestServer, cookie: &str, n: usize, per_socket: usize) -> Vec<TestSocket> {
    let mut sockets = Vec::new();
    for i in 0..n {
        sockets.push(connected(server, TRANSPORTS[i % 2], cookie).await);
    }
    let bursts = sockets.iter().map(|s| {
        futures_util::future::join_all((0..per_socket).map(|_| s.emit("incr", json!({}))))
    });
    futures_util::future::join_all(bursts).await;
    sockets
}

/// A record not yet stored, `{"n": 1}`, expiring in an hour.
fn fresh_record() -> Record {
    Record {
        id: Id::default(),
        data: [("n".to_owned(), json!(1))].into_iter().collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

mod cases {
    use super::*;

    /// A per-message `update` as a handler's first operation: one store call (the save) on a
    /// store that refuses late saves, where the save's compare-and-set stands in for the reload;
    /// a reload and a save on the others. A write from behind in between is a conflict the
    /// update is re-run on, never lost.
    pub async fn an_update_first_skips_the_reload_only_where_late_saves_are_refused(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        // Only the events' calls are counted: no revalidation meanwhile.
        let server = TestServer::start(&st, |o| o.revalidate_every = NEVER).await;
        let cookie = server.login("una").await;
        let s = connected(&server, Transport::Websocket, &cookie).await;
        assert_eq!(s.ack("incr", json!({})).await, json!(1));
        let before = st.calls();
        for n in 2..=11 {
            assert_eq!(s.ack("incr", json!({})).await, json!(n));
        }
        let per_incr = (st.calls() - before) as f64 / 10.0;
        let expected = match b {
            Backend::Memory | Backend::Redis | Backend::RedisCluster => 1.0,
            _ => 2.0,
        };
        assert_eq!(per_incr, expected, "store calls per incr");
        // Behind the node's back: the version it holds is stale.
        let id = cookie_id(&cookie);
        let mut record = st.record(&id).await.unwrap();
        record.data.insert("count".into(), json!(100));
        st.store.save(&record).await.unwrap();
        assert_eq!(s.ack("incr", json!({})).await, json!(101));
        let stored = st.record(&id).await.unwrap();
        assert_eq!(stored.data.get("count"), Some(&json!(101)));
    }

    /// Per-message mode reloads through `reload_versioned` before every event: it must see
    /// every write, including a record deleted and written again under the same id.
    pub async fn reload_sees_every_write(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let store = &st.store;
        let mut record = fresh_record();
        store.create(&mut record).await.unwrap();
        let id = record.id;
        let first = store.load_versioned(&id).await.unwrap().unwrap();
        let reload = |v: Version| async move { store.reload_versioned(&id, &v).await.unwrap() };
        assert!(matches!(
            reload(first.version.clone()).await,
            Reloaded::Unchanged
        ));

        // An unconditional write (the HTTP side's) is a change.
        record.data.insert("n".into(), json!(2));
        store.save(&record).await.unwrap();
        let Reloaded::Changed(second) = reload(first.version.clone()).await else {
            panic!("an HTTP-side write looked unchanged");
        };
        assert_eq!(second.record.data["n"], json!(2));
        assert!(matches!(
            reload(second.version.clone()).await,
            Reloaded::Unchanged
        ));

        // Deleted: gone. Written again under the same id: a change for every earlier version.
        store.delete(&id).await.unwrap();
        assert!(matches!(
            reload(second.version.clone()).await,
            Reloaded::Gone
        ));
        record.data.insert("n".into(), json!(3));
        store.create(&mut record).await.unwrap();
        assert_eq!(record.id, id, "the id was free again");
        for old in [first.version, second.version] {
            let Reloaded::Changed(again) = reload(old).await else {
                panic!("a record written again under its id looked unchanged");
            };
            assert_eq!(again.record.data["n"], json!(3));
        }
    }

    /// A save that writes the very bytes already stored (a handler that set a key to its own
    /// value) is saved, not taken for a conflict: MySQL counts such a row as affected only
    /// because sqlx asks for found rows. A save on a stale version is a conflict, on a deleted
    /// record gone.
    pub async fn a_save_of_unchanged_bytes_is_saved(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let store = &st.store;
        let mut record = fresh_record();
        store.create(&mut record).await.unwrap();
        let read = store.load_versioned(&record.id).await.unwrap().unwrap();
        let SaveOutcome::Saved(same) = store.save_if(&read.record, &read.version).await.unwrap()
        else {
            panic!("writing the stored bytes again was not saved");
        };
        let mut next = read.record.clone();
        next.data.insert("n".into(), json!(2));
        assert!(matches!(
            store.save_if(&next, &same).await.unwrap(),
            SaveOutcome::Saved(_)
        ));
        let mut stale = read.record.clone();
        stale.data.insert("n".into(), json!(3));
        assert_eq!(
            store.save_if(&stale, &same).await.unwrap(),
            SaveOutcome::Conflict,
            "a stale version"
        );
        store.delete(&record.id).await.unwrap();
        assert_eq!(
            store.save_if(&next, &same).await.unwrap(),
            SaveOutcome::Gone
        );
    }

    pub async fn three_sockets_times_a_hundred_incr(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        for mode in [Mode::PerMessage, Mode::PerConnection] {
            let server = TestServer::start(&st, |o| {
                o.mode = mode;
                o.write_behind = Some(Duration::from_millis(50));
            })
            .await;
            let cookie = server.login("ann").await;
            let sockets = hammer(&server, &cookie, 3, 100).await;
            server.wait_count(&cookie, 300).await;
            for s in sockets {
                s.close().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(
                server.count(&cookie).await,
                300,
                "{mode:?}: changed after disconnect"
            );
        }
    }

    pub async fn http_writes_interleaved_with_socket_writes_are_both_kept(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |_| {}).await;
        let cookie = server.login("ben").await;
        let s = connected(&server, Transport::Websocket, &cookie).await;
        let sockets = async {
            for _ in 0..4 {
                futures_util::future::join_all((0..25).map(|_| s.emit("incr", json!({})))).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let http_side = async {
            for i in 1..=40 {
                assert_eq!(server.visit(&cookie).await, i);
            }
        };
        tokio::join!(sockets, http_side);
        server.wait_count(&cookie, 100).await;
        let (_, body) = server.session(&cookie).await;
        assert_eq!(body["visits"], json!(40), "an HTTP write was lost: {body}");
    }

    pub async fn logout_racing_socket_saves_stays_deleted(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        for mode in [Mode::PerMessage, Mode::PerConnection] {
            let server = TestServer::start(&st, |o| {
                o.mode = mode;
                o.write_behind = Some(Duration::from_millis(20));
            })
            .await;
            let cookie = server.login("cy").await;
            let s = connected(&server, Transport::Websocket, &cookie).await;
            let burst = futures_util::future::join_all((0..100).map(|_| s.emit("incr", json!({}))));
            let logout = async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                server.logout(&cookie).await;
            };
            tokio::join!(burst, logout);
            s.close().await;
            // Let every handler, write-behind and disconnect save run out.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                server.session(&cookie).await.0,
                401,
                "{mode:?}: session came back"
            );
            let id = cookie_id(&cookie);
            let record = match b {
                Backend::PlainMemory => st.plain.load(&id).await.unwrap(),
                _ => st.store.load(&id).await.unwrap(),
            };
            assert!(record.is_none(), "{mode:?}: the record was recreated");
        }
    }
    /// Two nodes, each with its own pool on the same store (as two processes would have), three
    /// sockets each on one session: every increment counted once.
    pub async fn two_nodes_count_exactly(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let url = st.shared_url().expect("a store two nodes can share");
        for mode in [Mode::PerMessage, Mode::PerConnection] {
            let mut nodes = Vec::new();
            for _ in 0..2 {
                let url = url.clone();
                nodes.push(
                    TestServer::start_with(
                        move |o| async move {
                            // On the node's own runtime, as its connections are in a process.
                            let store = DemoStore::open(&url).await?;
                            app::app(store, o).await
                        },
                        |o| {
                            o.mode = mode;
                            o.write_behind = Some(Duration::from_millis(50));
                        },
                    )
                    .await,
                );
            }
            let cookie = nodes[0].login("dee").await;
            let (a, b) = tokio::join!(
                hammer(&nodes[0], &cookie, 3, 100),
                hammer(&nodes[1], &cookie, 3, 100)
            );
            nodes[1].wait_count(&cookie, 600).await;
            for s in a.into_iter().chain(b) {
                s.close().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(nodes[0].count(&cookie).await, 600, "{mode:?}");
            for node in nodes {
                node.stop().await;
            }
        }
    }
}

store_tests! {
    stores: [
        memory => Backend::Memory,
        sqlite => Backend::Sqlite,
        redis => Backend::Redis,
        redis_cluster => Backend::RedisCluster,
        postgres => Backend::Postgres,
        mysql => Backend::MySql,
    ],
    cases: [
        an_update_first_skips_the_reload_only_where_late_saves_are_refused,
        reload_sees_every_write,
        a_save_of_unchanged_bytes_is_saved,
        three_sockets_times_a_hundred_incr,
        http_writes_interleaved_with_socket_writes_are_both_kept,
        logout_racing_socket_saves_stays_deleted,
    ],
}

/// The stores that two processes can share (memory stores cannot).
mod shared {
    use super::*;

    store_tests! {
        stores: [
            sqlite => Backend::Sqlite,
            redis => Backend::Redis,
            redis_cluster => Backend::RedisCluster,
            postgres => Backend::Postgres,
            mysql => Backend::MySql,
        ],
        cases: [two_nodes_count_exactly],
    }
}

/// A plain store (no conditional save) still counts exactly on one node: writes are
/// serialized per session, and `update`s are re-applied on the record as it is at save time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_store_counts_exactly_on_one_node() {
    cases::three_sockets_times_a_hundred_incr(Backend::PlainMemory).await
}

/// The turns of the stale reader's handler: it reads `count`, signals `read`, and writes only
/// once the test signals `go`, so that the test decides what happens in between.
#[derive(Debug, Default)]
struct Turns {
    read: Notify,
    go: Notify,
}

/// An app of `store`'s sessions whose sockets get their handlers from `setup`, behind the
/// origin gate, for handlers the demo does not have.
fn app_with<S: ConditionalStore + Clone>(
    store: S,
    o: &DemoOptions,
    setup: impl Fn(SocketRef) + Clone + Send + Sync + 'static,
) -> app::DemoApp {
    app_from(SocketSessions::builder(store), o, setup)
}

/// [`app_with`] from a builder already configured.
fn app_from(
    builder: SocketSessionsBuilder,
    o: &DemoOptions,
    setup: impl Fn(SocketRef) + Clone + Send + Sync + 'static,
) -> app::DemoApp {
    let sessions = builder
        .with_allowed_origins(&o.allowed_origins)
        .build()
        .unwrap();
    let (layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        (async || {}).with(sessions.middleware().with_setup(setup)),
    );
    app::DemoApp {
        router: axum::Router::new()
            .layer(layer)
            .layer(sessions.origin_layer()),
        sessions,
    }
}

/// A handler that reads `count`, waits for its turn, then writes `copy`: if `count` changed
/// meanwhile, its write was based on a stale value and must fail, not land.
fn stale_reader_app(store: MemoryStore, o: &DemoOptions, turns: Arc<Turns>) -> app::DemoApp {
    let setup = move |socket: SocketRef| {
        let turns = turns.clone();
        socket.on(
            "copy",
            move |session: SocketSession, ack: AckSender| async move {
                let result = async {
                    let n: Option<u64> = session.get("count").await?;
                    turns.read.notify_one();
                    turns.go.notified().await;
                    session.insert("copy", n).await?;
                    session.save().await
                }
                .await;
                let answer = match result {
                    Ok(()) => json!({ "ok": true }),
                    Err(SessionError::Conflict { key }) => json!({ "conflict": key }),
                    Err(e) => json!({ "error": e.to_string() }),
                };
                ack.send(&answer).ok();
            },
        );
    };
    app_with(store, o, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_reaches_the_handler_as_a_conflict() {
    let store = MemoryStore::default();
    let demo_store = store.clone();
    let demo = TestServer::start_with(move |o| app::app(demo_store, o), |_| {}).await;
    let reader_store = store.clone();
    let turns = Arc::new(Turns::default());
    let reader_turns = turns.clone();
    let reader = TestServer::start_with(
        move |o| async move { Ok(stale_reader_app(reader_store, &o, reader_turns)) },
        |_| {},
    )
    .await;
    let cookie = demo.login("eve").await;
    let slow = connected(&reader, Transport::Websocket, &cookie).await;
    let fast = connected(&demo, Transport::Websocket, &cookie).await;

    assert_eq!(fast.ack("incr", json!({})).await, json!(1));
    // `count` changes on the other node between the reader's read and its write: refused,
    // nothing written.
    let (answer, incr) = tokio::join!(slow.ack("copy", json!({})), async {
        turns.read.notified().await;
        let incr = fast.ack("incr", json!({})).await;
        turns.go.notify_one();
        incr
    });
    assert_eq!(incr, json!(2));
    assert_eq!(answer, json!({ "conflict": "count" }));
    let id = cookie_id(&cookie);
    let record = store.load(&id).await.unwrap().unwrap();
    assert_eq!(record.data.get("copy"), None, "the stale write landed");
    // Unchanged in between: the write lands.
    let (answer, ()) = tokio::join!(slow.ack("copy", json!({})), async {
        turns.read.notified().await;
        turns.go.notify_one();
    });
    assert_eq!(answer, json!({ "ok": true }));
    let record = store.load(&id).await.unwrap().unwrap();
    assert_eq!(record.data.get("copy"), Some(&json!(2)));
    assert_eq!(record.data.get("count"), Some(&json!(2)));
}

/// Holds every load of one session until a load of another session has started: if sessions
/// were serialized with each other, the held load would never be released. It does not say it
/// refuses late saves (the default `false`): the demo's `incr` then loads first, which is what
/// the gate holds.
#[derive(Debug, Clone, Default)]
struct Gate {
    inner: MemoryStore,
    held: Arc<std::sync::Mutex<Option<Id>>>,
    other_started: Arc<Notify>,
    timed_out: Arc<AtomicBool>,
}

impl Gate {
    async fn pass(&self, id: &Id) {
        let held = *self.held.lock().unwrap();
        match held {
            Some(h) if h == *id => {
                let waited = tokio::time::timeout(SOON, self.other_started.notified()).await;
                if waited.is_err() {
                    self.timed_out.store(true, Ordering::SeqCst);
                }
            }
            Some(_) => self.other_started.notify_one(),
            None => {}
        }
    }
}

session_store_via_inner!(Gate);

#[async_trait]
impl ConditionalStore for Gate {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.pass(id).await;
        self.inner.load_versioned(id).await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        self.inner.save_if(r, v).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_sessions_are_not_serialized_with_each_other() {
    let gate = Gate::default();
    let store = gate.clone();
    // No store timeout: only the gate decides how long the held load waits.
    let server =
        TestServer::start_with(move |o| app::app(store, o), |o| o.store_timeout = NEVER).await;
    let (a, b) = (server.login("a").await, server.login("b").await);
    let sa = connected(&server, Transport::Websocket, &a).await;
    let sb = connected(&server, Transport::Websocket, &b).await;
    *gate.held.lock().unwrap() = Some(cookie_id(&a));
    let (ra, rb) = tokio::join!(sa.ack("incr", json!({})), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sb.ack("incr", json!({})).await
    });
    assert_eq!((ra, rb), (json!(1), json!(1)));
    assert!(
        !gate.timed_out.load(Ordering::SeqCst),
        "session B waited for session A: sessions are serialized with each other"
    );
}

/// A memory store whose next conditional save fails (as a store that did not answer), and
/// which refuses late saves, as the memory store does.
#[derive(Debug, Clone, Default)]
struct FailNextSave {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
}

session_store_via_inner!(FailNextSave);

#[async_trait]
impl ConditionalStore for FailNextSave {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.inner.load_versioned(id).await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        if self.fail.swap(false, Ordering::SeqCst) {
            return Err(session_store::Error::Backend("injected".into()));
        }
        self.inner.save_if(r, v).await
    }
    fn refuses_late_saves(&self) -> bool {
        true
    }
}

/// `bump`: an `update` of `count` as the handler's first operation, then a read of it through
/// a clone of the handle; acks both.
fn bump_then_read_app(store: FailNextSave, o: &DemoOptions) -> app::DemoApp {
    let setup = |socket: SocketRef| {
        socket.on("bump", async |session: SocketSession, ack: AckSender| {
            let updated = session
                .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
                .await;
            let read: Result<Option<u64>, _> = session.clone().get("count").await;
            ack.send(&json!({
                "updated": updated.ok(),
                "read": read.ok().flatten(),
            }))
            .ok();
        });
    };
    app_with(store, o, setup)
}

/// A store whose next save can be made to fail, the demo on its memory store (another node,
/// writing from behind), and the `bump` app on the store itself.
async fn demo_and_bump_servers() -> (FailNextSave, TestServer, TestServer) {
    let store = FailNextSave::default();
    let (app_store, demo_store) = (store.clone(), store.inner.clone());
    let demo = TestServer::start_with(move |o| app::app(demo_store, o), |_| {}).await;
    let server = TestServer::start_with(
        move |o| async move { Ok(bump_then_read_app(app_store, &o)) },
        |_| {},
    )
    .await;
    (store, demo, server)
}

/// An `update` that skipped the reload and whose save failed leaves the handler's state
/// unverified: its next read reloads, and sees what another writer stored meanwhile, not the
/// version the node held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_first_makes_the_next_read_reload() {
    let (store, demo, server) = demo_and_bump_servers().await;
    let cookie = demo.login("ida").await;
    let s = connected(&server, Transport::Websocket, &cookie).await;
    assert_eq!(
        s.ack("bump", json!({})).await,
        json!({ "updated": 1, "read": 1 })
    );
    // Another node writes; this node still holds the version with count 1.
    let other = connected(&demo, Transport::Websocket, &cookie).await;
    assert_eq!(other.ack("incr", json!({})).await, json!(2));
    store.fail.store(true, Ordering::SeqCst);
    assert_eq!(
        s.ack("bump", json!({})).await,
        json!({ "updated": null, "read": 2 }),
        "the read after a failed update saw the version held, not the stored record"
    );
    assert_eq!(
        s.ack("bump", json!({})).await,
        json!({ "updated": 3, "read": 3 })
    );
}

/// An `update` run on the version this node held, without a reload, may fail on a value that
/// is no longer stored (here a string where the stored value is now a number): it is run again
/// on the reloaded record before any error is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_failing_on_the_version_held_is_run_again_on_the_stored_one() {
    let (store, demo, server) = demo_and_bump_servers().await;
    let cookie = demo.login("ole").await;
    let id = cookie_id(&cookie);
    let mut record = store.inner.load(&id).await.unwrap().unwrap();
    record.data.insert("count".into(), json!("not a number"));
    store.inner.save(&record).await.unwrap();
    // The handshake loads the string; then another writer stores a number.
    let s = connected(&server, Transport::Websocket, &cookie).await;
    record.data.insert("count".into(), json!(5));
    store.inner.save(&record).await.unwrap();
    assert_eq!(
        s.ack("bump", json!({})).await,
        json!({ "updated": 6, "read": 6 })
    );
}

/// Sessions of at most 64 bytes per value, whose sockets' `hold` handler keeps the session's turn
/// until told to go, `big` inserts a value over the limit and `blob` reads it back.
fn limited_app(store: MemoryStore, o: &DemoOptions, turns: Arc<Turns>) -> app::DemoApp {
    let setup = move |socket: SocketRef| {
        let turns = turns.clone();
        socket.on(
            "hold",
            move |session: SocketSession, ack: AckSender| async move {
                // Its first operation takes the session's turn, kept until the handler ends.
                let exists = session.exists().await;
                turns.read.notify_one();
                turns.go.notified().await;
                ack.send(&json!(exists.ok())).ok();
            },
        );
        socket.on("big", async |session: SocketSession, ack: AckSender| {
            let answer = match session.insert("blob", "x".repeat(1000)).await {
                Err(SessionError::TooLarge { limit, .. }) => json!({ "too_large": limit }),
                other => json!({ "unexpected": format!("{other:?}") }),
            };
            ack.send(&answer).ok();
        });
        socket.on("blob", async |session: SocketSession, ack: AckSender| {
            let blob: Result<Option<String>, _> = session.get("blob").await;
            ack.send(&json!(blob.ok().flatten())).ok();
        });
    };
    let builder = SocketSessions::builder(store).with_max_value_bytes(64);
    app_from(builder, o, setup)
}

/// A value over the limit is refused when the call is made, without waiting for the session's
/// turn (another handler of the session holds it meanwhile), and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_limit_is_refused_without_waiting_for_the_session() {
    let store = MemoryStore::default();
    let demo_store = store.clone();
    let demo = TestServer::start_with(move |o| app::app(demo_store, o), |_| {}).await;
    let turns = Arc::new(Turns::default());
    let app_turns = turns.clone();
    let server = TestServer::start_with(
        move |o| async move { Ok(limited_app(store, &o, app_turns)) },
        |_| {},
    )
    .await;
    let cookie = demo.login("lia").await;
    let s = connected(&server, Transport::Websocket, &cookie).await;
    // `big` is answered while `hold` has the session: had it waited for its turn, `go` would
    // never come and its ack would time out.
    let (held, big) = tokio::join!(s.ack("hold", json!({})), async {
        turns.read.notified().await;
        let big = s.ack("big", json!({})).await;
        turns.go.notify_one();
        big
    });
    assert_eq!(held, json!(true));
    assert_eq!(big, json!({ "too_large": 64 }));
    assert_eq!(s.ack("blob", json!({})).await, json!(null));
}
