//! The session's life reaches its sockets: logout, expiry, id rotation and deletions behind
//! the library's back end them with a reason the client can act on, on one node and across
//! nodes (real Redis, real clients).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn reason(r: &str) -> serde_json::Value {
    json!({ "reason": r })
}

/// Waits for a socket's end: the `sinvalid` event with `want`, then the server's disconnect.
async fn ended(s: &mut TestSocket, want: &str) {
    assert_eq!(s.next_event("sinvalid").await, reason(want));
    s.next_event("close").await;
}

mod cases {
    use super::*;

    pub async fn logout_ends_every_socket_of_the_session_at_once(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        // Only a push can end the sockets: revalidation never runs during the test.
        let server = TestServer::start(&st, |o| o.revalidate_every = NEVER).await;
        let cookie = server.login("amy").await;
        let other = server.login("bo").await;
        let mut sockets = Vec::new();
        for i in 0..3 {
            sockets.push(connected(&server, TRANSPORTS[i % 2], &cookie).await);
        }
        let mut bystander = connected(&server, Transport::Websocket, &other).await;
        server.logout(&cookie).await;
        for s in &mut sockets {
            ended(s, "session_revoked").await;
        }
        bystander
            .no_event("sinvalid", Duration::from_millis(200))
            .await;
        assert_eq!(
            bystander.ack("whoami", json!({})).await,
            json!({ "user": "bo" })
        );
    }

    pub async fn an_idle_socket_expires_on_time(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let ttl = Duration::from_secs(2);
        // Only the expiry timer can end the socket: revalidation never runs during the test.
        let server = TestServer::start(&st, |o| {
            o.ttl = ttl;
            o.revalidate_every = NEVER;
        })
        .await;
        let cookie = server.login("cid").await;
        let logged_in = Instant::now();
        let mut s = connected(&server, Transport::Websocket, &cookie).await;
        assert_eq!(s.next_event("sinvalid").await, reason("session_expired"));
        let at = logged_in.elapsed();
        // Not before the TTL (less a margin for the login's own duration); after it, as soon
        // as a loaded machine gets to it.
        s.next_event("close").await;
        assert!(
            at > ttl - Duration::from_millis(500) && at < ttl + SLACK,
            "expired after {at:?}, want {ttl:?} (- 0.5 s, + {SLACK:?})"
        );
    }

