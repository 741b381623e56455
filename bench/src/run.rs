//! `socketio-sessions-bench run [--quick]`: starts every server under test (and a redis-server
//! of its own), runs the scenarios, prints one table with ratios to B0 and to the Node peer, the
//! targets, and `N passed, M failed`.
//!
//! [`main`] in order: [`Env::prepare`] (binaries, logs, CPU pinning, the Node peer, the
//! redis-server, the run's own Postgres and MySQL databases), [`run_shared_server_scenarios`]
//! (S1–S5 and S3i on servers kept through every repeat, with the ceiling of each S3 store after
//! each repeat: redis-benchmark, and the raw conditional-update loop of each SQL store),
//! [`run_idle_memory_scenario`] (S6, a fresh server per row), then the report and
//! [`scenario_verdicts`] (one per scenario; the Node rows form S7).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http::{self, Login};
use crate::load::{Event, Target};
use crate::procs::{self, Proc, Spawn};
use crate::scenario::{self, Load, Sample, Timing};
use crate::sqldb::{SqlDb, SqlKind};

/// Everything a run can be told.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    quick: bool,
    repeats: usize,
    timing: Timing,
    conns: usize,
    window: usize,
    iso_per_session: usize,
    iso_window: usize,
    iso_sessions: Vec<usize>,
    rate_conns: usize,
    rate_hz: f64,
    churn_dialers: usize,
    churn_pool: usize,
    idle_conns: usize,
    idle_per_proc: usize,
    idle_settle: Duration,
    redis_requests: usize,
    pin: bool,
    /// Before each row, wait up to this long for other processes to leave the machine quiet.
    wait_quiet: Option<Duration>,
    /// Measurements during which other processes used more than this share of the machine
    /// (percent) are taken again, up to `MAX_REDOS` times.
    max_others: Option<f64>,
    only: Option<Vec<String>>,
    /// Only the rows of these stores (and B0).
    stores: Option<Vec<Store>>,
    /// Connections in the SQLite pool of a server under test (and of its ceiling).
    sqlite_pool: u32,
    /// Connections in the Postgres and MySQL pools of a server under test (and of its ceiling).
    sql_pool: u32,
    node_peer: PathBuf,
    keep_logs: bool,
}

impl Opts {
    fn full() -> Opts {
        Opts {
            quick: false,
            repeats: 3,
            timing: Timing {
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(5),
            },
            conns: 100,
            window: 8,
            iso_per_session: 8,
            iso_window: 2,
            iso_sessions: vec![1, 2, 8],
            rate_conns: 1000,
            rate_hz: 10.0,
            churn_dialers: 32,
            churn_pool: 1000,
            idle_conns: 10_000,
            idle_per_proc: 5_000,
            idle_settle: Duration::from_secs(2),
            redis_requests: 200_000,
            pin: true,
            wait_quiet: Some(Duration::from_secs(120)),
            max_others: Some(10.0),
            only: None,
            stores: None,
            sqlite_pool: 1,
            sql_pool: 8,
            node_peer: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/node-peer")),
            keep_logs: false,
        }
    }

    fn quick() -> Opts {
        Opts {
            quick: true,
            repeats: 1,
            timing: Timing {
                warmup: Duration::from_millis(200),
                measure: Duration::from_millis(600),
            },
            conns: 20,
            iso_per_session: 4,
            iso_sessions: vec![1, 2, 4],
            rate_conns: 100,
            churn_dialers: 8,
            churn_pool: 64,
            idle_conns: 500,
            idle_per_proc: 250,
            idle_settle: Duration::from_millis(500),
            redis_requests: 20_000,
            wait_quiet: None,
            max_others: None,
            ..Opts::full()
        }
    }

    pub(crate) fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = if args.iter().any(|a| a == "--quick") {
            Opts::quick()
        } else {
            Opts::full()
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
                v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
            }
            match flag.as_str() {
                "--quick" => {}
                "--repeats" => o.repeats = num::<usize>(flag, value()?)?.max(1),
                "--duration" => o.timing.measure = Duration::from_secs_f64(num(flag, value()?)?),
                "--warmup" => o.timing.warmup = Duration::from_secs_f64(num(flag, value()?)?),
                "--conns" => o.conns = num(flag, value()?)?,
                "--window" => o.window = num(flag, value()?)?,
                "--idle-conns" => o.idle_conns = num(flag, value()?)?,
                "--no-pin" => o.pin = false,
                "--wait-quiet" => {
                    o.wait_quiet = Some(Duration::from_secs_f64(num(flag, value()?)?))
                }
                "--no-wait-quiet" => o.wait_quiet = None,
                "--max-others" => o.max_others = Some(num(flag, value()?)?),
                "--keep-noisy" => o.max_others = None,
                "--keep-logs" => o.keep_logs = true,
                "--node-peer" => o.node_peer = PathBuf::from(value()?),
                "--only" => {
                    o.only = Some(
                        value()?
                            .split(',')
                            .map(|s| s.trim().to_ascii_uppercase())
                            .collect(),
                    )
                }
                "--stores" => {
                    o.stores = Some(
                        value()?
                            .split(',')
                            .map(|s| {
                                Store::parse(s.trim())
                                    .ok_or_else(|| format!("--stores: unknown store {s}"))
                            })
                            .collect::<Result<_, _>>()?,
                    )
                }
                // The SQL rows and their ceilings only.
                "--sql" => {
                    o.only = Some(vec!["S1".into(), "S3".into()]);
                    o.stores = Some(vec![Store::Sqlite, Store::Postgres, Store::MySql]);
                }
                "--sqlite-pool" => o.sqlite_pool = num::<u32>(flag, value()?)?.max(1),
                "--sql-pool" => o.sql_pool = num::<u32>(flag, value()?)?.max(1),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(o)
    }
}

/// How many times a noisy measurement is taken again.
const MAX_REDOS: usize = 3;

// ---- what runs ----

/// The session store of a server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Store {
    Memory,
    Sqlite,
    Postgres,
    MySql,
    Redis,
    /// A Redis Cluster of 3 primaries (no replicas), started by the run.
    RedisCluster,
}

/// When a server under test loads and saves the session for its socket handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    /// Loaded at connect, kept in memory, saved at disconnect (`per-conn`).
    PerConnection,
    /// Loaded (and saved when changed) around every event (`per-msg`).
    PerMessage,
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ServerKind {
    /// B0: plain socketioxide, no sessions.
    Baseline,
    /// socketioxide + socketio-sessions.
    Ours(Mode, Store),
    /// socket.io + express-session.
    Node(Mode, Store),
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
            Store::MySql => "mysql",
            Store::Redis => "redis",
            Store::RedisCluster => "redis-cluster",
        }
    }
    fn parse(name: &str) -> Option<Store> {
        [
            Store::Memory,
            Store::Sqlite,
            Store::Postgres,
            Store::MySql,
            Store::Redis,
            Store::RedisCluster,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
    /// The stores with a raw conditional-update ceiling (S3).
    const SQL: [Store; 3] = [Store::Sqlite, Store::Postgres, Store::MySql];
    fn is_sql(self) -> bool {
        Store::SQL.contains(&self)
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PerConnection => "per-conn",
            Mode::PerMessage => "per-msg",
        }
    }
    fn arg(self) -> &'static str {
        match self {
            Mode::PerConnection => "per-connection",
            Mode::PerMessage => "per-message",
        }
    }
}

impl ServerKind {
    fn label(self) -> String {
        match self {
            ServerKind::Baseline => "B0 socketioxide (no sessions)".into(),
            ServerKind::Ours(m, s) => format!("ours {} {}", m.name(), s.name()),
            ServerKind::Node(m, s) => format!("Node {} {}", m.name(), s.name()),
        }
    }
    fn store(self) -> Option<Store> {
        match self {
            ServerKind::Baseline => None,
            ServerKind::Ours(_, s) | ServerKind::Node(_, s) => Some(s),
        }
    }
    fn tag(self) -> String {
        self.label()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// What a row measures. Declared in table order; [`Scenario::id`] is the name the table and
/// BENCHMARKS.md use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scenario {
    /// S1: closed-loop `echo` that reads the session, per-connection (from memory).
    EchoPerConnection,
    /// S2: closed-loop `echo` that reads the session, per-message (a store load per event).
    EchoPerMessage,
    /// S3: closed-loop `incr`: per-message, a load and a conditional save before each ack.
    Increment,
    /// S3i: S3 over Redis with 1..n sessions sharing the connections; two sessions must not
    /// serialize each other.
    IncrementAcrossSessions,
    /// S4: `incr` at a fixed rate per connection: added latency.
    FixedRateLatency,
    /// S5: connection churn: cookie, connect, one `echo`, disconnect.
    Churn,
    /// S6: server memory per idle connection, on a fresh server.
    IdleMemory,
}

impl Scenario {
    /// Every scenario, in table order.
    const ALL: [Scenario; 7] = [
        Scenario::EchoPerConnection,
        Scenario::EchoPerMessage,
        Scenario::Increment,
        Scenario::IncrementAcrossSessions,
        Scenario::FixedRateLatency,
        Scenario::Churn,
        Scenario::IdleMemory,
    ];

