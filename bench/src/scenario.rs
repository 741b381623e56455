//! Running one load against one server: closed loop, fixed rate, churn (in this process) and
//! idle (in child processes, to stay under the per-process file descriptor limit).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::load::{self, Event, Run, Target};
use crate::procs::{Proc, Spawn};

/// A load shape.
#[derive(Debug, Clone)]
pub(crate) enum Load {
    /// `conns` connections over `sessions` sessions (round robin), `window` events in flight each.
    Closed {
        event: Event,
        conns: usize,
        window: usize,
        sessions: usize,
    },
    /// `conns` connections (one session each), one event every `1 / hz` s each.
    Fixed { event: Event, conns: usize, hz: f64 },
    /// `dialers` loops of dial → one event → disconnect over a pool of `pool` sessions.
    Churn {
        event: Event,
        dialers: usize,
        pool: usize,
    },
    /// `conns` idle connections (one session each) in processes of at most `per_proc`.
    Idle { conns: usize, per_proc: usize },
}

impl Load {
    /// How many sessions the server needs for this load.
    pub(crate) fn sessions_needed(&self) -> usize {
        match self {
            Load::Closed {
                conns, sessions, ..
            } => (*sessions).min(*conns),
            Load::Fixed { conns, .. } => *conns,
            Load::Churn { pool, .. } => *pool,
            Load::Idle { conns, .. } => *conns,
        }
    }
}

/// Warm-up and measured time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// One measurement.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Operations per second (msg/s or connections/s), or KiB per idle connection.
    pub(crate) value: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) rss_kib: Option<u64>,
    pub(crate) errors: u64,
    pub(crate) lost: u64,
    pub(crate) messages: Vec<String>,
    /// Idle: connections per second while dialing.
    pub(crate) connects_per_s: Option<f64>,
    /// Share of the machine (percent) other processes used meanwhile.
    pub(crate) other_pct: Option<f64>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

fn sample_of(run: &Run, rss: Option<u64>) -> Sample {
    Sample {
        value: run.done.load(std::sync::atomic::Ordering::Relaxed) as f64 / run.measured_secs(),
        p50_ms: ms(run.hist.quantile(0.5)),
        p99_ms: ms(run.hist.quantile(0.99)),
        rss_kib: rss,
        errors: run.errors.load(std::sync::atomic::Ordering::Relaxed),
        lost: run.lost_updates(),
        messages: run.samples(),
        connects_per_s: None,
        other_pct: None,
    }
}

/// Reads the server's RSS just before the end of the measured window.
fn rss_probe(pid: u32, at: Instant) -> tokio::task::JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        tokio::time::sleep_until((at - Duration::from_millis(50)).into()).await;
        crate::procs::rss_kib(pid)
    })
}

/// Runs a closed-loop, fixed-rate or churn load against `target`.
pub(crate) async fn run_load(
    target: &Target,
    server_pid: u32,
    cookies: &[String],
    load: &Load,
    t: Timing,
) -> Sample {
    let dial_concurrency = 256;
    match *load {
        Load::Closed {
            event,
            conns,
            window,
            sessions,
        } => {
            let sessions = sessions.clamp(1, cookies.len().max(1));
            let wanted: Vec<String> = (0..conns).map(|i| cookies[i % sessions].clone()).collect();
            let setup = Run::new(Instant::now(), Instant::now(), 0);
            let (wss, _) = load::dial_all(target, &wanted, dial_concurrency, &setup).await;
            let start = Instant::now();
            let run = Run::new(start + t.warmup, start + t.warmup + t.measure, sessions);
            run.absorb(&setup);
            let rss = rss_probe(server_pid, run.measure_to);
            let mut set = JoinSet::new();
            for (i, ws) in wss.into_iter().enumerate() {
                if let Some(ws) = ws {
                    set.spawn(load::closed_loop(
                        ws,
                        run.clone(),
                        event,
                        window,
                        i % sessions,
                    ));
                }
            }
            while set.join_next().await.is_some() {}
            sample_of(&run, rss.await.ok().flatten())
        }
        Load::Fixed { event, conns, hz } => {
            let wanted: Vec<String> = cookies.iter().take(conns).cloned().collect();
            let setup = Run::new(Instant::now(), Instant::now(), 0);
            let (wss, _) = load::dial_all(target, &wanted, dial_concurrency, &setup).await;
            let period = Duration::from_secs_f64(1.0 / hz);
            let start = Instant::now() + Duration::from_millis(20);
            let run = Run::new(start + t.warmup, start + t.warmup + t.measure, conns);
            run.absorb(&setup);
            let rss = rss_probe(server_pid, run.measure_to);
            let mut set = JoinSet::new();
            let n = wss.len().max(1) as u32;
            for (i, ws) in wss.into_iter().enumerate() {
                if let Some(ws) = ws {
                    // Spread the connections' ticks evenly over one period.
                    let offset = period * (i as u32) / n;
                    set.spawn(load::fixed_rate(
                        ws,
                        run.clone(),
                        event,
                        start + offset,
                        period,
                        i,
                    ));
                }
            }
            while set.join_next().await.is_some() {}
            sample_of(&run, rss.await.ok().flatten())
        }
        Load::Churn {
            event,
            dialers,
            pool,
        } => {
            let pool = pool.min(cookies.len()).max(1);
            let start = Instant::now();
            let run = Run::new(start + t.warmup, start + t.warmup + t.measure, 0);
            let rss = rss_probe(server_pid, run.measure_to);
            let mut set = JoinSet::new();
            for d in 0..dialers {
                // Each session belongs to one dialer, used one connection at a time.
                let mine: Vec<String> = (d..pool)
                    .step_by(dialers)
                    .map(|i| cookies[i].clone())
                    .collect();
                set.spawn(load::churn(target.clone(), run.clone(), event, mine));
            }
            while set.join_next().await.is_some() {}
            sample_of(&run, rss.await.ok().flatten())
        }
        Load::Idle { .. } => Sample {
            errors: 1,
            messages: vec!["idle loads run through run_idle".into()],
            ..Sample::default()
        },
    }
}

