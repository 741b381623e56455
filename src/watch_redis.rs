//! Redis keyspace notifications: sockets learn at once that their session's record was
//! deleted (`DEL`/`UNLINK` by another process) or expired (its `EXAT` ran out).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, ConfigInterface, EventInterface, PubsubInterface};
use fred::prelude::{Builder, Config};
use tokio::task::JoinHandle;
use tower_sessions::session::Id;

use crate::config::Shared;
use crate::lifecycle::EndReason;

/// The notification classes needed: keyevent (`E`), generic commands (`g`, DEL/UNLINK) and
/// expirations (`x`).
const NEEDED: [char; 3] = ['E', 'g', 'x'];

/// How long a deletion waits before it ends sockets: an id rotation served by this app
/// announces itself as `session_rotated` in that time, and must win over `session_revoked`.
const GRACE: Duration = Duration::from_millis(300);

/// Adds the needed classes to the server's `notify-keyspace-events`, keeping what is there.
async fn enable_notifications(config: &Config) -> Result<(), fred::error::Error> {
    let client = Builder::from_config(config.clone()).build()?;
    client.init().await?;
    let current: Vec<String> = client.config_get("notify-keyspace-events").await?;
    let mut flags = current.get(1).cloned().unwrap_or_default();
    for c in NEEDED {
        // `A` stands for every class but `m`, `n` and `t`, including `g` and `x`.
        let has = flags.contains(c) || (flags.contains('A') && c != 'E');
        if !has {
            flags.push(c);
        }
    }
    client.config_set("notify-keyspace-events", flags).await?;
    client.quit().await?;
    Ok(())
}

pub(crate) async fn watch(
    shared: Arc<Shared>,
    config: Config,
    configure_server: bool,
) -> Result<JoinHandle<()>, fred::error::Error> {
    if configure_server {
        enable_notifications(&config).await?;
    }
    let subscriber = Builder::from_config(config).build_subscriber_client()?;
    subscriber.init().await?;
    subscriber
        .psubscribe(vec![
            "__keyevent@*__:del",
            "__keyevent@*__:unlink",
            "__keyevent@*__:expired",
        ])
        .await?;
    // Subscriptions are renewed after a reconnect.
    let _resubscriber = subscriber.manage_subscriptions();
    // fred parses `__keyevent@*__` messages into keyspace events (not plain messages).
    let mut events = subscriber.keyspace_event_rx();
    let weak = Arc::downgrade(&shared);
    drop(shared);
    Ok(tokio::spawn(async move {
        let _subscriber = subscriber;
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "keyspace notifications lagged; revalidation will catch up"
                    );
                    continue;
                }
                Err(_) => return,
            };
            let Some(shared) = weak.upgrade() else { return };
            let reason = match event.operation.as_str() {
                "expired" => EndReason::Expired,
                "del" | "unlink" => EndReason::Revoked,
                _ => continue,
            };
            let Some(key) = event.key.as_str() else {
                continue;
            };
            let Some(id) = Id::from_str(key)
                .ok()
                .or_else(|| crate::id::express::id_for_key(key))
            else {
                continue;
            };
            if !shared.registry.contains(&id) {
                continue;
            }
            tracing::debug!(%reason, "keyspace notification for a session with sockets here");
            tokio::spawn(async move {
                tokio::time::sleep(GRACE).await;
                if let Ok(None) = shared.store.load(&id).await {
                    shared.end(&id, reason, true).await;
                }
            });
        }
    }))
}