    fn id(self) -> &'static str {
        match self {
            Scenario::EchoPerConnection => "S1",
            Scenario::EchoPerMessage => "S2",
            Scenario::Increment => "S3",
            Scenario::IncrementAcrossSessions => "S3i",
            Scenario::FixedRateLatency => "S4",
            Scenario::Churn => "S5",
            Scenario::IdleMemory => "S6",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Scenario::Churn => "conn/s",
            Scenario::IdleMemory => "KiB/conn",
            _ => "msg/s",
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    scenario: Scenario,
    server: ServerKind,
    load: Load,
    /// S3i: how many sessions share the connections.
    sessions: usize,
}

fn rows(o: &Opts) -> Vec<Row> {
    use Mode::*;
    use ServerKind::*;
    use Store::*;
    let mut v = Vec::new();
    let closed = |event, sessions| Load::Closed {
        event,
        conns: o.conns,
        window: o.window,
        sessions,
    };
    let mut add = |scenario, server, load| {
        v.push(Row {
            scenario,
            server,
            load,
            sessions: 0,
        })
    };
    // Postgres and MySQL: S1 and S3 in a full run, S3 alone (the conditional save) in a quick one.
    let s1_sql: &[ServerKind] = if o.quick {
        &[]
    } else {
        &[Ours(PerConnection, Postgres), Ours(PerConnection, MySql)]
    };
    for server in [
        Baseline,
        Ours(PerConnection, Memory),
        Ours(PerConnection, Sqlite),
        Ours(PerConnection, Redis),
    ]
    .into_iter()
    .chain(s1_sql.iter().copied())
    .chain([Node(PerConnection, Memory), Node(PerConnection, Redis)])
    {
        add(
            Scenario::EchoPerConnection,
            server,
            closed(Event::Echo, o.conns),
        );
    }
    for server in [
        Ours(PerMessage, Memory),
        Ours(PerMessage, Sqlite),
        Ours(PerMessage, Redis),
        Node(PerMessage, Memory),
        Node(PerMessage, Redis),
    ] {
        add(
            Scenario::EchoPerMessage,
            server,
            closed(Event::Echo, o.conns),
        );
    }
    for server in [
        Baseline,
        Ours(PerMessage, Memory),
        Ours(PerMessage, Sqlite),
        Ours(PerMessage, Postgres),
        Ours(PerMessage, MySql),
        Ours(PerMessage, Redis),
        Ours(PerMessage, RedisCluster),
        Node(PerMessage, Memory),
        Node(PerMessage, Redis),
    ] {
        add(Scenario::Increment, server, closed(Event::Incr, o.conns));
    }
    for server in [
        Baseline,
        Ours(PerConnection, Memory),
        Ours(PerMessage, Memory),
        Ours(PerMessage, Sqlite),
        Ours(PerMessage, Redis),
        Node(PerMessage, Memory),
    ] {
        add(
            Scenario::FixedRateLatency,
            server,
            Load::Fixed {
                event: Event::Incr,
                conns: o.rate_conns,
                hz: o.rate_hz,
            },
        );
    }
    for server in [
        Baseline,
        Ours(PerConnection, Memory),
        Ours(PerConnection, Sqlite),
        Ours(PerConnection, Redis),
        Ours(PerMessage, Memory),
        Node(PerConnection, Memory),
        Node(PerConnection, Redis),
    ] {
        add(
            Scenario::Churn,
            server,
            Load::Churn {
                event: Event::Echo,
                dialers: o.churn_dialers,
                pool: o.churn_pool,
            },
        );
    }
    for server in [
        Baseline,
        Ours(PerConnection, Memory),
        Ours(PerMessage, Redis),
        Node(PerConnection, Memory),
    ] {
        add(
            Scenario::IdleMemory,
            server,
            Load::Idle {
                conns: o.idle_conns,
                per_proc: o.idle_per_proc,
            },
        );
    }
    // Two sessions must not serialize each other. Over Redis the session lock is held across
    // store round trips, so serialization would show as per-session throughput dropping as
    // sessions are added; over memory the lock is held for microseconds and the run is
    // CPU-bound, which says nothing about the lock.
    for &k in &o.iso_sessions {
        v.push(Row {
            scenario: Scenario::IncrementAcrossSessions,
            server: Ours(PerMessage, Redis),
            load: Load::Closed {
                event: Event::Incr,
                conns: o.iso_per_session * k,
                window: o.iso_window,
                sessions: k,
            },
            sessions: k,
        });
    }
    v.sort_by_key(|r| r.scenario);
    if let Some(only) = &o.only {
        let node = only.iter().any(|s| s == "S7");
        v.retain(|r| {
            only.iter().any(|s| s == r.scenario.id())
                || (node && matches!(r.server, ServerKind::Node(..)))
        });
    }
    if let Some(stores) = &o.stores {
        v.retain(|r| r.server.store().is_none_or(|s| stores.contains(&s)));
    }
    v
}

/// Whether some row runs on `store`.
fn uses(rows: &[Row], store: Store) -> bool {
    rows.iter().any(|r| r.server.store() == Some(store))
}

// ---- the environment: servers, redis, node ----

/// A server under test, running, with its logged-in sessions.
struct StartedServer {
    proc: Proc,
    target: Target,
    cookies: Vec<String>,
    session_bytes: u64,
}

/// What every scenario runs in: options, binaries, CPU placement, the Node peer and Redis.
struct Env {
    opts: Opts,
    bin_dir: PathBuf,
    logs: PathBuf,
    /// Pinned runs: the core of every server under test.
    server_cpu: Option<usize>,
    /// Pinned runs: the core of the redis-server.
    aux_cpu: Option<usize>,
    /// The cores this process (the load generator) may run on.
    generator_cpus: Vec<usize>,
    /// The load generator's threads.
    generator_threads: usize,
    workers: usize,
    redis: Result<(Proc, u16), String>,
    /// The run's Redis Cluster: its nodes, with their ports.
    cluster: Result<Vec<(Proc, u16)>, String>,
    node: Result<String, String>,
    /// The run's own database on the machine's Postgres, and on its MariaDB/MySQL.
    postgres: Result<SqlDb, String>,
    mysql: Result<SqlDb, String>,
}

impl Env {
    /// Finds the binaries, makes the logs directory, places servers, generator and redis-server
    /// on cores, checks the Node peer and starts a redis-server.
    async fn prepare(opts: Opts) -> Result<Env, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let bin_dir = exe
            .parent()
            .ok_or("no directory for the executable")?
            .to_path_buf();
        if !bin_dir.join("bench-server").exists() {
            return Err(format!(
                "{} not found: build with `cargo build --release -p socketio-sessions-bench`",
                bin_dir.join("bench-server").display()
            ));
        }
        let logs =
            std::env::temp_dir().join(format!("socketio-sessions-bench-{}", std::process::id()));
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;

        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let nproc = online_cpus();
        let taskset = procs::runs("taskset").await.is_ok();
        let mine = own_affinity();
        // Pinned: servers on one core with one worker (Node is single-threaded), the generator
        // and redis-server on another core (run.sh starts this process with `taskset -c 1`).
        let (server_cpu, aux_cpu, workers) = if opts.pin && taskset && nproc >= 2 {
            let server = (0..nproc).find(|c| !mine.contains(c)).unwrap_or(0);
            let aux = mine.iter().copied().find(|c| *c != server).unwrap_or(1);
            (Some(server), Some(aux), 1)
        } else {
            (None, None, nproc.max(1))
        };

        let node = node_status(&opts.node_peer).await;
        let rows = rows(&opts);
        let unused = || Err::<SqlDb, String>("not used by this run's rows".into());
        let redis = if uses(&rows, Store::Redis) {
            start_redis(&logs, aux_cpu).await
        } else {
            Err("not used by this run's rows".into())
        };
        let cluster = if uses(&rows, Store::RedisCluster) {
            start_redis_cluster(&logs, aux_cpu).await
        } else {
            Err("not used by this run's rows".into())
        };
        let postgres = if uses(&rows, Store::Postgres) {
            SqlDb::create(SqlKind::Postgres).await
        } else {
            unused()
        };
        let mysql = if uses(&rows, Store::MySql) {
            SqlDb::create(SqlKind::MySql).await
        } else {
            unused()
        };

