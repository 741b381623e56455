//! What handlers hold: the socket's binding to its live session, and the [`SocketSession`]
//! handle with one access rule per mode.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::socket::Sid;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::Instrument;

use super::flood::{FloodWatch, Refusal};
use super::live::LiveSession;
use super::state::{State, Updater};
use crate::config::Mode;
use crate::error::SessionError;
use crate::observe::{BOUND_SOCKETS, Held};
use crate::tag::SessionTag;
use crate::task::{lock, spawn_detached};

/// Whether a socket is still connected: the binding asks its socket, whatever its adapter.
pub(crate) trait Connected: Send + Sync {
    fn connected(&self) -> bool;
    /// Ends the socket (a client flooding its session).
    fn disconnect(self: Arc<Self>);
}

/// Which of a socket's handlers a handle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The connect handler: it may use the state the handshake just loaded.
    Connect,
    /// A message handler: dropped if its socket is gone before its turn.
    Message,
    /// The disconnect handler: its socket is gone, and it still gets its turn.
    Disconnect,
}

/// A socket's tie to its live session, kept in the socket's extensions. In per-connection mode,
/// dropping it (when the socket is gone) saves what the socket changed.
#[derive(Clone)]
pub(crate) struct Binding(Arc<BindingInner>);

struct BindingInner {
    live: Arc<LiveSession>,
    /// Weak: the socket holds the binding in its extensions, so a strong pointer would keep the
    /// socket alive forever. Handlers ask it whether their socket is gone before their turn.
    socket: Weak<dyn Connected>,
    /// The socket's id, counted among its live session's sockets while the binding lives.
    sid: Sid,
    /// The socket's refused events, counted by its handlers' holds (which hold the binding).
    flood: FloodWatch,
    /// One unit of the bound-sockets gauge, given back when the socket's binding is dropped
    /// (after the socket, once its running handlers, which hold the binding, are done).
    _bound: Held,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Binding").field(&self.0.live).finish()
    }
}

impl Binding {
    /// Binds socket `sid` to `live` (counted among its sockets until the binding is dropped).
    pub(crate) fn new(live: Arc<LiveSession>, socket: Weak<dyn Connected>, sid: Sid) -> Self {
        live.bind(sid);
        Binding(Arc::new(BindingInner {
            live,
            socket,
            sid,
            flood: FloodWatch::default(),
            _bound: Held::new(BOUND_SOCKETS),
        }))
    }

    pub(crate) fn live(&self) -> &Arc<LiveSession> {
        &self.0.live
    }

    /// A handler's handle, for the handler's phase; a message counts as the session's activity
    /// (rolling expiry).
    pub(crate) fn handle(&self, phase: Phase) -> SocketSession {
        let live = self.0.live.clone();
        if phase == Phase::Message {
            live.activity();
        }
        let access = match live.mode() {
            // Per connection a handle is just the live session: nothing to allocate per event.
            Mode::PerConnection => Access::PerConnection,
            Mode::PerMessage => Access::PerMessage(Arc::new(Hold {
                binding: self.0.clone(),
                guard: Mutex::new(None),
                phase,
                unverified: AtomicBool::new(false),
                span: handler_span(&live),
            })),
        };
        SocketSession { live, access }
    }
}

impl Drop for BindingInner {
    fn drop(&mut self) {
        self.live.unbind(self.sid);
        // Nothing unsaved (the common case): no task to spawn for a save with nothing to do.
        if self.live.mode() == Mode::PerConnection && self.live.has_unsaved() {
            let live = self.live.clone();
            spawn_detached(async move {
                live.flush().await;
            });
        }
    }
}

