//! The real demo as a child process (`target/debug/examples/demo`), and the HTTP and Socket.IO
//! calls tests make to it: what a deploy, a metrics scrape or a store fault looks like from
//! outside the process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Dial, Outcome, TestSocket, Transport};
use super::secrets;

/// A client with a timeout: nothing here may hang.
pub fn bounded_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `POST /login` (with `cookie`, a re-login) at `base`: status, body, the new cookie if one was
/// set, and how long the answer took.
pub async fn post_login(
    base: &str,
    cookie: Option<&str>,
    name: &str,
) -> (u16, Value, Option<String>, Duration) {
    let mut req = bounded_http()
        .post(format!("{base}/login"))
        .json(&json!({ "name": name }));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let sent = Instant::now();
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /login got no answer within 10 s: {e}"));
    let took = sent.elapsed();
    let status = res.status().as_u16();
    let set = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    if let Some(c) = &set {
        secrets::cookie(c);
    }
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, set, took)
}

/// `GET /api/session` at `base`: status and body.
pub async fn get_session(base: &str, cookie: &str) -> (u16, Value) {
    let res = bounded_http()
        .get(format!("{base}/api/session"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET /api/session answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// A real demo process

/// The demo binary, built by `cargo test` (examples are built with the tests), `cargo build
/// --example demo` or e2e/run.sh; `DEMO_BIN` overrides it.
pub fn demo_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DEMO_BIN") {
        return bin.into();
    }
    // This test runs from `<target>/debug/deps/`; examples are in `<target>/debug/examples/`.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("demo"))
        .expect("a target directory")
}

/// The demo as a child process on `127.0.0.1:0`, killed on drop.
pub struct Demo {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything it printed (stdout and stderr), line by line.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    /// Starts the demo with `env` (over no inherited `DEMO_*`) and waits for its
    /// `demo: listening on http://ADDR` line.
    pub async fn start(env: &[(&str, &str)]) -> Demo {
        let bin = demo_binary();
        assert!(
            bin.exists(),
            "{} not found: build the demo first with `cargo build --example demo` \
             (test.sh and e2e/run.sh build it; `cargo test` without --test does too)",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("DEMO_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("DEMO_ADDR", "127.0.0.1:0")
            // As the in-process suites capture: everything but the raw CONNECT packets.
            .env("RUST_LOG", "debug,socketioxide::client=info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the demo");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for pipe in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(strip_ansi(&line));
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("demo: listening on http://")
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the demo exited ({status}) before listening:\n{}",
                    tail(&lines, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not print its listening line within 60 s:\n{}",
                tail(&lines, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Demo { child, addr, lines }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM, as a deploy (docker stop, systemd) does.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, failing after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                // Let the reader threads take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within {within:?} of SIGTERM:\n{}",
                tail(&self.lines, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn tail(&self, n: usize) -> String {
        tail(&self.lines, n)
    }

    /// Fails if a session secret appears in anything the demo printed.
    pub fn assert_no_secret(&self, cookies: &[&str]) {
        let lines = self.lines.lock().unwrap();
        for cookie in cookies {
            let value = cookie.split_once('=').map_or(*cookie, |(_, v)| v);
            if let Some(n) = lines.iter().position(|l| l.contains(value)) {
                // Not the line itself: it holds the secret.
                panic!("a session id appears in the demo's output (line {n})");
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub fn tail(lines: &Mutex<Vec<String>>, n: usize) -> String {
    let lines = lines.lock().unwrap();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A real Socket.IO client connected to `addr` with `cookie` (as `TestSocket::connect`, for a
/// server that is not a `TestServer`).
pub async fn socket_to(addr: SocketAddr, transport: Transport, cookie: &str) -> TestSocket {
    let socket = dial_addr(addr, transport, cookie).await;
    assert_eq!(socket.outcome, Outcome::Connected, "{transport:?}");
    socket
}

/// A real Socket.IO client's attempt at `addr` with `cookie`: connected or refused.
pub async fn dial_addr(addr: SocketAddr, transport: Transport, cookie: &str) -> TestSocket {
    let dial = Dial {
        cookie: Some(cookie.to_owned()),
        ..Dial::default()
    };
    TestSocket::connect_addr(addr, transport, dial)
        .await
        .expect("engine.io handshake with the demo")
}
