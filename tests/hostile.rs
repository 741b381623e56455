//! Hostile and crowded networks (issue #13): the origin gate has no side door, the failure
//! limit never refuses a valid session and cannot be overshot, messages are bounded on both
//! transports, state-changing HTTP routes are CSRF-safe, and the cookie cap counts the session
//! cookie only. Hostile forms a Socket.IO client cannot send are sent as raw Engine.IO
//! requests and WebSocket frames. (Handshake memory: `tests/handshake_memory.rs`; logs:
//! `tests/no_secrets.rs`.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use serde_json::json;
use socketio_sessions::store::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use socketio_sessions::{FailureLimit, TrustedProxies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_sessions::cookie::{Cookie, CookieJar, Key};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

const EVIL: &str = "http://evil.example";

// ---------------------------------------------------------------------------------------------
// Raw Engine.IO

/// A Socket.IO connect over raw Engine.IO polling at `path` (`/socket.io` or `/socket.io/`),
/// with these request headers: `Err(status)` when the handshake is refused, else the server's
/// answer to the `connect` packet (`40…` accepted, `44…` refused).
async fn polling_connect(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    connect: &str,
) -> Result<String, u16> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(http);
    let base = server.url(&format!("{path}?EIO=4&transport=polling"));
    let with = |mut req: reqwest::RequestBuilder| {
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    };
    let open = with(client.get(&base)).send().await.unwrap();
    if open.status() != 200 {
        return Err(open.status().as_u16());
    }
    let body = open.text().await.unwrap();
    let open: serde_json::Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    let url = format!("{base}&sid={}", open["sid"].as_str().unwrap());
    // As socket.io-client does: the long-poll is under way while the connect packet is sent.
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
                return seen;
            }
        }
        panic!("no connect answer: {seen:?}");
    };
    let post = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        with(client.post(&url))
            .body(connect.to_owned())
            .send()
            .await
            .unwrap()
            .status()
    };
    let (seen, posted) = tokio::join!(poll, post);
    assert_eq!(posted, 200);
    Ok(seen)
}

/// The `message` of a refused connect answer, or `connected`.
fn verdict(answer: &str) -> &'static str {
    if answer.contains("40{\"sid\"") {
        "connected"
    } else if answer.contains("session_invalid") {
        "session_invalid"
    } else if answer.contains("session_unavailable") {
        "session_unavailable"
    } else {
        panic!("unexpected answer {answer:?}")
    }
}

/// A WebSocket spoken by hand: masked client frames of any size, the server's frames read raw.
struct RawWs(TcpStream);

impl RawWs {
    /// Upgrades at `path_query`; `Err(status)` when refused, else the socket and the
    /// Engine.IO `open` packet.
    async fn open(
        addr: SocketAddr,
        path_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(RawWs, String), u16> {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "GET {path_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return Err(status);
        }
        let mut ws = RawWs(tcp);
        let open = ws
            .recv(Duration::from_secs(5))
            .await
            .expect("the open packet");
        Ok((ws, open))
    }

    /// Sends one masked text frame; the server may hang up half-way.
    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        self.0.write_all(&frame).await?;
        for chunk in payload.chunks(64 * 1024) {
            let masked: Vec<u8> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            self.0.write_all(&masked).await?;
        }
        Ok(())
    }

    /// The next text frame, or `None` when the server closed the connection (or sent a close
    /// frame) or nothing came within `within`.
    async fn recv(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, async {
            loop {
                let mut head = [0u8; 2];
                self.0.read_exact(&mut head).await.ok()?;
                let len = match head[1] & 0x7f {
                    126 => u64::from(self.0.read_u16().await.ok()?),
                    127 => self.0.read_u64().await.ok()?,
                    n => u64::from(n),
                };
                let mut payload = vec![0u8; len as usize];
                self.0.read_exact(&mut payload).await.ok()?;
                match head[0] & 0x0f {
                    0x1 => return Some(String::from_utf8_lossy(&payload).into_owned()),
                    0x8 => return None,
                    _ => continue,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The next Engine.IO packet other than a ping (answered) or a noop.
    async fn packet(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let packet = self
                .recv(deadline.saturating_duration_since(Instant::now()))
                .await?;
            match packet.as_str() {
                "2" => self.send(b"3").await.ok()?,
                "6" => {}
                _ => return Some(packet),
            }
        }
    }

    /// Waits for the server to end the connection; `false` if it is still open after `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.recv(deadline - Instant::now()).await.is_none() {
                return Instant::now() < deadline;
            }
        }
        false
    }
}

