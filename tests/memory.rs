//! Memory stays bounded when a hung store meets a flood of handshakes. This is the only test of
//! its binary, so the RSS it measures is its own: no other test allocates in this process
//! meanwhile, and nothing of an earlier test is still running in it.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_over_a_thousand_handshakes_to_a_hung_store() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |o| {
        o.store_timeout = Duration::from_millis(500);
        o.max_loads_in_flight = Some(4);
        // A thousand handshakes from one address: the rate of new sessions is not under test.
        o.handshake_rate = None;
    })
    .await;
    let cookie = server.login("dan").await;
    let client = http();
    // Warm up, then hang the store.
    assert_eq!(
        polling_connect(&client, &server, &cookie).await,
        Outcome::Connected
    );
    st.store.hang();
    let before = rss_kib();
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..10 {
        let batch = (0..100).map(|_| polling_connect(&client, &server, &cookie));
        for outcome in futures_util::future::join_all(batch).await {
            assert_eq!(outcome, Outcome::Refused("session_unavailable".into()));
            refused += 1;
        }
    }
    // This process hosts the server and the clients; refused Engine.IO sessions stay open
    // until socketioxide's connect timeout (45 s), which is most of the growth.
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert_eq!(refused, 1000);
    assert!(
        grown_mib < 64,
        "RSS grew by {grown_mib} MiB over 1,000 handshakes"
    );
    eprintln!(
        "1,000 handshakes to a hung store: {:?}, RSS +{grown_mib} MiB",
        started.elapsed()
    );
}
