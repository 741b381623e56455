//! The processes a benchmark run starts (servers under test, redis-server, idle clients): each
//! is killed by its own id when its handle drops, and its output goes to a log file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A child process of this run. Dropping it kills it (SIGKILL to its pid).
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) log: PathBuf,
    child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

/// How to start a process.
#[derive(Debug, Clone)]
pub(crate) struct Spawn<'a> {
    pub(crate) name: &'a str,
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<String>,
    pub(crate) cpu: Option<usize>,
    pub(crate) dir: Option<&'a Path>,
    pub(crate) logs: &'a Path,
    pub(crate) stdin: bool,
}

impl Proc {
    pub(crate) fn spawn(s: Spawn<'_>) -> Result<Proc, String> {
        let log = s
            .logs
            .join(format!("{}.log", s.name.replace([' ', '/'], "_")));
        let err = std::fs::File::create(&log).map_err(|e| format!("{}: log: {e}", s.name))?;
        let mut cmd = match s.cpu {
            // taskset execs the program: the pid is the program's.
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(s.program);
                c
            }
            None => Command::new(s.program),
        };
        cmd.args(&s.args)
            .stdin(if s.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        if let Some(dir) = s.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: cannot start {}: {e}", s.name, s.program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{}: exited at once", s.name))?;
        Ok(Proc {
            name: s.name.to_owned(),
            pid,
            log,
            stdin: child.stdin.take(),
            stdout: child.stdout.take().map(BufReader::new),
            child,
        })
    }

    /// The next line of the process's standard output.
    pub(crate) async fn line(&mut self, timeout: Duration) -> Result<String, String> {
        let Some(out) = self.stdout.as_mut() else {
            return Err(format!("{}: no output", self.name));
        };
        let mut line = String::new();
        let read = tokio::time::timeout(timeout, out.read_line(&mut line)).await;
        match read {
            Err(_) => Err(format!(
                "{}: no output within {timeout:?} (log: {})",
                self.name,
                self.log.display()
            )),
            Ok(Err(e)) => Err(format!("{}: read: {e}", self.name)),
            Ok(Ok(0)) => {
                let status = self.exit_status();
                Err(format!(
                    "{}: exited ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                ))
            }
            Ok(Ok(_)) => Ok(line.trim_end().to_owned()),
        }
    }

    /// Waits for the `... listening on ADDR` line and returns ADDR; afterwards the output is
    /// copied to the log in the background.
    pub(crate) async fn listening(&mut self, timeout: Duration) -> Result<SocketAddr, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self.line(left).await?;
            if let Some((_, addr)) = line.split_once("listening on ") {
                let addr = addr
                    .trim()
                    .trim_start_matches("http://")
                    .parse()
                    .map_err(|e| format!("{}: bad address in {line:?}: {e}", self.name))?;
                self.drain_output();
                return Ok(addr);
            }
        }
    }

    fn drain_output(&mut self) {
        if let Some(mut out) = self.stdout.take() {
            let log = self.log.clone();
            tokio::spawn(async move {
                let mut line = String::new();
                let mut file = tokio::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .await
                    .ok();
                while out.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(line.as_bytes()).await;
                    }
                    line.clear();
                }
            });
        }
    }

    fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(st)) => st.to_string(),
            _ => "still running".into(),
        }
    }

    /// The process's resident set (VmRSS), in KiB.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// Waits for the process to exit (after its stdin was closed, say).
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: wait: {e}", self.name)),
            Err(_) => Err(format!("{}: still running after {timeout:?}", self.name)),
        }
    }

    /// Kills the process (by its pid) and reaps it.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// VmRSS of `pid` in KiB, from /proc.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The last lines of a log file.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Whether `program` runs (`program --version`).
pub(crate) async fn runs(program: &str) -> Result<String, String> {
    match Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(out) => Err(format!("`{program} --version` failed: {}", out.status)),
        Err(e) => Err(format!("{program} not found ({e})")),
    }
}

/// CPU time (user + system, in clock ticks) of `pid`, threads included.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The machine's busy (process and steal) and total CPU time so far, in clock ticks (all CPUs).
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is process time (user, nice,
    // system) and steal. Interrupt and softirq time is left out: it is mostly the loopback
    // network stack carrying the benchmark's own traffic, charged to no process.
    let total: u64 = v.iter().take(8).sum();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(7).unwrap_or(&0);
    Some((busy, total))
}

/// How much of the machine processes other than `ours` (and this one) used between two
/// readings: a noise indicator for a measurement.
#[derive(Debug, Clone)]
pub(crate) struct CpuWatch {
    ours: Vec<u32>,
    start: Option<(u64, u64, u64)>,
}

impl CpuWatch {
    pub(crate) fn start(ours: Vec<u32>) -> CpuWatch {
        let mut w = CpuWatch { ours, start: None };
        w.start = w.read();
        w
    }

    fn read(&self) -> Option<(u64, u64, u64)> {
        let (busy, total) = machine_ticks()?;
        let mine: u64 = std::iter::once(std::process::id())
            .chain(self.ours.iter().copied())
            .filter_map(cpu_ticks)
            .sum();
        Some((busy, total, mine))
    }

    /// Percent of the whole machine used by other processes since `start`.
    pub(crate) fn others_pct(&self) -> Option<f64> {
        self.others_pct_with(&[])
    }

    /// As [`CpuWatch::others_pct`], with processes of the benchmark's own that started after
    /// `start` (a database server's backends for a pool opened meanwhile): all their CPU time
    /// counts as the benchmark's.
    pub(crate) fn others_pct_with(&self, late: &[u32]) -> Option<f64> {
        let (b0, t0, m0) = self.start?;
        let (b1, t1, mut m1) = self.read()?;
        m1 += late
            .iter()
            .filter(|p| !self.ours.contains(p))
            .filter_map(|p| cpu_ticks(*p))
            .sum::<u64>();
        let total = t1.checked_sub(t0).filter(|t| *t > 0)?;
        let others = (b1 - b0).saturating_sub(m1.saturating_sub(m0));
        Some(others as f64 * 100.0 / total as f64)
    }
}

/// Waits (up to `max`) until processes other than `ours` leave the machine quiet: under 10 %
/// busy for two consecutive seconds. Returns how long it waited and whether it got quiet.
pub(crate) async fn wait_quiet(ours: &[u32], max: Duration) -> (Duration, bool) {
    let t0 = std::time::Instant::now();
    let mut quiet = 0;
    while t0.elapsed() < max {
        let w = CpuWatch::start(ours.to_vec());
        tokio::time::sleep(Duration::from_secs(1)).await;
        match w.others_pct() {
            Some(p) if p < 10.0 => quiet += 1,
            Some(_) => quiet = 0,
            None => return (t0.elapsed(), false),
        }
        if quiet >= 2 {
            return (t0.elapsed(), true);
        }
    }
    (t0.elapsed(), false)
}
