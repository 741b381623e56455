//! The load generator: raw WebSocket clients speaking Engine.IO v4 / Socket.IO v5, with the
//! session cookie on the upgrade request.
//!
//! Per connection: dial (TCP_NODELAY, 4 KiB read buffer) → `0{open}` → `40` → `40{"sid"}`
//! (`44{...}` is a refusal) → events `42<id>["echo",{...}]` or `42<id>["incr"]`, acks
//! `43<id>[...]` matched by id → `2` answered with `3` → `41` and a close frame. Writes are
//! batched (`feed` per frame, one `flush` per batch).
//!
//! Shapes: closed loop (a window of in-flight acks per connection), fixed rate (one event every
//! `period` per connection), churn (dial → one event → disconnect, in a loop) and idle.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::histogram::Histogram;

/// The echo payload; keys in sorted order so that every server (serde_json or V8) echoes the
/// same bytes back.
pub(crate) const PAYLOAD: &str = r#"{"seq":1,"text":"socketio-sessions bench payload"}"#;
/// How long in-flight acks may take after the measured window before they count as errors.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a dial (TCP + upgrade + Socket.IO connect) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Where the server is, and the `Origin` a browser on its page would send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Reads the session (per-message: a store load), acks the payload.
    Echo,
    /// Writes the session (`count + 1`), acks the new count.
    Incr,
}

impl Event {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Echo => "echo",
            Event::Incr => "incr",
        }
    }

    fn frame(self, id: u64) -> String {
        match self {
            Event::Echo => format!("42{id}[\"echo\",{PAYLOAD}]"),
            Event::Incr => format!("42{id}[\"incr\"]"),
        }
    }
}

/// What every task of one run reports into.
#[derive(Debug)]
pub(crate) struct Run {
    /// Acks received from here on count.
    pub(crate) measure_from: Instant,
    /// New events stop here; acks received later do not count.
    pub(crate) measure_to: Instant,
    pub(crate) hist: Histogram,
    pub(crate) done: AtomicU64,
    pub(crate) errors: AtomicU64,
    samples: Mutex<Vec<String>>,
    tallies: Mutex<Vec<Tally>>,
}

/// `incr` answers seen for one session: without lost updates they are a contiguous range.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    acks: u64,
    min: u64,
    max: u64,
}

impl Tally {
    fn note(&mut self, n: u64) {
        if self.acks == 0 {
            self.min = n;
            self.max = n;
        } else {
            self.min = self.min.min(n);
            self.max = self.max.max(n);
        }
        self.acks += 1;
    }