/// The session of a socket, as handlers see it (the `session` argument of Node's
/// socket.io-sessions).
///
/// Extract it in connect and message handlers; in disconnect handlers use
/// [`MaybeSocketSession`](crate::MaybeSocketSession). Values are stored as JSON in the same
/// record the HTTP side reads, so `session.get::<String>("user")` sees what an axum handler
/// inserted with `session.insert("user", ..)`.
///
/// In per-message mode the first operation of a handler reloads the session and locks it for
/// this session on this node until the handler returns; changes are then saved. (On a store
/// that [refuses late saves](crate::store::ConditionalStore::refuses_late_saves), a first
/// operation that is an [`update`](SocketSession::update) skips the reload: it is saved before
/// it returns by a compare-and-set on the version held, which goes through only if the record
/// is unchanged, and is re-run on the stored record otherwise.) Call
/// [`save`](SocketSession::save) before acknowledging when the client must be able to read the
/// change over HTTP as soon as it gets the ack.
#[derive(Clone)]
pub struct SocketSession {
    live: Arc<LiveSession>,
    access: Access,
}

/// How a handle reaches the state.
#[derive(Clone)]
enum Access {
    /// Lock the state for each operation.
    PerConnection,
    /// This handler's hold on the session, shared by clones of the handle.
    PerMessage(Arc<Hold>),
}

/// A per-message handler's hold on its session: the session lock, taken at the first
/// operation and released (after saving) when the handler's last handle is dropped.
struct Hold {
    /// The socket's binding: its live session (the hold's drop saves through it), its socket
    /// and its refused events. Shared, not copied field by field: one pointer per handler.
    binding: Arc<BindingInner>,
    guard: Mutex<Option<OwnedMutexGuard<State>>>,
    phase: Phase,
    /// The held state was not reloaded for this handler (its first operation was an `update`
    /// on a store that refuses late saves) and no save has confirmed it: the next operation
    /// reloads first, so that a handler whose update failed never reads a stale record.
    /// Changed under `guard` only.
    unverified: AtomicBool,
    /// The handler's span: its reload and its save run in it, wherever they are polled.
    span: tracing::Span,
}

/// A handler's span, carrying the session's tag (never its id). DEBUG, so that an app logging
/// at INFO creates no span per event; none at all without a tracing subscriber, where a span
/// would only be mirrored to `log` records (tracing's `log` feature, which axum turns on, does
/// that work on every poll even when nothing logs).
fn handler_span(live: &LiveSession) -> tracing::Span {
    let subscribed =
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
    if !subscribed {
        return tracing::Span::none();
    }
    tracing::debug_span!("socketio_sessions.handler", session = %live.tag())
}

/// `fut`, boxed, run in `span` unless the span is disabled (entering it would do nothing).
fn boxed_in<'a, R>(
    fut: impl Future<Output = Result<R, SessionError>> + Send + 'a,
    span: &tracing::Span,
) -> Waiting<'a, R> {
    if span.is_disabled() {
        Box::pin(fut)
    } else {
        Box::pin(fut.instrument(span.clone()))
    }
}

impl fmt::Debug for SocketSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSession")
            .field("tag", self.live.tag())
            .finish()
    }
}

/// A session operation waiting for its state, boxed.
type Waiting<'a, R> = Pin<Box<dyn Future<Output = Result<R, SessionError>> + Send + 'a>>;

/// The future of a session operation. Hand-written rather than an `async fn`: a handler's future
/// then holds only the session, the operation's closure and a step, which matters because
/// socketioxide moves the whole handler future several times when it spawns it (an `async fn`
/// nested in another keeps each level's arguments and locals). On the first poll `f` runs at
/// once if the state is at hand, which it nearly always is; otherwise the wait is boxed.
struct StateOp<'a, F, R> {
    session: &'a SocketSession,
    step: Step<'a, F, R>,
}

enum Step<'a, F, R> {
    /// Not polled yet.
    Start(F),
    /// Refused before any state was needed (a value that cannot be serialized or is too big).
    Refused(SessionError),
    /// Waiting for the state, or for a save.
    Waiting(Waiting<'a, R>),
    /// Polled to completion.
    Done,
}