        eprintln!(
            "socketio-sessions-bench: {} mode, logs in {}",
            if opts.quick { "quick" } else { "full" },
            logs.display()
        );
        Ok(Env {
            opts,
            bin_dir,
            logs,
            server_cpu,
            aux_cpu,
            generator_cpus: mine,
            generator_threads: cpus,
            workers,
            redis,
            cluster,
            node,
            postgres,
            mysql,
        })
    }

    /// The run's database for a SQL store on a server of the machine.
    fn sql_db(&self, store: Store) -> Option<&Result<SqlDb, String>> {
        match store {
            Store::Postgres => Some(&self.postgres),
            Store::MySql => Some(&self.mysql),
            _ => None,
        }
    }

    /// The benchmark's own processes besides the servers under test: the redis-server and the
    /// database servers' processes.
    fn aux_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok((redis, _)) = &self.redis {
            pids.push(redis.pid);
        }
        if let Ok(nodes) = &self.cluster {
            pids.extend(nodes.iter().map(|(node, _)| node.pid));
        }
        for db in [&self.postgres, &self.mysql].into_iter().flatten() {
            pids.extend(db.server_pids());
        }
        pids
    }

    /// The `--store` of a server under test (`tag`: its log and SQLite file name).
    fn store_arg(&self, store: Store, tag: &str) -> String {
        match store {
            Store::Memory => "memory".to_owned(),
            Store::Sqlite => format!("sqlite://{}", self.logs.join(format!("{tag}.db")).display()),
            Store::Postgres | Store::MySql => self
                .sql_db(store)
                .and_then(|db| db.as_ref().ok())
                .map(|db| db.url.clone())
                .unwrap_or_default(),
            Store::Redis => format!(
                "redis://127.0.0.1:{}",
                self.redis.as_ref().map(|r| r.1).unwrap_or(0)
            ),
            Store::RedisCluster => {
                let nodes: Vec<String> = self
                    .cluster
                    .iter()
                    .flatten()
                    .map(|(_, port)| format!("127.0.0.1:{port}"))
                    .collect();
                format!("redis-cluster://{}", nodes.join(","))
            }
        }
    }

    /// The pool flags of a server under test on `store` (and of its ceiling).
    fn pool_args(&self, store: Store) -> Vec<String> {
        match store {
            Store::Sqlite => vec!["--sqlite-pool".into(), self.opts.sqlite_pool.to_string()],
            Store::Postgres | Store::MySql => {
                vec!["--sql-pool".into(), self.opts.sql_pool.to_string()]
            }
            Store::Memory | Store::Redis | Store::RedisCluster => Vec::new(),
        }
    }

    fn available(&self, server: ServerKind) -> Result<(), String> {
        if let ServerKind::Node(..) = server
            && let Err(e) = &self.node
        {
            return Err(e.clone());
        }
        if server.store() == Some(Store::Redis)
            && let Err(e) = &self.redis
        {
            return Err(e.clone());
        }
        if server.store() == Some(Store::RedisCluster)
            && let Err(e) = &self.cluster
        {
            return Err(e.clone());
        }
        if let Some(Err(e)) = server.store().and_then(|s| self.sql_db(s)) {
            return Err(e.clone());
        }
        Ok(())
    }

    async fn start(
        &self,
        server: ServerKind,
        sessions: usize,
        tag: &str,
    ) -> Result<StartedServer, String> {
        self.available(server)?;
        let store_arg = |s: Store| self.store_arg(s, tag);
        let server_bin = self.bin_dir.join("bench-server");
        let node = PathBuf::from("node");
        let (program, args, dir): (&Path, Vec<String>, Option<&Path>) = match server {
            ServerKind::Baseline => (
                &server_bin,
                vec![
                    "--kind".into(),
                    "b0".into(),
                    "--workers".into(),
                    self.workers.to_string(),
                ],
                None,
            ),
            ServerKind::Ours(m, s) => (
                &server_bin,
                [
                    "--kind".into(),
                    "sessions".into(),
                    "--mode".into(),
                    m.arg().into(),
                    "--store".into(),
                    store_arg(s),
                    "--workers".into(),
                    self.workers.to_string(),
                ]
                .into_iter()
                .chain(self.pool_args(s))
                .collect(),
                None,
            ),
            ServerKind::Node(m, s) => (
                &node,
                vec![
                    "server.mjs".into(),
                    "--mode".into(),
                    m.arg().into(),
                    "--store".into(),
                    store_arg(s),
                ],
                Some(self.opts.node_peer.as_path()),
            ),
        };
        let mut proc = Proc::spawn(Spawn {
            name: tag,
            program,
            args,
            cpu: self.server_cpu,
            dir,
            logs: &self.logs,
            stdin: false,
        })?;
        let addr = proc.listening(Duration::from_secs(30)).await?;
        let logins: Vec<Login> = http::login_many(addr, tag, sessions.max(1), 16)
            .await
            .map_err(|e| format!("{tag}: {e}"))?;
        Ok(StartedServer {
            target: Target {
                addr,
                origin: format!("http://{addr}"),
            },
            session_bytes: logins.first().map_or(0, |l| l.bytes),
            cookies: logins.into_iter().map(|l| l.cookie).collect(),
            proc,
        })
    }
}

// ---- results ----

/// What became of a row.
#[derive(Debug, Clone)]
enum Outcome {
    Ran(Summary),
    Skipped(String),
    Failed(String),
}

/// A row's runs summed up: medians of the values and percentiles, total errors and lost updates.
#[derive(Debug, Clone, Default)]
struct Summary {
    value: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    rss: Option<u64>,
    errors: u64,
    lost: u64,
    runs: usize,
    messages: Vec<String>,
    connects_per_s: Option<f64>,
    session_bytes: u64,
    /// Median share of the machine used by other processes during the runs.
    other_pct: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn aggregate(samples: &[Sample], session_bytes: u64) -> Summary {
    let mut messages = Vec::new();
    for s in samples {
        for m in &s.messages {
            if messages.len() < 3 {
                messages.push(m.clone());
            }
        }
    }
    Summary {
        value: median(samples.iter().map(|s| s.value).collect()).unwrap_or(0.0),
        p50: median(samples.iter().filter_map(|s| s.p50_ms).collect()),
        p99: median(samples.iter().filter_map(|s| s.p99_ms).collect()),
        rss: median(
            samples
                .iter()
                .filter_map(|s| s.rss_kib.map(|r| r as f64))
                .collect(),
        )
        .map(|r| r as u64),
        errors: samples.iter().map(|s| s.errors).sum(),
        lost: samples.iter().map(|s| s.lost).sum(),
        runs: samples.len(),
        messages,
        connects_per_s: median(samples.iter().filter_map(|s| s.connects_per_s).collect()),
        session_bytes,
        other_pct: median(samples.iter().filter_map(|s| s.other_pct).collect()),
    }
}

#[derive(Debug, Clone, Default)]
struct RedisCeiling {
    get: f64,
    set: f64,
    clients: usize,
    value_bytes: usize,
}

impl RedisCeiling {
    /// GET + SET pairs per second: one load and one save per session write.
    fn pairs(&self) -> f64 {
        1.0 / (1.0 / self.get + 1.0 / self.set)
    }
}

/// The Redis ceilings measured after each repeat, and why the last attempt failed, if it did.
#[derive(Debug, Default)]
struct RedisCeilings {
    runs: Vec<RedisCeiling>,
    error: Option<String>,
}

impl RedisCeilings {
    /// The median of every run, if there was one.
    fn median(&self) -> Option<RedisCeiling> {
        if self.runs.is_empty() {
            return None;
        }
        Some(RedisCeiling {
            get: median(self.runs.iter().map(|c| c.get).collect()).unwrap_or(0.0),
            set: median(self.runs.iter().map(|c| c.set).collect()).unwrap_or(0.0),
            clients: self.runs[0].clients,
            value_bytes: self.runs[0].value_bytes,
        })
    }
}

/// One run of a SQL store's ceiling (`bench-server --kind ceiling`): the store's select and
/// conditional update in a loop, no sessions.
#[derive(Debug, Clone)]
struct SqlCeilingRun {
    /// Select + conditional-update pairs per second.
    ops: f64,
    /// Tasks, rows, record size and pool, as the ceiling printed them.
    detail: String,
    /// Conflicts and errors the loop counted (its rows are its own: any is a fault).
    faults: u64,
    other_pct: Option<f64>,
}

/// The ceilings of the SQL stores after each repeat, and why the last attempt failed.
#[derive(Debug, Default)]
struct SqlCeilings {
    runs: HashMap<Store, Vec<SqlCeilingRun>>,
    errors: HashMap<Store, String>,
}

impl SqlCeilings {
    fn values(&self, store: Store) -> Vec<f64> {
        self.runs
            .get(&store)
            .map(|r| r.iter().map(|c| c.ops).collect())
            .unwrap_or_default()
    }

    /// The median of every run of `store`'s ceiling, if there was one.
    fn median(&self, store: Store) -> Option<f64> {
        median(self.values(store))
    }

