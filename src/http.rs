//! The HTTP side: a store wrapper for the app's `SessionManagerLayer` and a request scope.
//!
//! [`HttpStore`] (from [`SocketSessions::http_store`](crate::SocketSessions::http_store)) is the
//! store the HTTP layer should use. It sees what the HTTP side does to sessions:
//!
//! - a **delete** (logout: `flush`/`delete`) ends the sockets of that session on every node with
//!   `session_revoked`; unsaved socket changes of that session are discarded with it;
//! - an **id rotation** (`cycle_id`, e.g. at login: a delete and a new record in one request)
//!   carries every change the session's sockets made over to the new id, saved or not, on this
//!   node or another, then ends the sockets with `session_rotated`, so that clients reconnect
//!   with the new cookie;
//! - a **save** over a store with conditional saves is conditional on the record being what the
//!   request read; on conflict only the keys the request changed are applied to the fresh
//!   record, so socket writes that landed meanwhile are kept, and a session deleted meanwhile
//!   stays deleted;
//! - every store call is bounded by the store timeout; a request whose store calls failed is
//!   answered `503 Service Unavailable` with `{"error": "session_unavailable"}` instead of
//!   tower-sessions' bare 500.
//!
//! All but the last need [`HttpScopeLayer`] around the `SessionManagerLayer`, which gives each
//! request a scope (without it, deletes end sockets as `session_revoked` at once and saves
//! overwrite, and the first such write logs an error).
//! [`SocketSessions::layer`](crate::SocketSessions::layer) includes it, in its place.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::lifecycle::{EndReason, Lifecycle, Reach};
use crate::session::Registry;
use crate::store::{
    FORWARD_KEY, MAX_ATTEMPTS, Merged, SaveOutcome, StoreFailure, StoreHandle, Versioned,
    forwarding_record, save_merged,
};

/// What the current request did to sessions.
#[derive(Default)]
struct Scope {
    /// Records the request read, with their versions.
    reads: HashMap<Id, Versioned>,
    /// Sessions the request deleted: deleted when it is done (a rotation forwards them instead).
    deleted: Vec<(Id, HttpStore)>,
    /// The record the request created (with a delete: an id rotation).
    created: Option<Record>,
    /// Whether a store call failed or timed out.
    failed: bool,
}

tokio::task_local! {
    static SCOPE: RefCell<Scope>;
}

/// Tower layer giving each HTTP request the scope [`HttpStore`] needs. Add it **outside** the
/// `SessionManagerLayer` (after it in axum's `.layer` order).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpScopeLayer;

impl HttpScopeLayer {
    /// The layer.
    pub fn new() -> Self {
        HttpScopeLayer
    }
}

impl<S> Layer<S> for HttpScopeLayer {
    type Service = HttpScope<S>;
    fn layer(&self, inner: S) -> HttpScope<S> {
        HttpScope { inner }
    }
}

/// The service built by [`HttpScopeLayer`].
#[derive(Debug, Clone)]
pub struct HttpScope<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The body of the answer to a request whose session store was unavailable.
const UNAVAILABLE_BODY: &str = r#"{"error":"session_unavailable"}"#;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(SCOPE.scope(RefCell::default(), async move {
            let res = fut.await;
            let (deleted, created, reads) = SCOPE.with(|s| {
                let mut s = s.borrow_mut();
                let reads = s
                    .deleted
                    .iter()
                    .filter_map(|(id, _)| s.reads.get(id).map(|v| (*id, v.clone())))
                    .collect::<HashMap<_, _>>();
                (std::mem::take(&mut s.deleted), s.created.take(), reads)
            });
            // Spawned, and awaited: a logout or rotation completes even if the client goes away
            // (and drops this future) before the answer is written.
            let finished = match deleted.is_empty() {
                true => true,
                false => tokio::spawn(finish_deletes(deleted, created, reads))
                    .await
                    .unwrap_or(false),
            };
            let failed = SCOPE.with(|s| s.borrow().failed);
            match res {
                Ok(res) if !finished || (failed && res.status().is_server_error()) => {
                    Ok(unavailable())
                }
                res => res,
            }
        }))
    }
}