// `F` is moved out by value and never pinned; the boxed future is pinned on the heap.
impl<F, R> Unpin for StateOp<'_, F, R> {}

impl<'a, F, R> StateOp<'a, F, R> {
    fn refused(session: &'a SocketSession, e: SessionError) -> Self {
        StateOp {
            session,
            step: Step::Refused(e),
        }
    }

    fn waiting(session: &'a SocketSession, waiting: Waiting<'a, R>) -> Self {
        StateOp {
            session,
            step: Step::Waiting(waiting),
        }
    }
}

impl<'a, F, R: 'a> Future for StateOp<'a, F, R>
where
    F: FnOnce(&mut State) -> Result<R, SessionError> + Send + 'a,
{
    type Output = Result<R, SessionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut waiting = match std::mem::replace(&mut this.step, Step::Done) {
            Step::Start(f) => match this.session.try_now(f) {
                Ok(out) => return Poll::Ready(out),
                Err(f) => this.session.wait_boxed(f),
            },
            Step::Refused(e) => return Poll::Ready(Err(e)),
            Step::Waiting(waiting) => waiting,
            Step::Done => panic!("a session operation polled after it completed"),
        };
        let polled = waiting.as_mut().poll(cx);
        if polled.is_pending() {
            this.step = Step::Waiting(waiting);
        }
        polled
    }
}

/// Counts a handler waiting for its session's turn while it lives.
struct InLine<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SocketSession {
    /// Runs `f` on the up-to-date state, under the session lock, when polled.
    fn with_state<R, F>(&self, f: F) -> StateOp<'_, F, R>
    where
        F: FnOnce(&mut State) -> Result<R, SessionError>,
    {
        StateOp {
            session: self,
            step: Step::Start(f),
        }
    }

