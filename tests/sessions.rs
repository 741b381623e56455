//! The core suite, run against every store: memory, SQLite (temp file) and Redis (a server
//! of our own), each case over WebSocket and polling with a real Socket.IO client.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socketio_sessions::{InvalidReason, Mode};
use tower_sessions::cookie::Key;

mod cases {
    use super::*;

    async fn open(backend: Backend) -> Option<TestStore> {
        TestStore::open(backend).await
    }

    pub async fn plain_cookie_sees_user(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |_| {}).await;
        let cookie = server.login("alice").await;
        for t in TRANSPORTS {
            let s = connected(&server, t, &cookie).await;
            assert_eq!(
                s.ack("whoami", json!({})).await,
                json!({ "user": "alice" }),
                "{t:?}"
            );
            s.close().await;
        }
    }

    pub async fn connect_and_disconnect_handlers_see_the_session(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |_| {}).await;
        let (alice, bob) = (server.login("alice").await, server.login("bob").await);
        for t in TRANSPORTS {
            let mut a = connected(&server, t, &alice).await;
            assert_eq!(
                a.next_event("welcome").await,
                json!({ "user": "alice" }),
                "{t:?}"
            );
            let b = connected(&server, t, &bob).await;
            assert_eq!(
                a.next_event("presence").await,
                json!({ "user": "bob", "online": true })
            );
            b.close().await;
            assert_eq!(
                a.next_event("presence").await,
                json!({ "user": "bob", "online": false })
            );
            a.close().await;
        }
    }

    pub async fn signed_cookie_sees_user_and_forgeries_never_reach_the_store(b: Backend) {
        let Some(st) = open(b).await else { return };
        let key = Key::generate();
        let server = TestServer::start(&st, |o| {
            o.signing_key = Some(key);
            // No background reads during the count below.
            o.revalidate_every = NEVER;
        })
        .await;
        let cookie = server.login("bob").await;
        let mut watcher =
            connected(&server, Transport::Websocket, &server.login("wes").await).await;
        for t in TRANSPORTS {
            let s = connected(&server, t, &cookie).await;
            assert_eq!(
                s.ack("whoami", json!({})).await,
                json!({ "user": "bob" }),
                "{t:?}"
            );
            s.close().await;
            // The disconnect handler reads the session, then tells the others: once they hear
            // it, the closed socket made its last store call and the count below sees only
            // the forgeries.
            watcher
                .event_with("presence", &json!({ "user": "bob", "online": false }))
                .await;
        }
        // The id without its signature, and a signature over another id, are refused
        // without a store call.
        let value = cookie.strip_prefix("id=").unwrap();
        let bare_id = &value[value.len() - 22..];
        let mut flipped = value.to_owned();
        flipped.replace_range(..1, if value.starts_with('A') { "B" } else { "A" });
        for forged in [format!("id={bare_id}"), format!("id={flipped}")] {
            for t in TRANSPORTS {
                let before = st.calls();
                let s = dial(&server, t, &forged).await;
                assert_eq!(
                    s.outcome,
                    Outcome::Refused("session_invalid".into()),
                    "{t:?}"
                );
                assert_eq!(st.calls(), before, "a forged cookie reached the store");
            }
        }
    }

    pub async fn missing_forged_and_expired_sessions_are_invalid(b: Backend) {
        let Some(st) = open(b).await else { return };
        let seen = Arc::new(Mutex::new(Vec::<InvalidReason>::new()));
        let hook_seen = seen.clone();
        let server = TestServer::start(&st, |o| {
            o.ttl = Duration::from_secs(1);
            o.on_invalid = Some(Arc::new(move |ev| {
                hook_seen.lock().unwrap().push(ev.reason)
            }));
        })
        .await;
        let expired = server.login("carol").await;
        let started = Instant::now();
        let cases = [
            (None, InvalidReason::Missing),
            (Some("other=1".to_owned()), InvalidReason::Missing),
            (
                Some("id=AAAAAAAAAAAAAAAAAAAAAA".to_owned()),
                InvalidReason::Unknown,
            ),
            (
                Some("id=%zz-not-an-id".to_owned()),
                InvalidReason::Malformed,
            ),
        ];
        for t in TRANSPORTS {
            for (cookie, reason) in &cases {
                let s = TestSocket::connect(
                    &server,
                    t,
                    Dial {
                        cookie: cookie.clone(),
                        ..Dial::default()
                    },
                )
                .await;
                assert_eq!(
                    s.outcome,
                    Outcome::Refused("session_invalid".into()),
                    "{t:?} {cookie:?}"
                );
                assert_eq!(
                    seen.lock().unwrap().pop(),
                    Some(*reason),
                    "{t:?} {cookie:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(1600).saturating_sub(started.elapsed())).await;
        for t in TRANSPORTS {
            let s = dial(&server, t, &expired).await;
            assert_eq!(
                s.outcome,
                Outcome::Refused("session_invalid".into()),
                "expired, {t:?}"
            );
            assert_eq!(seen.lock().unwrap().pop(), Some(InvalidReason::Unknown));
        }
    }

    pub async fn stopped_store_is_unavailable_within_the_timeout(b: Backend) {
        let Some(mut st) = open(b).await else { return };
        let seen = Arc::new(Mutex::new(Vec::<InvalidReason>::new()));
        let hook_seen = seen.clone();
        let server = TestServer::start(&st, |o| {
            o.on_invalid = Some(Arc::new(move |ev| {
                hook_seen.lock().unwrap().push(ev.reason)
            }));
        })
        .await;
        let cookie = server.login("dave").await;
        st.stop().await;
        for t in TRANSPORTS {
            let started = Instant::now();
            let s = dial(&server, t, &cookie).await;
            assert_eq!(
                s.outcome,
                Outcome::Refused("session_unavailable".into()),
                "{t:?}"
            );
            // Within the store timeout, plus slack for a loaded machine.
            assert!(
                started.elapsed() < STORE_TIMEOUT + SLACK,
                "took {:?}",
                started.elapsed()
            );
            let reason = seen.lock().unwrap().pop().unwrap();
            assert!(reason.is_retryable(), "{reason:?}");
        }
    }

    pub async fn per_message_write_is_visible_over_http_after_the_ack(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerMessage).await;
        let cookie = server.login("erin").await;
        let mut expected = 0;
        for t in TRANSPORTS {
            let s = connected(&server, t, &cookie).await;
            for _ in 0..3 {
                expected += 1;
                assert_eq!(s.ack("incr", json!({})).await, json!(expected), "{t:?}");
                assert_eq!(
                    server.count(&cookie).await,
                    expected,
                    "{t:?}: not persisted at ack"
                );
            }
            s.close().await;
        }
    }

    pub async fn logout_ends_the_socket_and_nothing_recreates_the_session(b: Backend) {
        let Some(st) = open(b).await else { return };
        for mode in [Mode::PerMessage, Mode::PerConnection] {
            let server = TestServer::start(&st, |o| o.mode = mode).await;
            let cookie = server.login("frank").await;
            let mut s = connected(&server, Transport::Websocket, &cookie).await;
            assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "frank" }));
            // An unsaved change in per-connection mode, then logout.
            s.ack("incr", json!({})).await;
            server.logout(&cookie).await;
            assert_eq!(
                s.next_event("sinvalid").await,
                json!({ "reason": "session_revoked" })
            );
            s.next_event("close").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                server.session(&cookie).await.0,
                401,
                "{mode:?}: session recreated"
            );
            if let Some(redis) = &st.redis {
                assert_eq!(redis.cli(&["DBSIZE"]).as_deref(), Some("0"), "{mode:?}");
            }
            if let Some(cluster) = &st.cluster {
                let key = cookie_id(&cookie).to_string();
                let exists = cluster.cli_for(&key, &["EXISTS", &key]);
                assert_eq!(exists.as_deref(), Some("0"), "{mode:?}");
            }
        }
    }

    pub async fn per_connection_writes_are_saved_at_disconnect(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerConnection).await;
        let cookie = server.login("gina").await;
        let mut expected = 0;
        for t in TRANSPORTS {
            let s = connected(&server, t, &cookie).await;
            for _ in 0..3 {
                expected += 1;
                assert_eq!(s.ack("incr", json!({})).await, json!(expected), "{t:?}");
            }
            // Not saved while connected...
            assert_eq!(server.count(&cookie).await, expected - 3, "{t:?}");
            s.close().await;
            // ...and saved once the socket is gone.
            server.wait_count(&cookie, expected).await;
        }
    }

    pub async fn concurrent_incr_from_one_socket_counts_exactly(b: Backend) {
        let Some(st) = open(b).await else { return };
        for mode in [Mode::PerMessage, Mode::PerConnection] {
            let server = TestServer::start(&st, |o| {
                o.mode = mode;
                o.write_behind = Some(Duration::from_millis(50));
            })
            .await;
            let cookie = server.login("hal").await;
            for t in TRANSPORTS {
                let before = server.count(&cookie).await;
                let s = connected(&server, t, &cookie).await;
                futures_util::future::join_all((0..100).map(|_| s.emit("incr", json!({})))).await;
                server.wait_count(&cookie, before + 100).await;
                s.close().await;
            }
        }
    }

    pub async fn two_sockets_of_one_session_do_not_lose_updates(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |o| o.mode = Mode::PerMessage).await;
        let cookie = server.login("ivy").await;
        let a = connected(&server, Transport::Websocket, &cookie).await;
        let p = connected(&server, Transport::Polling, &cookie).await;
        tokio::join!(
            futures_util::future::join_all((0..50).map(|_| a.emit("incr", json!({})))),
            futures_util::future::join_all((0..50).map(|_| p.emit("incr", json!({})))),
        );
        server.wait_count(&cookie, 100).await;
    }

    pub async fn bad_origin_gets_403_without_store_calls(b: Backend) {
        let Some(st) = open(b).await else { return };
        let server = TestServer::start(&st, |_| {}).await;
        let cookie = server.login("jo").await;
        let good = server.origin();
        for evil in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:1",
            &format!("{good}.evil.example"),
        ] {
            let before = st.calls();
            let headers = [("origin", evil), ("cookie", cookie.as_str())];
            assert_eq!(polling_handshake(&server, &headers).await, 403, "{evil}");
            assert_eq!(websocket_handshake(&server, &headers).await, 403, "{evil}");
            for t in TRANSPORTS {
                let s = TestSocket::connect_raw(
                    &server,
                    t,
                    Dial {
                        cookie: Some(cookie.clone()),
                        origin: Some(evil.to_owned()),
                        ..Dial::default()
                    },
                )
                .await;
                assert!(s.is_err(), "{evil} {t:?}: handshake should fail");
            }
            assert_eq!(st.calls(), before, "{evil}: the store was called");
        }
        assert_eq!(polling_handshake(&server, &[("origin", &good)]).await, 200);
        assert_eq!(
            websocket_handshake(&server, &[("origin", &good)]).await,
            101
        );
        let s = TestSocket::connect(
            &server,
            Transport::Websocket,
            Dial {
                cookie: Some(cookie.clone()),
                origin: Some(good.clone()),
                ..Dial::default()
            },
        )
        .await;
        assert_eq!(s.outcome, Outcome::Connected);
    }

    pub async fn auth_sid_only_when_enabled_and_never_from_the_query(b: Backend) {
        let Some(st) = open(b).await else { return };
        for enabled in [false, true] {
            let server = TestServer::start(&st, |o| o.auth_sid = enabled).await;
            let cookie = server.login("kim").await;
            let sid = cookie.strip_prefix("id=").unwrap().to_owned();
            for t in TRANSPORTS {
                let s = TestSocket::connect(
                    &server,
                    t,
                    Dial {
                        auth: Some(json!({ "sid": sid })),
                        ..Dial::default()
                    },
                )
                .await;
                if enabled {
                    assert_eq!(s.outcome, Outcome::Connected, "{t:?}");
                    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "kim" }));
                } else {
                    assert_eq!(
                        s.outcome,
                        Outcome::Refused("session_invalid".into()),
                        "{t:?}"
                    );
                }
                let s = TestSocket::connect(
                    &server,
                    t,
                    Dial {
                        query: Some(format!("id={sid}&session_id={sid}&token={sid}")),
                        ..Dial::default()
                    },
                )
                .await;
                assert_eq!(
                    s.outcome,
                    Outcome::Refused("session_invalid".into()),
                    "query sid, {t:?}"
                );
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
        plain_memory => Backend::PlainMemory,
    ],
    cases: [
        plain_cookie_sees_user,
        connect_and_disconnect_handlers_see_the_session,
        signed_cookie_sees_user_and_forgeries_never_reach_the_store,
        missing_forged_and_expired_sessions_are_invalid,
        stopped_store_is_unavailable_within_the_timeout,
        per_message_write_is_visible_over_http_after_the_ack,
        logout_ends_the_socket_and_nothing_recreates_the_session,
        per_connection_writes_are_saved_at_disconnect,
        concurrent_incr_from_one_socket_counts_exactly,
        two_sockets_of_one_session_do_not_lose_updates,
        bad_origin_gets_403_without_store_calls,
        auth_sid_only_when_enabled_and_never_from_the_query,
    ],
}