    fn detail(&self, store: Store) -> String {
        self.runs
            .get(&store)
            .and_then(|r| r.first())
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    }
}

/// Every ceiling measured in the run.
#[derive(Debug, Default)]
struct Ceilings {
    redis: RedisCeilings,
    sql: SqlCeilings,
}

impl Ceilings {
    /// The ceiling an S3 row on `store` compares with, in operations per second.
    fn of(&self, store: Store) -> Option<f64> {
        match store {
            Store::Redis => self.redis.median().map(|c| c.pairs()),
            s if s.is_sql() => self.sql.median(s),
            _ => None,
        }
    }
}

/// What the rows measured so far: samples per row, why a row did not run, each server's
/// session size.
struct Measured {
    samples: Vec<Vec<Sample>>,
    outcomes: Vec<Option<Outcome>>,
    session_bytes: HashMap<ServerKind, u64>,
}

impl Measured {
    fn new(rows: usize) -> Measured {
        Measured {
            samples: vec![Vec::new(); rows],
            outcomes: vec![None; rows],
            session_bytes: HashMap::new(),
        }
    }

    /// Every row's outcome: why it did not run, or its samples aggregated.
    fn outcomes(&mut self, rows: &[Row]) -> Vec<Outcome> {
        for (i, row) in rows.iter().enumerate() {
            if self.outcomes[i].is_none() {
                self.outcomes[i] = Some(Outcome::Ran(aggregate(
                    &self.samples[i],
                    self.session_bytes.get(&row.server).copied().unwrap_or(0),
                )));
            }
        }
        self.outcomes
            .iter()
            .map(|o| o.clone().unwrap_or(Outcome::Failed("not run".into())))
            .collect()
    }
}

// ---- the run ----

pub(crate) async fn main(opts: Opts) -> Result<bool, String> {
    let started = Instant::now();
    let require_all = std::env::var("SOCKETIO_SESSIONS_REQUIRE_ALL").is_ok_and(|v| v == "1");
    let env = Env::prepare(opts).await?;
    let header = header(&env).await;
    let rows = rows(&env.opts);
    let mut measured = Measured::new(rows.len());

    let (ceilings, redone) = run_shared_server_scenarios(&env, &rows, &mut measured).await;
    run_idle_memory_scenario(&env, &rows, &mut measured).await;
    if let Ok((redis, _)) = env.redis {
        redis.kill().await;
    }
    for (node, _) in env.cluster.into_iter().flatten() {
        node.kill().await;
    }
    // Every server is stopped: the run's databases go.
    let mut cleanup_problems = Vec::new();
    for db in [&env.postgres, &env.mysql].into_iter().flatten() {
        if let Err(e) = db.drop_database().await {
            eprintln!("socketio-sessions-bench: {e}");
            cleanup_problems.push(e);
        }
    }
    let opts = env.opts;

    let outcomes = measured.outcomes(&rows);
    let ceiling = ceilings.redis.median();
    let table = table(&rows, &outcomes, &ceilings);
    let targets = targets(
        &rows,
        &outcomes,
        &measured.samples,
        (ceiling.as_ref(), &ceilings.redis.runs),
        ceilings.redis.error.as_deref(),
        &ceilings.sql,
    );
    println!("{header}");
    println!("{}", legend(&opts));
    println!("{table}");
    println!("{targets}");

    let mut s3_problems = cleanup_problems;
    for store in Store::SQL {
        if let Some(e) = ceilings.sql.errors.get(&store) {
            s3_problems.push(format!("ceiling {}: {e}", store.name()));
        }
        for c in ceilings.sql.runs.get(&store).into_iter().flatten() {
            if c.faults > 0 {
                s3_problems.push(format!(
                    "ceiling {}: {} conflicts or errors in its own rows",
                    store.name(),
                    c.faults
                ));
            }
        }
    }
    let (passed, failed) = scenario_verdicts(&rows, &outcomes, require_all, &s3_problems);
    if let Some(max) = opts.max_others {
        println!(
            "{redone} measurement(s) discarded and taken again because other processes used over {max:.0}% of the machine meanwhile"
        );
    }
    println!(
        "wall time {:.0} s (servers, logins and loads; not the build)",
        started.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    if !opts.keep_logs && failed == 0 {
        let _ = std::fs::remove_dir_all(&env.logs);
    }
    Ok(failed == 0)
}

/// S1–S5 and S3i: every server is started once (in the order first needed) and kept through
/// every repeat; after each repeat, the ceiling of each S3 store: redis-benchmark GET and SET
/// at S3's concurrency against the same redis-server, and for each SQL store the raw
/// conditional-update loop on the same database (S3's concurrency, as many rows as S3 has
/// sessions, the server's pool). Returns the ceilings and how many measurements were discarded
/// as noisy.
async fn run_shared_server_scenarios(
    env: &Env,
    rows: &[Row],
    measured: &mut Measured,
) -> (Ceilings, usize) {
    let opts = &env.opts;
    let mut servers: HashMap<ServerKind, StartedServer> = HashMap::new();
    let mut needed: HashMap<ServerKind, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r.scenario != Scenario::IdleMemory) {
        let n = needed.entry(r.server).or_default();
        *n = (*n).max(r.load.sessions_needed());
    }
    let mut failed_servers: HashMap<ServerKind, String> = HashMap::new();
    let mut ceilings = RedisCeilings::default();
    let mut sql_ceilings = SqlCeilings::default();
    let redis_clients = opts.conns;
    let mut redone = 0usize;

    for rep in 0..opts.repeats {
        for (i, row) in rows.iter().enumerate() {
            if row.scenario == Scenario::IdleMemory {
                continue;
            }
            if let Err(why) = env.available(row.server) {
                measured.outcomes[i] = Some(Outcome::Skipped(why));
                continue;
            }
            if let Some(why) = failed_servers.get(&row.server) {
                measured.outcomes[i] = Some(Outcome::Failed(why.clone()));
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = servers.entry(row.server) {
                let tag = row.server.tag();
                match env.start(row.server, needed[&row.server], &tag).await {
                    Ok(s) => {
                        measured.session_bytes.insert(row.server, s.session_bytes);
                        slot.insert(s);
                    }
                    Err(e) => {
                        eprintln!("  {}: {e}", row.server.label());
                        failed_servers.insert(row.server, e.clone());
                        measured.outcomes[i] = Some(Outcome::Failed(e));
                        continue;
                    }
                }
            }
            let mut ours: Vec<u32> = servers.values().map(|s| s.proc.pid).collect();
            ours.extend(env.aux_pids());
            let (sample, discarded) =
                measure_row(env, row, rep, &servers[&row.server], &ours).await;
            redone += discarded;
            measured.samples[i].push(sample);
            // Let disconnect-time work (per-connection saves) finish before the next row.
            tokio::time::sleep(Duration::from_millis(if opts.quick { 50 } else { 300 })).await;
        }
        let s3 = |store| {
            let server = ServerKind::Ours(Mode::PerMessage, store);
            rows.iter()
                .any(|r| r.scenario == Scenario::Increment && r.server == server)
                && servers.contains_key(&server)
        };
        if let Ok((_, port)) = &env.redis
            && s3(Store::Redis)
        {
            match redis_ceiling(env, *port, redis_clients, &servers).await {
                Ok(c) => {
                    eprintln!(
                        "[{}/{}] redis-benchmark -c {}: GET {:.0}/s, SET {:.0}/s, GET+SET pairs {:.0}/s",
                        rep + 1,
                        opts.repeats,
                        c.clients,
                        c.get,
                        c.set,
                        c.pairs()
                    );
                    ceilings.runs.push(c);
                }
                Err(e) => {
                    eprintln!("  redis-benchmark: {e}");
                    ceilings.error = Some(e);
                }
            }
        }
        for store in Store::SQL.into_iter().filter(|s| s3(*s)) {
            let mut ours: Vec<u32> = servers.values().map(|s| s.proc.pid).collect();
            ours.extend(env.aux_pids());
            match sql_ceiling(env, store, &ours).await {
                Ok((c, discarded)) => {
                    redone += discarded;
                    eprintln!(
                        "[{}/{}] ceiling {}: {:.0} select + conditional update/s ({}){}",
                        rep + 1,
                        opts.repeats,
                        store.name(),
                        c.ops,
                        c.detail,
                        c.other_pct
                            .map(|o| format!("  others {o:.0}%"))
                            .unwrap_or_default()
                    );
                    sql_ceilings.runs.entry(store).or_default().push(c);
                }
                Err(e) => {
                    eprintln!("  ceiling {}: {e}", store.name());
                    sql_ceilings.errors.insert(store, e);
                }
            }
        }
    }
    for (_, s) in servers.drain() {
        s.proc.kill().await;
    }
    (
        Ceilings {
            redis: ceilings,
            sql: sql_ceilings,
        },
        redone,
    )
}

/// The raw conditional-update loop of a SQL store, with no sessions (`bench-server --kind
/// ceiling`), on the database (SQLite: the file) of S3's server, pinned as the servers are,
/// with the same pool, S3's concurrency and as many rows as S3 has sessions. Noisy
/// measurements are taken again as in [`measure_row`]. Returns the run and how many were
/// discarded.
async fn sql_ceiling(
    env: &Env,
    store: Store,
    ours: &[u32],
) -> Result<(SqlCeilingRun, usize), String> {
    let o = &env.opts;
    let tag = ServerKind::Ours(Mode::PerMessage, store).tag();
    let name = format!("ceiling-{}", store.name());
    let mut discarded = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(max) = o.wait_quiet {
            procs::wait_quiet(ours, max).await;
        }
        let args: Vec<String> = [
            "--kind".into(),
            "ceiling".into(),
            "--store".into(),
            env.store_arg(store, &tag),
            "--workers".into(),
            env.workers.to_string(),
            "--tasks".into(),
            o.conns.to_string(),
            "--rows".into(),
            o.conns.to_string(),
            "--warmup".into(),
            o.timing.warmup.as_secs_f64().to_string(),
            "--duration".into(),
            o.timing.measure.as_secs_f64().to_string(),
        ]
        .into_iter()
        .chain(env.pool_args(store))
        .collect();
        let mut proc = Proc::spawn(Spawn {
            name: &name,
            program: &env.bin_dir.join("bench-server"),
            args,
            cpu: env.server_cpu,
            dir: None,
            logs: &env.logs,
            stdin: true,
        })?;
        let watch = procs::CpuWatch::start(ours.iter().copied().chain([proc.pid]).collect());
        let limit = o.timing.warmup + o.timing.measure + Duration::from_secs(60);
        let line = proc.line(limit).await;
        // The ceiling's own pool connected after the watch started (Postgres: a backend
        // process per connection).
        let other_pct = watch.others_pct_with(&env.aux_pids());
        // The ceiling deletes its rows and exits when its input closes.
        proc.stdin = None;
        let _ = proc.wait(Duration::from_secs(10)).await;
        proc.kill().await;
        let line = line?;
        let parsed = || -> Option<SqlCeilingRun> {
            let rest = line.strip_prefix("bench-server: ceiling ")?;
            let (numbers, detail) = rest.split_once(" (")?;
            let f: Vec<&str> = numbers.split_whitespace().collect();
            let (ops, conflicts, errors) = match f.as_slice() {
                [ops, "ops/s", "conflicts", c, "errors", e] => (
                    ops.parse().ok()?,
                    c.parse::<u64>().ok()?,
                    e.parse::<u64>().ok()?,
                ),
                _ => return None,
            };
            Some(SqlCeilingRun {
                ops,
                // Without the op count of this run: tasks, rows, record size, pool.
                detail: detail
                    .trim_end_matches(')')
                    .split_once(" s; ")
                    .map_or(detail, |(_, d)| d)
                    .to_owned(),
                faults: conflicts + errors,
                other_pct,
            })
        };
        let run = parsed().ok_or_else(|| format!("{name}: unexpected output {line:?}"))?;
        match (o.max_others, other_pct) {
            (Some(max), Some(p)) if p > max && attempt <= MAX_REDOS => {
                discarded += 1;
                eprintln!(
                    "  (others used {p:.0}% of the machine, over {max:.0}%: {name} discarded, measuring again)"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => return Ok((run, discarded)),
        }
    }
}

/// One measurement of a row on its running server (`ours`: the benchmark's own processes).
/// A measurement during which other processes took a noticeable share of the machine is
/// discarded and taken again, up to [`MAX_REDOS`] times (the criterion does not look at the
/// result). Returns the sample and how many were discarded.
async fn measure_row(
    env: &Env,
    row: &Row,
    rep: usize,
    srv: &StartedServer,
    ours: &[u32],
) -> (Sample, usize) {
    let opts = &env.opts;
    let mut discarded = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(max) = opts.wait_quiet {
            let (waited, quiet) = procs::wait_quiet(ours, max).await;
            if !quiet {
                eprintln!(
                    "  (the machine was still busy after waiting {:.0} s: measuring anyway)",
                    waited.as_secs_f64()
                );
            } else if waited > Duration::from_secs(5) {
                eprintln!(
                    "  (waited {:.0} s for a quiet machine)",
                    waited.as_secs_f64()
                );
            }
        }
        let watch = procs::CpuWatch::start(ours.to_vec());
        let mut sample = scenario::run_load(
            &srv.target,
            srv.proc.pid,
            &srv.cookies,
            &row.load,
            scenario_timing(opts, row.scenario),
        )
        .await;
        sample.other_pct = watch.others_pct();
        eprintln!(
            "[{}/{}] {:<4} {:<34} {}",
            rep + 1,
            opts.repeats,
            row.scenario.id(),
            describe(row),
            brief(row.scenario, &sample)
        );
        match (opts.max_others, sample.other_pct) {
            (Some(max), Some(o)) if o > max && attempt <= MAX_REDOS => {
                discarded += 1;
                eprintln!(
                    "  (others used {o:.0}% of the machine, over {max:.0}%: discarded, measuring again)"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => return (sample, discarded),
        }
    }
}

/// S6: a fresh server per row, so that memory freed by earlier loads does not hide growth.
async fn run_idle_memory_scenario(env: &Env, rows: &[Row], measured: &mut Measured) {
    for (i, row) in rows.iter().enumerate() {
        let Load::Idle { conns, per_proc } = row.load else {
            continue;
        };
        if let Err(why) = env.available(row.server) {
            measured.outcomes[i] = Some(Outcome::Skipped(why));
            continue;
        }
        let tag = format!("s6-{}", row.server.tag());
        let srv = match env.start(row.server, conns, &tag).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("  {}: {e}", row.server.label());
                measured.outcomes[i] = Some(Outcome::Failed(e));
                continue;
            }
        };
        measured.session_bytes.insert(row.server, srv.session_bytes);
        let sample = scenario::run_idle(
            &srv.proc,
            &srv.target,
            &srv.cookies,
            conns,
            per_proc,
            env.opts.idle_settle,
            &env.logs,
        )
        .await;
        eprintln!(
            "[1/1] {:<4} {:<34} {}",
            row.scenario.id(),
            describe(row),
            brief(row.scenario, &sample)
        );
        measured.samples[i].push(sample);
        srv.proc.kill().await;
    }
}

/// Pass/fail per scenario: every row completed with zero errors (and, for our rows, zero lost
/// updates); a row skipped for a missing part fails only with `SOCKETIO_SESSIONS_REQUIRE_ALL=1`.
/// Node rows form S7. Prints every failure and every scenario skipped as a whole; returns how
/// many scenarios passed and failed.
fn scenario_verdicts(
    rows: &[Row],
    outcomes: &[Outcome],
    require_all: bool,
    s3_problems: &[String],
) -> (usize, usize) {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for scenario in Scenario::ALL {
        let idx: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scenario == scenario && !matches!(r.server, ServerKind::Node(..)))
            .map(|(i, _)| i)
            .collect();
        if !idx.is_empty() {
            groups.push((scenario.id(), idx));
        }
    }
    let node_rows: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.server, ServerKind::Node(..)))
        .map(|(i, _)| i)
        .collect();
    if !node_rows.is_empty() {
        groups.push(("S7", node_rows));
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, idx) in &groups {
        let mut problems = Vec::new();
        if *name == "S3" {
            problems.extend(s3_problems.iter().cloned());
        }
        let mut ran = 0;
        for &i in idx {
            let label = format!("{} {}", rows[i].scenario.id(), describe(&rows[i]));
            match &outcomes[i] {
                Outcome::Ran(a) => {
                    ran += 1;
                    if a.errors > 0 {
                        problems.push(format!(
                            "{label}: {} errors ({})",
                            a.errors,
                            a.messages.join(" | ")
                        ));
                    }
                    if a.lost > 0 && !matches!(rows[i].server, ServerKind::Node(..)) {
                        problems.push(format!("{label}: {} lost updates", a.lost));
                    }
                    if a.runs == 0 {
                        problems.push(format!("{label}: no measurement"));
                    }
                }
                Outcome::Failed(e) => problems.push(format!("{label}: {e}")),
                Outcome::Skipped(why) if require_all => problems.push(format!(
                    "{label}: skipped ({why}) with SOCKETIO_SESSIONS_REQUIRE_ALL=1"
                )),
                Outcome::Skipped(_) => {}
            }
        }
        if !problems.is_empty() {
            failed += 1;
            println!("FAIL {name}:");
            for p in problems {
                println!("  {p}");
            }
        } else if ran == 0 {
            println!("skip {name}: every row skipped (see the table)");
        } else {
            passed += 1;
        }
    }
    (passed, failed)
}

