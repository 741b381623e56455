//! When things go wrong: a store that dies under load or answers slowly, hostile handshakes,
//! oversize values. Nothing acknowledged is lost, nothing hangs, nobody gets in.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socketio_sessions::FailureLimit;

fn unknown_cookie() -> String {
    format!("id={}", tower_sessions::session::Id::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_handshakes_are_limited_per_address_without_store_calls() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let window = Duration::from_secs(2);
    let server = TestServer::start(&st, |o| {
        o.failure_limit = Some(FailureLimit {
            max_failures: 5,
            window,
        })
    })
    .await;
    let valid = server.login("ann").await;
    let started = Instant::now();
    for _ in 0..5 {
        let s = dial(&server, Transport::Websocket, &unknown_cookie()).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    // Past the limit: the same answer, and no store call, even for a valid cookie.
    let before = st.calls();
    for cookie in [unknown_cookie(), "id=garbage".into(), valid.clone()] {
        for t in TRANSPORTS {
            let s = dial(&server, t, &cookie).await;
            assert_eq!(
                s.outcome,
                Outcome::Refused("session_invalid".into()),
                "{t:?}"
            );
        }
    }
    assert_eq!(st.calls(), before, "a limited handshake reached the store");
    // The window passes: valid sessions connect again.
    tokio::time::sleep((window + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    let s = connected(&server, Transport::Websocket, &valid).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "ann" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_is_capped_and_the_excess_is_refused_at_once() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |o| {
        o.store_timeout = Duration::from_secs(2);
        o.max_loads_in_flight = Some(4);
    })
    .await;
    let cookie = server.login("bob").await;
    st.store.hang();
    let started = Instant::now();
    let attempts = (0..20).map(|i| {
        let cookie = cookie.clone();
        let server = &server;
        async move {
            let s = dial(server, TRANSPORTS[i % 2], &cookie).await;
            (s.outcome, started.elapsed())
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    for (outcome, _) in &results {
        assert_eq!(*outcome, Outcome::Refused("session_unavailable".into()));
    }
    // At most 4 waited for the store; the rest were refused well before its timeout.
    let fast = results
        .iter()
        .filter(|(_, at)| *at < Duration::from_millis(1500))
        .count();
    assert!(fast >= 16, "only {fast} of 20 refused fast");
    assert!(
        results.iter().all(|(_, at)| *at < Duration::from_secs(6)),
        "a handshake hung"
    );
    // The store answers again: so does the server.
    st.store.heal();
    let s = connected(&server, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "bob" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_under_load_fails_fast_keeps_acknowledged_writes_and_recovers() {
    let Some(mut redis) = RedisServer::start_durable().await else {
        return;
    };
    let store = DemoStore::open(&redis.url()).await.unwrap();
    let server = TestServer::start_with(move |o| app::app_conditional(store, o), |_| {}).await;
    let cookie = server.login("cy").await;
    let sockets = [
        connected(&server, Transport::Websocket, &cookie).await,
        connected(&server, Transport::Polling, &cookie).await,
    ];
    let acked = std::sync::atomic::AtomicU64::new(0);
    let load = |rounds: usize| {
        let (sockets, acked) = (&sockets, &acked);
        async move {
            let mut errors = Vec::new();
            for _ in 0..rounds {
                let each = sockets.iter().map(|s| async move {
                    let sent = Instant::now();
                    (s.ack("incr", json!({})).await, sent.elapsed())
                });
                for (answer, took) in futures_util::future::join_all(each).await {
                    if answer.is_u64() {
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        errors.push((answer, took));
                    }
                }
            }
            errors
        }
    };
    assert!(load(20).await.is_empty(), "errors while Redis was up");
    redis.kill();
    let errors = load(5).await;
    assert_eq!(
        errors.len(),
        10,
        "every event while Redis is down gets an error ack"
    );
    for (answer, took) in &errors {
        assert_eq!(*answer, json!({ "error": "session_unavailable" }));
        // The store timeout is 500 ms; two handlers of the session may queue behind each other.
        assert!(*took < Duration::from_secs(3), "an error ack took {took:?}");
    }
    let s = dial(&server, Transport::Websocket, &cookie).await;
    assert_eq!(s.outcome, Outcome::Refused("session_unavailable".into()));

    redis.restart().await;
    let back = Instant::now();
    loop {
        let answer = sockets[0].ack("incr", json!({})).await;
        if answer.is_u64() {
            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no recovery within 5 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = connected(&server, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "cy" }));
    // Every acknowledged write is in the store.
    assert_eq!(
        server.count(&cookie).await,
        acked.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// Makes files immutable (`chattr +i`: as root, file modes do not stop writes, this does) and
/// mutable again on drop.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: Vec<std::path::PathBuf>) -> Option<Immutable> {
        for f in &files {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(f)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                Immutable(files.clone()).release();
                assert!(
                    !required(),
                    "chattr +i failed on {f:?}, and {REQUIRE_ENV} requires this test"
                );
                eprintln!("skip: chattr +i is not available here");
                return None;
            }
        }
        Some(Immutable(files))
    }

    fn release(&self) {
        for f in &self.0 {
            std::process::Command::new("chattr")
                .arg("-i")
                .arg(f)
                .status()
                .ok();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.release();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_fails_writes_keeps_acknowledged_ones_and_recovers() {
    let Some(st) = TestStore::open(Backend::Sqlite).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let cookie = server.login("eve").await;
    let s = connected(&server, Transport::Websocket, &cookie).await;
    let mut acked = 0;
    for _ in 0..10 {
        assert!(s.ack("incr", json!({})).await.is_u64());
        acked += 1;
    }
    let db = st.sqlite_path().unwrap();
    let files: Vec<_> = ["", "-wal"]
        .iter()
        .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect();
    let Some(read_only) = Immutable::set(files) else {
        return;
    };
    for _ in 0..5 {
        let sent = Instant::now();
        let answer = s.ack("incr", json!({})).await;
        assert_eq!(answer, json!({ "error": "session_unavailable" }));
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{:?}",
            sent.elapsed()
        );
    }
    // A handshake meanwhile connects (reads may still work) or is told to retry; it never hangs.
    let sent = Instant::now();
    let other = dial(&server, Transport::Polling, &cookie).await;
    assert!(
        matches!(&other.outcome, Outcome::Connected)
            || other.outcome == Outcome::Refused("session_unavailable".into()),
        "{:?}",
        other.outcome
    );
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    other.close().await;
    drop(read_only);
    let back = Instant::now();
    loop {
        let answer = s.ack("incr", json!({})).await;
        if answer.is_u64() {
            acked += 1;
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no recovery within 5 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.count(&cookie).await, acked);
}
