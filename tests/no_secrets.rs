//! No session id, cookie value or secret in logs or in what clients receive: a whole flow runs
//! with every tracing event of every crate captured at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tower_sessions::cookie::Key;

/// Collects everything logged.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_clients() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        // Everything the server side logs; the test's own clients (rust_socketio over
        // tungstenite's client, reqwest over hyper's client) log their requests, cookies
        // included, and are not under test.
        .with_env_filter(
            "trace,rust_socketio=off,tungstenite::handshake::client=off,reqwest=off,\
             hyper_util::client=off",
        )
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let secret = "a signing secret of at least thirty-two bytes, for the test";
    let server = TestServer::start(&st, |o| {
        o.signing_key = Some(Key::derive_from(secret.as_bytes()));
        o.ttl = Duration::from_secs(3);
        o.revalidate_every = Duration::from_millis(200);
    })
    .await;
    let cookie = server.login("ann").await;
    let value = cookie.strip_prefix("id=").unwrap().to_owned();
    let raw_id = value[value.len() - 22..].to_owned();

    let mut received = Vec::new();
    for t in TRANSPORTS {
        let mut s = connected(&server, t, &cookie).await;
        received.push(s.next_event("welcome").await);
        received.push(s.ack("whoami", json!({})).await);
        received.push(s.ack("incr", json!({})).await);
        s.emit("chat", json!({ "text": "hello" })).await;
        received.push(s.next_event("chat").await);
        s.close().await;
    }
    // Refused handshakes: forged, unsigned, unknown.
    for bad in [
        format!("id={raw_id}"),
        format!("id={value}x"),
        "id=AAAAAAAAAAAAAAAAAAAAAA".into(),
    ] {
        let s = dial(&server, Transport::Websocket, &bad).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    // Logout and rotation end sockets.
    let mut s = connected(&server, Transport::Polling, &cookie).await;
    let rotated = server.relogin(&cookie, "ann2").await;
    received.push(s.next_event("sinvalid").await);
    let mut s = connected(&server, Transport::Websocket, &rotated).await;
    server.logout(&rotated).await;
    received.push(s.next_event("sinvalid").await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture sees the server side: this crate, socketioxide and engineioxide.
    for target in ["socketio_sessions::connect", "socketioxide", "engineioxide"] {
        assert!(logs.contains(target), "nothing from {target} was captured");
    }
    let new_value = rotated.strip_prefix("id=").unwrap();
    let secrets = [
        ("the session id", raw_id.as_str()),
        ("the signed cookie value", value.as_str()),
        ("the rotated session id", &new_value[new_value.len() - 22..]),
        ("the signing secret", secret),
    ];
    let frames = serde_json::to_string(&received).unwrap();
    for (what, text) in secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(text)) {
            panic!("{what} appears in the logs: {line}");
        }
        assert!(!frames.contains(text), "{what} reached a client");
    }
}
