//! The examples as their users run them: each example's binary (built by `cargo test` with the
//! tests) as a child process on `127.0.0.1:0`, driven over real HTTP and a real Socket.IO
//! client. `examples/minimal.rs`: login, sockets, logout, graceful shutdown on SQLite.
//! `examples/axum_login.rs`: a real axum-login app with a SQLite users table, on one node and on
//! two nodes sharing sessions in Redis.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Dial, Outcome, RedisServer, SOON, TestSocket, Transport, http};
use serde_json::{Value, json};
use socketio_sessions::store::sqlx::{self, sqlite::SqlitePoolOptions};

/// An example's binary: `<target>/<profile>/examples/<name>`, beside this test's `deps/`.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("a target directory")
}

/// An example running as a child process, killed on drop.
struct Example {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Example {
    /// Starts example `name` with `env` and waits for its `<name>: listening on http://ADDR`.
    async fn start(name: &str, env: &[(&str, &str)]) -> Example {
        let bin = binary(name);
        assert!(
            bin.exists(),
            "{} not found: build it with `cargo build --example {name} --all-features` \
             (`cargo test --all-features` builds it)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the example");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let pipes = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let prefix = format!("{name}: listening on http://");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix(&prefix)
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            });
            if let Some(addr) = found {
                return Example { child, addr, lines };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited ({status}):\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "{name} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST path` with a form; the status and the session cookie it set, if any.
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> (u16, Option<String>) {
        let mut req = http().post(self.url(path)).form(form);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        let res = req.send().await.unwrap();
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        (res.status().as_u16(), cookie)
    }

    async fn login(&self, form: &[(&str, &str)]) -> String {
        let (status, cookie) = self.post("/login", None, form).await;
        assert_eq!(status, 204, "login refused");
        cookie.expect("a session cookie at login")
    }

    async fn socket(&self, cookie: Option<&str>) -> TestSocket {
        let dial = Dial {
            cookie: cookie.map(str::to_owned),
            ..Dial::default()
        };
        TestSocket::connect_addr(self.addr, Transport::Websocket, dial)
            .await
            .expect("engine.io handshake")
    }

    /// Sends SIGINT (Ctrl-C) and waits for a clean exit.
    async fn interrupt(mut self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.output());
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGINT");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn refused(socket: &TestSocket) -> &str {
    match &socket.outcome {
        Outcome::Refused(message) => message,
        Outcome::Connected => panic!("connected, expected a refusal"),
    }
}

async fn revoked(socket: &mut TestSocket) {
    socket
        .event_with("sinvalid", &json!({ "reason": "session_revoked" }))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_logs_in_counts_logs_out_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("minimal.db").display());
    let app = Example::start(
        "minimal",
        &[("MINIMAL_ADDR", "127.0.0.1:0"), ("MINIMAL_DB", &db)],
    )
    .await;

    let anonymous = app.socket(None).await;
    assert_eq!(refused(&anonymous), "session_invalid");

    let cookie = app.login(&[("name", "alice")]).await;
    let mut socket = app.socket(Some(&cookie)).await;
    assert_eq!(socket.outcome, Outcome::Connected);
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    assert_eq!(socket.ack("incr", json!({})).await, json!(1));
    assert_eq!(socket.ack("incr", json!({})).await, json!(2));

    let (status, _) = app.post("/logout", Some(&cookie), &[]).await;
    assert_eq!(status, 204);
    revoked(&mut socket).await;
    assert_eq!(refused(&app.socket(Some(&cookie)).await), "session_invalid");

    // Graceful shutdown with a socket connected: told, saved, exit 0.
    let cookie = app.login(&[("name", "bob")]).await;
    let mut socket = app.socket(Some(&cookie)).await;
    assert_eq!(socket.ack("incr", json!({})).await, json!(1));
    app.interrupt().await;
    socket
        .event_with("sinvalid", &json!({ "reason": "server_shutdown" }))
        .await;
}

/// The users table of a running axum_login example.
async fn users(db: &str) -> sqlx::SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect(db)
        .await
        .unwrap()
}

/// A password changed behind the app's back (another process, an admin tool).
async fn set_hash(db: &str, name: &str) {
    sqlx::query("update users set pw_hash = x'00' where name = ?")
        .bind(name)
        .execute(&users(db).await)
        .await
        .unwrap();
}

const ALICE: &[(&str, &str)] = &[("name", "alice"), ("password", "hunter2")];

