//! The store as this crate calls it: every call bounded by the store timeout, records dated as
//! the HTTP layer dates them, and the records that forward a rotated id hidden from readers.

use std::fmt;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{Expiry, SessionStore};

use super::merge::Target;
use super::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use crate::error::{InvalidReason, SessionError};
use crate::observe::{CallEnd, StoreCall, StoreOp};

/// How tower-sessions dates a record saved without an expiry setting.
const DEFAULT_LIFETIME: time::Duration = time::Duration::weeks(2);

/// The data key of a forwarding record: when the HTTP side rotates a session's id, the old
/// record is replaced for a while by `{FORWARD_KEY: "<new id>"}`, so that socket changes not yet
/// saved under the old id land in the new session. Readers never see such a record.
pub(crate) const FORWARD_KEY: &str = "__socketio_sessions.rotated_to";

/// How long a forwarding record lives: sockets of the old id are ended at once, and their last
/// save follows it within the store timeout; revalidation catches a node that missed the end.
pub(crate) const FORWARD_LIFETIME: time::Duration = time::Duration::minutes(10);

/// Where a forwarding record points, and when the rotation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) to: Id,
    pub(crate) at: OffsetDateTime,
}

/// The forward a record stands for: exactly one key, `{FORWARD_KEY: {"to": id, "at": ms}}`.
pub(crate) fn forwarded_to(record: &Record) -> Option<Forward> {
    if record.data.len() != 1 {
        return None;
    }
    let value = record.data.get(FORWARD_KEY)?;
    let to = value.get("to")?.as_str()?.parse().ok()?;
    let ms = value.get("at")?.as_i64()?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(Forward { to, at })
}

/// A forwarding record for `old`, pointing to `new`, rotated now.
pub(crate) fn forwarding_record(old: Id, new: Id) -> Record {
    let now = OffsetDateTime::now_utc();
    let at = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    Record {
        id: old,
        data: [(
            FORWARD_KEY.to_owned(),
            serde_json::json!({ "to": new.to_string(), "at": at }),
        )]
        .into_iter()
        .collect(),
        expiry_date: now + FORWARD_LIFETIME,
    }
}

/// What the store holds for a session id.
#[derive(Debug)]
pub(crate) enum Presence {
    /// A live session record.
    Live(Versioned),
    /// The id was rotated: the record forwards to the new one.
    Rotated,
    /// Nothing (absent or expired).
    Gone,
}

