//! Redis keyspace notifications from one server: sockets learn at once that their session's
//! record was deleted (`DEL`/`UNLINK` by another process) or expired (its `EXAT` ran out).
//!
//! The subscriber reconnects by itself (with backoff) after Redis restarts or the connection
//! drops; after each reconnect the server's notification setting is restored (a Redis that
//! restarted with a fresh config has it off), the subscriptions are renewed, and one sweep
//! ends the sockets whose records were deleted or expired while nothing was listening.

use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, ConfigInterface, EventInterface, PubsubInterface};
use fred::prelude::{Builder, Client, Config, ReconnectPolicy};
use tokio::task::JoinHandle;

use super::{EndReason, Lifecycle, Reach};
use crate::store::{connection_config, quit_redis, quit_redis_aside};

/// The notification classes needed: keyevent (`E`), generic commands (`g`, DEL/UNLINK) and
/// expirations (`x`).
const NEEDED: [char; 3] = ['E', 'g', 'x'];

/// The channels subscribed to.
const CHANNELS: [&str; 3] = [
    "__keyevent@*__:del",
    "__keyevent@*__:unlink",
    "__keyevent@*__:expired",
];

/// How long a deletion waits before it ends sockets: an id rotation served by this app
/// announces itself as `session_rotated` in that time, and must win over `session_revoked`.
const GRACE: Duration = Duration::from_millis(300);

/// How long the first connection and subscription may take.
const SETUP_WITHIN: Duration = Duration::from_secs(5);

/// Reconnection: at once, then backing off to 2 s between attempts, forever.
pub(super) fn policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 50, 2_000, 2)
}

/// Adds the needed classes to the server's `notify-keyspace-events`, keeping what is there.
async fn enable_notifications(client: &impl ConfigInterface) -> Result<(), fred::error::Error> {
    let current: Vec<String> = client.config_get("notify-keyspace-events").await?;
    let mut flags = current.get(1).cloned().unwrap_or_default();
    let mut missing = false;
    for c in NEEDED {
        // `A` stands for every class but `m`, `n` and `t`, including `g` and `x`.
        let has = flags.contains(c) || (flags.contains('A') && c != 'E');
        if !has {
            flags.push(c);
            missing = true;
        }
    }
    if missing {
        client.config_set("notify-keyspace-events", flags).await?;
    }
    Ok(())
}

/// After a (re)connection: the server's setting, the subscriptions, and a sweep for what was
/// missed in between.
async fn resume(
    subscriber: &SubscriberClient,
    configurer: Option<&Client>,
    lifecycle: &Weak<Lifecycle>,
) -> Result<(), fred::error::Error> {
    // Subscribed first and swept next: a server that refuses CONFIG must not cost the rest.
    subscriber.psubscribe(CHANNELS.to_vec()).await?;
    if let Some(lifecycle) = lifecycle.upgrade() {
        let ended = lifecycle.sweep().await;
        tracing::info!(ended, "keyspace notifications resumed after a reconnect");
    }
    if let Some(client) = configurer {
        enable_notifications(client).await?;
    }
    Ok(())
}

/// Keyspace notifications from one server until `stopped` completes (the node's stop, or a
/// cluster primary's watcher being dropped).
pub(super) async fn watch_server(
    lifecycle: &Arc<Lifecycle>,
    config: Config,
    configure_server: bool,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<JoinHandle<()>, fred::error::Error> {
    let mut builder = Builder::from_config(config);
    builder.set_policy(policy());
    builder.with_connection_config(|c| *c = connection_config());
    // CONFIG goes over a client of its own: a subscribed connection takes only pub/sub commands.
    let configurer = configure_server.then(|| builder.build()).transpose()?;
    let subscriber = builder.build_subscriber_client()?;
    let ready = async {
        if let Some(client) = &configurer {
            client.init().await?;
            enable_notifications(client).await?;
        }
        subscriber.init().await?;
        subscriber.psubscribe(CHANNELS.to_vec()).await
    };
    let ready = match tokio::time::timeout(SETUP_WITHIN, ready).await {
        Ok(ready) => ready,
        Err(_) => Err(fred::error::Error::new(
            fred::error::ErrorKind::Timeout,
            format!("the Redis server did not answer within {SETUP_WITHIN:?}"),
        )),
    };
    if let Err(e) = ready {
        // Clients that failed to start would otherwise keep reconnecting for good.
        quit_redis_aside(subscriber);
        if let Some(client) = configurer {
            quit_redis_aside(client);
        }
        return Err(e);
    }
    // fred parses `__keyevent@*__` messages into keyspace events (not plain messages).
    let mut events = subscriber.keyspace_event_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let weak = Arc::downgrade(lifecycle);
    Ok(tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                reconnected = reconnects.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = reconnected {
                        break;
                    }
                    if let Err(e) = resume(&subscriber, configurer.as_ref(), &weak).await {
                        tracing::warn!(error = %e, "could not resume keyspace notifications; revalidation covers the gap");
                    }
                }
                event = events.recv() => {
                    let event = match event {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "keyspace notifications lagged; sweeping");
                            if let Some(lifecycle) = weak.upgrade() {
                                lifecycle.sweep().await;
                            }
                            continue;
                        }
                        Err(_) => break,
                    };
                    let Some(lifecycle) = weak.upgrade() else { break };
                    on_event(&lifecycle, &event.operation, event.key.as_str());
                }
            }
        }
        // Ends the clients' reconnect loops, even towards a server that is gone for good.
        quit_redis(&subscriber).await;
        if let Some(client) = configurer {
            quit_redis(&client).await;
        }
    }))
}

fn on_event(lifecycle: &Arc<Lifecycle>, operation: &str, key: Option<&str>) {
    let reason = match operation {
        "expired" => EndReason::Expired,
        "del" | "unlink" => EndReason::Revoked,
        _ => return,
    };
    let Some(id) = key.and_then(|k| lifecycle.store.id_for_key(k)) else {
        return;
    };
    if lifecycle.registry.get(&id).is_none() {
        return;
    }
    tracing::debug!(%reason, "keyspace notification for a session with sockets here");
    let lifecycle = lifecycle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        if let Ok(None) = lifecycle.store.load(&id).await {
            lifecycle.end(&id, reason, Reach::ThisNode).await;
        }
    });
}
