//! The live session: the one in-memory copy of a session on this node, shared by its sockets.
//! It holds its store and policy, never the node that made it: it loads, saves through the one
//! merged save, and publishes what it learns of the record's expiry for the lifecycle to follow.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use socketioxide::socket::Sid;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tower_sessions::session::Id;

use super::expiries::{Expiries, Owner};
use super::policy::Policy;
use super::state::{Known, Op, Pending, State};
use crate::config::Mode;
use crate::error::SessionError;
use crate::id::SessionKey;
use crate::observe::{Held, LIVE_SESSIONS};
use crate::store::{MergeError, Merged, Reloaded, StoreFailure, StoreHandle, save_merged};
use crate::tag::SessionTag;
use crate::task::{Stop, locked, spawn_detached};

/// The record's expiry as this node knows it, and when the session is armed to be checked.
/// The entry moves only when the expiry moves earlier (or appears or vanishes): every save moves
/// it later, and that is picked up when the entry comes due, so saves do not touch the schedule.
#[derive(Debug, Default)]
struct Expiry {
    known: Option<OffsetDateTime>,
    armed: Option<OffsetDateTime>,
}

/// The one in-memory copy of a session on this node.
pub(crate) struct LiveSession {
    pub(crate) id: Id,
    /// The store's own key where it is not a tower-sessions id (an express-session sid); the
    /// store is told while this session lives.
    external: Option<Arc<str>>,
    /// Computed on first use: only logs and `SocketSession::tag` need it, and a hash per
    /// connection is a noticeable part of a handshake.
    tag: OnceLock<SessionTag>,
    /// Shared by every live session of the node: a handle, not a copy, of the store.
    pub(crate) store: Arc<StoreHandle>,
    pub(crate) policy: Arc<Policy>,
    /// The node's stop signal: write-behind retries end at shutdown (which saves instead).
    stop: Arc<Stop>,
    /// An async lock, held across store calls: per message, from a handler's first session call
    /// to its save; per connection, for one operation or one save.
    pub(crate) state: Arc<Mutex<State>>,
    /// Per-message handlers of this session waiting for the lock: bounded by the policy.
    pub(crate) waiting: AtomicUsize,
    /// Whether a write-behind save is scheduled (one at a time).
    write_behind_pending: AtomicBool,
    /// The record's expiry as last seen, and the entry this session armed in `expiries`.
    expiry: std::sync::Mutex<Expiry>,
    /// The node's expiry schedule, which the lifecycle's expiry task follows.
    expiries: Arc<Expiries>,
    /// When a save last moved the expiry forward (rolling expiry).
    last_extended: std::sync::Mutex<Instant>,
    /// Whether a rolling-expiry touch is in flight.
    touch_pending: AtomicBool,
    /// This node's sockets of the session, by Socket.IO id: how an end finds them where no
    /// room per session is kept (socketioxide's local adapter). A std mutex, held to add,
    /// remove or copy one; a `Vec` because a session has one socket or a few.
    sockets: std::sync::Mutex<Vec<Sid>>,
    /// One unit of the live-sessions gauge, given back when the last handle is dropped.
    _live: Held,
}

impl fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSession")
            .field("tag", self.tag())
            .finish()
    }
}

impl LiveSession {
    pub(crate) fn new(
        key: SessionKey,
        store: Arc<StoreHandle>,
        policy: Arc<Policy>,
        stop: Arc<Stop>,
        expiries: Arc<Expiries>,
    ) -> Self {
        if let Some(sid) = &key.external {
            store.hold_external_key(&key.id, sid);
        }
        LiveSession {
            id: key.id,
            external: key.external,
            tag: OnceLock::new(),
            store,
            policy,
            stop,
            state: Arc::default(),
            waiting: AtomicUsize::new(0),
            write_behind_pending: AtomicBool::new(false),
            expiry: std::sync::Mutex::default(),
            expiries,
            last_extended: std::sync::Mutex::new(Instant::now()),
            touch_pending: AtomicBool::new(false),
            sockets: std::sync::Mutex::default(),
            _live: Held::new(LIVE_SESSIONS),
        }
    }

    /// The session's tag for logs.
    pub(crate) fn tag(&self) -> &SessionTag {
        self.tag
            .get_or_init(|| SessionTag::new(&self.policy.salt, &self.id))
    }

    pub(crate) fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// Counts `sid` among this node's sockets of the session, until [`unbind`](Self::unbind).
    pub(crate) fn bind(&self, sid: Sid) {
        let mut sockets = locked(&self.sockets);
        if sockets.capacity() == 0 {
            // Room for the one socket most sessions have, not the four a first push makes.
            sockets.reserve_exact(1);
        }
        sockets.push(sid);
    }

