//! Saves from the HTTP side that merge instead of overwrite.
//!
//! tower-sessions loads a record when a request first touches its session and writes the whole
//! record back after the response. Any write that lands in between — a socket handler, another
//! node — is overwritten. Inside a [`MergeLayer`], the stores of this crate remember what each
//! request read; its save is then conditional on the record being unchanged, and on conflict
//! only the keys the request changed are applied to the fresh record. A session deleted in the
//! meantime (a logout in another tab) stays deleted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::task::{Context, Poll};

use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::{ConditionalStore, SaveOutcome, Versioned};

tokio::task_local! {
    /// What the current request read, per session id.
    static READS: RefCell<HashMap<Id, Versioned>>;
}

/// How many times a merged save is retried against a record that keeps changing.
const MAX_ATTEMPTS: u32 = 16;

/// Tower layer that makes the HTTP side's session saves merge with concurrent writes (socket
/// handlers, other nodes) instead of overwriting them. Add it **outside** the
/// `SessionManagerLayer`, over one of the stores in [`store`](crate::store):
///
/// ```
/// # use axum::Router;
/// use socketio_sessions::{MergeLayer, store::MemoryStore};
/// use tower_sessions::SessionManagerLayer;
///
/// let store = MemoryStore::default();
/// let app: Router = Router::new()
///     .layer(SessionManagerLayer::new(store))
///     .layer(MergeLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeLayer;

impl MergeLayer {
    /// The layer.
    pub fn new() -> Self {
        MergeLayer
    }
}

impl<S> Layer<S> for MergeLayer {
    type Service = MergeService<S>;
    fn layer(&self, inner: S) -> MergeService<S> {
        MergeService { inner }
    }
}

/// The service built by [`MergeLayer`].
#[derive(Debug, Clone)]
pub struct MergeService<S> {
    inner: S,
}

impl<S, R> Service<R> for MergeService<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<RefCell<HashMap<Id, Versioned>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        READS.scope(RefCell::new(HashMap::new()), self.inner.call(req))
    }
}

fn in_request() -> bool {
    READS.try_with(|_| ()).is_ok()
}

fn remember(v: &Versioned) {
    READS
        .try_with(|r| r.borrow_mut().insert(v.record.id, v.clone()))
        .ok();
}

fn recalled(id: &Id) -> Option<Versioned> {
    READS
        .try_with(|r| r.borrow().get(id).cloned())
        .ok()
        .flatten()
}

fn forget(id: &Id) {
    READS.try_with(|r| r.borrow_mut().remove(id)).ok();
}

/// `SessionStore::load` of a conditional store: remembers the version inside a request.
pub(crate) async fn load<S: ConditionalStore + ?Sized>(
    store: &S,
    id: &Id,
    plain: impl Future<Output = session_store::Result<Option<Record>>>,
) -> session_store::Result<Option<Record>> {
    if !in_request() {
        return plain.await;
    }
    let loaded = store.load_versioned(id).await?;
    Ok(loaded.map(|v| {
        remember(&v);
        v.record
    }))
}

/// `SessionStore::save` of a conditional store: merges inside a request that read the record.
pub(crate) async fn save<S: ConditionalStore + ?Sized>(
    store: &S,
    record: &Record,
    plain: impl Future<Output = session_store::Result<()>>,
) -> session_store::Result<()> {
    let Some(base) = recalled(&record.id) else {
        return plain.await;
    };
    let changes: Vec<(String, Option<serde_json::Value>)> = record
        .data
        .iter()
        .filter(|(k, v)| base.record.data.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .chain(
            base.record
                .data
                .keys()
                .filter(|k| !record.data.contains_key(*k))
                .map(|k| (k.clone(), None)),
        )
        .collect();
    let mut next = record.clone();
    let mut version = base.version;
    for _ in 0..MAX_ATTEMPTS {
        match store.save_if(&next, &version).await? {
            SaveOutcome::Saved(v) => {
                remember(&Versioned {
                    record: next,
                    version: v,
                });
                return Ok(());
            }
            SaveOutcome::Gone => {
                // Deleted meanwhile (a logout elsewhere): do not bring it back.
                forget(&record.id);
                return Ok(());
            }
            SaveOutcome::Conflict => {
                let Some(fresh) = store.load_versioned(&record.id).await? else {
                    forget(&record.id);
                    return Ok(());
                };
                next = fresh.record;
                for (k, v) in &changes {
                    match v {
                        Some(v) => next.data.insert(k.clone(), v.clone()),
                        None => next.data.remove(k),
                    };
                }
                next.expiry_date = record.expiry_date;
                version = fresh.version;
            }
        }
    }
    Err(session_store::Error::Backend(format!(
        "the session kept changing under this save; gave up after {MAX_ATTEMPTS} attempts"
    )))
}

/// `SessionStore::delete` of a conditional store: forgets what the request read.
pub(crate) fn deleted(id: &Id) {
    forget(id);
}