    fn merge(&mut self, o: Tally) {
        if o.acks == 0 {
            return;
        }
        if self.acks == 0 {
            *self = o;
            return;
        }
        self.acks += o.acks;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

impl Run {
    pub(crate) fn new(measure_from: Instant, measure_to: Instant, sessions: usize) -> Arc<Run> {
        Arc::new(Run {
            measure_from,
            measure_to,
            hist: Histogram::default(),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            tallies: Mutex::new(vec![Tally::default(); sessions]),
        })
    }

    pub(crate) fn error(&self, msg: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < 5 {
            s.push(msg.into());
        }
    }

    /// Adds another run's errors (the dialing before the measured run) to this one.
    pub(crate) fn absorb(&self, other: &Run) {
        let n = other.errors.load(Ordering::Relaxed);
        if n == 0 {
            return;
        }
        self.errors.fetch_add(n, Ordering::Relaxed);
        let theirs = other.samples();
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for m in theirs {
            if s.len() < 5 {
                s.push(m);
            }
        }
    }

    pub(crate) fn samples(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t <= self.measure_to
    }

    fn completed(&self, sent: Instant, now: Instant) {
        if self.in_window(now) {
            self.done.fetch_add(1, Ordering::Relaxed);
            self.hist.record(now - sent);
        }
    }

    fn merge_tally(&self, session: usize, t: Tally) {
        let mut all = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(session) {
            slot.merge(t);
        }
    }

    /// `incr` answers lost to concurrent writers: per session, acks beyond the range of counts
    /// they returned (two acks with the same count mean one increment overwrote another).
    pub(crate) fn lost_updates(&self) -> u64 {
        let all = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter(|t| t.acks > 0)
            .map(|t| t.acks.saturating_sub(t.max - t.min + 1))
            .sum()
    }

    pub(crate) fn measured_secs(&self) -> f64 {
        (self.measure_to - self.measure_from).as_secs_f64()
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Dials one Socket.IO connection with `cookie` and waits for the namespace connect reply.
pub(crate) async fn dial(target: &Target, cookie: &str) -> Result<Ws, String> {
    tokio::time::timeout(DIAL_TIMEOUT, dial_inner(target, cookie))
        .await
        .map_err(|_| format!("dial: no Socket.IO connect reply within {DIAL_TIMEOUT:?}"))?
}

async fn dial_inner(target: &Target, cookie: &str) -> Result<Ws, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("dial: connect: {e}"))?;
    tcp.set_nodelay(true).ok();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", target.addr);
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("dial: {e}"))?;
    let h = req.headers_mut();
    h.insert(
        "cookie",
        cookie.parse().map_err(|e| format!("dial: cookie: {e}"))?,
    );
    h.insert(
        "origin",
        target
            .origin
            .parse()
            .map_err(|e| format!("dial: origin: {e}"))?,
    );
    let (mut ws, _) = client_async_with_config(req, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("dial: upgrade: {e}"))?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => {
            return Err(format!(
                "dial: expected the Engine.IO open packet, got {other:?}"
            ));
        }
    }
    ws.send(Message::text("40"))
        .await
        .map_err(|e| format!("dial: send CONNECT: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if t.starts_with("40") {
                    return Ok(ws);
                } else if let Some(reason) = t.strip_prefix("44") {
                    return Err(format!("dial: connection refused: {reason}"));
                } else if t == "2" {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| format!("dial: pong: {e}"))?;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("dial: {e}")),
            None => return Err("dial: closed before the Socket.IO connect reply".into()),
        }
    }
}

/// Dials every cookie of `cookies` (one connection each), `concurrency` at a time. Returns the
/// connections (in order) and how long it took; failed dials are reported to `run`.
pub(crate) async fn dial_all(
    target: &Target,
    cookies: &[String],
    concurrency: usize,
    run: &Arc<Run>,
) -> (Vec<Option<Ws>>, Duration) {
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(cookies.len());
    for cookie in cookies {
        let sem = sem.clone();
        let target = target.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            dial(&target, &cookie).await
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(Ok(ws)) => out.push(Some(ws)),
            Ok(Err(e)) => {
                run.error(e);
                out.push(None);
            }
            Err(e) => {
                run.error(format!("dial task: {e}"));
                out.push(None);
            }
        }
    }
    (out, t0.elapsed())
}

