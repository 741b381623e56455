//! Socket.IO clients (rust_socketio over WebSocket and polling) and raw Engine.IO handshakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::secrets;
use super::server::{TestServer, http};
use super::wait::SOON;

pub const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Websocket,
    Polling,
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    /// `connect_error` with this message.
    Refused(String),
}

/// Options of one client connection.
#[derive(Debug, Default, Clone)]
pub struct Dial {
    pub cookie: Option<String>,
    pub origin: Option<String>,
    pub auth: Option<Value>,
    pub query: Option<String>,
}

/// A real Socket.IO client and what it has received.
pub struct TestSocket {
    pub client: Client,
    pub outcome: Outcome,
    pub events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl TestSocket {
    /// Connects and waits for the connect ack or the `connect_error`.
    pub async fn connect(server: &TestServer, transport: Transport, dial: Dial) -> TestSocket {
        Self::connect_raw(server, transport, dial)
            .await
            .expect("engine.io handshake")
    }

    /// Like [`connect`](Self::connect), but a failed Engine.IO handshake is returned.
    pub async fn connect_raw(
        server: &TestServer,
        transport: Transport,
        dial: Dial,
    ) -> Result<TestSocket, rust_socketio::Error> {
        Self::connect_addr(server.addr, transport, dial).await
    }

    /// Like [`connect_raw`](Self::connect_raw), to any server (e.g. an example's process).
    pub async fn connect_addr(
        addr: std::net::SocketAddr,
        transport: Transport,
        dial: Dial,
    ) -> Result<TestSocket, rust_socketio::Error> {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outcome>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel::<(String, Value)>();
        let url = match &dial.query {
            Some(q) => format!("http://{addr}/?{q}"),
            None => format!("http://{addr}/"),
        };
        let mut builder = ClientBuilder::new(url)
            .transport_type(match transport {
                Transport::Websocket => TransportType::Websocket,
                Transport::Polling => TransportType::Polling,
            })
            .reconnect(false);
        if let Some(cookie) = &dial.cookie {
            builder = builder.opening_header("cookie", cookie.as_str());
        }
        if let Some(origin) = &dial.origin {
            builder = builder.opening_header("origin", origin.as_str());
        }
        if let Some(auth) = dial.auth.clone() {
            builder = builder.auth(auth);
        }
        let close_tx = ev_tx.clone();
        let open_tx = out_tx.clone();
        let err_tx = out_tx;
        let builder = builder
            .on("open", move |_, _| {
                open_tx.send(Outcome::Connected).ok();
                async {}.boxed()
            })
            .on("error", move |payload, _| {
                err_tx
                    .send(Outcome::Refused(connect_error_message(&payload)))
                    .ok();
                async {}.boxed()
            })
            .on("close", move |_, _| {
                close_tx.send(("close".to_owned(), Value::Null)).ok();
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                let value = match payload {
                    Payload::Text(mut v) if v.len() == 1 => v.remove(0),
                    Payload::Text(v) => Value::Array(v),
                    _ => Value::Null,
                };
                secrets::frame(value.to_string());
                ev_tx.send((String::from(event), value)).ok();
                async {}.boxed()
            });
        let client = builder.connect().await?;
        let outcome = tokio::time::timeout(SOON, out_rx.recv())
            .await
            .expect("no connect ack nor connect_error")
            .expect("client gone");
        Ok(TestSocket {
            client,
            outcome,
            events: ev_rx,
        })
    }

    /// Emits `event` and waits for the ack's first argument.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel::<Value>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, SOON, move |payload, _| {
                // rust_socketio hands an ack's arguments over as one JSON array.
                let value = match payload {
                    Payload::Text(mut v) if !v.is_empty() => match v.remove(0) {
                        Value::Array(mut args) if args.len() == 1 => args.remove(0),
                        other => other,
                    },
                    _ => Value::Null,
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    secrets::frame(value.to_string());
                    tx.send(value).ok();
                }
                async {}.boxed()
            })
            .await
            .unwrap();
        tokio::time::timeout(SOON, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack to `{event}` within {SOON:?}"))
            .unwrap_or_else(|_| panic!("the ack to `{event}` was dropped (connection closed?)"))
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.unwrap();
    }

    /// Asserts that no event named `name` arrives within `window`.
    pub async fn no_event(&mut self, name: &str, window: Duration) {
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Err(_) | Ok(None) => return,
                Ok(Some((event, value))) => {
                    assert_ne!(event, name, "unexpected `{name}`: {value}");
                }
            }
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn next_event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, value) = tokio::time::timeout(left, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event"))
                .expect("client gone");
            if event == name {
                return value;
            }
        }
    }

    /// Waits for an event named `name` carrying `want`, skipping every other event.
    pub async fn event_with(&mut self, name: &str, want: &Value) {
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, value) = tokio::time::timeout(left, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event with {want}"))
                .expect("client gone");
            if event == name && value == *want {
                return;
            }
        }
    }

    pub async fn close(self) {
        self.client.disconnect().await.ok();
    }
}

