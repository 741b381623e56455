//! Conditional writes that Redis itself refuses once their caller has given up on them.
//!
//! A save's caller stops waiting after the write timeout and is told the save failed. A save
//! already sent by then, to a Redis that hangs rather than dies (stopped, swapping, busy with a
//! slow command), would otherwise run whenever Redis gets to it, and land although its caller
//! was told it failed; a retry of the same change would then apply it twice. So each save
//! carries a deadline in the server's own clock, and its script refuses to write past it.
//!
//! The caller's deadline is moved to the server's clock by an anchor: a `TIME` answer and the
//! local instant it arrived. The server read its clock before that instant, so the anchor never
//! overstates the server clock's lead over ours, and a save the script accepts ran before the
//! caller's deadline less a margin, by the local clock. The margin covers what one anchor
//! cannot: drift since it was taken (it is taken again every [`ANCHOR_FOR`]), and the clock of
//! another server than the one that answered (a cluster's other nodes, a promoted replica),
//! which NTP keeps within milliseconds. A server whose clock is behind by more than the margin
//! lets such a late save land, as it would without a fence.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fred::bytes_utils::Str;
use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::interfaces::{ClientLike, LuaInterface};
use fred::types::cluster::ClusterRouting;
use fred::types::{ClusterHash, CustomCommand, FromValue, Key, Value};
use sha1::{Digest, Sha1};

use super::redis_pool::send_once;
use crate::task::locked;

/// The first lines of a save script: returns [`LATE`] past the deadline in its last argument
/// (microseconds since the epoch, in the server's clock). `ARGV[4]`: both save scripts take
/// three arguments of their own.
macro_rules! fenced_script {
    ($body:literal) => {
        concat!(
            "local now = redis.call('TIME')\n",
            "if tonumber(now[1]) * 1000000 + tonumber(now[2]) > tonumber(ARGV[4]) then ",
            "return -2 end\n",
            $body
        )
    };
}
pub(crate) use fenced_script;

/// A Lua script, sent by name (`EVALSHA`, its SHA-1) to a server that has it: its text is
/// sent, and hashed by Redis, only when a server does not know it yet (started, restarted or
/// flushed since, or a cluster node that has not run it).
pub(crate) struct Script {
    body: &'static str,
    /// The body's SHA-1 in hex, as Redis names the script; computed on first use.
    sha1: OnceLock<Str>,
}

impl Script {
    pub(crate) const fn new(body: &'static str) -> Self {
        Script {
            body,
            sha1: OnceLock::new(),
        }
    }

    pub(crate) fn body(&self) -> Str {
        Str::from_static(self.body)
    }

    pub(crate) fn sha1(&self) -> Str {
        self.sha1
            .get_or_init(|| {
                let mut hex = String::with_capacity(40);
                crate::tag::push_hex(&mut hex, &Sha1::digest(self.body.as_bytes()));
                Str::from(hex)
            })
            .clone()
    }

    /// Runs a script that only reads, on `keys`, by name; a server that does not know it
    /// answers `NOSCRIPT`, running nothing, and gets its text. (A save goes through
    /// [`eval_once`](super::redis_pool::eval_once), which keeps its deadline across the resend.)
    pub(crate) async fn read<R: FromValue>(
        &self,
        client: &(impl LuaInterface + Sync),
        keys: Vec<Key>,
    ) -> Result<R, Error> {
        let no_args = Vec::<Value>::new;
        match client.evalsha(self.sha1(), keys.clone(), no_args()).await {
            Err(e) if is_noscript(&e) => client.eval(self.body(), keys, no_args()).await,
            answer => answer,
        }
    }
}

/// Whether the server refused a script by name because it does not know it (it ran nothing).
pub(crate) fn is_noscript(e: &Error) -> bool {
    e.details().starts_with("NOSCRIPT")
}

/// A fenced script's answer when it ran past its deadline, and wrote nothing.
pub(crate) const LATE: i64 = -2;

/// How long an anchor is used before `TIME` is asked again.
const ANCHOR_FOR: Duration = Duration::from_secs(10);

/// The most the fence may be earlier than the caller's deadline: a save that runs less than
/// this before the caller gives up is refused (and reported failed, which it then is).
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// Longer waits count as this long: far past any store timeout, and no overflow.
const LONGEST_WAIT: Duration = Duration::from_secs(86_400);

/// A server clock reading and the local instant its answer arrived.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    at: Instant,
    server_micros: i64,
}

/// When a save must have run by, for a caller that gives up at `gives_up`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// In the server's clock (microseconds since the epoch), for the script.
    pub(crate) server_micros: i64,
    /// In the local clock: the caller's moment less the margin. A refusal answered before it
    /// proves the anchor wrong (the server's clock stepped forward, or another server ran it).
    pub(crate) fence: Instant,
    /// In the local clock: when the caller gives up, the end of the time left to send it.
    pub(crate) gives_up: Instant,
}

