//! The expiries of every live session on this node, in one ordered set: what the lifecycle's one
//! expiry task sleeps on. One set instead of a timer task per session, because a task and its
//! wake-up channel cost each idle connection about 0.8 KiB and each handshake a spawn.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tower_sessions::session::Id;

use crate::task::locked;

/// Which live session armed an entry: its address, unique while it lives. A session's drop
/// takes back only its own entry, not one a newer live session of the same id armed meanwhile.
pub(crate) type Owner = usize;

/// One entry per live session whose expiry is known, keyed by when it is due.
#[derive(Debug, Default)]
pub(crate) struct Expiries {
    /// Keyed by the id's number: `Id` itself is not ordered.
    due: Mutex<BTreeMap<(OffsetDateTime, i128), Owner>>,
    /// Told when an entry becomes the earliest: the task sleeps until the earliest one.
    earlier: Notify,
}

impl Expiries {
    /// Moves `owner`'s entry for `id` from `from` to `to` (either may be absent).
    pub(crate) fn rearm(
        &self,
        id: Id,
        owner: Owner,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) {
        let mut due = locked(&self.due);
        if let Some(from) = from
            && due.get(&(from, id.0)) == Some(&owner)
        {
            due.remove(&(from, id.0));
        }
        if let Some(to) = to {
            due.insert((to, id.0), owner);
            if due.first_key_value().is_some_and(|(k, _)| *k == (to, id.0)) {
                self.earlier.notify_one();
            }
        }
    }

    /// How long until the earliest entry is due; `None` when there is none.
    pub(crate) fn until_next(&self) -> Option<Duration> {
        let due = locked(&self.due);
        let ((at, _), _) = due.first_key_value()?;
        Some(Duration::try_from(*at - OffsetDateTime::now_utc()).unwrap_or_default())
    }

    /// Resolves when an entry became the earliest since the last call.
    pub(crate) async fn earlier(&self) {
        self.earlier.notified().await;
    }

    /// Takes the entries due by now.
    pub(crate) fn take_due(&self) -> Vec<(OffsetDateTime, Id, Owner)> {
        let now = OffsetDateTime::now_utc();
        let mut due = locked(&self.due);
        let mut taken = Vec::new();
        while let Some(entry) = due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, id), owner) = entry.remove_entry();
            taken.push((at, Id(id), owner));
        }
        taken
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        locked(&self.due).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_moves_and_only_its_owner_takes_it_back() {
        let e = Expiries::default();
        let id = Id::default();
        let now = OffsetDateTime::now_utc();
        let (t1, t2) = (
            now - time::Duration::seconds(1),
            now + time::Duration::hours(1),
        );
        e.rearm(id, 1, None, Some(t2));
        e.rearm(id, 1, Some(t2), Some(t1));
        assert_eq!(e.len(), 1);
        // Another owner's removal leaves it.
        e.rearm(id, 2, Some(t1), None);
        assert_eq!(e.len(), 1);
        assert_eq!(e.until_next(), Some(Duration::ZERO));
        assert_eq!(e.take_due(), vec![(t1, id, 1)]);
        assert_eq!(e.until_next(), None);
    }
}
