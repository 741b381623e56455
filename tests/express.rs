//! Sharing sessions with a real Express app (express 4, express-session 1.19, connect-redis 10)
//! over a real Redis: its logins are seen by Rust sockets, Rust writes are seen by Express,
//! its `destroy()` ends Rust sockets, and the formats agree byte for byte.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use socketio_sessions::{ExpressSecrets, Mode};

fn express_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/express")
}

/// Whether node and the Express peer's packages are there; prints why not (or fails, when
/// every real part is required).
fn express_available() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok();
    let installed = express_dir().join("node_modules/express-session").exists();
    if node && installed {
        return true;
    }
    let why = if node {
        "tests/express/node_modules missing (run `npm ci` in tests/express; ./test.sh does)"
    } else {
        "node not found"
    };
    assert!(
        !required(),
        "{why}, and {REQUIRE_ENV} requires the Express tests"
    );
    eprintln!("skip: {why}");
    false
}

/// The Express app on a free port, killed on drop.
struct ExpressApp {
    base: String,
    child: Child,
}

impl ExpressApp {
    async fn start(redis: &RedisServer, secrets: &str, max_age_ms: Option<u64>) -> ExpressApp {
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs")
            .current_dir(express_dir())
            .env("REDIS_URL", redis.url())
            .env("SECRETS", secrets)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(ms) = max_age_ms {
            cmd.env("MAX_AGE_MS", ms.to_string());
        }
        let mut child = cmd.spawn().expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("express: listening on ")
                    && let Some(tx) = tx.take()
                {
                    tx.send(url.to_owned()).ok();
                }
            }
        });
        let base = tokio::time::timeout(SOON, rx)
            .await
            .expect("the Express app did not start")
            .expect("the Express app exited before listening");
        ExpressApp { base, child }
    }

    /// Logs in on Express; returns the `connect.sid=...` cookie.
    async fn login(&self, name: &str, extra: Value) -> String {
        let res = http()
            .post(format!("{}/login", self.base))
            .json(&json!({ "name": name, "extra": extra }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let set = res
            .headers()
            .get("set-cookie")
            .expect("Express sets connect.sid");
        set.to_str().unwrap().split(';').next().unwrap().to_owned()
    }

    async fn session(&self, cookie: &str) -> (u16, Value) {
        let res = http()
            .get(format!("{}/session", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn destroy(&self, cookie: &str) {
        let res = http()
            .post(format!("{}/destroy", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
}

impl Drop for ExpressApp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The sid inside a `connect.sid=s%3A<sid>.<sig>` cookie.
fn sid_of(cookie: &str) -> String {
    let value = cookie
        .strip_prefix("connect.sid=")
        .unwrap()
        .replace("%3A", ":");
    let signed = value.strip_prefix("s:").unwrap();
    signed.rsplit_once('.').unwrap().0.to_owned()
}

/// A Rust node reading the Express app's sessions.
async fn rust_node(redis: &RedisServer, secrets: &[&str]) -> TestServer {
    rust_node_in(redis, secrets, Mode::PerMessage).await
}

async fn rust_node_in(redis: &RedisServer, secrets: &[&str], mode: Mode) -> TestServer {
    let store = DemoStore::open_express(&redis.url()).await.unwrap();
    let url = redis.url();
    let secrets = ExpressSecrets::new(secrets).unwrap();
    TestServer::start_with(
        move |o| app::app(store, o),
        move |o| {
            o.express_secrets = Some(secrets);
            o.redis_adapter = Some(url);
            o.mode = mode;
            // Only a push (keyspace notifications) can end a socket: revalidation never runs
            // during a test.
            o.revalidate_every = NEVER;
        },
    )
    .await
}

async fn setup(secrets: &str) -> Option<(RedisServer, ExpressApp)> {
    if !express_available() {
        return None;
    }
    let redis = RedisServer::start().await?;
    let express = ExpressApp::start(&redis, secrets, Some(3_600_000)).await;
    Some((redis, express))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_logins_reach_rust_sockets_and_rust_writes_reach_express() {
    let Some((redis, express)) = setup("s3cret").await else {
        return;
    };
    let node = rust_node(&redis, &["s3cret"]).await;
    let cookie = express.login("ann", json!({})).await;
    let mut expected = 0;
    for t in TRANSPORTS {
        let s = connected(&node, t, &cookie).await;
        assert_eq!(
            s.ack("whoami", json!({})).await,
            json!({ "user": "ann" }),
            "{t:?}"
        );
        expected += 1;
        assert_eq!(s.ack("incr", json!({})).await, json!(expected));
        let (status, body) = express.session(&cookie).await;
        assert_eq!(
            (status, &body["count"]),
            (200, &json!(expected)),
            "{t:?}: {body}"
        );
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_writes_reach_express_at_disconnect() {
    let Some((redis, express)) = setup("s3cret").await else {
        return;
    };
    let node = rust_node_in(&redis, &["s3cret"], Mode::PerConnection).await;
    let cookie = express.login("abe", json!({})).await;
    let s = connected(&node, Transport::Polling, &cookie).await;
    for n in 1..=3 {
        assert_eq!(s.ack("incr", json!({})).await, json!(n));
    }
    assert_eq!(
        express.session(&cookie).await.1["count"],
        json!(0),
        "saved before disconnect"
    );
    s.close().await;
    let deadline = Instant::now() + SOON;
    while express.session(&cookie).await.1["count"] != json!(3) {
        assert!(Instant::now() < deadline, "not saved at disconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_destroy_ends_the_rust_sockets() {
    let Some((redis, express)) = setup("s3cret").await else {
        return;
    };
    let node = rust_node(&redis, &["s3cret"]).await;
    let cookie = express.login("bea", json!({})).await;
    let mut sockets = Vec::new();
    for t in TRANSPORTS {
        sockets.push(connected(&node, t, &cookie).await);
    }
    express.destroy(&cookie).await;
    for s in &mut sockets {
        assert_eq!(
            s.next_event("sinvalid").await,
            json!({ "reason": "session_revoked" })
        );
        s.next_event("close").await;
    }
    // A connect after the destroy is refused.
    let s = dial(&node, Transport::Websocket, &cookie).await;
    assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_secret_still_verifies_after_rotation() {
    let Some((redis, express)) = setup("old-secret").await else {
        return;
    };
    let cookie = express.login("cy", json!({})).await;
    // Rotated on the Rust side: the new secret signs, the old one still verifies.
    let rotated = rust_node(&redis, &["new-secret", "old-secret"]).await;
    let s = connected(&rotated, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "cy" }));
    // Without the old secret, the cookie is a forgery.
    let strict = rust_node(&redis, &["new-secret"]).await;
    let s = dial(&strict, Transport::Websocket, &cookie).await;
    assert_eq!(s.outcome, Outcome::Refused("session_invalid".into()));
}

/// The value with its last character changed.
fn flip_last(v: &str) -> String {
    let (head, last) = v.split_at(v.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

/// How many commands of one kind Redis has run.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unsigned_cookies_never_reach_redis() {
    let Some((redis, express)) = setup("s3cret").await else {
        return;
    };
    let node = rust_node(&redis, &["s3cret"]).await;
    let cookie = express.login("dee", json!({})).await;
    let sid = sid_of(&cookie);
    let other = ExpressSecrets::new(["other"]).unwrap();
    let good = cookie.strip_prefix("connect.sid=").unwrap().to_owned();
    let forged = [
        format!("connect.sid={sid}"),
        format!("connect.sid=s%3A{sid}"),
        format!("connect.sid={}", other.sign(&sid).replace(':', "%3A")),
        format!("connect.sid={good}x"),
        format!("connect.sid={}", flip_last(&good)),
        format!("connect.sid=s%3A{sid}.AAAA"),
    ];
    let before = (
        calls(&redis, "eval"),
        calls(&redis, "get"),
        calls(&redis, "evalsha"),
    );
    for cookie in forged {
        for t in TRANSPORTS {
            let s = dial(&node, t, &cookie).await;
            assert_eq!(
                s.outcome,
                Outcome::Refused("session_invalid".into()),
                "{cookie}"
            );
        }
    }
    let after = (
        calls(&redis, "eval"),
        calls(&redis, "get"),
        calls(&redis, "evalsha"),
    );
    assert_eq!(before, after, "a forged cookie reached Redis");
    // The real one does reach it.
    let s = connected(&node, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("whoami", json!({})).await, json!({ "user": "dee" }));
    assert!(calls(&redis, "eval") > before.0);
}

/// The top-level fields of a stored session, each as its exact JSON text.
fn raw_fields(json: &str) -> BTreeMap<String, String> {
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(json).unwrap();
    map.into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_keeps_the_cookie_and_unknown_fields_byte_for_byte() {
    let Some((redis, express)) = setup("s3cret").await else {
        return;
    };
    let node = rust_node(&redis, &["s3cret"]).await;
    let extra = json!({ "prefs": { "theme": "dark", "langs": ["fr", "日本"], "ratio": 1.5 }, "n": 12345678901234u64 });
    let cookie = express.login("eve", extra).await;
    let key = format!("sess:{}", sid_of(&cookie));
    let before = redis.cli(&["--raw", "GET", &key]).unwrap();
    let s = connected(&node, Transport::Websocket, &cookie).await;
    assert_eq!(s.ack("incr", json!({})).await, json!(1));
    let after = redis.cli(&["--raw", "GET", &key]).unwrap();
    let (mut before, mut after) = (raw_fields(&before), raw_fields(&after));
    assert_eq!(after.remove("count").as_deref(), Some("1"));
    assert_eq!(before.remove("count"), None);
    assert_eq!(before, after, "an untouched field changed");
    // The TTL follows `cookie.expires` (maxAge 1 h), as connect-redis sets it.
    let ttl: i64 = redis.cli(&["TTL", &key]).unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&ttl), "TTL {ttl}");
    // And Express still reads it.
    let (status, body) = express.session(&cookie).await;
    assert_eq!(
        (status, body["user"].clone(), body["count"].clone()),
        (200, json!("eve"), json!(1))
    );
}

/// Runs the cookie-signature oracle (tests/express/oracle.mjs).
fn oracle(request: &Value) -> Value {
    let mut child = Command::new("node")
        .arg("oracle.mjs")
        .current_dir(express_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_agree_with_node_across_a_corpus() {
    if !express_available() {
        return;
    }
    // Sids and secrets of every shape, from random bytes.
    let random = || tower_sessions::session::Id::default().to_string();
    let mut cases = Vec::new();
    for i in 0..60 {
        let sid = match i % 4 {
            0 => format!("{}{}", random(), &random()[..10]),
            1 => format!("{}.with.dots", random()),
            2 => format!("ünï-{}", random()),
            _ => random(),
        };
        let secret = match i % 3 {
            0 => random(),
            1 => format!("clé secrète {}", random()),
            _ => "tobiiscool".to_owned(),
        };
        cases.push((sid, secret));
    }
    let sign: Vec<Value> = cases
        .iter()
        .map(|(sid, secret)| json!({ "sid": sid, "secret": secret }))
        .collect();
    let node_signed = oracle(&json!({ "sign": sign }))["signed"].clone();
    let mut values = Vec::new();
    for (i, (sid, secret)) in cases.iter().enumerate() {
        let ours = ExpressSecrets::new([secret]).unwrap();
        let node = node_signed[i].as_str().unwrap();
        // Minted by Node, verified by Rust; minted by Rust, equal to Node's.
        assert_eq!(ours.unsign(node), Some(sid.as_str()));
        assert_eq!(ours.sign(sid), node);
        // Forgeries and near misses, decided by both.
        let tail = node.rsplit_once('.').unwrap().1;
        for v in [
            node.to_owned(),
            format!("{node}="),
            format!("{node}x"),
            node[..node.len() - 1].to_owned(),
            node.replace('+', "-").replace('/', "_"),
            node.to_uppercase(),
            node.trim_start_matches("s:").to_owned(),
            format!("s:{}{}.{tail}", sid, "x"),
            format!("s:garbage.{}", node.trim_start_matches("s:")),
        ] {
            values.push((v, vec![secret.clone(), "other".to_owned()]));
        }
    }
    let unsign: Vec<Value> = values
        .iter()
        .map(|(v, s)| json!({ "value": v, "secrets": s }))
        .collect();
    let node_unsigned = oracle(&json!({ "unsign": unsign }))["unsigned"].clone();
    for (i, (value, secrets)) in values.iter().enumerate() {
        let ours = ExpressSecrets::new(secrets).unwrap();
        assert_eq!(
            ours.unsign(value).map(str::to_owned),
            node_unsigned[i].as_str().map(str::to_owned),
            "Rust and Node disagree on {value:?}"
        );
    }
}
