//! A Redis Cluster of the test's own (3 primaries, 3 replicas) under two app nodes: sessions on
//! every shard, the Socket.IO adapter on sharded pub/sub, keyspace notifications from every
//! primary, and a primary killed under writes. The store suites (sessions, lifecycle,
//! consistency) also run on the cluster, as `redis_cluster::*`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use socketio_sessions::Mode;

/// Two app nodes on the cluster, each with its own store pool, adapter and keyspace watch;
/// with `replicas`, every save waits until that many replicas have it.
async fn nodes_on(cluster: &RedisCluster, replicas: Option<u32>) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let url = cluster.url();
        let adapter = url.clone();
        nodes.push(
            TestServer::start_with(
                move |o| async move {
                    // On the node's own runtime, as its connections are in a process.
                    let store = DemoStore::open(&url).await?;
                    let store = match replicas {
                        Some(n) => store.with_replica_wait(n, Duration::from_millis(500))?,
                        None => store,
                    };
                    app::app(store, o).await
                },
                move |o| {
                    o.mode = Mode::PerMessage;
                    o.redis_adapter = Some(adapter);
                    // Only a push can end a socket: revalidation never runs during a test.
                    o.revalidate_every = NEVER;
                },
            )
            .await,
        );
    }
    nodes
}

/// Logs in on `node` until each of the cluster's primaries holds one session: the cookies,
/// in the order of the primaries' indexes.
async fn a_session_per_shard(cluster: &RedisCluster, node: &TestServer) -> Vec<String> {
    let mut by_primary = BTreeMap::new();
    for i in 0..200 {
        let cookie = node.login(&format!("user{i}")).await;
        let primary = cluster.primary_for(&cookie_id(&cookie).to_string());
        by_primary.entry(primary).or_insert(cookie);
        if by_primary.len() == 3 {
            return by_primary.into_values().collect();
        }
    }
    panic!("200 sessions did not cover the 3 shards");
}

/// Waits for the socket's `sinvalid`, checks its reason, and returns how long it took from
/// `since`.
async fn ended_with(s: &mut TestSocket, want: &str, since: Instant) -> Duration {
    assert_eq!(s.next_event("sinvalid").await, json!({ "reason": want }));
    let took = since.elapsed();
    s.next_event("close").await;
    took
}

/// 3 sessions, one per shard; 3 sockets each, spread over the two nodes, all 9 writing at
/// once, 100 `incr` each (one at a time per socket: rust_socketio loses acks that arrive out of
/// order). Every session counts to exactly 300, and no count is acknowledged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_every_shard_count_exactly_across_two_nodes() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, None).await;
    let cookies = a_session_per_shard(&cluster, &nodes[0]).await;
    let mut sockets = Vec::new();
    for cookie in &cookies {
        let mut of_session = Vec::new();
        for i in 0..3 {
            of_session.push(connected(&nodes[i % 2], TRANSPORTS[i % 2], cookie).await);
        }
        sockets.push(of_session);
    }
    let runs = sockets.iter().map(|of_session| async move {
        let bursts = of_session.iter().map(|s| async move {
            let mut acks = Vec::new();
            for _ in 0..100 {
                acks.push(s.ack("incr", json!({})).await);
            }
            acks
        });
        let acks: Vec<Value> = futures_util::future::join_all(bursts)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut counts: Vec<u64> = acks
            .iter()
            .map(|a| a.as_u64().unwrap_or_else(|| panic!("incr failed: {a}")))
            .collect();
        counts.sort_unstable();
        counts
    });
    let counted = futures_util::future::join_all(runs).await;
    for (cookie, counts) in cookies.iter().zip(counted) {
        assert_eq!(counts, (1..=300).collect::<Vec<u64>>(), "each count once");
        assert_eq!(nodes[1].count(cookie).await, 300);
        assert_eq!(nodes[0].count(cookie).await, 300);
    }
}