fn scenario_timing(o: &Opts, scenario: Scenario) -> Timing {
    match scenario {
        // Fixed rate needs enough samples for a p99: at least a second in quick mode.
        Scenario::FixedRateLatency if o.quick => Timing {
            warmup: o.timing.warmup,
            measure: Duration::from_secs(1),
        },
        _ => o.timing,
    }
}

fn describe(r: &Row) -> String {
    match r.scenario {
        Scenario::IncrementAcrossSessions => {
            format!("{}, {} session(s)", r.server.label(), r.sessions)
        }
        _ => r.server.label(),
    }
}

fn brief(scenario: Scenario, s: &Sample) -> String {
    let mut out = format!("{:>10.1} {}", s.value, scenario.unit());
    if let (Some(p50), Some(p99)) = (s.p50_ms, s.p99_ms) {
        let _ = write!(out, "  p50 {p50:.3} ms  p99 {p99:.3} ms");
    }
    if let Some(rss) = s.rss_kib {
        let _ = write!(out, "  rss {:.1} MiB", rss as f64 / 1024.0);
    }
    if let Some(o) = s.other_pct {
        let _ = write!(out, "  others {o:.0}%");
    }
    let _ = write!(out, "  errors {}", s.errors);
    if s.lost > 0 {
        let _ = write!(out, "  lost {}", s.lost);
    }
    if let Some(m) = s.messages.first() {
        let _ = write!(out, "  ({m})");
    }
    out
}

