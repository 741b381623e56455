//! The live session and the handle that socket handlers use.
//!
//! A [`LiveSession`] is the one in-memory copy of a session on this node. In per-connection
//! mode, handles lock it briefly per operation and changes are saved when a socket disconnects
//! (or sooner with write-behind). In per-message mode, a handle takes the lock at its first
//! operation, reloads the record, and keeps the lock until the handler is done and its changes
//! are saved: reload → handler → save runs one at a time per session on this node.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use tower_sessions::session::{Id, Record};

use crate::config::{Mode, Shared};
use crate::error::SessionError;
use crate::id::SessionKey;
use crate::lifecycle::EndReason;
use crate::store::{Loaded, SaveOutcome, StoreFailure};
use crate::tag::SessionTag;

/// Re-runs an [`SocketSession::update`] closure on a (possibly fresher) value.
type Updater = Box<dyn FnMut(Option<Value>) -> Result<Value, SessionError> + Send>;

/// One change a socket made, kept until it is saved so that it can be re-applied to a fresher
/// record when a conditional save conflicts.
enum Op {
    /// `insert` (`Some`) or `remove` (`None`): the last write to the key wins.
    Set(String, Option<Value>),
    /// `update`: re-run on the key's current value.
    Update(String, Updater),
    /// Nothing to change, but save (rolling expiry: the save moves the expiry forward).
    Touch,
}

/// How many times a save is re-applied on a fresher record before giving up.
const MAX_ATTEMPTS: u32 = 32;

/// A random pause after the `attempt`-th conflict, so that writers on different nodes that
/// keep colliding drift apart instead of colliding again.
async fn backoff(attempt: u32) {
    let ceiling_us = 200u64 << attempt.min(6);
    let jitter = (Id::default().0 as u64) % ceiling_us;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// The session's state as this node knows it.
#[derive(Default)]
pub(crate) struct State {
    /// The record as last read from or written to the store, with its version; `None` once the
    /// session is known to be gone.
    base: Option<Loaded>,
    /// The local view when it differs from `base` (`base` with `ops` applied). Copied from
    /// `base` on the first change only, so that reads and saves do not copy the record.
    changed: Option<Record>,
    /// Changes not saved yet, in order.
    ops: Vec<Op>,
    /// Per-message mode: keys read since `base`; a save fails if one of them changed meanwhile.
    /// A handler reads a few keys: a list is cheaper than a hashed set.
    reads: Vec<String>,
    /// Loaded by the connect middleware and not yet handed to a handler: the connect handler
    /// may use it without another reload.
    fresh: bool,
}

impl State {
    fn reset(&mut self, loaded: Option<Loaded>) {
        self.base = loaded;
        self.changed = None;
        self.ops.clear();
        self.reads.clear();
    }

    /// Drops unsaved changes, back to the last stored state.
    fn discard(&mut self) {
        let base = self.base.take();
        self.reset(base);
    }

    /// The local view; `None` once the session is known to be gone.
    fn record(&self) -> Option<&Record> {
        self.changed
            .as_ref()
            .or_else(|| self.base.as_ref().map(|b| &b.record))
    }

    /// The local view, to change it.
    fn record_mut(&mut self) -> Option<&mut Record> {
        if self.changed.is_none() {
            self.changed = Some(self.base.as_ref()?.record.clone());
        }
        self.changed.as_mut()
    }

    /// A key this handler read that another writer has changed since.
    fn stale_read(&self, fresh: &Record) -> Option<String> {
        let base = self.base.as_ref()?;
        self.reads
            .iter()
            .find(|k| base.record.data.get(*k) != fresh.data.get(*k))
            .cloned()
    }
}

fn apply_ops(record: &mut Record, ops: &mut [Op]) -> Result<(), SessionError> {
    for op in ops {
        match op {
            Op::Set(key, Some(v)) => {
                record.data.insert(key.clone(), v.clone());
            }
            Op::Set(key, None) => {
                record.data.remove(key);
            }
            Op::Update(key, f) => {
                let new = f(record.data.get(key).cloned())?;
                record.data.insert(key.clone(), new);
            }
            Op::Touch => {}
        }
    }
    Ok(())
}

/// The one in-memory copy of a session on this node.
pub(crate) struct LiveSession {
    pub(crate) id: Id,
    /// The store's own key where it is not a tower-sessions id (an express-session sid).
    external: Option<Arc<str>>,
    /// Computed on first use: only logs and `SocketSession::tag` need it, and a hash per
    /// connection is a noticeable part of a handshake.
    tag: std::sync::OnceLock<SessionTag>,
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
    write_behind_pending: AtomicBool,
    /// The record's expiry as last seen; the expiry timer watches it.
    expiry: watch::Sender<Option<OffsetDateTime>>,
    /// When a save last moved the expiry forward (rolling expiry).
    last_extended: std::sync::Mutex<Instant>,
    touch_pending: AtomicBool,
}

impl fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSession")
            .field("tag", self.tag())
            .finish()
    }
}