    pub async fn revalidation_never_extends_the_session(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |o| {
            o.ttl = Duration::from_secs(30);
            o.revalidate_every = Duration::from_millis(100);
        })
        .await;
        let cookie = server.login("dot").await;
        let id = cookie_id(&cookie);
        let s = connected(&server, Transport::Websocket, &cookie).await;
        let before = st.record(&id).await.unwrap().expiry_date;
        let ttl_before = st
            .redis
            .as_ref()
            .map(|r| r.cli(&["PEXPIRETIME", &id.to_string()]));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "dot" }));
        assert_eq!(st.record(&id).await.unwrap().expiry_date, before);
        let ttl_after = st
            .redis
            .as_ref()
            .map(|r| r.cli(&["PEXPIRETIME", &id.to_string()]));
        assert_eq!(ttl_before, ttl_after, "the Redis TTL moved");
    }

    pub async fn login_rotates_the_id_and_ends_the_old_sockets(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |_| {}).await;
        let old = server.login("eli").await;
        let mut sockets = vec![
            connected(&server, Transport::Websocket, &old).await,
            connected(&server, Transport::Polling, &old).await,
        ];
        let new = server.relogin(&old, "eli2").await;
        assert_ne!(old, new);
        for s in &mut sockets {
            ended(s, "session_rotated").await;
        }
        let old_id = cookie_id(&old);
        // The old id is gone, or only forwards to the new one (for socket saves in flight).
        eventually("the old id is gone from the store", || async {
            st.record(&old_id)
                .await
                .is_none_or(|r| {
                    r.data.len() == 1 && r.data.contains_key("__socketio_sessions.rotated_to")
                })
                .then_some(())
        })
        .await;
        assert_eq!(server.session(&old).await.0, 401);
        let s = connected(&server, Transport::Websocket, &new).await;
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "eli2" }));
    }

    pub async fn a_deletion_behind_the_back_is_noticed_by_revalidation(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let every = Duration::from_millis(500);
        let server = TestServer::start(&st, |o| o.revalidate_every = every).await;
        let cookie = server.login("fay").await;
        let mut s = connected(&server, Transport::Websocket, &cookie).await;
        let started = Instant::now();
        st.delete_behind(&cookie_id(&cookie)).await;
        ended(&mut s, "session_revoked").await;
        // Within the interval, plus slack for a loaded machine.
        assert!(started.elapsed() < every + SLACK, "{:?}", started.elapsed());
    }

    pub async fn logout_everywhere_ends_every_socket_of_the_user(b: Backend) {
        let Some(st) = TestStore::open(b).await else {
            return;
        };
        let server = TestServer::start(&st, |o| o.revalidate_every = NEVER).await;
        let first = server.login("gus").await;
        // The same user on another device; and someone else who typed the same name.
        let second = st.same_user_elsewhere(&first).await;
        let (other, namesake) = (server.login("hal").await, server.login("gus").await);
        let mut a = connected(&server, Transport::Websocket, &first).await;
        let mut b2 = connected(&server, Transport::Polling, &second).await;
        let mut c = connected(&server, Transport::Websocket, &other).await;
        let mut d = connected(&server, Transport::Websocket, &namesake).await;
        server.logout_everywhere(&first).await;
        ended(&mut a, "session_revoked").await;
        ended(&mut b2, "session_revoked").await;
        c.no_event("sinvalid", Duration::from_millis(300)).await;
        d.no_event("sinvalid", Duration::from_millis(1)).await;
        assert_eq!(c.ack("whoami", json!({})).await, json!({ "user": "hal" }));
        assert_eq!(d.ack("whoami", json!({})).await, json!({ "user": "gus" }));
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
        logout_ends_every_socket_of_the_session_at_once,
        an_idle_socket_expires_on_time,
        revalidation_never_extends_the_session,
        login_rotates_the_id_and_ends_the_old_sockets,
        a_deletion_behind_the_back_is_noticed_by_revalidation,
        logout_everywhere_ends_every_socket_of_the_user,
    ],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_expiry_keeps_an_active_socket_past_three_ttls() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let ttl = Duration::from_secs(3);
    let server = TestServer::start(&st, |o| {
        o.ttl = ttl;
        o.rolling = Some(Duration::from_millis(500));
    })
    .await;
    let cookie = server.login("ike").await;
    let mut s = connected(&server, Transport::Websocket, &cookie).await;
    let started = Instant::now();
    // A 3 s TTL leaves a loaded machine over 2 s between two activities before the session
    // could lapse.
    while started.elapsed() < ttl * 3 + Duration::from_millis(500) {
        // Read-only activity: only rolling expiry moves the session forward.
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "ike" }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.no_event("sinvalid", Duration::from_millis(10)).await;
    // Idle again: it expires.
    ended(&mut s, "session_expired").await;
}

/// Two nodes on one Redis, each with its own store, adapter and keyspace watch.
async fn redis_nodes(redis: &RedisServer, n: usize) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let store = DemoStore::open(&redis.url()).await.unwrap();
        let url = redis.url();
        nodes.push(
            TestServer::start_with(
                move |o| app::app(store, o),
                move |o| {
                    o.redis_adapter = Some(url);
                    // Only a push can end a socket: revalidation never runs during a test.
                    o.revalidate_every = NEVER;
                },
            )
            .await,
        );
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_ends_the_sockets_on_the_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = redis_nodes(&redis, 2).await;
    let cookie = nodes[0].login("jo").await;
    // A cookie from node A works on node B.
    let mut on_b = Vec::new();
    for t in TRANSPORTS {
        let s = connected(&nodes[1], t, &cookie).await;
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "jo" }));
        on_b.push(s);
    }
    on_b.push(connected(&nodes[0], Transport::Websocket, &cookie).await);
    nodes[0].logout(&cookie).await;
    for s in &mut on_b {
        ended(s, "session_revoked").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_end_sockets_at_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = redis_nodes(&redis, 2).await;
    // `DEL` by another process.
    let cookie = nodes[0].login("kai").await;
    let mut s = connected(&nodes[1], Transport::Websocket, &cookie).await;
    assert_eq!(
        redis
            .cli(&["DEL", &cookie_id(&cookie).to_string()])
            .as_deref(),
        Some("1")
    );
    ended(&mut s, "session_revoked").await;
    // The record's TTL running out in Redis.
    let cookie = nodes[0].login("lea").await;
    let mut s = connected(&nodes[1], Transport::Polling, &cookie).await;
    redis.cli(&["PEXPIRE", &cookie_id(&cookie).to_string(), "100"]);
    ended(&mut s, "session_expired").await;
}
