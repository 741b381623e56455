//! Handshake memory: Engine.IO connections that never join a namespace are held until
//! socketioxide's connect timeout (45 s by default, 5 s in the demo). 10,000 open/close
//! cycles with no cookie and no `Origin`, as fast as one client address can make them, must
//! leave the server's RSS within 32 MiB of where it started, 10 s later: the origin gate's
//! per-address rate of new sessions answers the excess `429` before a session is allocated.
//!
//! The server runs in a child process (this test binary run again with
//! `HANDSHAKE_MEMORY_CHILD=1`), so that its RSS is the demo app's alone: the clients' memory
//! stays in this process.

#[allow(dead_code)]
#[path = "../examples/demo/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/demo/store.rs"]
mod store;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHILD_ENV: &str = "HANDSHAKE_MEMORY_CHILD";
/// Set for a child server without the per-address rate of new sessions.
const NO_RATE_ENV: &str = "HANDSHAKE_MEMORY_NO_RATE";
/// Cycles a second in the paced run: with the demo's 5 s connect timeout, about 1,000 Engine.IO
/// sessions are held at a time, all of them admitted (the rate is off there).
const PACED: u32 = 200;
const CYCLES: usize = 10_000;
const CONCURRENCY: usize = 32;
const BOUND_MIB: u64 = 32;

/// In the child: serves the demo app (memory store, default options) until stdin closes.
#[test]
fn server_child() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = store::DemoStore::open("memory").await.unwrap();
        let mut opts = app::DemoOptions::new(app::own_origins(addr));
        // For comparison by hand: socketioxide's default is 45 s.
        if let Some(secs) = std::env::var("CONNECT_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            opts.connect_timeout = Duration::from_secs(secs);
        }
        if std::env::var_os(NO_RATE_ENV).is_some() {
            opts.handshake_rate = None;
        }
        let router = app::app(store, opts).await.unwrap().router;
        println!("child: listening on {addr}");
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        // The parent holds our stdin: when it goes (test over, or the parent died), so do we.
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await
            .ok();
    });
}

/// The child server, killed on drop.
struct ServerChild {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn spawn_server(rate: bool) -> ServerChild {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if !rate {
        command.env(NO_RATE_ENV, "1");
    }
    let mut child = command
        .args(["--exact", "server_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server child");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the child exited before listening")
            .unwrap();
        // libtest prints `test server_child ... ` first, on the same line.
        if let Some((_, addr)) = line.split_once("child: listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    // Keep draining its stdout so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    ServerChild { child, addr }
}

/// (current RSS, peak RSS) of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One WebSocket open/close cycle: upgrade, read the Engine.IO `open` packet, hang up.
/// `false` when the server refused the new session (429).
async fn websocket_cycle(addr: SocketAddr) -> bool {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    // The 101 response, then the first frame (text, `0{"sid":...}`).
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the open packet");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1 429") {
                return false;
            }
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            let frame = &buf[end + 4..];
            if frame.len() >= 3 && frame[0] == 0x81 && frame[2] == b'0' {
                return true;
            }
        }
    }
}

/// One polling open/close cycle: the handshake `GET`, then an Engine.IO `close` packet.
/// `false` when the server refused the new session (429).
async fn polling_cycle(client: &reqwest::Client, addr: SocketAddr) -> bool {
    let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let res = client.get(&base).send().await.unwrap();
    if res.status() == 429 {
        assert_eq!(res.headers()["retry-after"], "1");
        return false;
    }
    let open = res.text().await.unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open:?}"));
    let res = client
        .post(format!("{base}&sid={sid}"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    true
}

/// Runs CYCLES open/close cycles against `addr` from CONCURRENCY clients, `pace` a second or
/// as fast as they go; returns how many were admitted, how long it took, and the child's RSS
/// (KiB) before, at the end, at its peak and 10 s later.
async fn cycles(server: &ServerChild, pace: Option<u32>) -> (usize, Duration, [u64; 4]) {
    let (addr, pid) = (server.addr, server.child.id());
    let client = reqwest::Client::new();
    // Warm up (allocator arenas, the runtime's threads), then take the baseline once the
    // address's bucket has filled again.
    for _ in 0..100 {
        assert!(websocket_cycle(addr).await);
        assert!(polling_cycle(&client, addr).await);
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (before, _) = rss_kib(pid);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let workers = (0..CONCURRENCY).map(|i| {
        let (next, admitted, client) = (next.clone(), admitted.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= CYCLES {
                    return;
                }
                if let Some(rate) = pace {
                    // Cycle n starts at n / rate seconds.
                    let at = started + Duration::from_secs(1) * n as u32 / rate;
                    tokio::time::sleep_until(at.into()).await;
                }
                let ok = if i % 2 == 0 {
                    websocket_cycle(addr).await
                } else {
                    polling_cycle(&client, addr).await
                };
                if ok {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    for w in futures_util::future::join_all(workers).await {
        w.unwrap();
    }
    let took = started.elapsed();
    let (during, peak) = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, _) = rss_kib(pid);
    (
        admitted.load(Ordering::Relaxed),
        took,
        [before, during, peak, after],
    )
}

fn report(
    what: &str,
    admitted: usize,
    took: Duration,
    [before, during, peak, after]: [u64; 4],
) -> u64 {
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "{what}: {CYCLES} cycles in {took:?}, {admitted} admitted: RSS {} MiB before, {} MiB at \
         the end (peak {} MiB), {} MiB 10 s later (+{grown_mib} MiB)",
        before / 1024,
        during / 1024,
        peak / 1024,
        after / 1024,
    );
    grown_mib
}

/// Every session admitted (the rate off), paced so that about 1,000 are held at a time: all of
/// them must be freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_open_close_cycles_leave_rss_within_32_mib() {
    let server = spawn_server(false);
    let (admitted, took, rss) = cycles(&server, Some(PACED)).await;
    assert_eq!(
        admitted, CYCLES,
        "the rate was off: every session is admitted"
    );
    let grown_mib = report("paced, rate off", admitted, took, rss);
    assert!(
        grown_mib < BOUND_MIB,
        "RSS grew by {grown_mib} MiB over {CYCLES} open/close cycles"
    );
}

/// As fast as one address can go, with the default rate: the excess is answered 429 before a
/// session is allocated, and memory stays bounded (without the rate all 10,000 are held at
/// once, and glibc keeps that peak as RSS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_flood_of_new_sessions_is_throttled_and_bounded() {
    let server = spawn_server(true);
    let (admitted, took, rss) = cycles(&server, None).await;
    assert!(
        admitted < CYCLES,
        "no new session was refused: the rate did not act"
    );
    assert!(
        admitted >= 500,
        "fewer than the burst were admitted: {admitted}"
    );
    let grown_mib = report("unpaced, default rate", admitted, took, rss);
    assert!(
        grown_mib < BOUND_MIB,
        "RSS grew by {grown_mib} MiB over {CYCLES} open/close cycles"
    );
}