/// After a failover the adapter reaches the other node again: a message published while its
/// client still routes the channel to the failed primary is lost (pub/sub delivers at most
/// once), so the message is sent again every second until one arrives.
async fn adapter_recovers(from: &TestSocket, to: &mut TestSocket, text: &str) {
    let deadline = Instant::now() + SOON;
    loop {
        from.emit("chat", json!({ "text": text })).await;
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            match tokio::time::timeout(Duration::from_millis(100), to.events.recv()).await {
                Ok(Some((event, got))) if event == "chat" && got["text"] == json!(text) => return,
                // What the caller checks afterwards, checked here since it is taken.
                Ok(Some((event, got))) if event == "sinvalid" => {
                    assert_eq!(got, json!({ "reason": "session_unavailable" }));
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the adapter did not carry `{text}` within {SOON:?}"
        );
    }
}

/// A chat message from a socket on node A reaches a socket on node B: the Socket.IO adapter
/// (sharded pub/sub on the cluster) carries it.
async fn adapter_carries(from: &TestSocket, to: &mut TestSocket, text: &str) {
    from.emit("chat", json!({ "text": text })).await;
    loop {
        let got = to.next_event("chat").await;
        if got["text"] == json!(text) {
            return;
        }
    }
}

/// Logout on node A ends a socket on node B; a `DEL` on each of the three shards ends the
/// socket of the session there, and an expiry too (each primary's keyspace notifications); a
/// message crosses the nodes through the adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_deletions_on_any_shard_end_sockets_on_every_node() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, None).await;
    let talker = nodes[0].login("tal").await;
    let on_a = connected(&nodes[0], Transport::Websocket, &talker).await;
    let mut on_b = connected(&nodes[1], Transport::Polling, &talker).await;
    adapter_carries(&on_a, &mut on_b, "across nodes").await;

    let cookie = nodes[0].login("lou").await;
    let mut s = connected(&nodes[1], Transport::Websocket, &cookie).await;
    let since = Instant::now();
    nodes[0].logout(&cookie).await;
    let logout = ended_with(&mut s, "session_revoked", since).await;
    eprintln!("logout on A ended the socket on B after {logout:?}");

    for (i, cookie) in a_session_per_shard(&cluster, &nodes[0])
        .await
        .iter()
        .enumerate()
    {
        let mut s = connected(&nodes[1], TRANSPORTS[i % 2], cookie).await;
        let key = cookie_id(cookie).to_string();
        let since = Instant::now();
        assert_eq!(cluster.cli_for(&key, &["DEL", &key]).as_deref(), Some("1"));
        let took = ended_with(&mut s, "session_revoked", since).await;
        // Measured, not asserted: a loaded machine stretches it (revalidation is off, so only
        // the push could have ended the socket).
        eprintln!("DEL on shard {i} ended its socket after {took:?}");
    }

    let cookie = nodes[0].login("exe").await;
    let mut s = connected(&nodes[1], Transport::Websocket, &cookie).await;
    let key = cookie_id(&cookie).to_string();
    let since = Instant::now();
    assert_eq!(
        cluster.cli_for(&key, &["PEXPIRE", &key, "100"]).as_deref(),
        Some("1")
    );
    let expired = ended_with(&mut s, "session_expired", since).await;
    eprintln!("expiry ended its socket after {expired:?} (+100 ms TTL)");
}

/// One `incr`: the count acknowledged, or the error answered.
async fn incr(s: &TestSocket) -> Result<u64, String> {
    let ack = s.ack("incr", json!({})).await;
    match (ack.as_u64(), ack.get("error").and_then(Value::as_str)) {
        (Some(n), _) => Ok(n),
        (None, Some(e)) => Err(e.to_owned()),
        _ => panic!("incr answered neither a count nor an error: {ack}"),
    }
}

/// With saves waiting for one replica: the replica takes over; saves are refused while the
/// shard has no replica, and acknowledged again once the old primary is back as one; no
/// acknowledged count is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_writes_fails_over_without_losing_acknowledged_saves() {
    primary_killed_under_writes(Some(1)).await
}

/// Without waiting for replicas: the session works again, saves included, as soon as the
/// replica is primary (whether the last saves before the kill survived is Redis's asynchronous
/// replication: reported, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_writes_fails_over_and_the_session_works_again() {
    primary_killed_under_writes(None).await
}

