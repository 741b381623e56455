//! The demo's `GET /metrics` after a scripted run: every count is what the script did. The demo
//! runs as a real process (the Prometheus recorder is process-wide), with real clients.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::*;
use common::*;
use serde_json::json;

/// The samples of a Prometheus text page: `name{labels}` → value (labels as printed).
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(base: &str) -> HashMap<String, f64> {
    let res = bounded_http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics answers");
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    samples(&res.text().await.unwrap())
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Polls the page until `key` has `want` (gauges and ends settle after the script's last call).
async fn settles(base: &str, key: &str, want: f64) {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let m = scrape(base).await;
        if value(&m, key) == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} is {} after {SOON:?}, want {want}",
            value(&m, key)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_scripted_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let demo = Demo::start(&[("DEMO_STORE", &url), ("DEMO_MODE", "per-message")]).await;
    let base = demo.base();

    // Two users, three sockets; five writes each on two of them.
    let (_, _, alice, _) = post_login(&base, None, "alice").await;
    let (_, _, bob, _) = post_login(&base, None, "bob").await;
    let (alice, bob) = (alice.expect("a cookie"), bob.expect("a cookie"));
    let a1 = socket_to(demo.addr, Transport::Websocket, &alice).await;
    let a2 = socket_to(demo.addr, Transport::Polling, &alice).await;
    let b1 = socket_to(demo.addr, Transport::Websocket, &bob).await;
    for s in [&a1, &b1] {
        for _ in 0..5 {
            s.ack("incr", json!({})).await;
        }
    }
    // Refused: no cookie at all (twice), and a cookie that is not a session id.
    for cookie in ["", "", "id=not-a-session-id"] {
        let s = dial_addr(demo.addr, Transport::Websocket, cookie).await;
        assert_ne!(s.outcome, Outcome::Connected);
        s.close().await;
    }
    let m = scrape(&base).await;
    assert_eq!(value(&m, "socketio_sessions_binds_total"), 3.0);
    assert_eq!(
        value(&m, r#"socketio_sessions_refusals_total{reason="missing"}"#),
        2.0
    );
    assert_eq!(
        value(
            &m,
            r#"socketio_sessions_refusals_total{reason="malformed"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "socketio_sessions_saves_total"), 10.0);
    assert_eq!(value(&m, "socketio_sessions_save_conflicts_total"), 0.0);
    assert_eq!(value(&m, "socketio_sessions_bound_sockets"), 3.0);
    assert_eq!(value(&m, "socketio_sessions_live_sessions"), 2.0);
    assert!(
        value(
            &m,
            r#"socketio_sessions_store_call_seconds_count{op="save_if"}"#
        ) >= 10.0,
        "every save is a timed store call"
    );
    assert_eq!(
        value(&m, r#"socketio_sessions_store_errors_total{op="save_if"}"#),
        0.0
    );

    // Alice logs out: both her sockets are ended, her session and sockets leave the gauges.
    let logout = bounded_http()
        .post(format!("{base}/logout"))
        .header("cookie", &alice)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success() || logout.status().is_redirection());
    settles(
        &base,
        r#"socketio_sessions_ends_total{reason="session_revoked"}"#,
        2.0,
    )
    .await;
    settles(&base, "socketio_sessions_bound_sockets", 1.0).await;
    settles(&base, "socketio_sessions_live_sessions", 1.0).await;
    drop((a1, a2));

    // Bob's socket closes: nothing bound, nothing live.
    b1.close().await;
    settles(&base, "socketio_sessions_bound_sockets", 0.0).await;
    settles(&base, "socketio_sessions_live_sessions", 0.0).await;
    demo.assert_no_secret(&[&alice, &bob]);
}