/// The `message` of a `connect_error` as rust_socketio reports it
/// (`Received an ConnectError frame: {"message":"..."}`), or the whole text.
fn connect_error_message(payload: &Payload) -> String {
    let text = match payload {
        Payload::Text(v) => v
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    };
    text.find('{')
        .and_then(|i| serde_json::from_str::<Value>(&text[i..]).ok())
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(text)
}

/// Connects with a cookie over `transport`, whatever the outcome.
pub async fn dial(server: &TestServer, transport: Transport, cookie: &str) -> TestSocket {
    TestSocket::connect(
        server,
        transport,
        Dial {
            cookie: Some(cookie.to_owned()),
            ..Dial::default()
        },
    )
    .await
}

/// Connects with a cookie over `transport` and asserts that the connection is accepted.
pub async fn connected(server: &TestServer, transport: Transport, cookie: &str) -> TestSocket {
    let socket = dial(server, transport, cookie).await;
    assert_eq!(socket.outcome, Outcome::Connected, "{transport:?}");
    socket
}

/// Raw Engine.IO handshake over HTTP polling, for checks that need the status code.
pub async fn polling_handshake(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut req = http().get(server.url("/socket.io/?EIO=4&transport=polling"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Raw WebSocket upgrade request, for checks that need the status code.
pub async fn websocket_handshake(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut req = http()
        .get(server.url("/socket.io/?EIO=4&transport=websocket"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Opens a raw Engine.IO polling session at `base` (`.../socket.io/?EIO=4&transport=polling`)
/// with `cookie`; returns the session's URL, for its posts and long polls.
pub async fn polling_open(client: &reqwest::Client, base: &str, cookie: &str) -> String {
    let open = client
        .get(base)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let body = open.text().await.unwrap();
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    format!("{base}&sid={}", open["sid"].as_str().unwrap())
}

/// A Socket.IO connect over raw Engine.IO polling, without a Socket.IO client: the open
/// request with `cookie`, the `40` connect packet, then long polls until the server's answer.
/// Light enough for hundreds of handshakes at once; `client` keeps its connections for reuse.
pub async fn polling_connect(
    client: &reqwest::Client,
    server: &TestServer,
    cookie: &str,
) -> Outcome {
    let base = server.url("/socket.io/?EIO=4&transport=polling");
    let url = polling_open(client, &base, cookie).await;
    let posted = client.post(&url).body("40").send().await.unwrap();
    assert!(posted.status().is_success());
    // Long-polls until the connect answer (`40…` or `44…`) arrives; pings may come first.
    let mut seen = String::new();
    for _ in 0..10 {
        let body = client.get(&url).send().await.unwrap().text().await.unwrap();
        for packet in body.split('\u{1e}') {
            if packet.starts_with("40") {
                return Outcome::Connected;
            }
            if let Some(error) = packet.strip_prefix("44") {
                secrets::frame(error.to_owned());
                let message = serde_json::from_str::<Value>(error)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| error.to_owned());
                return Outcome::Refused(message);
            }
        }
        seen.push_str(&body);
    }
    panic!("no connect answer: {seen:?}");
}
