//! An in-memory store with versioned records, usable by the HTTP layer and the socket side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::id_hash::IdHashing;
use super::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};

/// Sessions in this process's memory, like `tower_sessions::MemoryStore`, with a version per
/// record so that saves from sockets are conditional. Use one instance (cloned) for the
/// `SessionManagerLayer` and for [`SocketSessions`](crate::SocketSessions).
///
/// Expired records are invisible and removed when a new session is created.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    /// Each record with its version. The records are the store's own: a save changes the
    /// stored record in place, key by key, so that a written message copies no record.
    records: Arc<Mutex<HashMap<Id, Entry, IdHashing>>>,
}

type Entry = (Record, u64);

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Entry, IdHashing>> {
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

    /// A conditional save, done at once (nothing in it waits).
    fn save_at_version(&self, record: &Record, expected: &Version) -> SaveOutcome {
        let mut map = self.lock();
        let Some((stored, current)) = map.get_mut(&record.id).filter(|e| alive(e)) else {
            return SaveOutcome::Gone;
        };
        if !is_version(expected, *current) {
            return SaveOutcome::Conflict;
        }
        update_in_place(stored, record);
        *current = next_version();
        SaveOutcome::Saved(Version::from_counter(*current))
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
        record: record.clone(),
        version: Version::from_counter(*n),
    }
}

/// A version no record of this process has had: a record deleted and written again under the
/// same id never looks unchanged to a reader holding its old version.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Makes `stored` equal to `record` by changing only what differs: a save that changed one
/// number allocates nothing and frees nothing.
fn update_in_place(stored: &mut Record, record: &Record) {
    stored.expiry_date = record.expiry_date;
    if same_keys_updated(stored, record) {
        return;
    }
    for (key, value) in &record.data {
        match stored.data.get_mut(key) {
            Some(slot) if slot == value => {}
            Some(slot) => slot.clone_from(value),
            None => {
                stored.data.insert(key.clone(), value.clone());
            }
        }
    }
    // Every key of `record` is stored now: more keys means some were removed.
    if stored.data.len() != record.data.len() {
        stored.data.retain(|key, _| record.data.contains_key(key));
    }
}