    /// `sid` is no longer bound to the session.
    pub(crate) fn unbind(&self, sid: Sid) {
        let mut sockets = locked(&self.sockets);
        if let Some(at) = sockets.iter().position(|s| *s == sid) {
            sockets.swap_remove(at);
        }
    }

    /// This node's sockets of the session, by Socket.IO id.
    pub(crate) fn sockets(&self) -> Vec<Sid> {
        locked(&self.sockets).clone()
    }

    fn owner(&self) -> Owner {
        self as *const LiveSession as Owner
    }

    /// Records the expiry of the stored record, and arms the session's entry in the schedule
    /// when the expiry moved earlier than it (or appeared or vanished).
    pub(crate) fn note_expiry(&self, at: Option<OffsetDateTime>) {
        let mut e = locked(&self.expiry);
        e.known = at;
        self.settle(&mut e);
    }

    /// Arms the entry at the known expiry unless an earlier one is armed already.
    fn settle(&self, e: &mut Expiry) {
        let to = match (e.known, e.armed) {
            (None, None) => return,
            (Some(known), Some(armed)) if known >= armed => return,
            (known, _) => known,
        };
        self.expiries.rearm(self.id, self.owner(), e.armed, to);
        e.armed = to;
    }

    /// The session's entry armed for `at` came due: whether the known expiry has been reached
    /// (the store must say whether the record is gone). If the expiry moved later meanwhile,
    /// the entry is armed again at it.
    pub(crate) fn expiry_due(&self, at: OffsetDateTime) -> bool {
        let mut e = locked(&self.expiry);
        if e.armed == Some(at) {
            e.armed = None;
        }
        if e.known.is_some_and(|known| known <= at) {
            return true;
        }
        self.settle(&mut e);
        false
    }

    /// Checks the expiry again `after` this long (the store failed when it came due).
    pub(crate) fn recheck_expiry(&self, after: Duration) {
        let mut e = locked(&self.expiry);
        let at = OffsetDateTime::now_utc() + after;
        self.expiries
            .rearm(self.id, self.owner(), e.armed, Some(at));
        e.armed = Some(at);
    }

    fn track(&self, st: &State) {
        self.note_expiry(st.base_record().map(|r| r.expiry_date));
    }

    /// Whether the last known expiry has passed.
    pub(crate) fn past_expiry(&self) -> bool {
        locked(&self.expiry)
            .known
            .is_some_and(|at| at <= OffsetDateTime::now_utc())
    }

    /// Socket activity: with rolling expiry, moves the expiry forward, at most one store write
    /// per interval.
    pub(crate) fn activity(self: &Arc<Self>) {
        let Some(interval) = self.policy.rolling else {
            return;
        };
        if locked(&self.last_extended).elapsed() < interval
            || self.touch_pending.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let live = self.clone();
        spawn_detached(async move {
            let mut st = live.state.lock().await;
            st.unpack();
            if st.base.is_some() {
                st.log(Op::Touch, None);
                if let Err(e) = live.persist(&mut st).await {
                    tracing::debug!(session = %live.tag(), error = %e, "could not extend the session");
                }
            }
            live.rest(&mut st);
            live.touch_pending.store(false, Ordering::Release);
        });
    }

    /// Saves pending changes (another socket's), then loads the record for a handshake and
    /// hands its data to `look`: `None` when the session does not exist.
    pub(crate) async fn load_for_connect<T>(
        &self,
        look: impl FnOnce(&HashMap<String, Value>) -> T,
    ) -> Result<Option<T>, StoreFailure> {
        let mut st = self.state.lock().await;
        if !st.ops.is_empty() {
            // Another socket's unsaved changes: save them first so the reload keeps them.
            if let Err(e) = self.persist(&mut st).await {
                tracing::warn!(session = %self.tag(), error = %e, "could not save pending session changes");
            }
        }
        let loaded = self.store.load(&self.id).await?;
        st.reset(loaded.map(Known::from));
        st.fresh = st.base.is_some();
        self.track(&st);
        let looked = st.record().map(|r| look(&r.data));
        self.rest(&mut st);
        Ok(looked)
    }

    /// The state is put down until the next handler: per message, on a store whose versions
    /// hold their records, the record is [packed](State::pack). Per connection, handlers read
    /// the state as it is, so it stays decoded.
    pub(crate) fn rest(&self, st: &mut State) {
        if self.policy.mode == Mode::PerMessage && self.store.versions_hold_records() {
            st.pack();
        }
    }

    /// Per-connection mode: schedules write-behind for changes just made.
    pub(crate) fn changed(self: &Arc<Self>, st: &State) {
        if !st.ops.is_empty() {
            self.schedule_write_behind();
        }
    }

