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
                        Some(n) => store.with_replica_wait(n, Duration::from_secs(1))?,
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

/// Logout on node A ends a socket on node B (the adapter's sharded pub/sub); a `DEL` or an
/// expiry on any shard ends its socket (that primary's keyspace notifications).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_deletions_on_any_shard_end_sockets_on_every_node() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, None).await;
    let cookies = a_session_per_shard(&cluster, &nodes[0]).await;
    let mut on_b = Vec::new();
    for (i, cookie) in cookies.iter().enumerate() {
        on_b.push(connected(&nodes[1], TRANSPORTS[i % 2], cookie).await);
    }

    let since = Instant::now();
    nodes[0].logout(&cookies[0]).await;
    let logout = ended_with(&mut on_b[0], "session_revoked", since).await;

    let key = cookie_id(&cookies[1]).to_string();
    let since = Instant::now();
    assert_eq!(cluster.cli_for(&key, &["DEL", &key]).as_deref(), Some("1"));
    let deleted = ended_with(&mut on_b[1], "session_revoked", since).await;

    let key = cookie_id(&cookies[2]).to_string();
    let since = Instant::now();
    assert_eq!(
        cluster.cli_for(&key, &["PEXPIRE", &key, "100"]).as_deref(),
        Some("1")
    );
    let expired = ended_with(&mut on_b[2], "session_expired", since).await;
    // Measured, not asserted: a loaded machine stretches them (revalidation is off, so only
    // the pushes could have ended the sockets).
    eprintln!("ended after: logout {logout:?}, DEL {deleted:?}, expiry {expired:?} (+100 ms TTL)");
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

/// The primary holding a live session's key is killed (SIGKILL) while a socket writes without
/// pause, with saves waiting for one replica. The replica takes over; saves are refused while
/// the shard has no replica, and acknowledged again once the old primary is back as one; the
/// sockets were kept or told `session_unavailable`, never that the session is invalid; no
/// acknowledged count is lost or repeated; and a `DEL` on the new primary ends the sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_writes_fails_over_without_losing_acknowledged_saves() {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let nodes = nodes_on(&cluster, Some(1)).await;
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
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match incr(&writer_socket).await {
                    Ok(n) => acked.lock().unwrap().push(n),
                    Err(e) => {
                        assert_eq!(e, "session_unavailable", "a failover is not a bad session");
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    });
    eventually("writes before the kill", || async {
        (acked.lock().unwrap().len() >= 20).then_some(())
    })
    .await;

    let killed_at = Instant::now();
    cluster.nodes[primary].kill();
    eventually("the replica promoted", || async {
        cluster.is_primary(replica).then_some(())
    })
    .await;
    let promoted = killed_at.elapsed();
    // The new primary has no replica yet: saves are refused rather than acknowledged with no
    // copy. The old primary comes back as its replica (as an operator or orchestrator restarts
    // a failed node), and saves are acknowledged again.
    let refused_before = refused.load(Ordering::Relaxed);
    eventually("a save refused while the shard has no replica", || async {
        (refused.load(Ordering::Relaxed) > refused_before).then_some(())
    })
    .await;
    let before = acked.lock().unwrap().len();
    cluster.nodes[primary].restart().await;
    cluster.wait_ready(&[]).await;
    assert_eq!(
        cluster.replica_of(replica),
        primary,
        "the old primary rejoined as a replica"
    );
    eventually("writes after the failover", || async {
        (acked.lock().unwrap().len() >= before + 20).then_some(())
    })
    .await;
    let working = killed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the writer's checks");

    let acked = acked.lock().unwrap().clone();
    for pair in acked.windows(2) {
        assert!(
            pair[1] > pair[0],
            "an acknowledged count was lost (the count went back): {} then {}",
            pair[0],
            pair[1]
        );
    }
    let last = *acked.last().unwrap();
    assert_eq!(nodes[0].count(&cookie).await, last, "the stored count");
    eprintln!(
        "failover: replica primary after {promoted:?}, saves acknowledged again after {working:?} \
         (old primary restarted as a replica); {} acknowledged, {} refused",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );

    // Kept through the failover (or told to retry), and still served.
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