impl LiveSession {
    pub(crate) fn new(shared: Arc<Shared>, key: SessionKey) -> Self {
        let id = key.id;
        if let Some(sid) = &key.external {
            crate::id::express::register(id, sid);
        }
        LiveSession {
            tag: std::sync::OnceLock::new(),
            id,
            external: key.external,
            shared,
            state: Arc::default(),
            write_behind_pending: AtomicBool::new(false),
            expiry: watch::Sender::new(None),
            last_extended: std::sync::Mutex::new(Instant::now()),
            touch_pending: AtomicBool::new(false),
        }
    }

    /// The session's tag for logs.
    pub(crate) fn tag(&self) -> &SessionTag {
        self.tag
            .get_or_init(|| SessionTag::new(&self.shared.salt, &self.id))
    }

    /// Follows the record's expiry: disconnects the session's sockets on this node with
    /// `session_expired` when it is reached. The timer is re-armed when the expiry moves
    /// earlier; a later expiry (every save moves it) is picked up when the timer fires, so that
    /// saves do not wake the timer.
    pub(crate) fn spawn_expiry_timer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let mut rx = self.expiry.subscribe();
        spawn_detached(async move {
            loop {
                let at = *rx.borrow_and_update();
                let Some(at) = at else {
                    if rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                };
                let wait = Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(wait) => {
                        if *rx.borrow() != Some(at) {
                            continue;
                        }
                        let Some(live) = weak.upgrade() else { return };
                        match live.shared.store.load(&live.id).await {
                            Ok(Some(loaded)) => live.note_expiry(Some(loaded.record.expiry_date)),
                            Ok(None) => {
                                tracing::debug!(session = %live.tag(), "session expired");
                                live.shared.end(&live.id, EndReason::Expired, true).await;
                                return;
                            }
                            Err(failure) => {
                                tracing::warn!(session = %live.tag(), ?failure, "could not check the session's expiry; retrying");
                                drop(live);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            }
        });
    }

    /// Records the expiry of the stored record (it moves with every save).
    pub(crate) fn note_expiry(&self, at: Option<OffsetDateTime>) {
        self.expiry.send_if_modified(|current| {
            let wake = match (*current, at) {
                (Some(old), Some(new)) => new < old,
                (old, new) => old != new,
            };
            *current = at;
            wake
        });
    }

    fn track(&self, st: &State) {
        self.note_expiry(st.base.as_ref().map(|b| b.record.expiry_date));
    }

    /// Whether the last known expiry has passed.
    pub(crate) fn past_expiry(&self) -> bool {
        self.expiry
            .borrow()
            .is_some_and(|at| at <= OffsetDateTime::now_utc())
    }

    /// Socket activity: with rolling expiry, moves the expiry forward, at most one store write
    /// per interval.
    pub(crate) fn activity(self: &Arc<Self>) {
        let Some(interval) = self.shared.rolling else {
            return;
        };
        if self
            .last_extended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            < interval
        {
            return;
        }
        if self.touch_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let live = self.clone();
        spawn_detached(async move {
            let mut st = live.state.lock().await;
            if st.base.is_some() {
                st.ops.push(Op::Touch);
                if let Err(e) = live.persist(&mut st).await {
                    tracing::debug!(session = %live.tag(), error = %e, "could not extend the session");
                }
            }
            live.touch_pending.store(false, Ordering::Release);
        });
    }

    /// Saves pending changes (if any), then loads the record. Used at connect: `None` when the
    /// session does not exist, else the value under `user_key` (if asked for and present).
    pub(crate) async fn load_for_connect(
        &self,
        user_key: Option<&str>,
    ) -> Result<Option<Option<Value>>, StoreFailure> {
        let mut st = self.state.lock().await;
        if !st.ops.is_empty() {
            // Another socket's unsaved changes: save them first so the reload keeps them.
            if let Err(e) = self.persist(&mut st).await {
                tracing::warn!(session = %self.tag(), error = %e, "could not save pending session changes");
            }
        }
        let loaded = self.shared.store.load(&self.id).await?;
        st.reset(loaded);
        st.fresh = st.base.is_some();
        self.track(&st);
        Ok(st
            .record()
            .map(|r| user_key.and_then(|k| r.data.get(k).cloned())))
    }

    /// Per-connection mode: runs `f` on the state and schedules write-behind for its changes.
    fn run_per_connection<R>(
        self: &Arc<Self>,
        st: &mut State,
        f: impl FnOnce(&mut State) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let out = f(st);
        if !st.ops.is_empty() {
            self.schedule_write_behind();
        }
        out
    }

    /// Brings `st` up to date with the store, saving pending changes first.
    async fn refresh(&self, st: &mut State) -> Result<(), SessionError> {
        if !st.ops.is_empty() {
            match self.persist(st).await {
                // Saved on top of the stored record: the state is current.
                Ok(()) => return Ok(()),
                Err(SessionError::Gone) => return Ok(()),
                Err(SessionError::Conflict { .. } | SessionError::Contended { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let reloaded = match &st.base {
            Some(known) => self.shared.store.reload(known).await?,
            None => Some(self.shared.store.load(&self.id).await?),
        };
        match reloaded {
            // Unchanged: no copy; only this handler's reads start afresh.
            None => st.reads.clear(),
            Some(loaded) => {
                st.reset(loaded);
                self.track(st);
            }
        }
        Ok(())
    }

    /// Saves pending changes. A conditional store first tries the version the changes were
    /// made on; on conflict (and always, for a plain store) the changes are re-applied to the
    /// record as stored now: `update`s re-run, `insert`/`remove` win on their keys. In
    /// per-message mode a changed key that the handler read makes the save fail instead.
    async fn persist(&self, st: &mut State) -> Result<(), SessionError> {
        let result = self.try_persist(st).await;
        if result.is_err() && self.shared.mode == Mode::PerMessage {
            // Per message, a handler's changes land with it or not at all: once it has been
            // told they failed, they must not land later.
            st.discard();
        }
        result
    }

    async fn try_persist(&self, st: &mut State) -> Result<(), SessionError> {
        if st.ops.is_empty() {
            return Ok(());
        }
        let store = &self.shared.store;
        let validate_reads = self.shared.mode == Mode::PerMessage;
        // A conditional store first gets the local view, on the version it was made from; a
        // plain store cannot refuse a stale write, so the changes always go on a fresh read.
        let mut local = store.is_conditional();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut next, version) = if local {
                let Some(base) = &st.base else {
                    return Err(self.gone(st));
                };
                let next = match st.changed.take() {
                    Some(view) => view,
                    None => base.record.clone(),
                };
                (next, base.version.clone())
            } else {
                let Some(fresh) = store.load(&self.id).await? else {
                    return Err(self.gone(st));
                };
                if validate_reads && let Some(key) = st.stale_read(&fresh.record) {
                    return Err(SessionError::Conflict { key });
                }
                let mut next = fresh.record;
                if let Err(e) = apply_ops(&mut next, &mut st.ops) {
                    st.discard();
                    return Err(e);
                }
                (next, fresh.version)
            };
            let expiry = std::mem::replace(&mut next.expiry_date, store.expiry_date());
            let outcome = store.save(&next, version.as_ref()).await;
            if let Ok(SaveOutcome::Saved(version)) = outcome {
                st.base = Some(Loaded {
                    record: next,
                    version: Some(version),
                });
                st.changed = None;
                st.ops.clear();
                st.reads.clear();
                self.track(st);
                *self.last_extended.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                return Ok(());
            }
            if local {
                // Still the local view: the changes stay visible until they are saved.
                next.expiry_date = expiry;
                st.changed = Some(next);
            }
            match outcome? {
                SaveOutcome::Gone => return Err(self.gone(st)),
                SaveOutcome::Conflict => {
                    tracing::debug!(session = %self.tag(), "save conflicted; re-applying changes");
                }
                SaveOutcome::Saved(_) => unreachable!("handled above"),
            }
            local = false;
        }
        // Per-connection mode keeps them for the next save (write-behind retries, disconnect).
        Err(SessionError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn gone(&self, st: &mut State) -> SessionError {
        tracing::debug!(session = %self.tag(), "session gone: socket changes discarded");
        st.reset(None);
        self.track(st);
        SessionError::Gone
    }

    /// Saves pending changes now (per-connection mode: at disconnect and write-behind).
    pub(crate) async fn flush(&self) {
        let mut st = self.state.lock().await;
        match self.persist(&mut st).await {
            Ok(()) | Err(SessionError::Gone) => {}
            Err(e) => {
                tracing::warn!(session = %self.tag(), error = %e, "could not save the session")
            }
        }
    }

    /// Per-connection write-behind: saves within `delay` of the first unsaved change, and keeps
    /// retrying (backing off to 5 s) while the store fails.
    fn schedule_write_behind(self: &Arc<Self>) {
        let Some(delay) = self.shared.write_behind else {
            return;
        };
        if self.write_behind_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let live = self.clone();
        spawn_detached(async move {
            let mut wait = delay;
            loop {
                tokio::time::sleep(wait).await;
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
        self.shared.registry.forget(&self.id);
        if self.external.is_some() {
            crate::id::express::unregister(&self.id);
        }
    }
}

/// Spawns on the current runtime, if there still is one (drops may run during shutdown).
pub(crate) fn spawn_detached(fut: impl Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(fut);
    }
}

/// A socket's tie to its live session, kept in the socket's extensions. In per-connection mode,
/// dropping it (when the socket is gone) saves what the socket changed.
#[derive(Clone, Debug)]
pub(crate) struct Binding(Arc<BindingInner>);

#[derive(Debug)]
struct BindingInner {
    live: Arc<LiveSession>,
}

impl Binding {
    pub(crate) fn new(live: Arc<LiveSession>) -> Self {
        Binding(Arc::new(BindingInner { live }))
    }

    pub(crate) fn live(&self) -> &Arc<LiveSession> {
        &self.0.live
    }

    pub(crate) fn handle(&self, may_use_fresh: bool) -> SocketSession {
        let live = self.0.live.clone();
        // Per connection a handle is just the live session: nothing to allocate per event.
        let held = (live.shared.mode == Mode::PerMessage).then(|| {
            Arc::new(Held {
                live: live.clone(),
                guard: Mutex::new(None),
                may_use_fresh,
            })
        });
        SocketSession { live, held }
    }
}

impl Drop for BindingInner {
    fn drop(&mut self) {
        if self.live.shared.mode == Mode::PerConnection {
            let live = self.live.clone();
            spawn_detached(async move { live.flush().await });
        }
    }
}

/// The session of a socket, as handlers see it (the seed's `session` argument).
///
/// Extract it in connect and message handlers; in disconnect handlers use
/// [`MaybeSocketSession`](crate::MaybeSocketSession). Values are stored as JSON in the same
/// record the HTTP side reads, so `session.get::<String>("user")` sees what an axum handler
/// inserted with `session.insert("user", ..)`.
///
/// In per-message mode the first operation of a handler reloads the session and locks it for
/// this session on this node until the handler returns; changes are then saved. Call
/// [`save`](SocketSession::save) before acknowledging when the client must be able to read the
/// change over HTTP as soon as it gets the ack.
#[derive(Clone)]
pub struct SocketSession {
    live: Arc<LiveSession>,
    /// Per-message mode: this handler's hold on the session, shared by clones of the handle.
    held: Option<Arc<Held>>,
}

/// A per-message handler's hold on its session: the session lock, taken at the first
/// operation and released (after saving) when the handler's last handle is dropped.
struct Held {
    live: Arc<LiveSession>,
    guard: Mutex<Option<OwnedMutexGuard<State>>>,
    may_use_fresh: bool,
}

impl fmt::Debug for SocketSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSession")
            .field("tag", self.live.tag())
            .finish()
    }
}

impl SocketSession {
    /// Runs `f` on the up-to-date state, under the session lock.
    async fn with_state<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        // The state is nearly always at hand. Waiting for it (and reloading it) is boxed, so
        // that those futures are not part of every handler's future, which socketioxide moves
        // several times when it spawns the handler.
        match self.try_now(f) {
            Ok(out) => out,
            Err(f) => Box::pin(self.wait_for_state(f)).await,
        }
    }

    /// Runs `f` at once if the state is at hand: per connection, when the lock is free; per
    /// message, when this handler already holds it. Otherwise hands `f` back.
    fn try_now<R, F>(&self, f: F) -> Result<Result<R, SessionError>, F>
    where
        F: FnOnce(&mut State) -> Result<R, SessionError>,
    {
        let live = &self.live;
        match &self.held {
            None => match live.state.try_lock() {
                Ok(mut st) => Ok(live.run_per_connection(&mut st, f)),
                Err(_) => Err(f),
            },
            Some(held) => match held.guard.try_lock() {
                Ok(mut guard) => match &mut *guard {
                    Some(st) => Ok(f(st)),
                    None => Err(f),
                },
                Err(_) => Err(f),
            },
        }
    }

    async fn wait_for_state<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let live = &self.live;
        match &self.held {
            None => {
                let mut st = live.state.lock().await;
                live.run_per_connection(&mut st, f)
            }
            Some(held) => {
                let mut guard = held.guard.lock().await;
                let st = match &mut *guard {
                    Some(st) => st,
                    slot @ None => {
                        let mut st = live.state.clone().lock_owned().await;
                        if !(held.may_use_fresh && st.fresh) {
                            live.refresh(&mut st).await?;
                        }
                        st.fresh = false;
                        slot.insert(st)
                    }
                };
                f(st)
            }
        }
    }

    /// Whether the session still exists (in per-message mode: in the store, as of this
    /// handler's reload). Writes to a session that no longer exists fail with
    /// [`SessionError::Gone`].
    pub async fn exists(&self) -> Result<bool, SessionError> {
        self.with_state(|st| Ok(st.base.is_some())).await
    }

    /// The value under `key`, deserialized; `None` if absent or if the session is gone.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        // Deserialized under the lock, from the stored value: no copy of it.
        let per_message = self.mode() == Mode::PerMessage;
        self.with_state(|st| {
            read(st, key, per_message)
                .map(T::deserialize)
                .transpose()
                .map_err(|e| SessionError::serde(key, e))
        })
        .await
    }

    /// The JSON value under `key`.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        let per_message = self.mode() == Mode::PerMessage;
        self.with_state(|st| Ok(read(st, key, per_message).cloned()))
            .await
    }

    /// Stores `value` under `key`.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|e| SessionError::serde(key, e))?;
        self.check(key, &value)?;
        self.with_state(|st| {
            set(st, key, Some(value))?;
            Ok(())
        })
        .await
    }

    /// Removes `key`, returning its old value.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let old = self.with_state(|st| set(st, key, None)).await?;
        match old {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| SessionError::serde(key, e)),
            None => Ok(None),
        }
    }

    /// Replaces the value under `key` with `f(old)` and returns the new value, atomically:
    /// nothing else changes the key in between, on this node or any other. If another writer
    /// changed the record first, `f` is run again on the fresh value, so `f` must be a pure
    /// function of its argument (counters, appending to a list).
    ///
    /// In per-message mode the change is saved before `update` returns, so the value returned
    /// is the one stored. In per-connection mode it is saved with the others (and `f` re-run
    /// then if needed).
    ///
    /// ```no_run
    /// # async fn f(session: socketio_sessions::SocketSession) -> Result<(), socketio_sessions::SessionError> {
    /// let count: u64 = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: FnMut(Option<T>) -> T + Send + 'static,
    {
        let owned_key = key.to_owned();
        let limits = Limits::of(&self.live.shared);
        let mut updater: Updater = Box::new(move |old: Option<Value>| {
            let old = old
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| SessionError::serde(&owned_key, e))?;
            let new =
                serde_json::to_value(f(old)).map_err(|e| SessionError::serde(&owned_key, e))?;
            limits.check(&owned_key, &new)?;
            Ok(new)
        });
        let mut value = self
            .with_state(|st| {
                let record = st.record_mut().ok_or(SessionError::Gone)?;
                let new = updater(record.data.get(key).cloned())?;
                record.data.insert(key.to_owned(), new.clone());
                st.ops.push(Op::Update(key.to_owned(), updater));
                Ok(new)
            })
            .await?;
        if self.mode() == Mode::PerMessage {
            self.save().await?;
            let stored = self
                .with_state(|st| Ok(st.record().and_then(|r| r.data.get(key).cloned())))
                .await?;
            value = stored.unwrap_or(value);
        }
        serde_json::from_value(value).map_err(|e| SessionError::serde(key, e))
    }

    /// Saves the changes made so far now, rather than after the handler (per-message mode) or
    /// at disconnect (per-connection mode).
    pub async fn save(&self) -> Result<(), SessionError> {
        let live = &self.live;
        match &self.held {
            None => {
                let mut st = lock(&live.state).await;
                Box::pin(live.persist(&mut st)).await
            }
            Some(held) => match &mut *lock(&held.guard).await {
                Some(st) => Box::pin(live.persist(st)).await,
                None => Ok(()),
            },
        }
    }

    fn check(&self, key: &str, value: &Value) -> Result<(), SessionError> {
        Limits::of(&self.live.shared).check(key, value)
    }

    /// The mode this session is served in.
    pub fn mode(&self) -> crate::Mode {
        self.live.shared.mode
    }

    /// The session's tag for logs: a salted hash, never the id itself.
    pub fn tag(&self) -> &SessionTag {
        self.live.tag()
    }
}