// ---- helpers: environment ----

fn online_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| parse_cpu_list(s.trim()).len())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn own_affinity() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| parse_cpu_list(l.trim()))
        })
        .unwrap_or_default()
}

fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

async fn node_status(peer: &Path) -> Result<String, String> {
    let version = procs::runs("node").await?;
    if !peer.join("node_modules/socket.io").exists()
        || !peer.join("node_modules/express-session").exists()
    {
        return Err(format!(
            "{}/node_modules is missing: run `npm ci` there (bench/run.sh does)",
            peer.display()
        ));
    }
    Ok(version)
}

async fn start_redis(logs: &Path, cpu: Option<usize>) -> Result<(Proc, u16), String> {
    procs::runs("redis-server")
        .await
        .map_err(|e| format!("redis-server is not available: {e}"))?;
    let port = procs::free_port()?;
    let proc = Proc::spawn(Spawn {
        name: "redis-server",
        program: Path::new("redis-server"),
        args: vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
        ],
        cpu,
        dir: Some(logs),
        logs,
        stdin: false,
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(pong) = http::redis_command(port, &["PING"]).await
            && pong == "+PONG"
        {
            return Ok((proc, port));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server did not answer on port {port} (log: {})",
                proc.log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis Cluster of 3 primaries without replicas, on the redis-server's core: what S3 runs
/// against to compare a cluster with one Redis.
async fn start_redis_cluster(logs: &Path, cpu: Option<usize>) -> Result<Vec<(Proc, u16)>, String> {
    procs::runs("redis-cli")
        .await
        .map_err(|e| format!("redis-cli is not available: {e}"))?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        // The cluster bus listens on the port + 10000.
        let port = loop {
            let port = procs::free_port()?;
            if port <= u16::MAX - 10_000
                && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
            {
                break port;
            }
        };
        let dir = logs.join(format!("redis-cluster-{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(["--daemonize".to_owned(), "no".to_owned()]);
        let proc = Proc::spawn(Spawn {
            name: &format!("redis-cluster-{i}"),
            program: Path::new("redis-server"),
            args,
            cpu,
            dir: Some(&dir),
            logs,
            stdin: false,
        })?;
        nodes.push((proc, port));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, port) in &nodes {
        while !http::redis_command(*port, &["PING"])
            .await
            .is_ok_and(|pong| pong == "+PONG")
        {
            if Instant::now() > deadline {
                return Err(format!("cluster node on port {port} did not answer"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let created = tokio::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(nodes.iter().map(|(_, port)| format!("127.0.0.1:{port}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .await
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !created.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        ));
    }
    for (_, port) in &nodes {
        loop {
            let info = tokio::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                .output()
                .await
                .map_err(|e| format!("redis-cli: {e}"))?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the cluster was not ok on port {port} within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(nodes)
}

async fn redis_ceiling(
    env: &Env,
    port: u16,
    clients: usize,
    servers: &HashMap<ServerKind, StartedServer>,
) -> Result<RedisCeiling, String> {
    // The size of one of our session records (MessagePack), for redis-benchmark's -d.
    let mut value_bytes = 100;
    if let Some(s) = servers.get(&ServerKind::Ours(Mode::PerMessage, Store::Redis))
        && let Some(id) = s
            .cookies
            .first()
            .and_then(|c| c.split_once('='))
            .map(|(_, v)| v)
        && let Ok(reply) = http::redis_command(port, &["STRLEN", id]).await
        && let Some(n) = reply
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
        && n > 0
    {
        value_bytes = n;
    }
    let mut cmd = match env.server_cpu {
        Some(cpu) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg("redis-benchmark");
            c
        }
        None => tokio::process::Command::new("redis-benchmark"),
    };
    let out = cmd
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
            "-n",
            &env.opts.redis_requests.to_string(),
            "-d",
            &value_bytes.to_string(),
            "-t",
            "get,set",
            "--csv",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut c = RedisCeiling {
        clients,
        value_bytes,
        ..RedisCeiling::default()
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        if fields.len() < 2 {
            continue;
        }
        let rps = fields[1].parse::<f64>().unwrap_or(0.0);
        match fields[0] {
            "GET" => c.get = rps,
            "SET" => c.set = rps,
            _ => {}
        }
    }
    if c.get > 0.0 && c.set > 0.0 {
        Ok(c)
    } else {
        Err(format!("redis-benchmark: unexpected output: {text}"))
    }
}

async fn header(env: &Env) -> String {
    let o = &env.opts;
    let (server_cpu, aux_cpu) = (env.server_cpu, env.aux_cpu);
    let (mine, cpus) = (&env.generator_cpus, env.generator_threads);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let redis = procs::runs("redis-server").await.unwrap_or_else(|e| e);
    let mut h = String::new();
    let _ = writeln!(
        h,
        "## socketio-sessions benchmarks ({})",
        if o.quick { "quick" } else { "full" }
    );
    let _ = writeln!(h);
    let _ = writeln!(
        h,
        "- machine: {} CPUs online ({model}), {mem_gib:.1} GiB RAM",
        online_cpus()
    );
    match (server_cpu, aux_cpu) {
        (Some(s), Some(a)) => {
            let _ = writeln!(
                h,
                "- pinned: each server on CPU {s} with 1 worker thread (Node is single-threaded); \
                 generator on CPU(s) {mine:?} ({cpus} thread(s)); redis-server on CPU {a}"
            );
        }
        _ => {
            let _ = writeln!(
                h,
                "- not pinned: servers with {} worker threads, generator with {cpus}",
                env.workers
            );
        }
    }
    let db = |d: &Result<SqlDb, String>| match d {
        Ok(db) => db.version.clone(),
        Err(e) => format!("skipped ({e})"),
    };
    let _ = writeln!(
        h,
        "- postgres: {}; mysql: {} (the machine's servers, not pinned; each run in a database of \
         its own); pools: sqlite {} connection(s) (WAL, synchronous=NORMAL), postgres and mysql \
         {} connection(s)",
        db(&env.postgres),
        db(&env.mysql),
        o.sqlite_pool,
        o.sql_pool
    );
    let _ = writeln!(
        h,
        "- node: {}; redis: {}",
        env.node
            .as_ref()
            .map_or_else(|e| format!("skipped ({e})"), |v| v.clone()),
        match &env.redis {
            Ok(_) => redis,
            Err(e) => format!("skipped ({e})"),
        }
    );
    let _ = writeln!(
        h,
        "- each row: median of {} run(s) of {:.1} s after {:.1} s warm-up (S6: one run); {}",
        o.repeats,
        o.timing.measure.as_secs_f64(),
        o.timing.warmup.as_secs_f64(),
        match o.wait_quiet {
            Some(d) => format!(
                "before each row, waited up to {:.0} s for other processes to leave the machine under 10 % busy",
                d.as_secs_f64()
            ),
            None => "no waiting for a quiet machine".into(),
        }
    );
    if let Some(max) = o.max_others {
        let _ = writeln!(
            h,
            "- a measurement during which other processes used over {max:.0} % of the machine is \
             discarded and taken again (up to {MAX_REDOS} times; the last one is kept)"
        );
    }
    h
}

fn legend(o: &Opts) -> String {
    format!(
        "Loads: S1/S2 `echo` (reads the session: per-conn in memory, per-msg a store load), \
         S3 `incr` (per-msg: load + conditional save before the ack), {c} connections x window {w}, \
         one session each; S3i per-message Redis `incr`, {ip} connections per session x window {iw}, 1..n sessions; \
         S4 `incr` at a fixed rate, {rc} connections x {hz} msg/s, latency from the send; \
         S5 churn, {d} dialers: cookie -> connect -> one `echo` -> disconnect \
         (p50/p99: dial to ack); S6 {ic} idle connections, server RSS growth per connection \
         (fresh server). Server SocketIo max_buffer_size 1024. B0 = plain socketioxide. \
         x B0 and x Node: ratio of the result (S4: added p50/p99 ms; S6: added KiB/conn). \
         x ceiling (S3): ratio to the store's ceiling measured in the same run (Redis: \
         redis-benchmark GET+SET pairs at -c {c}; SQL: the store's select + conditional update \
         in a loop with no sessions, {c} tasks on {c} rows, the server's pool and pinning). \
         others' CPU: share of the machine used by processes outside the benchmark during the \
         row (a noise indicator).\n",
        c = o.conns,
        w = o.window,
        ip = o.iso_per_session,
        iw = o.iso_window,
        rc = o.rate_conns,
        hz = o.rate_hz,
        d = o.churn_dialers,
        ic = o.idle_conns,
    )
}

// ---- the table and the targets ----

fn find(
    rows: &[Row],
    outcomes: &[Outcome],
    scenario: Scenario,
    server: ServerKind,
) -> Option<Summary> {
    rows.iter()
        .zip(outcomes)
        .find(|(r, _)| r.scenario == scenario && r.server == server)
        .and_then(|(_, o)| match o {
            Outcome::Ran(a) if a.runs > 0 => Some(a.clone()),
            _ => None,
        })
}

/// The B0 row a row compares with (S2 compares with S1's B0: the same `echo` load).
fn b0_of(rows: &[Row], outcomes: &[Outcome], r: &Row) -> Option<Summary> {
    let scenario = match r.scenario {
        Scenario::EchoPerMessage => Scenario::EchoPerConnection,
        Scenario::IncrementAcrossSessions => return None,
        s => s,
    };
    find(rows, outcomes, scenario, ServerKind::Baseline)
}

/// The Node row a row compares with: same scenario, mode and store.
fn node_of(rows: &[Row], outcomes: &[Outcome], r: &Row) -> Option<Summary> {
    let server = match r.server {
        ServerKind::Ours(m, s) => ServerKind::Node(m, s),
        ServerKind::Baseline => ServerKind::Node(Mode::PerConnection, Store::Memory),
        ServerKind::Node(..) => return None,
    };
    if r.scenario == Scenario::IncrementAcrossSessions {
        return None;
    }
    find(rows, outcomes, r.scenario, server)
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn compare(scenario: Scenario, a: &Summary, base: Option<&Summary>) -> String {
    let Some(b) = base else {
        return "—".into();
    };
    match scenario {
        Scenario::FixedRateLatency => match (a.p50, a.p99, b.p50, b.p99) {
            (Some(p50), Some(p99), Some(b50), Some(b99)) => {
                format!("{:+.3} / {:+.3} ms", p50 - b50, p99 - b99)
            }
            _ => "—".into(),
        },
        Scenario::IdleMemory => format!("{:+.2} KiB", a.value - b.value),
        _ if b.value > 0.0 => format!("{:.2}×", a.value / b.value),
        _ => "—".into(),
    }
}

/// The ceiling rows, after S3's: what each S3 store could do at most, measured in the run.
fn ceiling_rows(t: &mut String, rows: &[Row], ceilings: &Ceilings) {
    let s3 = |store| {
        rows.iter().any(|r| {
            r.scenario == Scenario::Increment
                && r.server == ServerKind::Ours(Mode::PerMessage, store)
        })
    };
    if let Some(c) = ceilings.redis.median()
        && s3(Store::Redis)
    {
        let _ = writeln!(
            t,
            "| S3 | ceiling redis: redis-benchmark GET+SET pairs (-c {} -d {}) | {} pairs/s | — | — | — | — | — | — | 0 | — |",
            c.clients,
            c.value_bytes,
            thousands(c.pairs())
        );
    }
    for store in Store::SQL.into_iter().filter(|s| s3(*s)) {
        let who = format!(
            "ceiling {}: select + conditional update, no sessions",
            store.name()
        );
        match ceilings.sql.median(store) {
            Some(v) => {
                let runs = &ceilings.sql.runs[&store];
                let faults: u64 = runs.iter().map(|c| c.faults).sum();
                let others = median(runs.iter().filter_map(|c| c.other_pct).collect())
                    .map_or("—".into(), |o| format!("{o:.0}%"));
                let _ = writeln!(
                    t,
                    "| S3 | {who} ({}) | {} ops/s | — | — | — | — | — | — | {faults} | {others} |",
                    ceilings.sql.detail(store),
                    thousands(v)
                );
            }
            None => {
                let why = ceilings
                    .sql
                    .errors
                    .get(&store)
                    .map_or("its S3 server did not run", String::as_str);
                let why = why.lines().next().unwrap_or_default();
                let _ = writeln!(t, "| S3 | {who} | not measured: {why} | | | | | | | | |");
            }
        }
    }
}

fn table(rows: &[Row], outcomes: &[Outcome], ceilings: &Ceilings) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| # | server under test | result | p50 ms | p99 ms | server RSS MiB | × B0 | × Node | × ceiling | errors | others' CPU |"
    );
    let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let last_s3 = rows.iter().rposition(|r| r.scenario == Scenario::Increment);
    for (i, (r, o)) in rows.iter().zip(outcomes).enumerate() {
        if i > 0 && last_s3 == Some(i - 1) {
            ceiling_rows(&mut t, rows, ceilings);
        }
        let id = match r.server {
            ServerKind::Node(..) => format!("S7·{}", r.scenario.id()),
            _ => r.scenario.id().to_owned(),
        };
        let who = describe(r);
        match o {
            Outcome::Skipped(why) => {
                let why = why.lines().next().unwrap_or_default();
                let _ = writeln!(t, "| {id} | {who} | skipped: {why} | | | | | | | | |");
            }
            Outcome::Failed(why) => {
                let why = why.lines().next().unwrap_or_default();
                let _ = writeln!(t, "| {id} | {who} | FAILED: {why} | | | | | | | | |");
            }
            Outcome::Ran(a) => {
                let result = match r.scenario {
                    Scenario::IdleMemory => format!(
                        "{:.2} KiB/conn ({} conn/s dialing)",
                        a.value,
                        thousands(a.connects_per_s.unwrap_or(0.0))
                    ),
                    Scenario::IncrementAcrossSessions => format!(
                        "{} msg/s = {}/session",
                        thousands(a.value),
                        thousands(a.value / r.sessions.max(1) as f64)
                    ),
                    s => format!("{} {}", thousands(a.value), s.unit()),
                };
                let p = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.3}"));
                let rss = a
                    .rss
                    .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0));
                let errors = if a.lost > 0 {
                    format!("{} (+{} lost updates)", a.errors, a.lost)
                } else {
                    a.errors.to_string()
                };
                let others = a.other_pct.map_or("—".into(), |o| format!("{o:.0}%"));
                let ceiling = match (r.scenario, r.server) {
                    (Scenario::Increment, ServerKind::Ours(Mode::PerMessage, s)) => ceilings
                        .of(s)
                        .filter(|c| *c > 0.0)
                        .map_or("—".into(), |c| format!("{:.2}×", a.value / c)),
                    _ => "—".into(),
                };
                let _ = writeln!(
                    t,
                    "| {id} | {who} | {result} | {} | {} | {rss} | {} | {} | {ceiling} | {errors} | {others} |",
                    p(a.p50),
                    p(a.p99),
                    compare(r.scenario, a, b0_of(rows, outcomes, r).as_ref()),
                    compare(r.scenario, a, node_of(rows, outcomes, r).as_ref()),
                );
            }
        }
    }
    if last_s3 == Some(rows.len().wrapping_sub(1)) {
        ceiling_rows(&mut t, rows, ceilings);
    }
    t
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The range and the median of per-run ratios `a / b` (the runs of one repeat are paired:
/// repeats interleave the rows, so each pair ran minutes apart at most), e.g.
/// ` (per run 0.70–0.89, median of pairs 0.81)`; empty with fewer than two runs.
fn spread(a: &[f64], b: &[f64]) -> String {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    if r.len() < 2 {
        return String::new();
    }
    r.sort_by(f64::total_cmp);
    let (lo, hi) = (r[0], r[r.len() - 1]);
    let mid = r.len() / 2;
    let median = if r.len() % 2 == 1 {
        r[mid]
    } else {
        (r[mid - 1] + r[mid]) / 2.0
    };
    format!(" (per run {lo:.2}–{hi:.2}, median of pairs {median:.2})")
}

fn targets(
    rows: &[Row],
    outcomes: &[Outcome],
    results: &[Vec<Sample>],
    (ceiling, ceilings): (Option<&RedisCeiling>, &[RedisCeiling]),
    ceiling_error: Option<&str>,
    sql: &SqlCeilings,
) -> String {
    use Mode::*;
    use ServerKind::*;
    use Store::*;
    let mut t = String::from("Targets:\n");
    let get = |scenario, server| find(rows, outcomes, scenario, server);
    let ratio = |a: Option<Summary>, b: Option<Summary>| match (a, b) {
        (Some(a), Some(b)) if b.value > 0.0 => Some(a.value / b.value),
        _ => None,
    };
    // Per-run values of a row, in repeat order.
    let runs = |scenario: Scenario, server: ServerKind| -> Vec<f64> {
        rows.iter()
            .position(|r| r.scenario == scenario && r.server == server)
            .map(|i| results[i].iter().map(|s| s.value).collect())
            .unwrap_or_default()
    };
    let pair = |a: (Scenario, ServerKind), b: (Scenario, ServerKind)| {
        spread(&runs(a.0, a.1), &runs(b.0, b.1))
    };
    let b0_s1 = get(Scenario::EchoPerConnection, Baseline);
    for s in [Memory, Sqlite, Postgres, MySql, Redis] {
        if let Some(r) = ratio(
            get(Scenario::EchoPerConnection, Ours(PerConnection, s)),
            b0_s1.clone(),
        ) {
            let _ = writeln!(
                t,
                "- S1 per-connection {} echo ≥ 0.97 × B0: {r:.2} ×{} — {}",
                s.name(),
                pair(
                    (Scenario::EchoPerConnection, Ours(PerConnection, s)),
                    (Scenario::EchoPerConnection, Baseline)
                ),
                verdict(r >= 0.97)
            );
        }
    }
    let s3 = get(Scenario::Increment, Ours(PerMessage, Memory));
    if let Some(r) = ratio(s3.clone(), get(Scenario::Increment, Baseline)) {
        let _ = writeln!(
            t,
            "- S3 per-message memory ≥ 0.75 × B0: {r:.2} ×{} — {}",
            pair(
                (Scenario::Increment, Ours(PerMessage, Memory)),
                (Scenario::Increment, Baseline)
            ),
            verdict(r >= 0.75)
        );
    }
    if let Some(r) = ratio(s3, get(Scenario::Increment, Node(PerMessage, Memory))) {
        let _ = writeln!(
            t,
            "- S3 per-message memory ≥ 2.5 × Node per-message: {r:.2} ×{} — {}",
            pair(
                (Scenario::Increment, Ours(PerMessage, Memory)),
                (Scenario::Increment, Node(PerMessage, Memory))
            ),
            verdict(r >= 2.5)
        );
    }
    for m in [PerConnection, PerMessage] {
        if let Some(r) = ratio(
            get(Scenario::Churn, Ours(m, Memory)),
            get(Scenario::Churn, Baseline),
        ) {
            let _ = writeln!(
                t,
                "- S5 {} memory churn ≥ 0.85 × B0: {r:.2} ×{} — {}",
                m.arg(),
                pair(
                    (Scenario::Churn, Ours(m, Memory)),
                    (Scenario::Churn, Baseline)
                ),
                verdict(r >= 0.85)
            );
        }
    }
    if let Some(b0) = get(Scenario::IdleMemory, Baseline) {
        for server in [Ours(PerConnection, Memory), Ours(PerMessage, Redis)] {
            if let Some(a) = get(Scenario::IdleMemory, server) {
                let limit = b0.value + 2.0 + a.session_bytes as f64 / 1024.0;
                let _ = writeln!(
                    t,
                    "- S6 {} ≤ B0 + 2 KiB + session ({} B) = {limit:.2} KiB/conn: {:.2} KiB/conn — {}",
                    server.label(),
                    a.session_bytes,
                    a.value,
                    verdict(a.value <= limit)
                );
            }
        }
    }
    match (get(Scenario::Increment, Ours(PerMessage, Redis)), ceiling) {
        (Some(a), Some(c)) => {
            let r = a.value / c.pairs();
            let pairs: Vec<f64> = ceilings.iter().map(RedisCeiling::pairs).collect();
            let _ = writeln!(
                t,
                "- S3 Redis ≥ 0.8 × redis-benchmark GET+SET at -c {} (-d {}: GET {}/s, SET {}/s → {} pairs/s): {} msg/s = {r:.2} ×{} — {}",
                c.clients,
                c.value_bytes,
                thousands(c.get),
                thousands(c.set),
                thousands(c.pairs()),
                thousands(a.value),
                spread(&runs(Scenario::Increment, Ours(PerMessage, Redis)), &pairs),
                verdict(r >= 0.8)
            );
        }
        (Some(_), None) => {
            let _ = writeln!(
                t,
                "- S3 Redis vs redis-benchmark: no ceiling measured ({})",
                ceiling_error.unwrap_or("redis-benchmark not run")
            );
        }
        _ => {}
    }
    if let (Some(cluster), Some(one)) = (
        get(Scenario::Increment, Ours(PerMessage, RedisCluster)),
        get(Scenario::Increment, Ours(PerMessage, Redis)),
    ) && one.value > 0.0
    {
        let _ = writeln!(
            t,
            "- S3 per-message on a 3-primary Redis Cluster against one Redis: {} msg/s = {:.2} ×{} — reported (no target)",
            thousands(cluster.value),
            cluster.value / one.value,
            spread(
                &runs(Scenario::Increment, Ours(PerMessage, RedisCluster)),
                &runs(Scenario::Increment, Ours(PerMessage, Redis))
            ),
        );
    }
    // Each SQL store against its raw loop: SQLite has a target (issue #18), the servers of the
    // machine are reported.
    for store in Store::SQL {
        let server = Ours(PerMessage, store);
        let Some(a) = get(Scenario::Increment, server) else {
            continue;
        };
        let claim = match store {
            Sqlite => "≥ 0.6 × its raw conditional-update loop",
            _ => "against its raw conditional-update loop",
        };
        match sql.median(store) {
            Some(c) if c > 0.0 => {
                let r = a.value / c;
                let _ = writeln!(
                    t,
                    "- S3 per-message {} {claim} ({}: {} ops/s): {} msg/s = {r:.2} ×{} — {}",
                    store.name(),
                    sql.detail(store),
                    thousands(c),
                    thousands(a.value),
                    spread(&runs(Scenario::Increment, server), &sql.values(store)),
                    match store {
                        Sqlite => verdict(r >= 0.6),
                        _ => "reported (no target)",
                    }
                );
            }
            _ => {
                let _ = writeln!(
                    t,
                    "- S3 per-message {} {claim}: no ceiling measured ({})",
                    store.name(),
                    sql.errors
                        .get(&store)
                        .map_or("not run", String::as_str)
                        .lines()
                        .next()
                        .unwrap_or_default()
                );
            }
        }
    }
    {
        let s = Redis;
        let per_session = |k: usize| {
            rows.iter()
                .zip(outcomes)
                .find(|(r, _)| {
                    r.scenario == Scenario::IncrementAcrossSessions
                        && r.server == Ours(PerMessage, s)
                        && r.sessions == k
                })
                .and_then(|(r, o)| match o {
                    Outcome::Ran(a) if a.runs > 0 => Some(a.value / r.sessions as f64),
                    _ => None,
                })
        };
        let per_session_runs = |k: usize| -> Vec<f64> {
            rows.iter()
                .position(|r| {
                    r.scenario == Scenario::IncrementAcrossSessions
                        && r.server == Ours(PerMessage, s)
                        && r.sessions == k
                })
                .map(|i| results[i].iter().map(|x| x.value / k as f64).collect())
                .unwrap_or_default()
        };
        let ks: Vec<usize> = rows
            .iter()
            .filter(|r| {
                r.scenario == Scenario::IncrementAcrossSessions && r.server == Ours(PerMessage, s)
            })
            .map(|r| r.sessions)
            .collect();
        if let (Some(one), Some(two)) = (per_session(1), per_session(2)) {
            let r = two / one;
            let more = ks
                .iter()
                .filter(|k| **k > 2)
                .filter_map(|k| per_session(*k).map(|v| format!("{k} sessions {:.2} ×", v / one)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                t,
                "- S3i {}: two sessions do not serialize each other (per-session msg/s with 2 sessions ≥ 0.8 × with 1): {r:.2} ×{} ({more}) — {}",
                s.name(),
                spread(&per_session_runs(2), &per_session_runs(1)),
                verdict(r >= 0.8)
            );
        }
    }
    t
}
