//! Benchmarks for socketio-sessions: session overhead against plain socketioxide (B0) and
//! against Node socket.io + express-session, in one harness.
//!
//! ```text
//! socketio-sessions-bench run [--quick] [--repeats N] [--duration S] [--warmup S]
//!                             [--conns N] [--window N] [--idle-conns N] [--only S1,S3,...]
//!                             [--stores memory,sqlite,postgres,mysql,redis,redis-cluster] [--sql]
//!                             [--sqlite-pool 1] [--sql-pool 8]
//!                             [--no-pin] [--keep-logs] [--node-peer DIR]
//! socketio-sessions-bench load --addr HOST:PORT [--event echo|incr] [--conns N] [--window N]
//!                             [--sessions K] [--rate HZ | --churn DIALERS] [--warmup S]
//!                             [--duration S]
//! socketio-sessions-bench idle --addr HOST:PORT (--cookies FILE --from I --count N | --login N)
//! ```
//!
//! `run` is what `bench/run.sh` calls: it starts the servers (`bench-server`, the Node peer in
//! `bench/node-peer`, a redis-server of its own, a database of its own on the machine's Postgres
//! and MySQL), runs scenarios S1–S7 and each S3 store's ceiling, and prints one table. `--stores`
//! keeps the rows of those stores (and B0); `--sql` is `--only S1,S3 --stores
//! sqlite,postgres,mysql`.
//! `load` drives one running server (logging in first), e.g. under a profiler; `idle` is the
//! child process S6 spreads its idle connections over.

mod histogram;
mod http;
mod load;
mod procs;
mod run;
mod scenario;
mod sqldb;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use load::{Event, Target};
use scenario::{Load, Timing};

fn usage(msg: &str) -> ! {
    eprintln!("socketio-sessions-bench: {msg}");
    eprintln!(
        "usage: socketio-sessions-bench run [--quick] [options] | load --addr HOST:PORT [options] \
         | idle --addr HOST:PORT --cookies FILE --from I --count N (see src/main.rs)"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        usage("no command")
    };
    let rest = args[1..].to_vec();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("runtime: {e}")));
    let code = rt.block_on(async move {
        let work = async {
            match cmd.as_str() {
                "run" => {
                    let opts = run::Opts::parse(&rest)?;
                    run::main(opts).await
                }
                "load" => load_cmd(&rest).await,
                "idle" => idle_cmd(&rest).await.map(|()| true),
                other => Err(format!("unknown command {other}")),
            }
        };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => return Err(format!("signal: {e}")),
            };
        // On a signal the work is dropped, and with it every child process (killed by pid).
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = term.recv() => Err("terminated".into()),
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    match code {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("socketio-sessions-bench: {e}");
            std::process::exit(1);
        }
    }
}

/// `--flag value` pairs.
fn flags(args: &[String]) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    let mut it = args.iter();
    while let Some(f) = it.next() {
        let Some(name) = f.strip_prefix("--") else {
            return Err(format!("unexpected argument {f}"));
        };
        let v = it
            .next()
            .ok_or_else(|| format!("{f} needs a value"))?
            .clone();
        out.insert(name.to_owned(), v);
    }
    Ok(out)
}

fn get<T: std::str::FromStr>(
    f: &std::collections::HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, String> {
    match f.get(name) {
        Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v}")),
        None => Ok(default),
    }
}

fn target_of(f: &std::collections::HashMap<String, String>) -> Result<Target, String> {
    let addr: SocketAddr = f
        .get("addr")
        .ok_or("--addr is required")?
        .parse()
        .map_err(|e| format!("--addr: {e}"))?;
    let origin = f
        .get("origin")
        .cloned()
        .unwrap_or_else(|| format!("http://{addr}"));
    Ok(Target { addr, origin })
}

/// `load`: logs in, drives one server, prints one line; fails on errors.
async fn load_cmd(args: &[String]) -> Result<bool, String> {
    let f = flags(args)?;
    let target = target_of(&f)?;
    let event = match f.get("event").map(String::as_str).unwrap_or("echo") {
        "echo" => Event::Echo,
        "incr" => Event::Incr,
        other => return Err(format!("--event: {other}")),
    };
    let conns: usize = get(&f, "conns", 100)?;
    let window: usize = get(&f, "window", 8)?;
    let sessions: usize = get(&f, "sessions", conns)?;
    let rate: f64 = get(&f, "rate", 0.0)?;
    let dialers: usize = get(&f, "churn", 0)?;
    let timing = Timing {
        warmup: Duration::from_secs_f64(get(&f, "warmup", 1.0)?),
        measure: Duration::from_secs_f64(get(&f, "duration", 5.0)?),
    };
    let load = if dialers > 0 {
        Load::Churn {
            event,
            dialers,
            pool: sessions,
        }
    } else if rate > 0.0 {
        Load::Fixed {
            event,
            conns,
            hz: rate,
        }
    } else {
        Load::Closed {
            event,
            conns,
            window,
            sessions,
        }
    };
    let t0 = Instant::now();
    let logins = http::login_many(target.addr, "load", load.sessions_needed(), 16).await?;
    let cookies: Vec<String> = logins.into_iter().map(|l| l.cookie).collect();
    eprintln!(
        "logged in {} sessions in {:.2} s",
        cookies.len(),
        t0.elapsed().as_secs_f64()
    );
    let pid: u32 = get(&f, "server-pid", 0)?;
    let s = scenario::run_load(&target, pid, &cookies, &load, timing).await;
    println!(
        "{} {:?}: {:.0}/s p50 {:.3} ms p99 {:.3} ms errors {} lost {}{}",
        event.name(),
        load,
        s.value,
        s.p50_ms.unwrap_or(0.0),
        s.p99_ms.unwrap_or(0.0),
        s.errors,
        s.lost,
        s.messages
            .first()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    );
    Ok(s.errors == 0)
}

/// `idle`: the child process of S6.
async fn idle_cmd(args: &[String]) -> Result<(), String> {
    let f = flags(args)?;
    let target = target_of(&f)?;
    let cookies: Vec<String> = if let Some(n) = f.get("login") {
        let n: usize = n.parse().map_err(|_| format!("--login: bad value {n}"))?;
        http::login_many(target.addr, "idle", n, 16)
            .await?
            .into_iter()
            .map(|l| l.cookie)
            .collect()
    } else {
        let file = f
            .get("cookies")
            .ok_or("--cookies FILE or --login N is required")?;
        let from: usize = get(&f, "from", 0)?;
        let count: usize = get(&f, "count", usize::MAX)?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        text.lines()
            .skip(from)
            .take(count)
            .map(str::to_owned)
            .collect()
    };
    scenario::idle_child(target, cookies).await
}
