//! Starting and stopping fred clients with bounded waits. fred waits without limit by default:
//! a connection attempt to a host that drops packets, and a `QUIT` sent while a client is busy
//! reconnecting, can each hang a caller for good.

use std::time::Duration;

use fred::bytes_utils::Str;
use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::prelude::{ClientLike, Config, ConnectionConfig, Options, Pool, ReconnectPolicy};
use fred::types::cluster::ClusterRouting;
use fred::types::{ClusterHash, CustomCommand, Value};

use crate::task::spawn_detached;

/// A command that is sent once or not at all: never queued while the client reconnects, never
/// sent again after its connection dropped, and abandoned for good if not sent `within` this
/// long (fred's own timeout marks it; a caller that merely stops waiting does not). A
/// conditional save told failed (by the store timeout, or an error) must not land later, when
/// fred replays what it holds after a reconnect.
pub(crate) fn send_once(within: Duration) -> Options {
    Options {
        max_attempts: Some(1),
        fail_fast: true,
        timeout: Some(within),
        // Not a struct literal alone: another crate's fred features can add fields.
        ..Options::default()
    }
}

/// Runs `script` on `key` with `args` through `client`, [sent once](send_once), and returns its
/// integer answer. Sent as a custom `EVAL`: fred's `eval` ignores per-command options (its Lua
/// interface is not implemented for `WithOptions`, so the call goes to the plain client), and
/// would queue the write while reconnecting and replay it afterwards.
///
/// On a cluster, a node that no longer serves the key's slot answers `MOVED` (or `ASK`, during
/// the slot's migration) without running the script. fred counts following it as a second
/// attempt, which a command sent once does not have, so the call is made again here, on the
/// layout fred has synced meanwhile, within what is left of `within`.
pub(crate) async fn eval_once(
    client: &Client,
    script: &'static str,
    key: &str,
    args: Vec<Value>,
    within: Duration,
) -> Result<i64, Error> {
    let slot = ClusterRouting::hash_key(key.as_bytes());
    let mut all = Vec::with_capacity(3 + args.len());
    all.push(Value::String(Str::from_static(script)));
    all.push(Value::Integer(1));
    all.push(Value::String(key.into()));
    all.extend(args);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let eval = CustomCommand::new_static("EVAL", ClusterHash::Custom(slot), false);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            // fred reads a zero timeout as none at all.
            return Err(Error::new(ErrorKind::Timeout, "the write timeout passed"));
        }
        let answer = client
            .with_options(&send_once(left))
            .custom(eval, all.clone())
            .await;
        match answer {
            Err(e) if client.is_clustered() && redirected_unsent(&e) => {}
            answer => return answer,
        }
    }
}

/// Whether fred refused to follow a redirection for want of attempts: the only way a command
/// reaches a write with none left, so the node did not run it.
fn redirected_unsent(e: &Error) -> bool {
    *e.kind() == ErrorKind::Unknown && e.details() == "Too many failed write attempts."
}

/// How long a Redis store's write may take before it is abandoned (and fails), by default:
/// well below the sessions' default store timeout (2 s), which must be longer.
pub(crate) const WRITE_WITHIN: Duration = Duration::from_millis(500);

/// How long the first connection may take before `connect` gives up.
pub(crate) const CONNECT_WITHIN: Duration = Duration::from_secs(5);

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
                "Redis did not answer within 5 s",
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