    /// Waits for the state (and reloads it), then runs `f`: boxed, so that this future is not
    /// part of every handler's future. The state is nearly always at hand.
    fn wait_boxed<'a, R: 'a, F>(&'a self, f: F) -> Waiting<'a, R>
    where
        F: FnOnce(&mut State) -> Result<R, SessionError> + Send + 'a,
    {
        match &self.access {
            Access::PerMessage(hold) => boxed_in(self.wait_for_state(f), &hold.span),
            Access::PerConnection => boxed_in(self.wait_for_state(f), &handler_span(&self.live)),
        }
    }

    /// Runs `f` at once if the state is at hand: per connection, when the lock is free; per
    /// message, when this handler already holds it. Otherwise hands `f` back.
    fn try_now<R, F>(&self, f: F) -> Result<Result<R, SessionError>, F>
    where
        F: FnOnce(&mut State) -> Result<R, SessionError>,
    {
        let live = &self.live;
        match &self.access {
            Access::PerConnection => match live.state.try_lock() {
                Ok(mut st) => {
                    let out = f(&mut st);
                    live.changed(&st);
                    Ok(out)
                }
                Err(_) => Err(f),
            },
            Access::PerMessage(hold) => match hold.guard.try_lock() {
                Ok(mut guard) => match &mut *guard {
                    Some(st) if !hold.unverified.load(Ordering::Acquire) => Ok(f(st)),
                    _ => Err(f),
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
        match &self.access {
            Access::PerConnection => {
                let mut st = live.state.lock().await;
                let out = f(&mut st);
                live.changed(&st);
                out
            }
            Access::PerMessage(hold) => {
                let mut guard = hold.guard.lock().await;
                let st = hold.caught_up(&mut guard, CatchUp::Reload).await?;
                f(st)
            }
        }
    }

    /// Whether the session still exists (in per-message mode: in the store, as of this
    /// handler's reload). Writes to a session that no longer exists fail with
    /// [`SessionError::Gone`].
    pub fn exists(&self) -> impl Future<Output = Result<bool, SessionError>> + Send + '_ {
        self.with_state(|st| Ok(st.base.is_some()))
    }

    /// The value under `key`, deserialized; `None` if absent or if the session is gone.
    pub fn get<'a, T: DeserializeOwned + 'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<T>, SessionError>> + Send + 'a {
        // Deserialized under the lock, from the stored value: no copy of it.
        let track = self.tracks_reads();
        self.with_state(move |st| {
            st.read(key, track)
                .map(T::deserialize)
                .transpose()
                .map_err(|e| SessionError::serde(key, e))
        })
    }

    /// The JSON value under `key`.
    pub fn get_value<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<Value>, SessionError>> + Send + 'a {
        let track = self.tracks_reads();
        self.with_state(move |st| Ok(st.read(key, track).cloned()))
    }

    /// Stores `value` under `key`.
    pub fn insert<'a, T: Serialize>(
        &'a self,
        key: &'a str,
        value: T,
    ) -> impl Future<Output = Result<(), SessionError>> + Send + 'a {
        // Serialized and checked now, so that `value` is not kept in the future and a bad value
        // is refused without waiting for the state.
        let checked = serde_json::to_value(value)
            .map_err(|e| SessionError::serde(key, e))
            .and_then(|v| self.live.policy.limits.check(key, &v).map(|()| v));
        match checked {
            Ok(value) => self.with_state(move |st| st.set(key, Some(value)).map(drop)),
            Err(e) => StateOp::refused(self, e),
        }
    }

    /// Removes `key`, returning its old value.
    pub fn remove<'a, T: DeserializeOwned + 'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<T>, SessionError>> + Send + 'a {
        self.with_state(move |st| {
            st.set(key, None)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| SessionError::serde(key, e))
        })
    }

    /// Replaces the value under `key` with `f(old)` and returns the new value, atomically:
    /// nothing else changes the key in between, on this node or any other. If another writer
    /// changed the record first, `f` is run again on the fresh value, so `f` must be a pure
    /// function of its argument (counters, appending to a list).
    ///
    /// In per-message mode the change is saved before `update` returns, so the value returned
    /// is the one stored; as a handler's first operation, `f` may first see the value this
    /// node last knew (the save then conflicts and `f` runs again on the stored one). In
    /// per-connection mode it is saved with the others (and `f` re-run then if needed).
    ///
    /// ```no_run
    /// # use socketio_sessions::{SessionError, SocketSession};
    /// # async fn f(session: SocketSession) -> Result<(), SessionError> {
    /// let count: u64 = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// # Ok(()) }
    /// ```
    pub fn update<'a, T, F>(
        &'a self,
        key: &'a str,
        mut f: F,
    ) -> impl Future<Output = Result<T, SessionError>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + 'static,
        F: FnMut(Option<T>) -> T + Send + 'static,
    {
        let limits = self.live.policy.limits;
        if let Err(e) = limits.check(key, &Value::Null) {
            return StateOp::refused(self, e);
        }
        let updater: Updater = Box::new(move |key: &str, old: Option<Value>| {
            let old = old
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| SessionError::serde(key, e))?;
            let new = serde_json::to_value(f(old)).map_err(|e| SessionError::serde(key, e))?;
            limits.check(key, &new)?;
            Ok(new)
        });
        let typed =
            move |value| serde_json::from_value(value).map_err(|e| SessionError::serde(key, e));
        match &self.access {
            Access::PerMessage(hold) => {
                let saved = async move { typed(hold.update_saved(key, updater).await?) };
                StateOp::waiting(self, boxed_in(saved, &hold.span))
            }
            Access::PerConnection => {
                self.with_state(move |st| typed(st.update(key, updater).map_err(|(e, _)| e)?))
            }
        }
    }

    /// Saves the changes made so far now, rather than after the handler (per-message mode) or
    /// at disconnect (per-connection mode).
    pub async fn save(&self) -> Result<(), SessionError> {
        let live = &self.live;
        match &self.access {
            Access::PerConnection => {
                let mut st = lock(&live.state).await;
                boxed_in(live.persist(&mut st), &handler_span(live)).await
            }
            Access::PerMessage(hold) => match &mut *lock(&hold.guard).await {
                Some(st) => boxed_in(live.persist(st), &hold.span).await,
                None => Ok(()),
            },
        }
    }

    /// The mode this session is served in.
    pub fn mode(&self) -> Mode {
        self.live.mode()
    }

    /// The session's tag for logs: a salted hash, never the id itself.
    pub fn tag(&self) -> &SessionTag {
        self.live.tag()
    }

    /// Per message, reads are noted: a save fails if a key the handler read changed meanwhile.
    fn tracks_reads(&self) -> bool {
        matches!(self.access, Access::PerMessage(_))
    }
}