/// Takes a lock that is nearly always free without putting the wait for it in the caller's
/// future (handler futures are moved several times when socketioxide spawns them).
async fn lock<T>(mutex: &Mutex<T>) -> tokio::sync::MutexGuard<'_, T> {
    match mutex.try_lock() {
        Ok(guard) => guard,
        Err(_) => Box::pin(mutex.lock()).await,
    }
}

/// The size and depth limits on values sockets store.
#[derive(Clone, Copy)]
struct Limits {
    bytes: usize,
    depth: usize,
}

impl Limits {
    fn of(shared: &Shared) -> Self {
        Limits {
            bytes: shared.max_value_bytes,
            depth: shared.max_depth,
        }
    }

    fn check(self, key: &str, value: &Value) -> Result<(), SessionError> {
        if depth(value) > self.depth {
            return Err(SessionError::TooDeep {
                key: key.to_owned(),
                limit: self.depth,
            });
        }
        let size = json_len(value);
        if size > self.bytes {
            return Err(SessionError::TooLarge {
                key: key.to_owned(),
                size,
                limit: self.bytes,
            });
        }
        Ok(())
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The length of a value's JSON text, without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).expect("a JSON value encodes");
    count.0
}

/// The value under `key` in the local view, noting the read for a per-message save (which
/// fails if a key its handler read has changed meanwhile).
fn read<'a>(st: &'a mut State, key: &str, per_message: bool) -> Option<&'a Value> {
    if per_message && !st.reads.iter().any(|k| k == key) {
        st.reads.push(key.to_owned());
    }
    st.record()?.data.get(key)
}