/// A store call that did not produce an answer.
#[derive(Debug)]
pub(crate) enum StoreFailure {
    Error(session_store::Error),
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

impl From<StoreFailure> for session_store::Error {
    fn from(f: StoreFailure) -> Self {
        match f {
            StoreFailure::Error(e) => e,
            StoreFailure::Timeout(d) => session_store::Error::Backend(format!(
                "the session store did not answer within {d:?}"
            )),
        }
    }
}

impl StoreFailure {
    /// Why a handshake that met this failure is refused.
    pub(crate) fn reason(&self) -> InvalidReason {
        match self {
            StoreFailure::Error(_) => InvalidReason::StoreError,
            StoreFailure::Timeout(_) => InvalidReason::StoreTimeout,
        }
    }
}

/// What the store can do, picked by the type the builder was given.
#[derive(Clone)]
enum Backend {
    /// Any store: saves are unconditional (last writer wins).
    Plain(Arc<dyn SessionStore>),
    /// Saves compare what was read.
    Conditional(Arc<dyn ConditionalStore>),
}

/// The store with this node's timeout and expiry policy. Plain stores hand out records with an
/// empty [`Version`], which no save compares.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    backend: Backend,
    timeout: Duration,
    expiry: Option<Expiry>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store: &dyn fmt::Debug = match &self.backend {
            Backend::Plain(s) => s,
            Backend::Conditional(s) => s,
        };
        f.debug_struct("StoreHandle")
            .field("store", store)
            .field("conditional", &self.is_conditional())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StoreHandle {
    /// A store whose saves are compare-and-set.
    pub(crate) fn conditional(
        store: Arc<dyn ConditionalStore>,
        timeout: Duration,
        expiry: Option<Expiry>,
    ) -> Self {
        StoreHandle {
            backend: Backend::Conditional(store),
            timeout,
            expiry,
        }
    }

    /// A store whose saves overwrite.
    pub(crate) fn plain(
        store: Arc<dyn SessionStore>,
        timeout: Duration,
        expiry: Option<Expiry>,
    ) -> Self {
        StoreHandle {
            backend: Backend::Plain(store),
            timeout,
            expiry,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a save its caller gave up on can never land later (see
    /// [`ConditionalStore::refuses_late_saves`]); a plain store's saves are not even compared.
    pub(crate) fn refuses_late_saves(&self) -> bool {
        match &self.backend {
            Backend::Plain(_) => false,
            Backend::Conditional(s) => s.refuses_late_saves(),
        }
    }

    /// Whether a version rebuilds its record (see
    /// [`ConditionalStore::versions_hold_records`]).
    pub(crate) fn versions_hold_records(&self) -> bool {
        match &self.backend {
            Backend::Plain(_) => false,
            Backend::Conditional(s) => s.versions_hold_records(),
        }
    }

    pub(crate) fn is_conditional(&self) -> bool {
        matches!(self.backend, Backend::Conditional(_))
    }

    fn as_plain(&self) -> &dyn SessionStore {
        match &self.backend {
            Backend::Plain(s) => s.as_ref(),
            Backend::Conditional(s) => s.as_ref(),
        }
    }

    async fn bounded<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> Result<T, StoreFailure> {
        self.timed(StoreCall::start(op), call).await
    }

    /// `call`, bounded by the store timeout and counted on `clock`.
    async fn timed<T>(
        &self,
        clock: StoreCall,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> Result<T, StoreFailure> {
        let mut call = std::pin::pin!(call);
        // Armed when the call first waits: one that answers on its first poll (an in-process
        // store's) reads no clock and sets no timer. The timeout counts from that first wait.
        let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
        let answer = std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = call.as_mut().poll(cx) {
                return Poll::Ready(Ok(answer));
            }
            if timer.is_none() {
                timer.set(Some(tokio::time::sleep(self.timeout)));
            }
            match timer.as_mut().as_pin_mut().map(|t| t.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(())),
                _ => Poll::Pending,
            }
        })
        .await;
        match answer {
            Ok(answer) => answered(clock, answer),
            Err(()) => {
                clock.finish(CallEnd::TimedOut);
                Err(StoreFailure::Timeout(self.timeout))
            }
        }
    }

    /// The record as stored, forwarding records included; `None` when absent or expired.
    async fn load_stored(&self, id: &Id) -> Result<Option<Versioned>, StoreFailure> {
        let loaded = match &self.backend {
            Backend::Plain(s) => self
                .bounded(StoreOp::Load, s.load(id))
                .await?
                .map(|record| Versioned {
                    record,
                    version: Version::from_bytes(Vec::new()),
                }),
            Backend::Conditional(s) => self.bounded(StoreOp::Load, s.load_versioned(id)).await?,
        };
        Ok(loaded.filter(|l| l.record.expiry_date > OffsetDateTime::now_utc()))
    }

    /// The live session record, or `None` when it is absent, expired, or forwards a rotated id.
    pub(crate) async fn load(&self, id: &Id) -> Result<Option<Versioned>, StoreFailure> {
        Ok(self
            .load_stored(id)
            .await?
            .filter(|l| forwarded_to(&l.record).is_none()))
    }

    /// What the store holds for `id`: a live record, a forward to a rotated id, or nothing.
    pub(crate) async fn probe(&self, id: &Id) -> Result<Presence, StoreFailure> {
        Ok(match self.load_stored(id).await? {
            Some(v) if forwarded_to(&v.record).is_some() => Presence::Rotated,
            Some(v) => Presence::Live(v),
            None => Presence::Gone,
        })
    }

    /// Reloads `record`, held at `version`.
    pub(crate) async fn reload(
        &self,
        record: &Record,
        version: &Version,
    ) -> Result<Reloaded, StoreFailure> {
        let id = &record.id;
        let Backend::Conditional(s) = &self.backend else {
            return Ok(match self.load(id).await? {
                Some(v) => Reloaded::Changed(v),
                None => Reloaded::Gone,
            });
        };
        let now = OffsetDateTime::now_utc();
        Ok(
            match self
                .bounded(StoreOp::Reload, s.reload_versioned(id, version))
                .await?
            {
                Reloaded::Unchanged if record.expiry_date > now => Reloaded::Unchanged,
                Reloaded::Changed(v)
                    if v.record.expiry_date > now && forwarded_to(&v.record).is_none() =>
                {
                    Reloaded::Changed(v)
                }
                _ => Reloaded::Gone,
            },
        )
    }

    /// Writes `record` if it is still at `expected` (a plain store writes unconditionally; the
    /// caller has just read it).
    pub(crate) async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> Result<SaveOutcome, StoreFailure> {
        match &self.backend {
            Backend::Conditional(s) => {
                // Timed from before the call either way: waiting for the store's lock is part
                // of the save.
                let clock = StoreCall::start(StoreOp::SaveIf);
                match s.save_if_now(record, expected) {
                    Some(answer) => answered(clock, answer),
                    None => self.timed(clock, s.save_if(record, expected)).await,
                }
            }
            Backend::Plain(s) => {
                self.bounded(StoreOp::Save, s.save(record)).await?;
                Ok(SaveOutcome::Saved(Version::from_bytes(Vec::new())))
            }
        }
    }

    /// Writes `record` unconditionally.
    pub(crate) async fn save(&self, record: &Record) -> Result<(), StoreFailure> {
        self.bounded(StoreOp::Save, self.as_plain().save(record))
            .await
    }

    /// Creates a record (the store may change its id to a free one).
    pub(crate) async fn create(&self, record: &mut Record) -> Result<(), StoreFailure> {
        self.bounded(StoreOp::Create, self.as_plain().create(record))
            .await
    }

    /// Deletes a record.
    pub(crate) async fn delete(&self, id: &Id) -> Result<(), StoreFailure> {
        self.bounded(StoreOp::Delete, self.as_plain().delete(id))
            .await
    }

    /// The expiry a save gives the record, computed as the HTTP layer computes it.
    pub(crate) fn expiry_date(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        match self.expiry {
            Some(Expiry::OnInactivity(d)) => now.saturating_add(d),
            Some(Expiry::AtDateTime(at)) => at,
            Some(Expiry::OnSessionEnd) | None => now.saturating_add(DEFAULT_LIFETIME),
        }
    }

    pub(crate) fn hold_external_key(&self, id: &Id, key: &Arc<str>) {
        if let Backend::Conditional(s) = &self.backend {
            s.hold_external_key(id, key);
        }
    }

    pub(crate) fn release_external_key(&self, id: &Id) {
        if let Backend::Conditional(s) = &self.backend {
            s.release_external_key(id);
        }
    }

    /// The session id behind a key of the store's keyspace.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn id_for_key(&self, key: &str) -> Option<Id> {
        match &self.backend {
            Backend::Conditional(s) => s.id_for_key(key),
            Backend::Plain(_) => key.parse().ok(),
        }
    }
}

/// A store call's answer, counted.
fn answered<T>(clock: StoreCall, answer: session_store::Result<T>) -> Result<T, StoreFailure> {
    clock.finish(match answer {
        Ok(_) => CallEnd::Answered,
        Err(_) => CallEnd::Failed,
    });
    answer.map_err(StoreFailure::Error)
}

impl Target for StoreHandle {
    type Error = StoreFailure;

    fn conditional(&self) -> bool {
        self.is_conditional()
    }

    async fn load(&self, id: &Id) -> Result<Option<Versioned>, StoreFailure> {
        self.load_stored(id).await
    }

    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> Result<SaveOutcome, StoreFailure> {
        StoreHandle::save_if(self, record, expected).await
    }
}