/// S6: idle connections held by child processes (`socketio-sessions-bench idle`); the
/// server's RSS before and after, per connection.
pub(crate) async fn run_idle(
    server: &Proc,
    target: &Target,
    cookies: &[String],
    conns: usize,
    per_proc: usize,
    settle: Duration,
    logs: &std::path::Path,
) -> Sample {
    let mut s = Sample::default();
    let cookies: Vec<String> = cookies.iter().take(conns).cloned().collect();
    let file = logs.join(format!("idle-cookies-{}.txt", server.pid));
    if let Err(e) = std::fs::write(&file, cookies.join("\n")) {
        s.errors = 1;
        s.messages.push(format!("idle: cookies file: {e}"));
        return s;
    }
    // Let the server settle after the logins before the baseline reading.
    tokio::time::sleep(settle).await;
    let before = server.rss_kib();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            s.errors = 1;
            s.messages.push(format!("idle: current_exe: {e}"));
            return s;
        }
    };
    let mut children = Vec::new();
    for (k, from) in (0..cookies.len()).step_by(per_proc.max(1)).enumerate() {
        let count = per_proc.min(cookies.len() - from);
        let spawned = Proc::spawn(Spawn {
            name: &format!("idle-{}-{k}", server.pid),
            program: &exe,
            args: vec![
                "idle".into(),
                "--addr".into(),
                target.addr.to_string(),
                "--origin".into(),
                target.origin.clone(),
                "--cookies".into(),
                file.display().to_string(),
                "--from".into(),
                from.to_string(),
                "--count".into(),
                count.to_string(),
            ],
            cpu: None,
            dir: None,
            logs,
            stdin: true,
        });
        match spawned {
            Ok(p) => children.push(p),
            Err(e) => {
                s.errors += 1;
                s.messages.push(e);
            }
        }
    }
    let mut connected = 0u64;
    let mut dial_secs = 0f64;
    for c in &mut children {
        match c.line(Duration::from_secs(180)).await {
            Ok(line) => {
                // ready <connected> <errors> <seconds dialing>
                let parts: Vec<&str> = line.split_whitespace().collect();
                connected += parts
                    .get(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let secs = parts.get(3).and_then(|n| n.parse().ok()).unwrap_or(0.0);
                dial_secs = dial_secs.max(secs);
            }
            Err(e) => {
                s.errors += 1;
                s.messages.push(e);
            }
        }
    }
    tokio::time::sleep(settle).await;
    let after = server.rss_kib();
    for c in &mut children {
        if let Some(mut stdin) = c.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
            drop(stdin);
        }
    }
    for c in &mut children {
        loop {
            match c.line(Duration::from_secs(60)).await {
                Ok(line) => {
                    if let Some(msg) = line.strip_prefix("error: ") {
                        if s.messages.len() < 5 {
                            s.messages.push(msg.to_owned());
                        }
                    } else if let Some(n) = line.strip_prefix("done ") {
                        s.errors += n.trim().parse::<u64>().unwrap_or(1);
                        break;
                    }
                }
                Err(e) => {
                    s.errors += 1;
                    s.messages.push(e);
                    break;
                }
            }
        }
        let _ = c.wait(Duration::from_secs(10)).await;
    }
    for c in children {
        c.kill().await;
    }
    let _ = std::fs::remove_file(&file);
    match (before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            s.value = (a.saturating_sub(b)) as f64 / connected as f64;
            s.rss_kib = Some(a);
        }
        _ => {
            s.errors += 1;
            s.messages.push(format!(
                "idle: no RSS reading or no connection ({connected} connected)"
            ));
        }
    }
    if (connected as usize) < conns {
        s.errors += (conns - connected as usize) as u64;
    }
    // The dialing children run side by side: the slowest one's dialing time.
    s.connects_per_s = Some(connected as f64 / dial_secs.max(1e-9));
    s
}

/// The `idle` subcommand: holds `count` connections (cookies `from..` of the file) until a
/// line or EOF on stdin. Prints `ready <connected> <errors>`, then `error: ...` lines and
/// `done <errors>`.
pub(crate) async fn idle_child(target: Target, cookies: Vec<String>) -> Result<(), String> {
    let run = Run::new(Instant::now(), Instant::now(), 0);
    let (wss, took) = load::dial_all(&target, &cookies, 256, &run).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    let mut ok = 0;
    for ws in wss.into_iter().flatten() {
        ok += 1;
        set.spawn(load::idle(ws, run.clone(), stop_rx.clone()));
    }
    println!(
        "ready {ok} {} {:.3}",
        run.errors.load(std::sync::atomic::Ordering::Relaxed),
        took.as_secs_f64()
    );
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line).await;
    let _ = stop_tx.send(true);
    while set.join_next().await.is_some() {}
    for m in run.samples() {
        println!("error: {m}");
    }
    println!(
        "done {}",
        run.errors.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
