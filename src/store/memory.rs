//! An in-memory store with versioned records, usable by the HTTP layer and the socket side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};

/// Sessions in this process's memory, like `tower_sessions::MemoryStore`, with a version per
/// record so that saves from sockets are conditional. Use one instance (cloned) for the
/// `SessionManagerLayer` and for [`SocketSessions`](crate::SocketSessions).
///
/// Expired records are invisible and removed when a new session is created.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    /// Each record with its version. Shared: a live session's state holds the record it saved,
    /// the same one the map holds, so that a socket's save copies nothing.
    records: Arc<Mutex<HashMap<Id, Entry>>>,
}

type Entry = (Arc<Record>, u64);

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Entry>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many records are stored (live or expired-not-yet-removed).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Whether a stored entry has not expired yet.
fn alive((record, _): &Entry) -> bool {
    record.expiry_date > OffsetDateTime::now_utc()
}

fn live(entry: Option<&Entry>) -> Option<&Entry> {
    entry.filter(|e| alive(e))
}

/// Whether `known` is version `n` (compared without building a `Version`).
fn is_version(known: &Version, n: u64) -> bool {
    known.as_bytes() == n.to_le_bytes()
}

/// A stored entry as handed out: a copy of the record, with its version.
fn versioned((record, n): &Entry) -> Versioned {
    Versioned {
        record: Record::clone(record),
        version: Version::from_counter(*n),
    }
}

/// A version no record of this process has had: a record deleted and written again under the
/// same id never looks unchanged to a reader holding its old version.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut map = self.lock();
        let now = OffsetDateTime::now_utc();
        map.retain(|_, (r, _)| r.expiry_date > now);
        while map.contains_key(&record.id) {
            record.id = Id::default();
        }
        map.insert(record.id, (Arc::new(record.clone()), next_version()));
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.lock()
            .insert(record.id, (Arc::new(record.clone()), next_version()));
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(live(self.lock().get(id)).map(|(r, _)| Record::clone(r)))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.lock().remove(id);
        Ok(())
    }
}

#[async_trait]
impl ConditionalStore for MemoryStore {
    // A save runs within one poll of its call: dropped, it never ran.
    fn refuses_late_saves(&self) -> bool {
        true
    }

    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        Ok(live(self.lock().get(id)).map(versioned))
    }

    async fn reload_versioned(&self, id: &Id, known: &Version) -> session_store::Result<Reloaded> {
        Ok(match live(self.lock().get(id)) {
            None => Reloaded::Gone,
            Some((_, n)) if is_version(known, *n) => Reloaded::Unchanged,
            Some(entry) => Reloaded::Changed(versioned(entry)),
        })
    }

    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        self.swap_if(expected, record.id, || Arc::new(record.clone()))
    }

    async fn save_if_shared(
        &self,
        record: &Arc<Record>,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        self.swap_if(expected, record.id, || record.clone())
    }
}

impl MemoryStore {
    /// Stores `record()` under `id` if the live record there is at `expected`: one lookup.
    fn swap_if(
        &self,
        expected: &Version,
        id: Id,
        record: impl FnOnce() -> Arc<Record>,
    ) -> session_store::Result<SaveOutcome> {
        let mut map = self.lock();
        let Some((stored, current)) = map.get_mut(&id).filter(|e| alive(e)) else {
            return Ok(SaveOutcome::Gone);
        };
        if !is_version(expected, *current) {
            return Ok(SaveOutcome::Conflict);
        }
        *current = next_version();
        let saved = Version::from_counter(*current);
        let replaced = std::mem::replace(stored, record());
        // The record replaced may be its last copy: freed after the lock, not under it.
        drop(map);
        drop(replaced);
        Ok(SaveOutcome::Saved(saved))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_shared_save_is_kept_and_never_changed_through_the_callers_copy() {
        let store = MemoryStore::default();
        let mut record = Record {
            id: Id::default(),
            data: [("count".to_owned(), json!(1))].into_iter().collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        let loaded = store.load_versioned(&record.id).await.unwrap().unwrap();
        let mut mine = Arc::new(loaded.record);
        Arc::make_mut(&mut mine)
            .data
            .insert("count".into(), json!(2));
        let saved = store.save_if_shared(&mine, &loaded.version).await.unwrap();
        let SaveOutcome::Saved(version) = saved else {
            panic!("not saved: {saved:?}");
        };
        assert_eq!(Arc::strong_count(&mine), 2, "kept, not copied");
        // The caller's next change copies: the stored record stays as saved.
        Arc::make_mut(&mut mine)
            .data
            .insert("count".into(), json!(3));
        let stored = store.load_versioned(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.record.data["count"], json!(2));
        assert_eq!(stored.version, version);
        // A stale version conflicts and keeps nothing.
        let stale = store.save_if_shared(&mine, &loaded.version).await.unwrap();
        assert_eq!(stale, SaveOutcome::Conflict);
        assert_eq!(Arc::strong_count(&mine), 1);
    }

    #[test]
    fn a_counter_version_is_its_bytes() {
        assert_eq!(
            Version::from_counter(7),
            Version::from_bytes(7u64.to_le_bytes())
        );
        assert_ne!(Version::from_counter(7), Version::from_counter(8));
    }
}
