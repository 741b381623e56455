//! Postgres and MySQL (MariaDB) failing under a live app: the database killed and restarted
//! under load, every connection dropped, a query hung past the store timeout. What the user
//! sees: `session_unavailable` (never `session_invalid`) within the store timeout, no
//! acknowledged write lost, and the app working again without a restart.
//!
//! The restart tests run a server of their own on a free port (tests/common/sql_server.rs); the
//! others use a database of their own on the machine's server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::sql::SqlKind;
use common::sql_server::SqlServer;
use common::*;
use serde_json::{Value, json};
use socketio_sessions::Mode;
use socketio_sessions::store::sqlx::{self, Connection};

/// The longest a refused call may take: the store timeout and the slack of a loaded machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(2 + 5);

fn kind_of(b: Backend) -> SqlKind {
    match b {
        Backend::Postgres => SqlKind::Postgres,
        Backend::MySql => SqlKind::MySql,
        other => unreachable!("{other:?} is not a SQL backend"),
    }
}

/// One `incr`: the count it acknowledged, or the error it was answered with, and how long the
/// answer took.
async fn incr(s: &TestSocket) -> (Result<u64, String>, Duration) {
    let sent = Instant::now();
    let ack = s.ack("incr", json!({})).await;
    let took = sent.elapsed();
    match (ack.as_u64(), ack.get("error").and_then(Value::as_str)) {
        (Some(n), _) => (Ok(n), took),
        (None, Some(e)) => (Err(e.to_owned()), took),
        _ => panic!("incr answered neither a count nor an error: {ack}"),
    }
}

/// Sends `incr` until `want` of them succeed (at most `within`), checking every failure is the
/// retryable kind and answered in time. Returns the counts acknowledged.
async fn succeed(s: &TestSocket, want: usize, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    let mut acked = Vec::new();
    while acked.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} incr succeeded within {within:?}",
            acked.len()
        );
        match incr(s).await {
            (Ok(n), _) => acked.push(n),
            (Err(e), took) => {
                assert_eq!(
                    e, "session_unavailable",
                    "a store fault is not a bad session"
                );
                assert!(took <= REFUSED_WITHIN, "an error took {took:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acked
}

/// While the store cannot answer: `writes` `incr`s on `s` are each refused with
/// `session_unavailable` within the timeout, and so is a new socket of the same session.
async fn refused_meanwhile(server: &TestServer, s: &TestSocket, cookie: &str, writes: usize) {
    for _ in 0..writes {
        let (result, took) = incr(s).await;
        assert_eq!(result, Err("session_unavailable".to_owned()));
        assert!(took <= REFUSED_WITHIN, "an error took {took:?}");
    }
    let sent = Instant::now();
    let refused = dial(server, Transport::Websocket, cookie).await;
    assert_eq!(
        refused.outcome,
        Outcome::Refused("session_unavailable".into())
    );
    assert!(sent.elapsed() <= REFUSED_WITHIN);
    refused.close().await;
}

/// Every acknowledged count is one more than the one before (none lost, none counted twice),
/// and the store holds at least the last one.
async fn check_counts(st: &TestStore, cookie: &str, acked: &[u64]) {
    for pair in acked.windows(2) {
        assert!(
            pair[1] == pair[0] + 1,
            "acknowledged counts skip or repeat: {} then {}",
            pair[0],
            pair[1]
        );
    }
    let record = st.record(&cookie_id(cookie)).await.expect("the session");
    let stored = record.data["count"].as_u64().expect("a count");
    assert_eq!(stored, *acked.last().unwrap(), "the stored count");
}

mod cases {
    use super::*;

    /// Killed (SIGKILL) and restarted under a stream of writes: one socket writing without
    /// pause through the kill (so that a write is in flight when the database dies), another
    /// checking what the user sees meanwhile.
    pub async fn restarted_under_load(b: Backend) {
        let Some(mut db) = SqlServer::start(kind_of(b)).await else {
            return;
        };
        let Some(st) = TestStore::open_on(b, Some(&db.url())).await else {
            return;
        };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerMessage).await;
        let cookie = server.login("pat").await;
        let s = connected(&server, Transport::Websocket, &cookie).await;
        let mut acked = succeed(&s, 20, SOON).await;

        let writer_socket = connected(&server, Transport::Websocket, &cookie).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut acked = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match incr(&writer_socket).await {
                        (Ok(n), _) => acked.push(n),
                        (Err(e), took) => {
                            assert_eq!(e, "session_unavailable");
                            assert!(took <= REFUSED_WITHIN, "an error took {took:?}");
                        }
                    }
                }
                acked
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::task::block_in_place(|| db.kill());
        // While it is down: every write is refused in time, and so is a new socket.
        refused_meanwhile(&server, &s, &cookie, 3).await;

        db.restart().await;
        // Back without restarting the app: the same socket, a new one, and HTTP.
        acked.extend(succeed(&s, 20, Duration::from_secs(60)).await);
        stop.store(true, Ordering::Relaxed);
        let written = writer.await.unwrap();
        assert!(!written.is_empty(), "the writer never got through");
        acked.extend(written);
        let again = connected(&server, Transport::Polling, &cookie).await;
        let last = succeed(&again, 5, SOON).await;
        check_counts(&st, &cookie, &last).await;
        // Every acknowledged count is there, once: none lost, none counted twice. (A write the
        // database committed just before it died may have been answered with an error; its
        // count is then taken by no ack, which is allowed.)
        acked.sort_unstable();
        let before = acked.len();
        acked.dedup();
        assert_eq!(acked.len(), before, "a count was acknowledged twice");
        assert!(
            acked.last().unwrap() < &last[0],
            "an acknowledged write was lost"
        );
        let (status, body) = server.session(&cookie).await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], json!(last.last().unwrap()));
    }

    /// Every connection of the pool dropped by the server (a failover, an idle-connection
    /// reaper): the next calls open new ones.
    pub async fn dropped_connections_are_replaced(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerMessage).await;
        let cookie = server.login("kim").await;
        let s = connected(&server, Transport::Websocket, &cookie).await;
        let mut acked = succeed(&s, 10, SOON).await;
        let dropped = drop_connections(&st).await;
        assert!(dropped > 0, "the pool had no connection to drop");
        acked.extend(succeed(&s, 10, SOON).await);
        check_counts(&st, &cookie, &acked).await;
    }

    /// A query that hangs (the table locked by another client) is given up at the store
    /// timeout; once the lock is gone, the same socket works again.
    pub async fn a_hung_query_is_unavailable_within_the_timeout(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerMessage).await;
        let cookie = server.login("lee").await;
        let s = connected(&server, Transport::Websocket, &cookie).await;
        let mut acked = succeed(&s, 5, SOON).await;

        let lock = TableLock::take(&st).await;
        refused_meanwhile(&server, &s, &cookie, 2).await;
        lock.release().await;

        acked.extend(succeed(&s, 5, Duration::from_secs(30)).await);
        check_counts(&st, &cookie, &acked).await;
    }
}

