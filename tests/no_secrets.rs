//! No session id, cookie value or secret in logs or in what clients receive: a whole flow runs
//! with every tracing event of every crate captured at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use socketio_sessions::{FailureLimit, TrustedProxies};
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

/// Installs the capture of everything logged (once per test binary: the tests here share it,
/// each looking for its own secrets).
fn capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                // Everything the server side logs; the test's own clients (rust_socketio over
                // tungstenite's client, reqwest over hyper's client) log their requests,
                // cookies included, and are not under test.
                .with_env_filter(
                    "trace,rust_socketio=off,tungstenite::handshake::client=off,reqwest=off,\
                     hyper_util::client=off",
                )
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            capture
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_clients() {
    let capture = capture();

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

/// A Socket.IO connect over raw Engine.IO polling with any headers: the server's answer.
async fn raw_connect(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> String {
    let client = http();
    let base = server.url(&format!("/socket.io/?EIO=4&transport=polling{query}"));
    let with = |mut req: reqwest::RequestBuilder| {
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    };
    let open = with(client.get(&base)).send().await.unwrap();
    if open.status() != 200 {
        return open.status().to_string();
    }
    let body = open.text().await.unwrap();
    let sid = body
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let url = format!("{base}&sid={sid}");
    let poll = async {
        let mut seen = String::new();
        for _ in 0..10 {
            let body = with(client.get(&url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.push_str(&body);
            if body
                .split('\u{1e}')
                .any(|p| p.starts_with("40") || p.starts_with("44"))
            {
                break;
            }
        }
        seen
    };
    let post = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        with(client.post(&url)).body("40").send().await.unwrap();
    };
    tokio::join!(poll, post).0
}

/// Whatever a client sends, this crate's logs (every level) hold no session id or cookie
/// value: with `auth` ids turned off a client sends `auth: {sid}` anyway, and puts its cookie
/// in every header this crate reads (`Origin`, `Referer`, `X-Forwarded-For`, cookie names,
/// oversized and forged cookies, the query). socketioxide's own `socketioxide::client` target
/// does log the `auth` payload at DEBUG: the README says to keep it at INFO, and this test
/// checks that the advice is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_this_crates_logs_whatever_the_client_sends() {
    let capture = capture();
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |o| {
        o.trusted_proxies = Some(TrustedProxies::new(["127.0.0.1"]).unwrap());
        o.failure_limit = Some(FailureLimit {
            max_failures: 3,
            window: Duration::from_secs(60),
        });
    })
    .await;
    let cookie = server.login("hostile").await;
    let value = cookie.strip_prefix("id=").unwrap().to_owned();
    let from = capture.0.lock().unwrap().len();

    // `auth: {sid}` with auth ids off: without the cookie, and beside it.
    for (t, with_cookie) in [(Transport::Websocket, false), (Transport::Polling, true)] {
        let s = TestSocket::connect(
            &server,
            t,
            Dial {
                cookie: with_cookie.then(|| cookie.clone()),
                auth: Some(json!({ "sid": value })),
                // Not `sid`: Engine.IO reads that one as its own session id.
                query: Some(format!("session={value}&token={value}")),
                ..Dial::default()
            },
        )
        .await;
        let want = if with_cookie {
            Outcome::Connected
        } else {
            Outcome::Refused("session_invalid".into())
        };
        assert_eq!(s.outcome, want);
        s.close().await;
    }
    // The cookie's value in every header this crate reads, and in forged cookies, until the
    // address is limited (and beyond).
    let own = server.origin();
    let forged = format!("id={value}x");
    let oversized = format!("id={value}{}", "x".repeat(9000));
    let named = format!("{value}=1; id={value}; id={value}");
    let hostile_origin = format!("http://{value}.evil.example");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("cookie", &forged)],
        vec![("cookie", &oversized)],
        vec![("cookie", &named)],
        vec![("cookie", &forged), ("x-forwarded-for", &value)],
        vec![("cookie", &forged), ("x-forwarded-for", &value)],
        vec![("cookie", &forged), ("x-forwarded-for", "203.0.113.9")],
        vec![("cookie", &cookie), ("origin", &value)],
        vec![("cookie", &cookie), ("origin", &hostile_origin)],
        vec![("cookie", &cookie), ("origin", &own), ("referer", &value)],
    ];
    for headers in &cases {
        raw_connect(&server, &format!("&sid2={value}"), headers).await;
    }
    for (origin, referer) in [
        ("null", value.as_str()),
        (value.as_str(), "x"),
        (own.as_str(), "y"),
    ] {
        http()
            .post(server.url("/api/visit"))
            .header("cookie", &forged)
            .header("origin", origin)
            .header("referer", referer)
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()[from..]).into_owned();
    let raw_id = &value[value.len() - 22..];
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("socketio_sessions::"))
        .collect();
    assert!(
        ours.iter().any(|l| l.contains("refused")),
        "this crate's refusals were not captured"
    );
    for line in &ours {
        assert!(
            !line.contains(&value) && !line.contains(raw_id),
            "a credential in this crate's logs: {line}"
        );
    }
    // socketioxide logs the raw CONNECT packet, `auth` included, at DEBUG.
    assert!(
        logs.lines()
            .any(|l| l.contains("socketioxide::client") && l.contains(&value)),
        "socketioxide::client no longer logs the auth payload: update the README's advice"
    );
    eprintln!(
        "{} lines from this crate over {} hostile requests: no credential",
        ours.len(),
        cases.len() + 5
    );
}