/// Sends `41` and a close frame, and waits (briefly) for the server to close.
pub(crate) async fn goodbye(mut ws: Ws) {
    let _ = ws.feed(Message::text("41")).await;
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The state of one connection's conversation.
struct Conv {
    event: Event,
    inflight: VecDeque<(u64, Instant)>,
    next_id: u64,
    tally: Tally,
    pong: bool,
    /// Whether acks count as completed operations of the run (not in churn).
    record: bool,
}

impl Conv {
    fn new(event: Event) -> Conv {
        Conv {
            event,
            inflight: VecDeque::new(),
            next_id: 0,
            tally: Tally::default(),
            pong: false,
            record: true,
        }
    }

    async fn send_event(&mut self, ws: &mut Ws) -> Result<(), String> {
        self.next_id += 1;
        ws.feed(Message::text(self.event.frame(self.next_id)))
            .await
            .map_err(|e| format!("send: {e}"))?;
        self.inflight.push_back((self.next_id, Instant::now()));
        Ok(())
    }

    async fn flush(&mut self, ws: &mut Ws) -> Result<(), String> {
        if std::mem::take(&mut self.pong) {
            ws.feed(Message::text("3"))
                .await
                .map_err(|e| format!("pong: {e}"))?;
        }
        ws.flush().await.map_err(|e| format!("flush: {e}"))
    }

    /// Handles one frame from the server. `Err` ends the connection (counted as an error).
    fn on_message(&mut self, msg: Message, run: &Run) -> Result<(), String> {
        let t = match msg {
            Message::Text(t) => t,
            Message::Close(c) => return Err(format!("closed by the server: {c:?}")),
            _ => return Ok(()),
        };
        let t = t.as_str();
        if let Some(rest) = t.strip_prefix("43") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let id: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("ack without an id: {t}"))?;
            let body = &rest[digits..];
            let Some(pos) = self.inflight.iter().position(|(i, _)| *i == id) else {
                return Err(format!("ack for an unknown id {id}"));
            };
            let (_, sent) = self.inflight.remove(pos).unwrap_or((id, Instant::now()));
            let now = Instant::now();
            let ok = match self.event {
                Event::Echo => {
                    body.len() == PAYLOAD.len() + 2
                        && body.starts_with('[')
                        && body.ends_with(']')
                        && &body[1..body.len() - 1] == PAYLOAD
                }
                Event::Incr => match body
                    .strip_prefix('[')
                    .and_then(|b| b.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(n) => {
                        self.tally.note(n);
                        true
                    }
                    None => false,
                },
            };
            if ok {
                if self.record {
                    run.completed(sent, now);
                }
            } else {
                run.error(format!("unexpected {} ack: {body}", self.event.name()));
            }
            Ok(())
        } else if t == "2" {
            self.pong = true;
            Ok(())
        } else if t.starts_with("42") || t == "6" {
            Ok(())
        } else if t.starts_with("41") || t.starts_with("44") || t == "1" {
            Err(format!("disconnected by the server: {t}"))
        } else {
            Err(format!("unexpected frame: {t}"))
        }
    }

    /// Handles every frame that is already there, without waiting.
    fn drain_ready(&mut self, ws: &mut Ws, run: &Run) -> Result<(), String> {
        while let Some(next) = ws.next().now_or_never() {
            match next {
                Some(Ok(m)) => self.on_message(m, run)?,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("connection closed by the server".into()),
            }
        }
        Ok(())
    }

    async fn recv(&mut self, ws: &mut Ws, run: &Run, deadline: Instant) -> Result<bool, String> {
        match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Err(_) => Ok(false),
            Ok(None) => Err("connection closed by the server".into()),
            Ok(Some(Err(e))) => Err(format!("read: {e}")),
            Ok(Some(Ok(m))) => {
                self.on_message(m, run)?;
                self.drain_ready(ws, run)?;
                Ok(true)
            }
        }
    }
}

/// Closed loop: keeps `window` events in flight until `run.measure_to`, then collects the
/// stragglers and says goodbye.
pub(crate) async fn closed_loop(
    mut ws: Ws,
    run: Arc<Run>,
    event: Event,
    window: usize,
    session: usize,
) {
    let mut c = Conv::new(event);
    let outcome = async {
        loop {
            let sending = Instant::now() < run.measure_to;
            if sending {
                while c.inflight.len() < window {
                    c.send_event(&mut ws).await?;
                }
            } else if c.inflight.is_empty() {
                return Ok(());
            }
            c.flush(&mut ws).await?;
            let deadline = if sending {
                run.measure_to
            } else {
                run.measure_to + DRAIN
            };
            if !c.recv(&mut ws, &run, deadline).await? && !sending {
                return Err(format!(
                    "{} acks not received within {DRAIN:?}",
                    c.inflight.len()
                ));
            }
        }
    }
    .await;
    finish(ws, &run, c, outcome, session).await;
}