/// The status of a bare WebSocket upgrade at `path_query`.
async fn upgrade_status(server: &TestServer, path_query: &str, headers: &[(&str, &str)]) -> u16 {
    match RawWs::open(server.addr, path_query, headers).await {
        Ok(_) => 101,
        Err(status) => status,
    }
}

/// The status of a bare polling request.
async fn polling_status(
    server: &TestServer,
    method: reqwest::Method,
    path_query: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let mut req = http().request(method, server.url(path_query));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body("40").send().await.unwrap().status().as_u16()
}

// ---------------------------------------------------------------------------------------------
// 1. The origin gate covers exactly what Engine.IO serves

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_gate_covers_every_path_form_engine_io_serves() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let own = server.origin();
    let origins: [(&str, Option<&str>, bool); 5] = [
        ("own", Some(&own), true),
        ("none", None, true),
        ("foreign", Some(EVIL), false),
        ("null", Some("null"), false),
        (
            "own, with a suffix",
            Some(&format!("{own}.evil.example")),
            false,
        ),
    ];
    let mut cases = 0;
    for path in ["/socket.io", "/socket.io/"] {
        for transport in ["polling", "websocket"] {
            for query in [format!("?EIO=4&transport={transport}"), String::new()] {
                let uri = format!("{path}{query}");
                for (name, origin, allowed) in &origins {
                    let headers: Vec<(&str, &str)> =
                        origin.map(|o| ("origin", o)).into_iter().collect();
                    let status = match transport {
                        "polling" => {
                            polling_status(&server, reqwest::Method::GET, &uri, &headers).await
                        }
                        _ => upgrade_status(&server, &uri, &headers).await,
                    };
                    let want = match (allowed, query.is_empty(), transport) {
                        (false, _, _) => 403,
                        // Engine.IO needs `EIO` and `transport`.
                        (true, true, _) => 400,
                        (true, false, "polling") => 200,
                        (true, false, _) => 101,
                    };
                    assert_eq!(status, want, "{uri} from {name} origin");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 2 * 2 * 2 * 5);

    // An Engine.IO session opened from the allowed origin: requests on it from another origin
    // are refused on either path form.
    let cookie = server.login("ann").await;
    let open = http()
        .get(server.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", &own)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    for path in ["/socket.io", "/socket.io/"] {
        let uri = format!("{path}?EIO=4&transport=polling&sid={sid}");
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let status = polling_status(&server, method.clone(), &uri, &[("origin", EVIL)]).await;
            assert_eq!(status, 403, "{method} {uri}");
        }
        let status = upgrade_status(
            &server,
            &uri.replace("polling", "websocket"),
            &[("origin", EVIL), ("cookie", &cookie)],
        )
        .await;
        assert_eq!(status, 403, "upgrade of an open session at {path}");
    }

    // A client that does not add the trailing slash (socket.io-client's `addTrailingSlash:
    // false`) connects from the allowed origin, on both transports.
    for path in ["/socket.io", "/socket.io/"] {
        let headers = [("origin", own.as_str()), ("cookie", cookie.as_str())];
        let answer = polling_connect(&server, path, &headers, "40")
            .await
            .unwrap();
        assert_eq!(verdict(&answer), "connected", "polling at {path}");
        let (mut ws, _) = RawWs::open(
            server.addr,
            &format!("{path}?EIO=4&transport=websocket"),
            &headers,
        )
        .await
        .unwrap();
        ws.send(b"40").await.unwrap();
        let answer = ws.packet(SOON).await.unwrap();
        assert_eq!(verdict(&answer), "connected", "websocket at {path}");
    }
    eprintln!(
        "origin gate: {cases} path × transport × origin cases, plus an open session's requests"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The failure limit never refuses a valid session, and cannot be overshot

/// The value of a cookie signed with `key`, as `SessionManagerLayer::with_signed` writes it.
fn signed_cookie(key: &Key, id: Id) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(Cookie::new("id", id.to_string()));
    let cookie = format!("id={}", jar.delta().next().unwrap().value());
    secrets::cookie(&cookie);
    cookie
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_address_is_told_to_retry_and_verified_cookies_are_never_limited() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let key = Key::derive_from(b"a signing secret of at least thirty-two bytes, hostile");
    let server = TestServer::start(&st, |o| {
        o.signing_key = Some(key.clone());
        o.failure_limit = Some(FailureLimit {
            max_failures: 3,
            window: Duration::from_secs(60),
        });
    })
    .await;
    let valid = server.login("ann").await;
    let bare_id = valid.strip_prefix("id=").unwrap();
    let unsigned = format!("id={}", &bare_id[bare_id.len() - 22..]);
    // Three guesses (unsigned ids) use up the address's failures.
    for t in TRANSPORTS {
        let s = dial(&server, t, &unsigned).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    let s = dial(&server, Transport::Websocket, &unsigned).await;
    assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    // Now limited: guesses are told to retry (retryable, never "show the login")...
    for t in TRANSPORTS {
        let s = dial(&server, t, "id=garbage").await;
        assert_eq!(s.outcome, Outcome::Refused("session_unavailable".into()));
    }
    // ...while every cookie the app signed is served: valid ones connect, and one whose
    // session is gone is told so (not limited, not counted).
    for t in TRANSPORTS {
        let s = connected(&server, t, &valid).await;
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "ann" }));
        s.close().await;
    }
    // The demo's disconnect handler reads the session (a store call in per-message mode):
    // count only once the closed sockets' handlers are done.
    eventually("the closed sockets' disconnect handlers finish", || async {
        (server.sessions.live_sessions() == 0).then_some(())
    })
    .await;
    let before = st.calls();
    let expired = signed_cookie(&key, Id::default());
    for _ in 0..10 {
        let s = dial(&server, Transport::Polling, &expired).await;
        assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    }
    assert_eq!(st.calls() - before, 10, "each signed cookie was looked up");
    let s = connected(&server, Transport::Websocket, &valid).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "ann" }));
}

