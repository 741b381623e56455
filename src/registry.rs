//! One live session per id per node: every socket of a session on this node shares one
//! in-memory session behind one async lock, so tabs see each other's changes at once and
//! per-message handlers of the same session run one after another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tower_sessions::session::Id;

use crate::config::Shared;
use crate::id::SessionKey;
use crate::session::LiveSession;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<Id, Weak<LiveSession>>>,
}

impl Registry {
    /// The live session for `id`, created (not yet loaded) if no socket on this node holds it.
    pub(crate) fn get_or_create(&self, shared: &Arc<Shared>, key: SessionKey) -> Arc<LiveSession> {
        let mut map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&key.id).and_then(Weak::upgrade) {
            return live;
        }
        let id = key.id;
        let live = Arc::new(LiveSession::new(shared.clone(), key));
        map.insert(id, Arc::downgrade(&live));
        live.spawn_expiry_timer();
        live
    }

    /// Whether a session has sockets on this node.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn contains(&self, id: &Id) -> bool {
        let map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).is_some_and(|w| w.strong_count() > 0)
    }

    /// Every session with sockets on this node.
    pub(crate) fn all(&self) -> Vec<Arc<LiveSession>> {
        let map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter_map(Weak::upgrade).collect()
    }

    /// Forgets `id` if no live session holds it any more (called as a live session drops).
    pub(crate) fn forget(&self, id: &Id) {
        let mut map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(id).is_some_and(|w| w.strong_count() == 0) {
            map.remove(id);
        }
    }

    /// How many sessions have live sockets on this node.
    pub(crate) fn len(&self) -> usize {
        let map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }
}
