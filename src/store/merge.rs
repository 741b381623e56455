//! The one save: compare-and-set, and on conflict the changes re-applied to the record as
//! stored now, with a jittered backoff and one budget. Sockets, the HTTP side and the Express
//! store all save through [`save_merged`], so that a fix here reaches every writer.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};

use super::handle::forwarded_to;
use super::{SaveOutcome, Version, Versioned};
use crate::error::SessionError;
use crate::observe::{self, SAVE_CONFLICTS, SAVE_RETRIES, SAVES, SAVES_GONE};

/// How many times a save is tried before giving up on a record that keeps changing.
pub(crate) const MAX_ATTEMPTS: u32 = 32;

/// How many rotated ids a save follows (a session rotated again while a save was in flight).
const MAX_FORWARDS: u32 = 4;

/// Where a merged save reads and writes.
pub(crate) trait Target: Sync {
    /// The store's failure.
    type Error: Send;

    /// Whether a save can be refused because the record changed (else it overwrites).
    fn conditional(&self) -> bool;

    /// The record as stored (forwarding records included), or `None` when absent or expired.
    fn load(&self, id: &Id) -> impl Future<Output = Result<Option<Versioned>, Self::Error>> + Send;

    /// Writes `record` if the stored record is still at `expected`.
    fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> impl Future<Output = Result<SaveOutcome, Self::Error>> + Send;
}

/// The changes a writer made, which can be applied again to a fresher record.
pub(crate) trait Changes: Send {
    /// Refuses a fresher record that the changes must not be applied to (a key the handler read
    /// has changed meanwhile). `view` is the writer's own record with the changes, when it
    /// has one.
    fn check(&self, view: Option<&Record>, fresh: &Record) -> Result<(), SessionError> {
        let _ = (view, fresh);
        Ok(())
    }

    /// Applies the changes to `record`.
    fn reapply(&mut self, record: &mut Record) -> Result<(), SessionError>;

    /// The session was rotated at `at`: from now on only the changes made before then are
    /// applied (they follow the session to its new id); `false` when nothing may follow (the
    /// default: a writer that read the old session after its rotation must not write into the
    /// new one).
    fn follow_rotation(&mut self, at: OffsetDateTime) -> bool {
        let _ = at;
        false
    }
}

/// What a merged save did.
#[derive(Debug)]
pub(crate) enum Merged {
    /// Saved under `id` (the writer's own, or the id it was rotated to), at `version`. `record`
    /// is `None` when the writer's own view was saved as it was (the caller still holds it).
    Saved {
        id: Id,
        record: Option<Arc<Record>>,
        version: Version,
    },
    /// The session no longer exists: nothing was written.
    Gone,
}

/// Why a merged save wrote nothing.
#[derive(Debug)]
pub(crate) enum MergeError<E> {
    /// The store failed.
    Store(E),
    /// The changes refused the fresh record, or failed to apply to it.
    Changes(SessionError),
    /// The record kept changing for [`MAX_ATTEMPTS`] tries.
    Contended,
}

impl<E> From<MergeError<E>> for SessionError
where
    SessionError: From<E>,
{
    fn from(e: MergeError<E>) -> Self {
        match e {
            MergeError::Store(e) => e.into(),
            MergeError::Changes(e) => e,
            MergeError::Contended => SessionError::Contended {
                attempts: MAX_ATTEMPTS,
            },
        }
    }
}

