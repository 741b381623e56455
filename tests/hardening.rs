//! When things go wrong: a store that dies under load or answers slowly, hostile handshakes,
//! oversize values. Nothing acknowledged is lost, nothing hangs, nobody gets in.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socketio_sessions::store::{ConditionalStore, RedisStore, SaveOutcome, Versioned};
use socketio_sessions::{FailureLimit, InvalidReason};
use tower_sessions::SessionStore;
use tower_sessions::session::Record;

fn unknown_cookie() -> String {
    format!("id={}", tower_sessions::session::Id::default())
}

/// The reasons of every refused handshake, as the server's `on_invalid` hook saw them.
fn refusals(o: &mut DemoOptions) -> Arc<Mutex<Vec<InvalidReason>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    o.on_invalid = Some(Arc::new(move |ev| {
        hook_seen.lock().unwrap().push(ev.reason)
    }));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_handshakes_are_limited_per_address_without_store_calls() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    // A window no test outlives: once reached, the limit holds however slow the machine is.
    let server = TestServer::start(&st, |o| {
        o.failure_limit = Some(FailureLimit {
            max_failures: 5,
            window: NEVER,
        })
    })
    .await;
    let valid = server.login("ann").await;
    for _ in 0..5 {
        let s = dial(&server, Transport::Websocket, &unknown_cookie()).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    // Past the limit: a retryable answer (the address may be shared by valid users), and no
    // store call, for plain cookies valid or not.
    let before = st.calls();
    for cookie in [unknown_cookie(), "id=garbage".into(), valid.clone()] {
        for t in TRANSPORTS {
            let s = dial(&server, t, &cookie).await;
            assert_eq!(
                s.outcome,
                Outcome::Refused("session_unavailable".into()),
                "{t:?}"
            );
        }
    }
    assert_eq!(st.calls(), before, "a limited handshake reached the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_limit_lifts_when_its_window_passes() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let window = Duration::from_secs(2);
    let mut seen = None;
    let server = TestServer::start(&st, |o| {
        o.failure_limit = Some(FailureLimit {
            max_failures: 5,
            window,
        });
        seen = Some(refusals(o));
    })
    .await;
    let seen = seen.unwrap();
    let valid = server.login("ann").await;
    let started = Instant::now();
    for _ in 0..5 {
        let s = dial(&server, Transport::Websocket, &unknown_cookie()).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    // The window opened at the first failure the server counted, after `started`: a
    // handshake answered before `started + window` is inside it, and must be limited. (On a
    // machine so slow that the window has passed already, that is not known, and not asserted.)
    let s = dial(&server, Transport::Websocket, &valid).await;
    if started.elapsed() < window {
        // A plain id cannot be told from a guess without a lookup: refused, but retryable.
        assert_eq!(s.outcome, Outcome::Refused("session_unavailable".into()));
        assert_eq!(
            seen.lock().unwrap().last(),
            Some(&InvalidReason::RateLimited)
        );
    }
    let last_failure = Instant::now();
    // The window passes (it opened before the last failure): valid sessions connect again.
    tokio::time::sleep_until((last_failure + window + Duration::from_millis(200)).into()).await;
    let s = connected(&server, Transport::Websocket, &valid).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "ann" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_is_capped_and_the_excess_is_refused_at_once() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let mut seen = None;
    let server = TestServer::start(&st, |o| {
        // No store timeout frees a place during the test: only the cap can refuse.
        o.store_timeout = NEVER;
        o.max_loads_in_flight = Some(4);
        seen = Some(refusals(o));
    })
    .await;
    let seen = seen.unwrap();
    // One session per handshake, so that each admitted one is a load of its own in the store.
    let mut cookies = Vec::new();
    for i in 0..20 {
        cookies.push(server.login(&format!("user{i}")).await);
    }
    st.store.hang();
    let client = http();
    let attempts = futures_util::future::join_all(
        cookies.iter().map(|c| polling_connect(&client, &server, c)),
    );
    let (outcomes, ()) = tokio::join!(attempts, async {
        // While the store has answered nothing: 4 loads wait in it, and the other 16
        // handshakes are refused, at once rather than after waiting for a place.
        eventually("4 loads waiting in the hung store", || async {
            (st.store.parked() == 4).then_some(())
        })
        .await;
        eventually("16 handshakes refused while the store hangs", || async {
            (seen.lock().unwrap().len() >= 16).then_some(())
        })
        .await;
        assert_eq!(st.store.parked(), 4, "loads in the store past the cap");
        assert_eq!(*seen.lock().unwrap(), vec![InvalidReason::Overloaded; 16]);
        // The store answers again: the 4 waiting handshakes go through.
        st.store.heal();
    });
    let refused = outcomes
        .iter()
        .filter(|o| **o == Outcome::Refused("session_unavailable".into()))
        .count();
    let admitted = outcomes
        .iter()
        .filter(|o| **o == Outcome::Connected)
        .count();
    assert_eq!((refused, admitted), (16, 4), "{outcomes:?}");
    let s = connected(&server, Transport::Websocket, &cookies[0]).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "user0" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_under_load_fails_fast_keeps_acknowledged_writes_and_recovers() {
    let Some(mut redis) = RedisServer::start_durable().await else {
        return;
    };
    let store = DemoStore::open(&redis.url()).await.unwrap();
    let server = TestServer::start_with(move |o| app::app(store, o), |_| {}).await;
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
    let errors = load(20).await;
    assert!(errors.is_empty(), "errors while Redis was up: {errors:?}");
    redis.kill();
    // Each of these waits out the store timeout, two handlers of the session one after the
    // other: three rounds make the point.
    let errors = load(3).await;
    assert_eq!(
        errors.len(),
        6,
        "every event while Redis is down gets an error ack"
    );
    for (answer, took) in &errors {
        assert_eq!(*answer, json!({ "error": "session_unavailable" }));
        // Two handlers of the session may queue behind each other, each bounded by the store
        // timeout; plus slack for a loaded machine. Without the timeout it would hang.
        assert!(
            *took < STORE_TIMEOUT * 2 + SLACK,
            "an error ack took {took:?}"
        );
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
            back.elapsed() < SOON,
            "no recovery within {SOON:?}: {answer}"
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
            sent.elapsed() < STORE_TIMEOUT * 2 + SLACK,
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
        sent.elapsed() < STORE_TIMEOUT * 2 + SLACK,
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
            back.elapsed() < SOON,
            "no recovery within {SOON:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.count(&cookie).await, acked);
}

/// A Redis store on `redis` with `write_timeout`, and a record `{"n": 1}` created through it,
/// read back with its version.
async fn a_stored_record(
    redis: &RedisServer,
    write_timeout: Duration,
) -> (RedisStore, Record, Versioned) {
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .with_write_timeout(write_timeout);
    let mut record = Record {
        id: Default::default(),
        data: [("n".to_owned(), json!(1))].into_iter().collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.unwrap();
    let held = store.load_versioned(&record.id).await.unwrap().unwrap();
    (store, record, held)
}

/// A conditional save made just as Redis dies fails within the store's write timeout (it does
/// not wait for Redis to come back), and it does not land once Redis is back: the client holds
/// commands while it reconnects, and a save its caller was told had failed must not be sent
/// then. The same for the HTTP side's save and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_save_told_failed_does_not_land_after_the_restart() {
    let Some(mut redis) = RedisServer::start_durable().await else {
        return;
    };
    let write_timeout = Duration::from_millis(300);
    let (store, record, held) = a_stored_record(&redis, write_timeout).await;
    let mut changed = record.clone();
    changed.data.insert("n".to_owned(), json!(2));

    // At once, so that the client may not have seen its connection close yet: the save is
    // then handed to it while it still counts itself connected.
    redis.kill();
    let sent = Instant::now();
    let outcome = tokio::time::timeout(SOON, store.save_if(&changed, &held.version)).await;
    let took = sent.elapsed();
    assert!(
        matches!(outcome, Ok(Err(_))),
        "a save while Redis is down fails: {outcome:?}"
    );
    assert!(
        took < write_timeout + SLACK,
        "the failed save took {took:?}"
    );
    // The HTTP side's writes too: an unconditional save and a delete (a logout).
    let sent = Instant::now();
    let saved = tokio::time::timeout(SOON, store.save(&changed)).await;
    assert!(matches!(saved, Ok(Err(_))), "an HTTP save: {saved:?}");
    let deleted = tokio::time::timeout(SOON, store.delete(&record.id)).await;
    assert!(matches!(deleted, Ok(Err(_))), "an HTTP delete: {deleted:?}");
    let took = sent.elapsed();
    assert!(
        took < write_timeout * 2 + SLACK,
        "the failed HTTP writes took {took:?}"
    );

    redis.restart().await;
    eventually("the store answers again", || async {
        store.load_versioned(&record.id).await.ok()
    })
    .await;
    // Past any reconnect (every 200 ms) and replay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reloaded = store
        .load_versioned(&record.id)
        .await
        .unwrap()
        .expect("the record survives the restart");
    assert_eq!(reloaded.record.data.get("n"), Some(&json!(1)));
    assert_eq!(reloaded.version, held.version);
}

/// A save sent to a Redis that hangs (its process stopped, its connections open) fails within
/// the write timeout. When Redis resumes and runs it, it must write nothing: its caller was told
/// it failed. Without a deadline the script checks against the server's clock, it would land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_sent_to_a_hung_redis_does_not_land_when_it_resumes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let write_timeout = Duration::from_millis(300);
    let (store, record, held) = a_stored_record(&redis, write_timeout).await;
    let mut saved = record.clone();
    saved.data.insert("n".to_owned(), json!(2));
    let SaveOutcome::Saved(version) = store.save_if(&saved, &held.version).await.unwrap() else {
        panic!("the first save conflicts with nothing");
    };
    let mut late = saved.clone();
    late.data.insert("n".to_owned(), json!(3));

    redis.pause();
    let sent = Instant::now();
    let outcome = tokio::time::timeout(SOON, store.save_if(&late, &version)).await;
    let took = sent.elapsed();
    assert!(
        matches!(outcome, Ok(Err(_))),
        "a save to a hung Redis fails: {outcome:?}"
    );
    assert!(
        took < write_timeout + SLACK,
        "the failed save took {took:?}"
    );
    redis.resume();
    eventually("the store answers again", || async {
        store.load_versioned(&record.id).await.ok()
    })
    .await;
    // Past the moment Redis got to what waited in its buffers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = store
        .load_versioned(&record.id)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(
        stored.record.data.get("n"),
        Some(&json!(2)),
        "the save told failed landed when Redis resumed"
    );
    assert_eq!(stored.version, version);
}

/// Per connection, a write-behind save that times out against a hung Redis is retried until
/// one lands. The attempts that timed out must not land as well when Redis resumes: the retry
/// would then find the record changed, merge its `update` on it again, and the user's one
/// increment would count twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_retried_past_a_hung_redis_applies_the_change_once() {
    use socketio_sessions::Mode;

    let Some(st) = TestStore::open(Backend::Redis).await else {
        return;
    };
    let redis = st.redis.as_ref().expect("a redis-server of the test's own");
    let server = TestServer::start(&st, |o| {
        o.mode = Mode::PerConnection;
        o.write_behind = Some(Duration::from_millis(100));
    })
    .await;
    let cookie = server.login("hal").await;
    let id = cookie_id(&cookie);
    let stored_count = || async { st.record(&id).await?.data.get("count").cloned() };
    let s = connected(&server, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("incr", json!({})).await, json!(1));
    eventually("the first increment is saved", || async {
        (stored_count().await == Some(json!(1))).then_some(())
    })
    .await;

    redis.pause();
    let failed_before = st.store.failures();
    assert_eq!(s.ack("incr", json!({})).await, json!(2));
    // Two attempts wait in Redis's buffers, each told failed after the write timeout. Resumed
    // right after the second failure, before the next attempt (400 ms later) is sent: nothing
    // is in flight, so every attempt Redis now runs was told failed.
    eventually("two write-behind attempts fail", || async {
        (st.store.failures() >= failed_before + 2).then_some(())
    })
    .await;
    redis.resume();
    eventually("the retried save lands", || async {
        (stored_count().await == Some(json!(2))).then_some(())
    })
    .await;
    // Past any attempt still waiting, and the next retry had there been a conflict.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored_count().await,
        Some(json!(2)),
        "two increments acknowledged"
    );
    assert_eq!(s.ack("incr", json!({})).await, json!(3));
}