/// The test database's URL.
fn database_url(st: &TestStore) -> String {
    st.database_url().expect("a SQL backend")
}

/// Terminates every other connection to the test's database; returns how many.
async fn drop_connections(st: &TestStore) -> u64 {
    let url = database_url(st);
    match st.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows: Vec<(bool,)> = sqlx::query_as(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid()",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            rows.len() as u64
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let ids: Vec<(i64,)> = sqlx::query_as(
                "select cast(id as signed) from information_schema.processlist \
                 where db = database() and id <> connection_id()",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            for (id,) in &ids {
                sqlx::query(&format!("kill {id}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            ids.len() as u64
        }
    }
}

/// Another client holding the sessions table locked, so that every query on it waits.
enum TableLock {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    MySql(sqlx::MySqlConnection),
}

impl TableLock {
    async fn take(st: &TestStore) -> TableLock {
        let url = database_url(st);
        match st.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("lock table tower_sessions.session in access exclusive mode")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                TableLock::Postgres(tx)
            }
            _ => {
                let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
                sqlx::query("lock tables session write")
                    .execute(&mut c)
                    .await
                    .unwrap();
                TableLock::MySql(c)
            }
        }
    }

    async fn release(self) {
        match self {
            TableLock::Postgres(tx) => tx.rollback().await.unwrap(),
            TableLock::MySql(mut c) => {
                sqlx::query("unlock tables").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

store_tests! {
    stores: [
        postgres => Backend::Postgres,
        mysql => Backend::MySql,
    ],
    cases: [
        restarted_under_load,
        dropped_connections_are_replaced,
        a_hung_query_is_unavailable_within_the_timeout,
    ],
}