/// The store's anchor, shared by its clones and its pool's clients.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    /// A std lock held for a copy only; an anchor taken twice by racing saves is harmless.
    anchor: Mutex<Option<Anchor>>,
}

impl Fence {
    /// The deadline of a save for `key`, about to be sent through `client`, whose caller
    /// started waiting at `started` and waits `within`. Asks the server for its time first when
    /// the anchor is missing or old (through the node of `key`'s slot, on a cluster), within
    /// what is left of the wait.
    pub(crate) async fn deadline(
        &self,
        client: &Client,
        key: &str,
        started: Instant,
        within: Duration,
    ) -> Result<Deadline, Error> {
        let within = within.min(LONGEST_WAIT);
        let gives_up = started + within;
        let held = *locked(&self.anchor);
        let anchor = match held.filter(|a| Instant::now().duration_since(a.at) < ANCHOR_FOR) {
            Some(anchor) => anchor,
            None => {
                let left = gives_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(late());
                }
                let anchor = server_time(client, key, left).await?;
                *locked(&self.anchor) = Some(anchor);
                anchor
            }
        };
        Ok(anchor.deadline(gives_up, within))
    }

    /// Drops the anchor, proven wrong: the next save asks the server for its time again.
    pub(crate) fn forget(&self) {
        *locked(&self.anchor) = None;
    }
}

impl Anchor {
    /// The deadline for a caller that gives up at the local instant `gives_up` after a wait
    /// of `within`: that instant less the margin, in the server's clock. The server read its
    /// clock before the anchor's answer arrived, so this server time comes no later.
    fn deadline(self, gives_up: Instant, within: Duration) -> Deadline {
        let margin = (within / 10).min(MAX_MARGIN);
        let fence = gives_up.checked_sub(margin).unwrap_or(gives_up);
        let left = fence.saturating_duration_since(self.at);
        Deadline {
            server_micros: self.server_micros.saturating_add(micros(left)),
            fence,
            gives_up,
        }
    }
}

/// Asks the node of `key`'s slot for its time, sent once within `within`.
async fn server_time(client: &Client, key: &str, within: Duration) -> Result<Anchor, Error> {
    let slot = ClusterRouting::hash_key(key.as_bytes());
    let time = CustomCommand::new_static("TIME", ClusterHash::Custom(slot), false);
    let answer: Vec<i64> = client
        .with_options(&send_once(within))
        .custom(time, Vec::<Value>::new())
        .await?;
    let at = Instant::now();
    match answer[..] {
        [secs, us] if secs >= 0 && (0..1_000_000).contains(&us) => Ok(Anchor {
            at,
            server_micros: secs * 1_000_000 + us,
        }),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            "TIME did not answer seconds and microseconds",
        )),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The error of a save its script refused as late, or one with no time left to be sent.