/// The primary holding a live session's key is killed (SIGKILL) while a socket writes without
/// pause. Within 10 s the replica is primary and the session works again; its sockets were kept
/// or told `session_unavailable`, never that the session is invalid; a `DEL` on the new primary
/// ends them. `replicas`: what each save waits for.
async fn primary_killed_under_writes(replicas: Option<u32>) {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, replicas).await;
    let cookie = nodes[0].login("fay").await;
    let key = cookie_id(&cookie).to_string();
    let primary = cluster.primary_for(&key);
    let replica = cluster.replica_of(primary);
    let mut watchers = vec![
        connected(&nodes[0], Transport::Websocket, &cookie).await,
        connected(&nodes[1], Transport::Polling, &cookie).await,
    ];

    let writer_socket = connected(&nodes[1], Transport::Websocket, &cookie).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Every answer in order: a count, or `None` for a refusal.
    let answers = Arc::new(std::sync::Mutex::new(Vec::<Option<u64>>::new()));
    let writer = tokio::spawn({
        let (stop, answers) = (stop.clone(), answers.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match incr(&writer_socket).await {
                    Ok(n) => answers.lock().unwrap().push(Some(n)),
                    Err(e) => {
                        assert_eq!(e, "session_unavailable", "a failover is not a bad session");
                        answers.lock().unwrap().push(None);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    });
    let acked = || {
        let answers = answers.lock().unwrap();
        answers.iter().flatten().count()
    };
    let refused = || {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.is_none())
            .count()
    };
    eventually("writes before the kill", || async {
        (acked() >= 20).then_some(())
    })
    .await;

    // Another session on the same primary, logged out just before the kill.
    let mut gone = nodes[0].login("gus").await;
    while cluster.primary_for(&cookie_id(&gone).to_string()) != primary {
        gone = nodes[0].login("gus").await;
    }
    nodes[1].logout(&gone).await;

    let killed_at = Instant::now();
    cluster.nodes[primary].kill();
    eventually("the replica promoted", || async {
        cluster.is_primary(replica).then_some(())
    })
    .await;
    let promoted = killed_at.elapsed();
    if replicas.is_some() {
        // The new primary has no replica yet: saves are refused rather than acknowledged with
        // no copy. The old primary comes back as its replica (as an operator or orchestrator
        // restarts a failed node), and saves are acknowledged again.
        let refused_before = refused();
        eventually("a save refused while the shard has no replica", || async {
            (refused() > refused_before).then_some(())
        })
        .await;
        cluster.nodes[primary].restart().await;
        cluster.wait_ready(&[]).await;
        assert_eq!(
            cluster.replica_of(replica),
            primary,
            "the old primary rejoined as a replica"
        );
    }
    let back_at = Instant::now();
    let before = acked();
    eventually("writes after the failover", || async {
        (acked() >= before + 20).then_some(())
    })
    .await;
    let working = back_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the writer's checks");

    let answers = answers.lock().unwrap().clone();
    let counts: Vec<u64> = answers.iter().flatten().copied().collect();
    // Two counts with no refusal between them: one save each, so one apart (a save sent
    // again after a dropped connection must not count twice).
    let mut went_back = 0;
    for pair in answers.windows(2) {
        if let [Some(a), Some(b)] = pair {
            if b <= a {
                went_back += 1;
            } else {
                assert_eq!(*b, a + 1, "one save counted twice: {a} then {b}");
            }
        }
    }
    if replicas.is_some() {
        assert_eq!(
            went_back, 0,
            "an acknowledged count was lost (the count went back): {counts:?}"
        );
        // A refused save may have landed on the primary: the next count is then one more.
        let all_ordered = counts.windows(2).all(|pair| pair[1] > pair[0]);
        assert!(all_ordered, "counts out of order: {counts:?}");
        assert_eq!(
            nodes[0].session(&gone).await.0,
            401,
            "a logout confirmed by a replica stays done after the failover"
        );
    }
    let last = *counts.last().unwrap();
    assert_eq!(nodes[0].count(&cookie).await, last, "the stored count");
    eprintln!(
        "failover (replica wait {replicas:?}): replica primary {promoted:?} after the kill, saves \
         acknowledged again {working:?} after (with a replica wait: the old primary's restart); \
         {} acknowledged, {} refused, the count went back {went_back} time(s)",
        counts.len(),
        answers.len() - counts.len()
    );

    // Kept through the failover (or told to retry), still served, and still reached through the
    // adapter.
    let (first, rest) = watchers.split_at_mut(1);
    adapter_recovers(&first[0], &mut rest[0], "after the failover").await;
    for s in &mut watchers {
        while let Ok((event, value)) = s.events.try_recv() {
            if event == "sinvalid" {
                assert_eq!(value, json!({ "reason": "session_unavailable" }));
            }
        }
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "fay" }));
    }

    // Revocation by `DEL` on the new primary.
    assert_eq!(cluster.primary_for(&key), replica);
    let since = Instant::now();
    assert_eq!(
        cluster.nodes[replica].cli(&["DEL", &key]).as_deref(),
        Some("1")
    );
    for s in &mut watchers {
        let took = ended_with(s, "session_revoked", since).await;
        eprintln!("DEL on the new primary ended a socket after {took:?}");
    }
}