/// Fixed rate: one event every `period`, starting at `start`.
pub(crate) async fn fixed_rate(
    mut ws: Ws,
    run: Arc<Run>,
    event: Event,
    start: Instant,
    period: Duration,
    session: usize,
) {
    let mut c = Conv::new(event);
    let mut tick = tokio::time::interval_at(start.into(), period);
    let outcome = async {
        loop {
            let sending = Instant::now() < run.measure_to;
            if !sending && c.inflight.is_empty() {
                return Ok(());
            }
            let deadline = if sending {
                run.measure_to
            } else {
                run.measure_to + DRAIN
            };
            tokio::select! {
                _ = tick.tick(), if sending => {
                    if Instant::now() < run.measure_to {
                        c.send_event(&mut ws).await?;
                        c.flush(&mut ws).await?;
                    }
                }
                got = c.recv(&mut ws, &run, deadline) => {
                    if !got? && !sending {
                        return Err(format!("{} acks not received within {DRAIN:?}", c.inflight.len()));
                    }
                    if c.pong {
                        c.flush(&mut ws).await?;
                    }
                }
            }
        }
    }
    .await;
    finish(ws, &run, c, outcome, session).await;
}

async fn finish(ws: Ws, run: &Run, c: Conv, outcome: Result<(), String>, session: usize) {
    run.merge_tally(session, c.tally);
    match outcome {
        Ok(()) => goodbye(ws).await,
        Err(e) => run.error(e),
    }
}

/// Churn: dial with the next cookie → one `event` → its ack → `41` + close, until
/// `run.measure_to`. A cycle counts when its close is done inside the window; its latency is
/// from the dial to the ack.
pub(crate) async fn churn(target: Target, run: Arc<Run>, event: Event, cookies: Vec<String>) {
    let mut k = 0usize;
    while Instant::now() < run.measure_to && !cookies.is_empty() {
        let cookie = &cookies[k % cookies.len()];
        k += 1;
        let t0 = Instant::now();
        let cycle = async {
            let mut ws = dial(&target, cookie).await?;
            let mut c = Conv::new(event);
            c.record = false;
            c.send_event(&mut ws).await?;
            c.flush(&mut ws).await?;
            while !c.inflight.is_empty() {
                let deadline = Instant::now() + DRAIN;
                match tokio::time::timeout_at(deadline.into(), ws.next()).await {
                    Err(_) => return Err("churn: no ack within 5 s".to_owned()),
                    Ok(None) => return Err("churn: closed by the server".to_owned()),
                    Ok(Some(Err(e))) => return Err(format!("churn: read: {e}")),
                    Ok(Some(Ok(m))) => c.on_message(m, &run)?,
                }
            }
            let acked = Instant::now();
            goodbye(ws).await;
            Ok::<_, String>(acked)
        };
        match cycle.await {
            Ok(acked) => {
                let now = Instant::now();
                if run.in_window(now) {
                    run.done.fetch_add(1, Ordering::Relaxed);
                    run.hist.record(acked - t0);
                }
            }
            Err(e) => {
                run.error(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Idle: holds the connection, answering pings, until `stop` changes; then says goodbye.
pub(crate) async fn idle(mut ws: Ws, run: Arc<Run>, mut stop: watch::Receiver<bool>) {
    let outcome = async {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                next = ws.next() => match next {
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                        ws.send(Message::text("3")).await.map_err(|e| format!("pong: {e}"))?;
                    }
                    Some(Ok(Message::Text(t))) if t.starts_with("41") || t.as_str() == "1" => {
                        return Err(format!("idle: disconnected by the server: {t}"));
                    }
                    Some(Ok(Message::Close(c))) => return Err(format!("idle: closed by the server: {c:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("idle: read: {e}")),
                    None => return Err("idle: connection closed by the server".to_owned()),
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(()) => goodbye(ws).await,
        Err(e) => run.error(e),
    }
}