pub(crate) fn late() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "the save reached Redis after its caller stopped waiting; not written",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis_pool::{connect_pool, eval_once};
    use crate::store::redis_url::redis_config;
    use fred::interfaces::KeysInterface;

    /// A redis-server of the test's own on a free port, killed when dropped.
    struct OwnRedis(std::process::Child, u16);

    impl OwnRedis {
        /// `None` when redis-server is missing and not every real part is required.
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(child) => Some(OwnRedis(child, port)),
                Err(e) if std::env::var("SOCKETIO_SESSIONS_REQUIRE_ALL").as_deref() == Ok("1") => {
                    panic!("redis-server is required: {e}")
                }
                Err(_) => None,
            }
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Sets `KEYS[1]` to `ARGV[1]`, fenced.
    static SET: Script = Script::new(fenced_script!(
        "redis.call('SET', KEYS[1], ARGV[1])
return 1"
    ));

    /// A pool of one client on the test's own server, once it answers.
    async fn client_of(redis: &OwnRedis) -> fred::clients::Pool {
        let url = format!("redis://127.0.0.1:{}", redis.1);
        let started = Instant::now();
        loop {
            match connect_pool(redis_config(&url).unwrap(), 1).await {
                Ok(pool) => return pool,
                Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    #[tokio::test]
    async fn a_script_the_server_does_not_know_is_sent_with_its_text_then_by_name() {
        let Some(redis) = OwnRedis::start() else {
            return;
        };
        let pool = client_of(&redis).await;
        let client = pool.next();
        let fence = Fence::default();
        let within = Duration::from_secs(2);
        let script = CustomCommand::new_static("SCRIPT", ClusterHash::FirstKey, false);
        let known = async || -> i64 {
            let answer: Vec<i64> = client
                .custom(
                    script.clone(),
                    vec![Value::from("EXISTS"), Value::from(SET.sha1())],
                )
                .await
                .unwrap();
            answer[0]
        };
        assert_eq!(known().await, 0, "a new server knows no script");
        // Unknown to the server: refused by name (running nothing), then sent with its text.
        let args = |v: &str| vec![Value::from(v), Value::from(0), Value::from(0)];
        let answer = eval_once(client, &fence, &SET, "k", args("first"), within).await;
        assert_eq!(answer.unwrap(), 1);
        assert_eq!(known().await, 1, "the text loaded it");
        let stored: Option<String> = client.get("k").await.unwrap();
        assert_eq!(stored.as_deref(), Some("first"));
        // Flushed (as a restart or a failover to a replica would): loaded again.
        let _: Value = client
            .custom(script.clone(), vec![Value::from("FLUSH")])
            .await
            .unwrap();
        assert_eq!(known().await, 0);
        let answer = eval_once(client, &fence, &SET, "k", args("second"), within).await;
        assert_eq!(answer.unwrap(), 1);
        let stored: Option<String> = client.get("k").await.unwrap();
        assert_eq!(stored.as_deref(), Some("second"));
        // Known now: sent by name alone.
        let (evals, by_name) = (calls(client, "eval").await, calls(client, "evalsha").await);
        let answer = eval_once(client, &fence, &SET, "k", args("third"), within).await;
        assert_eq!(answer.unwrap(), 1);
        assert_eq!(calls(client, "eval").await, evals, "no text sent");
        assert_eq!(calls(client, "evalsha").await, by_name + 1);
    }

    #[tokio::test]
    async fn a_read_script_is_sent_by_name_once_the_server_knows_it() {
        let Some(redis) = OwnRedis::start() else {
            return;
        };
        let pool = client_of(&redis).await;
        let client = pool.next();
        static GET: Script = Script::new("return redis.call('GET', KEYS[1])");
        let _: () = client.set("k", "v", None, None, false).await.unwrap();
        let read = async || -> Option<String> { GET.read(client, vec!["k".into()]).await.unwrap() };
        assert_eq!(
            read().await.as_deref(),
            Some("v"),
            "unknown: its text is sent"
        );
        let (evals, by_name) = (calls(client, "eval").await, calls(client, "evalsha").await);
        assert_eq!(evals, 1);
        assert_eq!(read().await.as_deref(), Some("v"));
        assert_eq!(calls(client, "eval").await, evals, "no text sent");
        assert_eq!(calls(client, "evalsha").await, by_name + 1);
    }

    /// How many times the server ran `command`, from `INFO commandstats`.
    async fn calls(client: &fred::clients::Client, command: &str) -> u64 {
        let info = CustomCommand::new_static("INFO", ClusterHash::FirstKey, false);
        let text: String = client
            .custom(info, vec![Value::from("commandstats")])
            .await
            .unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    #[test]
    fn a_script_is_named_by_the_sha1_of_its_text_as_redis_names_it() {
        static EMPTY: Script = Script::new("");
        assert_eq!(&*EMPTY.sha1(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(EMPTY.sha1().len(), 40);
    }

    #[tokio::test]
    async fn a_save_refused_as_late_before_its_deadline_retakes_the_anchor_and_lands() {
        let Some(redis) = OwnRedis::start() else {
            return;
        };
        let pool = client_of(&redis).await;
        let client = pool.next();
        let fence = Fence::default();
        // An anchor that puts the server's clock a minute behind its own: every deadline it
        // gives is already past when the script reads the server's clock.
        let now = server_time(client, "k", Duration::from_secs(2))
            .await
            .unwrap();
        *locked(&fence.anchor) = Some(Anchor {
            at: now.at,
            server_micros: now.server_micros - 60_000_000,
        });
        let args = vec![Value::from("saved"), Value::from(0), Value::from(0)];
        let answer = eval_once(client, &fence, &SET, "k", args, Duration::from_secs(2)).await;
        assert_eq!(
            answer.unwrap(),
            1,
            "refused once, then sent again on a fresh anchor"
        );
        let stored: Option<String> = client.get("k").await.unwrap();
        assert_eq!(stored.as_deref(), Some("saved"));
        let retaken = locked(&fence.anchor).expect("the anchor was taken again");
        assert!(
            (retaken.server_micros - now.server_micros).abs() < 10_000_000,
            "the new anchor reads the server's clock"
        );
    }

    #[test]
    fn the_deadline_is_the_callers_less_the_margin_in_the_servers_clock() {
        let at = Instant::now();
        let anchor = Anchor {
            at,
            server_micros: 1_000_000_000,
        };
        let within = Duration::from_millis(500);
        // Sent 2 s after the anchor: 2.5 s after it, less 50 ms.
        let sent = at + Duration::from_secs(2);
        let d = anchor.deadline(sent + within, within);
        assert_eq!(d.server_micros, 1_000_000_000 + 2_450_000);
        assert_eq!(d.fence, sent + Duration::from_millis(450));
        // A short wait has a margin of a tenth of it.
        let within = Duration::from_millis(100);
        let d = anchor.deadline(sent + within, within);
        assert_eq!(d.server_micros, 1_000_000_000 + 2_090_000);
        // A wait over before the anchor plus the margin: the anchor's own time, which any run
        // comes after, so the script refuses it.
        assert_eq!(anchor.deadline(at, within).server_micros, 1_000_000_000);
    }
}