/// A random pause after the `attempt`-th conflict, so that writers on different nodes that keep
/// colliding drift apart instead of colliding again.
async fn backoff(attempt: u32) {
    let ceiling_us = 200u64 << attempt.min(6);
    let jitter = (Id::default().0 as u64) % ceiling_us;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// Saves `changes` to session `id`.
///
/// `local` is the writer's own view with the version it was made on: a conditional store gets
/// it first, as it is (no copy, no re-run of `update` closures; its expiry is set in place).
/// When that conflicts, and always for a plain store, the changes are applied to the record as
/// stored now and saved conditionally on that, until one save goes through. A record that
/// forwards a rotated id is followed to the new session. `date` gives the saved record its
/// expiry.
pub(crate) async fn save_merged<T: Target, C: Changes>(
    target: &T,
    id: Id,
    local: Option<(&mut Arc<Record>, &Version)>,
    changes: &mut C,
    date: &(dyn Fn() -> OffsetDateTime + Sync),
) -> Result<Merged, MergeError<T::Error>> {
    let mut tried = false;
    let mut local = local;
    if let Some((view, version)) = local.as_mut().filter(|_| target.conditional()) {
        tried = true;
        let kept = std::mem::replace(&mut Arc::make_mut(view).expiry_date, date());
        let outcome = target.save_if(view, version).await;
        if let Ok(SaveOutcome::Saved(version)) = outcome {
            observe::count(SAVES);
            return Ok(Merged::Saved {
                id,
                record: None,
                version,
            });
        }
        // Still the writer's view: its changes stay visible until they are saved.
        Arc::make_mut(view).expiry_date = kept;
        match outcome.map_err(MergeError::Store)? {
            SaveOutcome::Gone => return Ok(gone()),
            SaveOutcome::Conflict | SaveOutcome::Saved(_) => observe::count(SAVE_CONFLICTS),
        }
    }
    // Boxed: this path (after a conflict; every save of a plain store, of a caller with no
    // local view, of changes following a rotation) waits for a load and a save anyway, and
    // inline its loads, pauses and saves would nearly double the future of every save,
    // including the common first try (which every per-message handler's write holds).
    Box::pin(merge_and_save(target, id, local, changes, date, tried)).await
}

/// [`save_merged`] past its first try: loads the stored record, checks and re-applies the
/// changes on it, and saves that, until a save goes through.
async fn merge_and_save<T: Target, C: Changes>(
    target: &T,
    mut id: Id,
    local: Option<(&mut Arc<Record>, &Version)>,
    changes: &mut C,
    date: &(dyn Fn() -> OffsetDateTime + Sync),
    mut tried: bool,
) -> Result<Merged, MergeError<T::Error>> {
    let mut forwards = 0;
    for attempt in 0..MAX_ATTEMPTS {
        if tried {
            observe::count(SAVE_RETRIES);
            backoff(attempt + 1).await;
        }
        tried = true;
        let Some(fresh) = target.load(&id).await.map_err(MergeError::Store)? else {
            return Ok(gone());
        };
        if let Some(forward) = forwarded_to(&fresh.record) {
            // Only changes made before the rotation follow it: whoever still holds the old id
            // (a fixated cookie, say) cannot write into the new session afterwards.
            forwards += 1;
            if forwards > MAX_FORWARDS || !changes.follow_rotation(forward.at) {
                return Ok(gone());
            }
            id = forward.to;
            tried = false;
            continue;
        }
        let view = local.as_ref().map(|(view, _)| &***view);
        changes
            .check(view, &fresh.record)
            .map_err(MergeError::Changes)?;
        let mut record = fresh.record;
        changes.reapply(&mut record).map_err(MergeError::Changes)?;
        record.expiry_date = date();
        let next = Arc::new(record);
        match target
            .save_if(&next, &fresh.version)
            .await
            .map_err(MergeError::Store)?
        {
            SaveOutcome::Saved(version) => {
                observe::count(SAVES);
                return Ok(Merged::Saved {
                    id,
                    record: Some(next),
                    version,
                });
            }
            SaveOutcome::Gone => return Ok(gone()),
            SaveOutcome::Conflict => {
                observe::count(SAVE_CONFLICTS);
                tracing::debug!("save conflicted; re-applying changes");
            }
        }
    }
    Err(MergeError::Contended)
}

/// A save dropped because its session is gone, counted.
fn gone() -> Merged {
    observe::count(SAVES_GONE);
    Merged::Gone
}

/// Key-by-key changes: `Some` writes the key, `None` removes it (the HTTP side's diff, and the
/// Express store's whole-record writes).
impl Changes for Vec<(String, Option<serde_json::Value>)> {
    fn reapply(&mut self, record: &mut Record) -> Result<(), SessionError> {
        for (key, value) in self.iter() {
            match value {
                Some(v) => record.data.insert(key.clone(), v.clone()),
                None => record.data.remove(key),
            };
        }
        Ok(())
    }
}