/// How a per-message handler's first operation brings the session's state up to date.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Reload it from the store (unless the connect handler's load is still fresh).
    Reload,
    /// An `update` saved before it returns, on a store that refuses late saves: the save's
    /// compare-and-set checks the version held, so the reload is skipped.
    SaveChecks,
}

impl Hold {
    /// The handler's state, taken (waiting for the session's turn) and caught up on the first
    /// operation, or reloaded if an earlier operation left it [unverified](Self::unverified).
    async fn caught_up<'g>(
        &self,
        guard: &'g mut Option<OwnedMutexGuard<State>>,
        catch: CatchUp,
    ) -> Result<&'g mut State, SessionError> {
        let live = &self.binding.live;
        match guard {
            Some(st) => {
                self.verify(st).await?;
                Ok(st)
            }
            slot @ None => {
                let mut st = match live.state.clone().try_lock_owned() {
                    Ok(st) => st,
                    Err(_) => self.wait_turn().await?,
                };
                st.unpack();
                if self.phase == Phase::Connect && st.fresh {
                    // Loaded by the handshake just now.
                } else if catch == CatchUp::SaveChecks
                    && live.store.refuses_late_saves()
                    && st.base.is_some()
                    && st.ops.is_empty()
                {
                    st.reads.clear();
                    self.unverified.store(true, Ordering::Release);
                } else if let Err(e) = live.refresh(&mut st).await {
                    live.rest(&mut st);
                    return Err(e);
                }
                st.fresh = false;
                Ok(slot.insert(st))
            }
        }
    }

    /// Reloads the held state if it is [unverified](Self::unverified).
    async fn verify(&self, st: &mut State) -> Result<(), SessionError> {
        if self.unverified.load(Ordering::Acquire) {
            self.binding.live.refresh(st).await?;
            self.unverified.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Applies `updater` and saves it before returning, under one hold of the handler's state:
    /// no clone of the handle runs between the change and its save. Returns the value stored.
    async fn update_saved(&self, key: &str, updater: Updater) -> Result<Value, SessionError> {
        let live = &self.binding.live;
        let mut guard = self.guard.lock().await;
        let st = self.caught_up(&mut guard, CatchUp::SaveChecks).await?;
        let value = match st.update(key, updater) {
            Ok(value) => value,
            // Run on the version held, not reloaded: the stored value may not fail it.
            Err((_, updater)) if self.unverified.load(Ordering::Acquire) => {
                self.verify(st).await?;
                st.update(key, updater).map_err(|(e, _)| e)?
            }
            Err((e, _)) => return Err(e),
        };
        live.persist(st).await?;
        // Saved by compare-and-set (re-run on the stored record after a conflict): the state is
        // the stored record.
        self.unverified.store(false, Ordering::Release);
        Ok(st
            .record()
            .and_then(|r| r.data.get(key).cloned())
            .unwrap_or(value))
    }

    /// Waits for the session's turn, unless too many handlers already wait (refused at once)
    /// or the socket is gone by the time the turn comes (the handler's changes are not made).
    async fn wait_turn(&self) -> Result<OwnedMutexGuard<State>, SessionError> {
        let BindingInner {
            live,
            socket,
            flood,
            ..
        } = &*self.binding;
        let waiting = InLine(&live.waiting);
        let limit = live.policy.max_waiting;
        if live.waiting.fetch_add(1, Ordering::AcqRel) >= limit {
            match flood.refuse(limit) {
                Refusal::First => tracing::warn!(
                    session = %live.tag(),
                    limit,
                    "too many handlers waiting for this session; events refused"
                ),
                Refusal::Again => {}
                Refusal::Flooding => {
                    tracing::warn!(
                        session = %live.tag(),
                        limit,
                        "a socket sent more refused events in a second than its session's \
                         queue holds; disconnected"
                    );
                    if let Some(socket) = socket.upgrade() {
                        socket.disconnect();
                    }
                }
            }
            return Err(SessionError::Busy);
        }
        let st = live.state.clone().lock_owned().await;
        drop(waiting);
        // A message handler queued behind others is dropped once its socket is gone; the
        // disconnect handler runs after the socket is gone by definition, and gets its turn.
        if self.phase != Phase::Disconnect && !socket.upgrade().is_some_and(|s| s.connected()) {
            return Err(SessionError::SocketClosed);
        }
        Ok(st)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(mut st) = self.guard.get_mut().take() else {
            return;
        };
        let live = &self.binding.live;
        // Nothing to save: what this handler read matters to no later save. A handler that
        // panicked half-way must not persist half its changes: they are undone.
        if st.ops.is_empty() || std::thread::panicking() {
            st.discard();
            live.rest(&mut st);
            return;
        }
        let live = live.clone();
        let span = self.span.clone();
        spawn_detached(
            async move {
                match live.persist(&mut st).await {
                    Ok(()) | Err(SessionError::Gone) => {}
                    Err(e) => tracing::warn!(
                        session = %live.tag(),
                        error = %e,
                        "could not save the session after a message; its changes were dropped"
                    ),
                }
                live.rest(&mut st);
            }
            .instrument(span),
        );
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use serde_json::json;
    use time::OffsetDateTime;
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};

    use super::*;
    use crate::config::Config;
    use crate::id::SessionKey;
    use crate::session::Expiries;
    use crate::session::policy::Policy;
    use crate::store::sqlx::sqlite::SqlitePoolOptions;
    use crate::store::{
        ConditionalStore, MemoryStore, SaveOutcome, SqliteStore, StoreHandle, Version, Versioned,
    };
    use crate::task::Stop;

    struct Open;

    impl Connected for Open {
        fn connected(&self) -> bool {
            true
        }
        fn disconnect(self: Arc<Self>) {}
    }

    /// Whether the live session holds its record's bytes only (taken without waiting: a busy
    /// session is not at rest).
    fn at_rest(live: &LiveSession) -> bool {
        live.state
            .try_lock()
            .is_ok_and(|st| st.base.as_ref().is_some_and(|b| b.record.is_none()))
    }

    /// A wrapper that hands records through unchanged but does not say that its versions hold
    /// them: the default, for wrappers that may change records on the way.
    #[derive(Debug)]
    struct Opaque(SqliteStore);

    #[async_trait::async_trait]
    impl SessionStore for Opaque {
        async fn create(&self, r: &mut Record) -> tower_sessions::session_store::Result<()> {
            self.0.create(r).await
        }
        async fn save(&self, r: &Record) -> tower_sessions::session_store::Result<()> {
            self.0.save(r).await
        }
        async fn load(&self, id: &Id) -> tower_sessions::session_store::Result<Option<Record>> {
            self.0.load(id).await
        }
        async fn delete(&self, id: &Id) -> tower_sessions::session_store::Result<()> {
            self.0.delete(id).await
        }
    }

    #[async_trait::async_trait]
    impl ConditionalStore for Opaque {
        async fn load_versioned(
            &self,
            id: &Id,
        ) -> tower_sessions::session_store::Result<Option<Versioned>> {
            self.0.load_versioned(id).await
        }
        async fn save_if(
            &self,
            r: &Record,
            v: &Version,
        ) -> tower_sessions::session_store::Result<SaveOutcome> {
            self.0.save_if(r, v).await
        }
    }

    /// A SQLite store holding one session `{count: 1}`, and the session's id.
    async fn sqlite_with_a_session() -> (SqliteStore, Id) {
        // One connection: an in-memory SQLite database lives as long as its connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let sqlite = SqliteStore::new(pool);
        sqlite.migrate().await.unwrap();
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([("count".to_owned(), json!(1))]),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        sqlite.create(&mut record).await.unwrap();
        (sqlite, record.id)
    }

    /// A per-message live session of `id` on `store`, loaded as a handshake loads it.
    async fn loaded(store: Arc<dyn ConditionalStore>, id: Id) -> Arc<LiveSession> {
        let store = StoreHandle::conditional(store, Duration::from_secs(5), None);
        let live = Arc::new(LiveSession::new(
            SessionKey::tower(id, false),
            Arc::new(store),
            Arc::new(Policy::new(&Config::default())),
            Arc::new(Stop::default()),
            Arc::new(Expiries::default()),
        ));
        let seen = live.load_for_connect(|data| data["count"].clone()).await;
        assert_eq!(seen.unwrap(), Some(json!(1)));
        live
    }

    #[tokio::test]
    async fn a_wrapper_that_does_not_say_its_versions_hold_records_keeps_them_decoded() {
        let (sqlite, id) = sqlite_with_a_session().await;
        let live = loaded(Arc::new(Opaque(sqlite)), id).await;
        let st = live.state.try_lock().unwrap();
        assert!(st.base.as_ref().is_some_and(|b| b.record.is_some()));
    }

    #[tokio::test]
    async fn a_live_session_knows_its_sockets_until_their_bindings_go() {
        let (sqlite, id) = sqlite_with_a_session().await;
        let live = loaded(Arc::new(sqlite), id).await;
        let socket: Arc<dyn Connected> = Arc::new(Open);
        let (a, b) = (Sid::new(), Sid::new());
        let first = Binding::new(live.clone(), Arc::downgrade(&socket), a);
        let second = Binding::new(live.clone(), Arc::downgrade(&socket), b);
        let handler = first.clone();
        assert_eq!(live.sockets(), [a, b]);
        drop(first);
        assert_eq!(live.sockets(), [a, b], "a handler's clone keeps it bound");
        drop(handler);
        assert_eq!(live.sockets(), [b]);
        drop(second);
        assert!(live.sockets().is_empty());
    }

    /// A socket that closes when told.
    struct Closing(AtomicBool);

    impl Connected for Closing {
        fn connected(&self) -> bool {
            !self.0.load(Ordering::Acquire)
        }
        fn disconnect(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn the_disconnect_handler_waits_its_turn_and_reads_a_message_handler_queued_is_dropped() {
        let store = MemoryStore::default();
        let mut record = Record {
            id: Id::default(),
            data: [
                ("user".to_owned(), json!("bob")),
                ("count".to_owned(), json!(1)),
            ]
            .into_iter()
            .collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        let live = loaded(Arc::new(store), record.id).await;
        let socket = Arc::new(Closing(AtomicBool::new(false)));
        let weak = Arc::downgrade(&(socket.clone() as Arc<dyn Connected>));
        let binding = Binding::new(live.clone(), weak, Sid::new());
        // The socket's last message handler still holds the state when the socket goes away.
        let last = binding.handle(Phase::Message);
        assert_eq!(
            last.get::<String>("user").await.unwrap().as_deref(),
            Some("bob")
        );
        socket.0.store(true, Ordering::Release);
        let (queued, at_disconnect) = (
            binding.handle(Phase::Message),
            binding.handle(Phase::Disconnect),
        );
        let queued = tokio::spawn(async move { queued.get::<String>("user").await });
        let read = tokio::spawn(async move { at_disconnect.get::<String>("user").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(last);
        assert!(matches!(
            queued.await.unwrap(),
            Err(SessionError::SocketClosed)
        ));
        assert_eq!(read.await.unwrap().unwrap().as_deref(), Some("bob"));
    }

    #[tokio::test]
    async fn a_handler_that_panics_half_way_leaves_none_of_its_changes_behind() {
        let store = MemoryStore::default();
        let mut record = Record {
            id: Id::default(),
            data: [("count".to_owned(), json!(1))].into_iter().collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        let live = loaded(Arc::new(store.clone()), record.id).await;
        let socket: Arc<dyn Connected> = Arc::new(Open);
        let binding = Binding::new(live.clone(), Arc::downgrade(&socket), Sid::new());
        let handler = binding.clone();
        let panicked = tokio::spawn(async move {
            let session = handler.handle(Phase::Message);
            session.insert("half", 1).await.unwrap();
            session.insert("count", 5).await.unwrap();
            session.remove::<u64>("count").await.unwrap();
            panic!("half-way");
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        // The next handler sees the session as stored, and its own save carries only its own.
        let session = binding.handle(Phase::Message);
        assert_eq!(session.get::<u64>("half").await.unwrap(), None);
        assert_eq!(session.get::<u64>("count").await.unwrap(), Some(1));
        session.insert("next", 2).await.unwrap();
        drop(session);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let stored = loop {
            let stored = store.load(&record.id).await.unwrap().unwrap();
            if stored.data.contains_key("next") {
                break stored;
            }
            assert!(tokio::time::Instant::now() < deadline, "never saved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(stored.data.get("half"), None);
        assert_eq!(stored.data["count"], json!(1));
    }

    #[tokio::test]
    async fn a_per_message_session_keeps_only_its_stored_bytes_between_handlers() {
        let (sqlite, id) = sqlite_with_a_session().await;
        let live = loaded(Arc::new(sqlite), id).await;
        assert!(at_rest(&live), "at rest after the handshake's load");

        let socket: Arc<dyn Connected> = Arc::new(Open);
        let binding = Binding::new(live.clone(), Arc::downgrade(&socket), Sid::new());
        // The connect handler reads the handshake's load; an update is saved before it returns.
        let session = binding.handle(Phase::Connect);
        assert_eq!(session.get::<u64>("count").await.unwrap(), Some(1));
        drop(session);
        assert!(at_rest(&live), "at rest after a handler that read");
        let session = binding.handle(Phase::Message);
        let count = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1);
        assert_eq!(count.await.unwrap(), 2);
        drop(session);
        assert!(at_rest(&live), "at rest after an update");
        // An update refused by the value limit changed nothing.
        let session = binding.handle(Phase::Message);
        let big = session.update("blob", |_: Option<String>| "x".repeat(128 * 1024));
        assert!(matches!(big.await, Err(SessionError::TooLarge { .. })));
        drop(session);
        assert!(at_rest(&live), "at rest after a refused update");
        // An insert is saved after its handler, by a task of its own.
        let session = binding.handle(Phase::Message);
        session.insert("name", "ann").await.unwrap();
        drop(session);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !at_rest(&live) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never at rest after a save"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let session = binding.handle(Phase::Message);
        assert_eq!(session.get::<u64>("count").await.unwrap(), Some(2));
        assert_eq!(
            session.get::<String>("name").await.unwrap().as_deref(),
            Some("ann")
        );
        drop(session);
        // What the next handler decoded is what the store holds.
        let stored = live.store.load(&id).await.unwrap().unwrap().record;
        assert_eq!(stored.data["count"], json!(2));
        assert_eq!(stored.data["name"], json!("ann"));
    }
}