/// The common case of [`update_in_place`] without hashing a key: `record` was copied from the
/// stored record (a copy keeps its map's layout, so both iterate in the same order) and a save
/// changes values, not keys. Walks both maps side by side, copying values that differ, while
/// their keys match; whether all did (else the caller finishes by lookups, which also redoes
/// nothing wrong: every value copied was under its own key).
fn same_keys_updated(stored: &mut Record, record: &Record) -> bool {
    stored.data.len() == record.data.len()
        && stored
            .data
            .iter_mut()
            .zip(&record.data)
            .all(|((key, slot), (new_key, value))| {
                if key != new_key {
                    return false;
                }
                if slot != value {
                    slot.clone_from(value);
                }
                true
            })
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
        map.insert(record.id, (record.clone(), next_version()));
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut map = self.lock();
        match map.get_mut(&record.id) {
            Some((stored, n)) => {
                update_in_place(stored, record);
                *n = next_version();
            }
            None => {
                map.insert(record.id, (record.clone(), next_version()));
            }
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(live(self.lock().get(id)).map(|(r, _)| r.clone()))
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
        Ok(self.save_at_version(record, expected))
    }

    fn save_if_now(
        &self,
        record: &Record,
        expected: &Version,
    ) -> Option<session_store::Result<SaveOutcome>> {
        Some(Ok(self.save_at_version(record, expected)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_save_changes_the_stored_record_key_by_key_and_only_at_its_version() {
        let store = MemoryStore::default();
        let mut record = Record {
            id: Id::default(),
            data: [
                ("count".to_owned(), json!(1)),
                ("user".to_owned(), json!("ann")),
                ("gone".to_owned(), json!(true)),
            ]
            .into_iter()
            .collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        let loaded = store.load_versioned(&record.id).await.unwrap().unwrap();
        let mut mine = loaded.record.clone();
        mine.data.insert("count".into(), json!(2));
        mine.data.insert("theme".into(), json!("dark"));
        mine.data.remove("gone");
        mine.expiry_date += time::Duration::minutes(5);
        let saved = store.save_if(&mine, &loaded.version).await.unwrap();
        let SaveOutcome::Saved(version) = saved else {
            panic!("not saved: {saved:?}");
        };
        let stored = store.load_versioned(&record.id).await.unwrap().unwrap();
        assert_eq!(
            stored.record.data, mine.data,
            "changed, added and removed keys"
        );
        assert_eq!(stored.record.expiry_date, mine.expiry_date);
        assert_eq!(stored.version, version);
        // A stale version conflicts and changes nothing.
        mine.data.insert("count".into(), json!(3));
        let stale = store.save_if(&mine, &loaded.version).await.unwrap();
        assert_eq!(stale, SaveOutcome::Conflict);
        let unchanged = store.load(&record.id).await.unwrap().unwrap();
        assert_eq!(unchanged.data["count"], json!(2));
        // An unconditional save replaces the data the same way.
        mine.data.clear();
        store.save(&mine).await.unwrap();
        assert!(
            store
                .load(&record.id)
                .await
                .unwrap()
                .unwrap()
                .data
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_save_answered_at_once_changes_the_values_of_a_copy_and_checks_its_version() {
        let store = MemoryStore::default();
        let mut record = Record {
            id: Id::default(),
            data: (0..20).map(|i| (format!("k{i}"), json!(i))).collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        let loaded = store.load_versioned(&record.id).await.unwrap().unwrap();
        // A copy of the stored record with values changed, keys kept: saved side by side.
        let mut mine = loaded.record.clone();
        for i in [0, 7, 19] {
            mine.data.insert(format!("k{i}"), json!(format!("v{i}")));
        }
        let Some(Ok(SaveOutcome::Saved(version))) = store.save_if_now(&mine, &loaded.version)
        else {
            panic!("not saved at once");
        };
        let stored = store.load_versioned(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.record.data, mine.data);
        assert_eq!(stored.version, version);
        // Same number of keys, one swapped for another: the side-by-side walk stops at it.
        let mut swapped = stored.record.clone();
        swapped.data.remove("k3");
        swapped.data.insert("other".into(), json!(3));
        assert!(matches!(
            store.save_if_now(&swapped, &stored.version),
            Some(Ok(SaveOutcome::Saved(_)))
        ));
        let stored = store.load(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.data, swapped.data);
        // The version read before is stale now, and a deleted record is gone.
        assert!(matches!(
            store.save_if_now(&mine, &version),
            Some(Ok(SaveOutcome::Conflict))
        ));
        store.delete(&record.id).await.unwrap();
        assert!(matches!(
            store.save_if_now(&mine, &version),
            Some(Ok(SaveOutcome::Gone))
        ));
    }

    #[test]
    fn a_copy_with_values_changed_is_saved_side_by_side_and_a_swapped_key_falls_back() {
        let stored = Record {
            id: Id::default(),
            data: (0..20).map(|i| (format!("k{i}"), json!(i))).collect(),
            expiry_date: OffsetDateTime::now_utc(),
        };
        let mut copy = stored.clone();
        for v in copy.data.values_mut() {
            *v = json!("changed");
        }
        let mut target = stored.clone();
        assert!(
            same_keys_updated(&mut target, &copy),
            "a copy keeps the order"
        );
        assert_eq!(target.data, copy.data);
        // Every value changed and one key swapped: the walk copies values until it meets the
        // swapped key, and the lookups finish the job.
        copy.data.remove("k11");
        copy.data.insert("other".into(), json!("new"));
        let mut target = stored;
        assert!(!same_keys_updated(&mut target, &copy));
        update_in_place(&mut target, &copy);
        assert_eq!(target.data, copy.data);
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
