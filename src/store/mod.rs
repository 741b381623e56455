//! The session store as the socket side uses it: every call bounded by the store timeout,
//! expired records treated as absent, and saves that merge the socket's changes into the
//! record as it is now, so that a deleted session is never brought back and keys written by
//! the HTTP side meanwhile are kept.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::{Expiry, SessionStore};

use crate::error::{InvalidReason, SessionError};

/// How tower-sessions dates a record saved without an expiry setting.
const DEFAULT_LIFETIME: time::Duration = time::Duration::weeks(2);

/// The keys a socket changed since the last save: `Some(value)` written, `None` removed.
pub(crate) type Changes = BTreeMap<String, Option<Value>>;

/// A store call that did not produce an answer.
#[derive(Debug)]
pub(crate) enum StoreFailure {
    Error(String),
    Timeout(Duration),
}

impl From<StoreFailure> for SessionError {
    fn from(f: StoreFailure) -> Self {
        match f {
            StoreFailure::Error(e) => SessionError::Store(e),
            StoreFailure::Timeout(d) => SessionError::Timeout(d),
        }
    }
}

impl StoreFailure {
    pub(crate) fn reason(&self) -> InvalidReason {
        match self {
            StoreFailure::Error(_) => InvalidReason::StoreError,
            StoreFailure::Timeout(_) => InvalidReason::StoreTimeout,
        }
    }
}

/// Any `tower_sessions::SessionStore`, with the timeout and expiry policy of the socket side.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    store: Arc<dyn SessionStore>,
    timeout: Duration,
    expiry: Option<Expiry>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreHandle")
            .field("store", &self.store)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StoreHandle {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        timeout: Duration,
        expiry: Option<Expiry>,
    ) -> Self {
        StoreHandle {
            store,
            timeout,
            expiry,
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = tower_sessions::session_store::Result<T>>,
    ) -> Result<T, StoreFailure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreFailure::Error(e.to_string())),
            Err(_) => Err(StoreFailure::Timeout(self.timeout)),
        }
    }

    /// The live record, or `None` when it is absent or expired.
    pub(crate) async fn load(&self, id: &Id) -> Result<Option<Record>, StoreFailure> {
        let record = self.bounded(self.store.load(id)).await?;
        Ok(record.filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    /// The expiry a save gives the record, computed as the HTTP layer computes it.
    fn expiry_date(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        match self.expiry {
            Some(Expiry::OnInactivity(d)) => now.saturating_add(d),
            Some(Expiry::AtDateTime(at)) => at,
            Some(Expiry::OnSessionEnd) | None => now.saturating_add(DEFAULT_LIFETIME),
        }
    }

    /// Applies `changes` to the record as stored now and writes it. Returns the record written,
    /// or [`SessionError::Gone`] (writing nothing) when the session no longer exists.
    ///
    /// A plain `SessionStore` has no conditional write, so a delete that lands between this
    /// load and the save can still be overwritten on stores whose `save` is an upsert.
    pub(crate) async fn merge_save(
        &self,
        id: &Id,
        changes: &Changes,
    ) -> Result<Record, SessionError> {
        let mut record = self.load(id).await?.ok_or(SessionError::Gone)?;
        apply(&mut record, changes);
        record.expiry_date = self.expiry_date();
        self.bounded(self.store.save(&record)).await?;
        Ok(record)
    }
}

pub(crate) fn apply(record: &mut Record, changes: &Changes) {
    for (key, change) in changes {
        match change {
            Some(v) => {
                record.data.insert(key.clone(), v.clone());
            }
            None => {
                record.data.remove(key);
            }
        }
    }
}