/// A resharding moves a live session's slot to another primary while its sockets are
/// connected: the `del` the move makes on the old primary ends nothing, the sockets keep
/// counting (redirections followed), and a `DEL` on the new primary ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_moves_a_live_session_and_notifications_follow_it() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, None).await;
    let cookie = nodes[0].login("rae").await;
    let key = cookie_id(&cookie).to_string();
    let mut sockets = vec![
        connected(&nodes[0], Transport::Websocket, &cookie).await,
        connected(&nodes[1], Transport::Polling, &cookie).await,
    ];
    for (i, s) in sockets.iter().enumerate() {
        assert_eq!(s.ack("incr", json!({})).await, json!(i + 1));
    }
    let from = cluster.primary_for(&key);
    let to = (0..cluster.nodes.len())
        .find(|&i| i != from && cluster.is_primary(i))
        .expect("another primary");
    cluster.move_slot_of(&key, to);
    assert_eq!(cluster.primary_for(&key), to);
    // Past the deletion grace: a move is not a revocation.
    for s in &mut sockets {
        s.no_event("sinvalid", Duration::from_secs(1)).await;
    }
    for (i, s) in sockets.iter().enumerate() {
        assert_eq!(s.ack("incr", json!({})).await, json!(i + 3));
    }
    let since = Instant::now();
    assert_eq!(cluster.nodes[to].cli(&["DEL", &key]).as_deref(), Some("1"));
    for s in &mut sockets {
        let took = ended_with(s, "session_revoked", since).await;
        eprintln!("DEL on the slot's new primary ended a socket after {took:?}");
    }
}

/// A Redis address that accepts connections and never answers (a host behind a black hole, a
/// wrong port on a proxy): connecting the store and watching notifications, on one server or
/// as a cluster, fail within their connect timeouts instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_fails_the_connect_instead_of_hanging() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis-cluster://127.0.0.1:{port}"),
    ] {
        let started = Instant::now();
        let connected = tokio::time::timeout(
            SOON + SLACK,
            socketio_sessions::store::RedisStore::connect(&url),
        )
        .await
        .expect("RedisStore::connect returned");
        assert!(connected.is_err(), "{url}: connected to a silent server");
        eprintln!("{url}: refused after {:?}", started.elapsed());

        let sessions = socketio_sessions::SocketSessions::builder(
            socketio_sessions::store::MemoryStore::default(),
        )
        .with_allowed_origins(["http://127.0.0.1"])
        .build()
        .unwrap();
        let config = socketio_sessions::store::redis_config(&url).unwrap();
        let started = Instant::now();
        let watching = tokio::time::timeout(SOON + SLACK, sessions.watch_redis(config, true))
            .await
            .expect("watch_redis returned");
        assert!(watching.is_err(), "{url}: watching a silent server");
        eprintln!("{url}: watch_redis refused after {:?}", started.elapsed());
    }
    held.abort();
}
