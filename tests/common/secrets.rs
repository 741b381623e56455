//! Every test of every suite checks that no session id or cookie value it saw reached the
//! server's logs (captured at DEBUG for every server-side crate) or a client's frames: each
//! [`TestServer`](super::TestServer) checks on drop, once its runtime is gone.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Default)]
struct Watch {
    logs: Vec<u8>,
    frames: Vec<String>,
    secrets: Vec<String>,
    checked_logs: usize,
    checked_frames: usize,
    checked_secrets: usize,
}

fn state() -> &'static Mutex<Watch> {
    static WATCH: OnceLock<Mutex<Watch>> = OnceLock::new();
    WATCH.get_or_init(Mutex::default)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
        watch.logs.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture (once per test binary); `RUST_LOG` still prints to the test output.
pub fn watch() {
    // The test's own clients log their requests, cookies included: not under test.
    // socketioxide logs every raw CONNECT packet at DEBUG, `auth` payload included, so an
    // `auth: {sid}` deployment must keep `socketioxide::client` at INFO (README, security).
    let captured = "debug,rust_socketio=off,tungstenite::handshake::client=off,reqwest=off,\
                    hyper_util::client=off,socketioxide::client=info";
    let capture = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| Capture)
        .with_filter(EnvFilter::new(captured));
    let shown = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_filter(EnvFilter::from_default_env());
    tracing_subscriber::registry()
        .with(capture)
        .with(shown)
        .try_init()
        .ok();
}

/// A session cookie (`name=value`): its value, and for tower-sessions cookies the bare id
/// (the last 22 characters of a signed value).
pub fn cookie(cookie: &str) {
    let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
    let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
    watch.secrets.push(value.to_owned());
    if value.len() >= 22 && !value.contains('%') {
        watch.secrets.push(value[value.len() - 22..].to_owned());
    }
}

/// Any other secret text (an express-session sid).
pub fn text(secret: &str) {
    let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
    watch.secrets.push(secret.to_owned());
}

/// Something a client received.
pub fn frame(text: String) {
    let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
    watch.frames.push(text);
}

/// Fails if a recorded secret appears in the captured logs or frames: new secrets are
/// looked for everywhere, old ones in what was captured since the last check.
pub fn check() {
    let found = find();
    if let Some(found) = found {
        panic!("{found}");
    }
}

fn find() -> Option<String> {
    let mut watch = state().lock().unwrap_or_else(|e| e.into_inner());
    let all_logs = String::from_utf8_lossy(&watch.logs).into_owned();
    let new_logs = String::from_utf8_lossy(&watch.logs[watch.checked_logs..]).into_owned();
    let all_frames = watch.frames.join("\n");
    let new_frames = watch.frames[watch.checked_frames..].join("\n");
    for (i, secret) in watch.secrets.iter().enumerate() {
        let (logs, frames) = if i >= watch.checked_secrets {
            (&all_logs, &all_frames)
        } else {
            (&new_logs, &new_frames)
        };
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a session secret appears in the server's logs: {line}");
        }
        assert!(
            !frames.contains(secret.as_str()),
            "a session secret reached a client"
        );
    }
    watch.checked_logs = watch.logs.len();
    watch.checked_frames = watch.frames.len();
    watch.checked_secrets = watch.secrets.len();
    // Bound what is kept across a long suite.
    if watch.logs.len() > 64 << 20 {
        watch.logs.clear();
        watch.checked_logs = 0;
    }
    None
}