#[tokio::test(flavor = "multi_thread")]
async fn axum_login_sockets_follow_logins() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("users.db").display());
    let app = Example::start(
        "axum_login",
        &[("AXUM_LOGIN_ADDR", "127.0.0.1:0"), ("AXUM_LOGIN_DB", &db)],
    )
    .await;

    // An anonymous session (a preference, nobody logged in) gets no socket.
    let (status, anonymous) = app.post("/theme", None, &[("theme", "dark")]).await;
    assert_eq!(status, 204);
    let anonymous = anonymous.expect("an anonymous session cookie");
    assert_eq!(
        refused(&app.socket(Some(&anonymous)).await),
        "session_invalid"
    );
    let (status, _) = app
        .post("/login", None, &[("name", "alice"), ("password", "wrong")])
        .await;
    assert_eq!(status, 401);

    // Login: the socket knows the user, through axum-login's backend.
    let cookie = app.login(ALICE).await;
    let mut socket = app.socket(Some(&cookie)).await;
    assert_eq!(socket.outcome, Outcome::Connected, "{}", app.output());
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));

    // Logout ends it.
    let (status, _) = app.post("/logout", Some(&cookie), &[]).await;
    assert_eq!(status, 204);
    revoked(&mut socket).await;

    // A password changed elsewhere: the old login's socket ends at its next event.
    let cookie = app.login(ALICE).await;
    let mut socket = app.socket(Some(&cookie)).await;
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    set_hash(&db, "alice").await;
    assert_eq!(socket.ack("whoami", json!({})).await, Value::Null);
    revoked(&mut socket).await;

    // A password changed through the app: every other socket of the user ends at once,
    // without waiting for an event.
    let bob: &[(&str, &str)] = &[("name", "bob"), ("password", "correct horse")];
    let old = app.login(bob).await;
    let new = app.login(bob).await;
    let mut old_socket = app.socket(Some(&old)).await;
    assert_eq!(old_socket.ack("whoami", json!({})).await, json!("bob"));
    let (status, _) = app
        .post("/password", Some(&new), &[("password", "new secret")])
        .await;
    assert_eq!(status, 204);
    revoked(&mut old_socket).await;
    assert_eq!(refused(&app.socket(Some(&old)).await), "session_invalid");
    let (status, _) = app.post("/login", None, bob).await;
    assert_eq!(status, 401, "the old password no longer works");
    let (status, _) = app
        .post(
            "/login",
            None,
            &[("name", "bob"), ("password", "new secret")],
        )
        .await;
    assert_eq!(status, 204, "the new password works");
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_login_on_two_nodes_sharing_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("users.db").display());
    let url = redis.url();
    let env = [
        ("AXUM_LOGIN_ADDR", "127.0.0.1:0"),
        ("AXUM_LOGIN_DB", db.as_str()),
        ("AXUM_LOGIN_SESSIONS", url.as_str()),
    ];
    let a = Example::start("axum_login", &env).await;
    let b = Example::start("axum_login", &env).await;

    // Logged in on A, the socket on B knows the user; logout on A ends it.
    let cookie = a.login(ALICE).await;
    let mut socket = b.socket(Some(&cookie)).await;
    assert_eq!(socket.outcome, Outcome::Connected, "{}", b.output());
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    let (status, _) = a.post("/logout", Some(&cookie), &[]).await;
    assert_eq!(status, 204);
    revoked(&mut socket).await;

    // A password change ends the socket on B at its next event.
    let cookie = a.login(ALICE).await;
    let mut socket = b.socket(Some(&cookie)).await;
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    set_hash(&db, "alice").await;
    assert_eq!(socket.ack("whoami", json!({})).await, Value::Null);
    revoked(&mut socket).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_login_per_connection_checks_once_and_ends_at_a_password_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("users.db").display());
    let env = [
        ("AXUM_LOGIN_ADDR", "127.0.0.1:0"),
        ("AXUM_LOGIN_DB", db.as_str()),
        ("AXUM_LOGIN_MODE", "per-connection"),
    ];
    let app = Example::start("axum_login", &env).await;

    // A password change through the app ends the user's other sockets at once.
    let old = app.login(ALICE).await;
    let new = app.login(ALICE).await;
    let mut socket = app.socket(Some(&old)).await;
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    let (status, _) = app
        .post("/password", Some(&new), &[("password", "new secret")])
        .await;
    assert_eq!(status, 204);
    revoked(&mut socket).await;

    // Checked at connect and kept for the connection: a change behind the app's back reaches
    // this socket only through `disconnect_user` (or at its next connect).
    let cookie = app
        .login(&[("name", "alice"), ("password", "new secret")])
        .await;
    let socket = app.socket(Some(&cookie)).await;
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    set_hash(&db, "alice").await;
    assert_eq!(socket.ack("whoami", json!({})).await, json!("alice"));
    assert_eq!(refused(&app.socket(Some(&cookie)).await), "session_invalid");
}