/// The end of a request that deleted sessions. A rotation (`cycle_id`) is one delete and one
/// new record that keeps every key of the deleted one: the socket changes follow it. Anything
/// else is a logout (`flush`, even when the request then started a new session): the sessions
/// are deleted and their sockets told `session_revoked`. Returns whether it all went through.
async fn finish_deletes(
    deleted: Vec<(Id, HttpStore)>,
    created: Option<Record>,
    reads: HashMap<Id, Versioned>,
) -> bool {
    if let ([(old, store)], Some(new)) = (&deleted[..], &created)
        && let Some(base) = reads.get(old)
        && base.record.data.keys().all(|k| new.data.contains_key(k))
    {
        // One deadline over the whole rotation: the flush, the carry-over and the forward.
        let deadline = store.store.timeout() * 4;
        match tokio::time::timeout(deadline, store.forward(*old, new, base)).await {
            Ok(Ok(())) => {
                store
                    .lifecycle
                    .end(old, EndReason::Rotated, Reach::AllNodes)
                    .await;
                return true;
            }
            Ok(Err(failure)) => {
                tracing::warn!(
                    ?failure,
                    "could not carry socket changes over to the rotated session"
                );
            }
            Err(_) => {
                tracing::warn!("carrying socket changes over to the rotated session timed out")
            }
        }
    }
    let mut finished = true;
    for (id, store) in deleted {
        if let Err(failure) = store.store.delete(&id).await {
            tracing::warn!(?failure, "could not delete a session");
            finished = false;
            continue;
        }
        store
            .lifecycle
            .end(&id, EndReason::Revoked, Reach::AllNodes)
            .await;
    }
    finished
}

fn unavailable<B: From<&'static str>>() -> Response<B> {
    let mut res = Response::new(B::from(UNAVAILABLE_BODY));
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

fn in_scope<T>(f: impl FnOnce(&mut Scope) -> T) -> Option<T> {
    SCOPE.try_with(|s| f(&mut s.borrow_mut())).ok()
}

/// Whether a write outside any request scope was already reported: once is enough to point at
/// the installation, and an app without the scope would otherwise log at every request.
static UNSCOPED_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A write came from outside [`HttpScopeLayer`]: the layer is missing, or sits inside the
/// `SessionManagerLayer` (which saves after the inner service returned). Saves then overwrite
/// and logins end sockets as logouts, so say so, once.
fn report_unscoped() {
    use std::sync::atomic::Ordering;
    if !UNSCOPED_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!(
            "a session write reached `http_store()` outside `HttpScopeLayer`: install the \
             sessions with `.layer(sessions.session_layer()).layer(sessions.layer(sio_layer))` \
             (or put `HttpScopeLayer` outside the `SessionManagerLayer`); until then HTTP saves \
             overwrite socket writes and logins end sockets as logouts; logged once"
        );
    }
}

/// Notes a failed store call in the request's scope and hands the error to tower-sessions.
fn failed(failure: StoreFailure) -> session_store::Error {
    in_scope(|s| s.failed = true);
    failure.into()
}

/// The session store for the app's `SessionManagerLayer`: the same records as the socket side,
/// plus what the HTTP side does reaching the sockets. Get it from
/// [`SocketSessions::http_store`](crate::SocketSessions::http_store).
#[derive(Clone)]
pub struct HttpStore {
    store: Arc<StoreHandle>,
    /// This node's live sessions: a rotation saves theirs first.
    registry: Arc<Registry>,
    /// Ends the sockets of deleted and rotated sessions.
    lifecycle: Arc<Lifecycle>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("store", &self.store)
            .finish()
    }
}

/// Refuses a record that uses the key reserved for forwarding records.
fn refuse_reserved(record: &Record) -> session_store::Result<()> {
    match record.data.contains_key(FORWARD_KEY) {
        true => Err(session_store::Error::Encode(format!(
            "session key `{FORWARD_KEY}` is reserved"
        ))),
        false => Ok(()),
    }
}