/// Writes or removes one key; refuses when the session is gone.
fn set(st: &mut State, key: &str, value: Option<Value>) -> Result<Option<Value>, SessionError> {
    let current = st.record().ok_or(SessionError::Gone)?.data.get(key);
    match (&value, current) {
        (Some(v), Some(c)) if v == c => return Ok(Some(c.clone())),
        (None, None) => return Ok(None),
        _ => {}
    }
    let record = st.record_mut().ok_or(SessionError::Gone)?;
    let old = match &value {
        Some(v) => record.data.insert(key.to_owned(), v.clone()),
        None => record.data.remove(key),
    };
    st.ops.push(Op::Set(key.to_owned(), value));
    Ok(old)
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut st) = self.guard.get_mut().take() else {
            return;
        };
        if st.ops.is_empty() {
            // What this handler read matters to no later save.
            st.reads.clear();
            return;
        }
        if std::thread::panicking() {
            // A handler that panicked half-way must not persist half its changes.
            st.discard();
            return;
        }
        let live = self.live.clone();
        spawn_detached(async move {
            match live.persist(&mut st).await {
                Ok(()) | Err(SessionError::Gone) => {}
                Err(e) => tracing::warn!(
                    session = %live.tag(),
                    error = %e,
                    "could not save the session after a message; its changes were dropped"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_over_the_limits_are_refused() {
        let limits = Limits {
            bytes: 16,
            depth: 3,
        };
        assert!(limits.check("k", &json!("0123456789")).is_ok());
        assert!(matches!(
            limits.check("k", &json!("0123456789abcdefgh")),
            Err(SessionError::TooLarge {
                size: 20,
                limit: 16,
                ..
            })
        ));
        assert!(limits.check("k", &json!([[[1]]])).is_ok());
        assert!(matches!(
            limits.check("k", &json!([[[[1]]]])),
            Err(SessionError::TooDeep { limit: 3, .. })
        ));
        assert_eq!(
            json_len(&json!({"a": [1, "é"]})),
            serde_json::to_vec(&json!({"a": [1, "é"]})).unwrap().len()
        );
        assert_eq!(depth(&json!({"a": {"b": []}})), 3);
        assert_eq!(depth(&json!(1)), 0);
    }
}