/// Counts connect-time lookups and makes each one take a while, so that concurrent
/// handshakes overlap in the store.
#[derive(Debug, Clone)]
struct SlowLookups {
    inner: DemoStore,
    lookups: Arc<AtomicUsize>,
}

session_store_via_inner!(SlowLookups);

#[async_trait]
impl ConditionalStore for SlowLookups {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner.load_versioned(id).await
    }
    async fn reload_versioned(&self, id: &Id, v: &Version) -> session_store::Result<Reloaded> {
        self.inner.reload_versioned(id, v).await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        self.inner.save_if(r, v).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_guesses_make_at_most_the_limit_of_lookups() {
    let store = SlowLookups {
        inner: DemoStore::open("memory").await.unwrap(),
        lookups: Arc::default(),
    };
    let lookups = store.lookups.clone();
    let server = TestServer::start_with(
        move |o| app::app(store, o),
        |o| {
            o.failure_limit = Some(FailureLimit {
                max_failures: 30,
                window: Duration::from_secs(60),
            })
        },
    )
    .await;
    let valid = server.login("bob").await;
    let before = lookups.load(Ordering::SeqCst);
    let guesses = (0..200).map(|_| {
        let server = &server;
        async move {
            let cookie = format!("id={}", Id::default());
            polling_connect(server, "/socket.io/", &[("cookie", &cookie)], "40")
                .await
                .map(|a| verdict(&a))
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let made = lookups.load(Ordering::SeqCst) - before;
    let count = |v: &str| answers.iter().filter(|a| **a == Ok(v)).count();
    let (invalid, retry) = (count("session_invalid"), count("session_unavailable"));
    eprintln!(
        "200 concurrent guesses, limit 30: {made} store lookups, {invalid} session_invalid, \
         {retry} session_unavailable"
    );
    assert!(made <= 30, "{made} lookups for a limit of 30");
    assert_eq!(invalid, made);
    assert_eq!(invalid + retry, 200, "{answers:?}");
    // The same address with a valid plain cookie is told to retry, not to log in again.
    let s = dial(&server, Transport::Websocket, &valid).await;
    assert_eq!(s.outcome, Outcome::Refused("session_unavailable".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_forwarded_client_is_limited_not_the_proxy() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let limit = FailureLimit {
        max_failures: 3,
        window: Duration::from_secs(60),
    };
    let server = TestServer::start(&st, |o| {
        o.failure_limit = Some(limit);
        o.trusted_proxies = Some(TrustedProxies::new(["127.0.0.1/32", "10.0.0.0/8"]).unwrap());
    })
    .await;
    let valid = server.login("cy").await;
    let guess = || format!("id={}", Id::default());
    let as_client = |xff: &'static str, cookie: String| {
        let server = &server;
        async move {
            let headers = [("cookie", cookie.as_str()), ("x-forwarded-for", xff)];
            verdict(
                &polling_connect(server, "/socket.io/", &headers, "40")
                    .await
                    .unwrap(),
            )
        }
    };
    // The attacker behind the proxy uses up its own failures...
    for _ in 0..3 {
        assert_eq!(as_client("203.0.113.7", guess()).await, "session_invalid");
    }
    assert_eq!(
        as_client("203.0.113.7", guess()).await,
        "session_unavailable"
    );
    // ...and cannot escape by writing another address to the left of the proxy's entry.
    assert_eq!(
        as_client("198.51.100.1, 203.0.113.7, 10.0.0.2", guess()).await,
        "session_unavailable"
    );
    // Another client behind the same proxy is not affected.
    assert_eq!(as_client("203.0.113.8", valid.clone()).await, "connected");
    assert_eq!(as_client("203.0.113.8", guess()).await, "session_invalid");

    // A server that does not trust the peer ignores the header: the peer is the client.
    let untrusting = TestServer::start(&st, |o| {
        o.failure_limit = Some(limit);
        o.trusted_proxies = Some(TrustedProxies::new(["10.0.0.1"]).unwrap());
    })
    .await;
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let headers = [("cookie", guess()), ("x-forwarded-for", xff.to_owned())];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = polling_connect(&untrusting, "/socket.io/", &headers, "40")
            .await
            .unwrap();
        assert_eq!(verdict(&answer), "session_invalid");
    }
    let headers = [
        ("cookie", valid.as_str()),
        ("x-forwarded-for", "203.0.113.4"),
    ];
    let answer = polling_connect(&untrusting, "/socket.io/", &headers, "40")
        .await
        .unwrap();
    assert_eq!(verdict(&answer), "session_unavailable");
}

// ---------------------------------------------------------------------------------------------
// 4. Message sizes are bounded on both transports

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_unparsed_on_both_transports() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let path = "/socket.io/?EIO=4&transport=websocket";
    // Just under the limit: parsed, and answered (no cookie: session_invalid).
    let (mut ws, _) = RawWs::open(server.addr, path, &[]).await.unwrap();
    let fits = format!(
        "40{{\"sid\":\"{}\"}}",
        "x".repeat(app::MAX_MESSAGE_BYTES - 100)
    );
    ws.send(fits.as_bytes()).await.unwrap();
    assert_eq!(verdict(&ws.packet(SOON).await.unwrap()), "session_invalid");
    // 5 MB and 60 MB CONNECT packets: the connection is closed before anything is parsed.
    for mib in [5, 60] {
        let (mut ws, _) = RawWs::open(server.addr, path, &[]).await.unwrap();
        let started = Instant::now();
        let huge = format!("40{{\"sid\":\"{}\"}}", "x".repeat(mib << 20));
        // The server may hang up while the frame is still being written.
        let sent = ws.send(huge.as_bytes()).await;
        assert!(
            ws.closed_within(Duration::from_secs(5)).await,
            "a {mib} MiB message did not close the connection"
        );
        eprintln!(
            "{mib} MiB WebSocket message: connection closed after {:?} (write {})",
            started.elapsed(),
            if sent.is_ok() { "completed" } else { "cut off" }
        );
    }
    // Polling: the body is bounded by the same limit (413).
    let open = http()
        .get(server.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let res = http()
        .post(server.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .body(format!("40{{\"sid\":\"{}\"}}", "x".repeat(5 << 20)))
        .send()
        .await;
    assert!(res.is_err() || res.unwrap().status() == 413);
    // The server is fine.
    let cookie = server.login("dee").await;
    let s = connected(&server, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "dee" }));
}

// ---------------------------------------------------------------------------------------------
// 5. CSRF-safe HTTP routes; `logout?everywhere=true` acts on the caller's own user

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_routes_refuse_foreign_and_null_origins() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let own = server.origin();
    let cookie = server.login("eve").await;
    assert_eq!(server.visit(&cookie).await, 1);
    let post = |path: &str, headers: Vec<(&'static str, String)>, cookie: Option<&str>| {
        let mut req = http()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(r#"{"name":"mallory"}"#);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let hostile: [Vec<(&'static str, String)>; 5] = [
        vec![("origin", EVIL.into())],
        vec![("origin", "null".into())],
        vec![("origin", format!("{own}.evil.example"))],
        vec![("referer", format!("{EVIL}/page"))],
        vec![("origin", EVIL.into()), ("referer", format!("{own}/"))],
    ];
    let mut refused = 0;
    for headers in &hostile {
        for path in ["/login", "/logout", "/logout?everywhere=true", "/api/visit"] {
            assert_eq!(
                post(path, headers.clone(), Some(&cookie)).await,
                403,
                "{path} {headers:?}"
            );
            refused += 1;
        }
    }
    // Nothing changed: still logged in as eve, one visit.
    let (status, body) = server.session(&cookie).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["user"].as_str(), body["visits"].as_u64()),
        (Some("eve"), Some(1))
    );
    // The page's own origin (or its Referer) and non-browser clients (neither header) pass.
    assert_eq!(
        post("/api/visit", vec![("origin", own.clone())], Some(&cookie)).await,
        200
    );
    assert_eq!(
        post(
            "/api/visit",
            vec![("referer", format!("{own}/"))],
            Some(&cookie)
        )
        .await,
        200
    );
    assert_eq!(post("/api/visit", vec![], Some(&cookie)).await, 200);
    assert_eq!(
        post("/login", vec![("origin", own.clone())], None).await,
        200
    );
    assert_eq!(
        post("/logout", vec![("origin", own)], Some(&cookie)).await,
        204
    );
    eprintln!("CSRF: {refused} hostile POSTs refused with 403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_acts_on_the_callers_own_user_not_on_a_name() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let victim = server.login("gus").await;
    let victim_elsewhere = st.same_user_elsewhere(&victim).await;
    let mut a = connected(&server, Transport::Websocket, &victim).await;
    let mut b = connected(&server, Transport::Polling, &victim_elsewhere).await;
    // Someone else logs in under the same name and logs out "everywhere".
    let namesake = server.login("gus").await;
    let mut n = connected(&server, Transport::Websocket, &namesake).await;
    server.logout_everywhere(&namesake).await;
    assert_eq!(
        n.next_event("sinvalid").await,
        json!({ "reason": "session_revoked" })
    );
    a.no_event("sinvalid", Duration::from_millis(300)).await;
    b.no_event("sinvalid", Duration::from_millis(1)).await;
    assert_eq!(a.ack("whoami", json!({})).await, json!({ "user": "gus" }));
    // Logging in again on the same session keeps the user: "everywhere" still reaches both.
    let victim = server.relogin(&victim, "gus").await;
    assert_eq!(
        a.next_event("sinvalid").await,
        json!({ "reason": "session_rotated" })
    );
    server.logout_everywhere(&victim).await;
    assert_eq!(
        b.next_event("sinvalid").await,
        json!({ "reason": "session_revoked" })
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The cookie cap counts the session cookie's value only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cookie_jar_does_not_refuse_sockets() {
    let Some(st) = TestStore::open(Backend::Memory).await else {
        return;
    };
    let server = TestServer::start(&st, |_| {}).await;
    let session = server.login("fay").await;
    let others: Vec<String> = (0..20)
        .map(|i| format!("pref{i}={}", "v".repeat(1500)))
        .collect();
    let jar = format!("{}; {session}", others.join("; "));
    assert!(jar.len() > 30_000);
    // HTTP accepts it...
    let (status, _) = server.session(&jar).await;
    assert_eq!(status, 200);
    // ...and so do sockets, on both transports.
    for t in TRANSPORTS {
        let s = connected(&server, t, &jar).await;
        assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "fay" }));
        s.close().await;
    }
    // A session cookie over the cap is still refused unparsed.
    let huge = format!("{}; id={}", others[0], "A".repeat(9000));
    let s = dial(&server, Transport::Websocket, &huge).await;
    assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
    eprintln!(
        "cookie jar of {} bytes: accepted by HTTP and both socket transports",
        jar.len()
    );
}
