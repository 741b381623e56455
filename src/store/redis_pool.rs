//! Starting and stopping fred clients with bounded waits. fred waits without limit by default:
//! a connection attempt to a host that drops packets, and a `QUIT` sent while a client is busy
//! reconnecting, can each hang a caller for good.

use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::prelude::{ClientLike, Config, ConnectionConfig, Options, Pool, ReconnectPolicy};
use fred::types::cluster::ClusterRouting;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::redis_fence::{Fence, LATE, Script, is_noscript, late};
use crate::task::spawn_detached;

/// A command that is sent once or not at all: never queued while the client reconnects, never
/// sent again after its connection dropped, and abandoned for good if not sent `within` this
/// long (fred's own timeout marks it; a caller that merely stops waiting does not). One
/// already sent when its caller gave up may still have run: its outcome is unknown.
pub(crate) fn send_once(within: Duration) -> Options {
    Options {
        max_attempts: Some(1),
        fail_fast: true,
        timeout: Some(within),
        // Not a struct literal alone: another crate's fred features can add fields.
        ..Options::default()
    }
}

/// Runs a [fenced](super::redis_fence) `script` on `key` with `args` (the deadline is
/// appended) through `client` as a [write](write_options), and returns its integer answer.
/// The whole call, `TIME` included when the anchor is renewed, takes at most `within`; a
/// script that ran past its deadline is an error. A refusal that came back before the fence
/// by the local clock proves the anchor wrong (the server's clock stepped forward): the anchor
/// is taken again and the save sent once more, which is safe because the script wrote nothing.
///
/// The script goes by name (`EVALSHA`); a server that does not know it refuses that without
/// running anything, and it is sent once more with its text (`EVAL`, which loads it).
///
/// Sent as a custom command, because fred's `eval` ignores per-command options (its Lua
/// interface is not implemented for `WithOptions`, so the call goes to the plain client, which
/// queues while reconnecting and replays afterwards).
pub(crate) async fn eval_once(
    client: &Client,
    fence: &Fence,
    script: &Script,
    key: &str,
    args: Vec<Value>,
    within: Duration,
) -> Result<i64, Error> {
    let started = Instant::now();
    let slot = ClusterRouting::hash_key(key.as_bytes());
    let mut retried = false;
    let mut by_name = true;
    loop {
        let deadline = fence.deadline(client, key, started, within).await?;
        let left = deadline.gives_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        let (command, script_arg) = match by_name {
            true => ("EVALSHA", script.sha1()),
            false => ("EVAL", script.body()),
        };
        let eval = CustomCommand::new_static(command, ClusterHash::Custom(slot), false);
        let mut all = Vec::with_capacity(4 + args.len());
        all.push(Value::String(script_arg));
        all.push(Value::Integer(1));
        all.push(Value::String(key.into()));
        all.extend(args.iter().cloned());
        all.push(Value::Integer(deadline.server_micros));
        let answer = client
            .with_options(&write_options(client, left))
            .custom(eval, all)
            .await;
        let answer = match answer {
            Err(e) if by_name && is_noscript(&e) => {
                by_name = false;
                continue;
            }
            answer => answer?,
        };
        match answer {
            LATE if !retried && Instant::now() < deadline.fence => {
                // The server's clock is ahead of what the anchor says.
                tracing::debug!("a Redis save refused as late before its deadline; anchor retaken");
                fence.forget();
                retried = true;
            }
            LATE => return Err(late()),
            answer => return Ok(answer),
        }
    }
}

/// How a write goes through `client`, so that one told failed before it was sent never lands
/// later: never queued while the client reconnects, and abandoned for good if not sent `within`
/// this long. On a single server it is also [sent once](send_once): never again after its
/// connection dropped. On a cluster fred's own attempts stay: it follows a `MOVED` or `ASK`
/// answer (the node did not run the command) as another attempt, and a client that meets an
/// `ASK` with none left stops serving commands. So there a write whose connection drops after
/// Redis ran it may be sent again within `within`; a conditional save then fails its
/// compare-and-set, and is merged again on the stored record.
pub(crate) fn write_options(client: &Client, within: Duration) -> Options {
    let mut options = send_once(within);
    if client.is_clustered() {
        options.max_attempts = None;
    }
    options
}

/// How long a Redis store's write may take before it is abandoned (and fails), by default:
/// well below the sessions' default store timeout (2 s), which must be longer.
pub(crate) const WRITE_WITHIN: Duration = Duration::from_millis(500);

/// How long the first connection may take before `connect` gives up.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// How long one connection attempt may take: below [`CONNECT_WITHIN`], so that a host that
/// never answers fails an attempt (and the client backs off and retries, or is told to quit)
/// instead of holding the client in one attempt.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(2);

/// fred's connection settings with [`ATTEMPT_WITHIN`].
pub(crate) fn connection_config() -> ConnectionConfig {
    ConnectionConfig {
        connection_timeout: ATTEMPT_WITHIN,
        ..ConnectionConfig::default()
    }
}

/// A pool of `size` clients on `config`, once its first connection is up (at most
/// [`CONNECT_WITHIN`]); afterwards the clients reconnect forever, every 200 ms, and store calls
/// fail meanwhile (sockets get `session_unavailable`). On a cluster, each client follows
/// redirections and failovers by itself.
pub(crate) async fn connect_pool(config: Config, size: usize) -> Result<Pool, Error> {
    let policy = ReconnectPolicy::new_constant(0, 200);
    let pool = Pool::new(config, None, Some(connection_config()), Some(policy), size)?;
    pool.connect_pool();
    match tokio::time::timeout(CONNECT_WITHIN, pool.wait_for_connect()).await {
        Ok(Ok(())) => Ok(pool),
        Ok(Err(e)) => {
            quit_aside(pool);
            Err(e)
        }
        Err(_) => {
            quit_aside(pool);
            Err(Error::new(
                ErrorKind::Timeout,
                format!("Redis did not answer within {CONNECT_WITHIN:?}"),
            ))
        }
    }
}

/// Stops a client that failed to start, without making its caller wait for it.
pub(crate) fn quit_aside(client: impl ClientLike + 'static) {
    spawn_detached(async move { quit(&client).await });
}

/// Stops a client (or pool) and its reconnect loop. A `QUIT` is only heard while the client
/// waits between attempts, so it is sent again until one is heard, for at most a few seconds
/// past one connection attempt.
pub(crate) async fn quit(client: &impl ClientLike) {
    for _ in 0..4 {
        if tokio::time::timeout(ATTEMPT_WITHIN, client.quit())
            .await
            .is_ok()
        {
            return;
        }
    }
    tracing::warn!("a Redis client did not stop; its reconnect attempts may go on");
}