    /// Brings `st` up to date with the store, saving pending changes first.
    pub(crate) async fn refresh(&self, st: &mut State) -> Result<(), SessionError> {
        if !st.ops.is_empty() {
            // Boxed: changes are rarely pending here (a save failed), and a save's future
            // inline would nearly double the future of every handler's first operation.
            match Box::pin(self.persist(st)).await {
                // Saved on top of the stored record: the state is current.
                Ok(()) | Err(SessionError::Gone) => return Ok(()),
                Err(SessionError::Conflict { .. } | SessionError::Contended { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let reloaded = match &st.base {
            Some(Known {
                record: Some(record),
                version,
            }) => self.store.reload(record, version).await?,
            // Gone (a packed state is unpacked before it gets here): what the store holds now.
            _ => match self.store.load(&self.id).await? {
                Some(v) => Reloaded::Changed(v),
                None => Reloaded::Gone,
            },
        };
        match reloaded {
            // Unchanged: no copy; only this handler's reads start afresh.
            Reloaded::Unchanged => st.reads.clear(),
            Reloaded::Changed(loaded) => {
                st.reset(Some(loaded.into()));
                self.track(st);
            }
            Reloaded::Gone => {
                st.reset(None);
                self.track(st);
            }
        }
        Ok(())
    }

    /// Saves pending changes through the merged save. Per message, a handler's changes land
    /// with it or not at all: once it has been told they failed, they must not land later.
    pub(crate) async fn persist(&self, st: &mut State) -> Result<(), SessionError> {
        let result = self.try_persist(st).await;
        if result.is_err() && self.policy.mode == Mode::PerMessage {
            st.discard();
        }
        result
    }

    async fn try_persist(&self, st: &mut State) -> Result<(), SessionError> {
        if st.ops.is_empty() {
            return Ok(());
        }
        let check_reads = self.policy.mode == Mode::PerMessage;
        let Some(Pending {
            view,
            version,
            mut log,
        }) = st.pending(check_reads)
        else {
            return Err(self.gone(st));
        };
        let store = &*self.store;
        let date = || store.expiry_date();
        match save_merged(store, self.id, Some((view, version)), &mut log, &date).await {
            Ok(Merged::Saved { id, .. }) if id != self.id => {
                // The session's id was rotated: the changes went to the new session, and this
                // one is over here (its sockets are being told to reconnect).
                tracing::debug!(session = %self.tag(), "changes saved to the rotated session");
                st.reset(None);
                self.track(st);
                Ok(())
            }
            Ok(Merged::Saved {
                record, version, ..
            }) => {
                match record {
                    Some(record) => st.reset(Some(Known {
                        record: Some(record),
                        version,
                    })),
                    None => st.saved(version),
                }
                self.track(st);
                if self.policy.rolling.is_some() {
                    *locked(&self.last_extended) = Instant::now();
                }
                Ok(())
            }
            Ok(Merged::Gone) => Err(self.gone(st)),
            Err(MergeError::Changes(e)) => {
                st.discard();
                Err(e)
            }
            // Kept for the next save (per connection: write-behind retries, disconnect).
            Err(e) => Err(e.into()),
        }
    }

    fn gone(&self, st: &mut State) -> SessionError {
        tracing::debug!(session = %self.tag(), "session gone: socket changes discarded");
        st.reset(None);
        self.track(st);
        SessionError::Gone
    }

    /// Saves pending changes now (per-connection mode: at disconnect, write-behind, rotation
    /// and shutdown). Returns whether nothing is left unsaved.
    pub(crate) async fn flush(&self) -> bool {
        let mut st = self.state.lock().await;
        match self.persist(&mut st).await {
            Ok(()) | Err(SessionError::Gone) => true,
            Err(e) => {
                tracing::warn!(session = %self.tag(), error = %e, "could not save the session");
                false
            }
        }
    }

    /// Whether changes are waiting to be saved (taken without waiting: a busy session counts).
    pub(crate) fn has_unsaved(&self) -> bool {
        self.state.try_lock().map_or(true, |st| !st.ops.is_empty())
    }

    /// Per-connection write-behind: saves within `delay` of the first unsaved change, and keeps
    /// retrying (backing off to 5 s) while the store fails, until the node stops.
    fn schedule_write_behind(self: &Arc<Self>) {
        let Some(delay) = self.policy.write_behind else {
            return;
        };
        if self.write_behind_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let live = self.clone();
        spawn_detached(async move {
            let stopped = live.stop.stopped();
            tokio::pin!(stopped);
            let mut wait = delay;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                let mut st = live.state.lock().await;
                match live.persist(&mut st).await {
                    Ok(()) | Err(SessionError::Gone) => {
                        // Cleared under the lock: the next change schedules a new save.
                        live.write_behind_pending.store(false, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(session = %live.tag(), error = %e, "write-behind save failed; retrying");
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let armed = locked(&self.expiry).armed;
        if armed.is_some() {
            self.expiries.rearm(self.id, self.owner(), armed, None);
        }
        if self.external.is_some() {
            self.store.release_external_key(&self.id);
        }
    }
}
