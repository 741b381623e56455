//! One live session per id per node: every socket of a session on this node shares one
//! in-memory session behind one async lock, so tabs see each other's changes at once and
//! per-message handlers of the same session run one after another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tower_sessions::session::Id;

use super::live::LiveSession;
use crate::task::locked;

/// The live sessions of one configuration on this node.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Weak, so that a session lives exactly as long as its sockets (their bindings hold it);
    /// dead entries are pruned here, so a session's drop needs nothing from the registry. A
    /// std mutex: held only to look up or insert, never across an await.
    live: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Id, Weak<LiveSession>>,
    /// The map's size after the last prune: the next prune comes when it has doubled, so
    /// pruning costs O(1) per insert and dead entries never outnumber live ones by much.
    pruned_at: usize,
}

impl Registry {
    /// The live session for `id`, made with `make` (not yet loaded) if no socket on this node
    /// holds it.
    pub(crate) fn get_or_create(
        &self,
        id: Id,
        make: impl FnOnce() -> LiveSession,
    ) -> Arc<LiveSession> {
        let mut entries = locked(&self.live);
        if let Some(live) = entries.map.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        let live = Arc::new(make());
        entries.map.insert(id, Arc::downgrade(&live));
        if entries.map.len() >= 2 * entries.pruned_at.max(32) {
            entries.map.retain(|_, w| w.strong_count() > 0);
            entries.pruned_at = entries.map.len();
        }
        live
    }

    /// The live session of `id` on this node, if a socket holds it.
    pub(crate) fn get(&self, id: &Id) -> Option<Arc<LiveSession>> {
        locked(&self.live).map.get(id).and_then(Weak::upgrade)
    }

    /// Every session with sockets on this node.
    pub(crate) fn all(&self) -> Vec<Arc<LiveSession>> {
        locked(&self.live)
            .map
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// How many sessions have live sockets on this node.
    pub(crate) fn len(&self) -> usize {
        locked(&self.live)
            .map
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::id::SessionKey;
    use crate::session::Expiries;
    use crate::session::policy::Policy;
    use crate::store::{MemoryStore, StoreHandle};
    use crate::task::Stop;

    #[test]
    fn dead_entries_are_pruned_by_the_registry_itself() {
        let store = Arc::new(StoreHandle::conditional(
            Arc::new(MemoryStore::default()),
            std::time::Duration::from_secs(1),
            None,
        ));
        let policy = Arc::new(Policy::new(&Config::default()));
        let stop = Arc::new(Stop::default());
        let expiries = Arc::new(Expiries::default());
        let registry = Registry::default();
        let kept: Vec<_> = (0..3)
            .map(|_| {
                let id = Id::default();
                registry.get_or_create(id, || {
                    LiveSession::new(
                        SessionKey::tower(id, false),
                        store.clone(),
                        policy.clone(),
                        stop.clone(),
                        expiries.clone(),
                    )
                })
            })
            .collect();
        for _ in 0..1000 {
            let id = Id::default();
            let live = registry.get_or_create(id, || {
                LiveSession::new(
                    SessionKey::tower(id, false),
                    store.clone(),
                    policy.clone(),
                    stop.clone(),
                    expiries.clone(),
                )
            });
            drop(live);
        }
        assert_eq!(registry.len(), 3);
        assert!(
            locked(&registry.live).map.len() < 100,
            "dead entries pruned"
        );
        let again = registry.get_or_create(kept[0].id, || unreachable!());
        assert!(Arc::ptr_eq(&again, &kept[0]));
    }
}