/// The keys whose value differs from `from` to `to`, as changes.
fn diff(from: &Record, to: &Record) -> Vec<(String, Option<Value>)> {
    to.data
        .iter()
        .filter(|(k, v)| from.data.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .chain(
            from.data
                .keys()
                .filter(|k| !to.data.contains_key(*k))
                .map(|k| (k.clone(), None)),
        )
        .collect()
}

impl HttpStore {
    pub(crate) fn new(
        store: Arc<StoreHandle>,
        registry: Arc<Registry>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        HttpStore {
            store,
            registry,
            lifecycle,
        }
    }

    /// Saves what the request changed on top of the record as stored now.
    async fn merge_save(&self, record: &Record, base: Versioned) -> session_store::Result<()> {
        let mut changes = diff(&base.record, record);
        let mut view = Arc::new(record.clone());
        let date = || record.expiry_date;
        let merged = save_merged(
            &*self.store,
            record.id,
            Some((&mut view, &base.version)),
            &mut changes,
            &date,
        )
        .await;
        match merged {
            Ok(Merged::Saved {
                id,
                record: saved,
                version,
            }) => {
                let record = Arc::unwrap_or_clone(saved.unwrap_or(view));
                in_scope(|s| s.reads.insert(id, Versioned { record, version }));
                Ok(())
            }
            // Deleted meanwhile (a logout elsewhere): it stays deleted.
            Ok(Merged::Gone) => Ok(()),
            Err(crate::store::MergeError::Store(f)) => Err(failed(f)),
            Err(e) => Err(session_store::Error::Backend(
                crate::SessionError::from(e).to_string(),
            )),
        }
    }

    /// Rotation: the old session's socket changes are carried over to the new record (keys the
    /// request itself changed keep the request's value), then the old record is replaced by a
    /// record forwarding to the new id, which later socket saves follow.
    async fn forward(&self, old: Id, new: &Record, base: &Versioned) -> Result<(), StoreFailure> {
        // This node's sockets save what they hold first (bounded: a per-message handler may
        // hold the session); other nodes' follow the forward.
        if let Some(live) = self.registry.get(&old) {
            let _ = tokio::time::timeout(self.store.timeout(), live.flush()).await;
        }
        let request_changed: Vec<String> = diff(&base.record, new)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = self.store.load(&old).await? else {
                return Ok(());
            };
            let mut carried = diff(&base.record, &current.record);
            carried.retain(|(k, _)| !request_changed.contains(k));
            if !carried.is_empty() {
                let date = || new.expiry_date;
                match save_merged(&*self.store, new.id, None, &mut carried, &date).await {
                    Ok(_) => {}
                    Err(crate::store::MergeError::Store(f)) => return Err(f),
                    Err(e) => {
                        tracing::warn!(error = %crate::SessionError::from(e), "rotation: socket changes not carried over");
                    }
                }
            }
            match self
                .store
                .save_if(&forwarding_record(old, new.id), &current.version)
                .await?
            {
                SaveOutcome::Saved(_) | SaveOutcome::Gone => return Ok(()),
                // A socket saved meanwhile: carry that too.
                SaveOutcome::Conflict => continue,
            }
        }
        // Still changing after every attempt: forward it anyway, the last writes may be lost.
        self.store.save(&forwarding_record(old, new.id)).await
    }
}

#[async_trait]
impl SessionStore for HttpStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        refuse_reserved(record)?;
        self.store.create(record).await.map_err(failed)?;
        if in_scope(|s| s.created = Some(record.clone())).is_none() {
            report_unscoped();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        refuse_reserved(record)?;
        match in_scope(|s| s.reads.get(&record.id).cloned()) {
            Some(Some(base)) if self.store.is_conditional() => {
                return self.merge_save(record, base).await;
            }
            Some(_) => {}
            None => report_unscoped(),
        }
        self.store.save(record).await.map_err(failed)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let loaded = self.store.load(id).await.map_err(failed)?;
        Ok(loaded.map(|v| {
            let record = v.record.clone();
            in_scope(|s| s.reads.insert(*id, v));
            record
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let deferred = in_scope(|s| s.deleted.push((*id, self.clone())));
        if deferred.is_none() {
            report_unscoped();
            self.store.delete(id).await.map_err(failed)?;
            self.lifecycle
                .end(id, EndReason::Revoked, Reach::AllNodes)
                .await;
        }
        Ok(())
    }
}
