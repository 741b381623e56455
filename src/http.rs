//! The HTTP side: a store wrapper for the app's `SessionManagerLayer` and a request scope.
//!
//! [`HttpStore`] (from [`SocketSessions::http_store`](crate::SocketSessions::http_store)) is the
//! store the HTTP layer should use. It sees what the HTTP side does to sessions:
//!
//! - a **delete** (logout: `flush`/`delete`) ends the sockets of that session on every node with
//!   `session_revoked`; a delete followed by a new record in the same request (`cycle_id`, e.g.
//!   at login) ends them with `session_rotated`, so clients reconnect with the new cookie;
//! - a **save** over a store with conditional saves is conditional on the record being what the
//!   request read; on conflict only the keys the request changed are applied to the fresh
//!   record, so socket writes that landed meanwhile are kept, and a session deleted meanwhile
//!   stays deleted.
//!
//! Both need [`HttpScopeLayer`] around the `SessionManagerLayer`, which gives each request a
//! scope (without it, deletes end sockets as `session_revoked` and saves overwrite).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::config::Shared;
use crate::lifecycle::EndReason;
use crate::store::{Backend, ConditionalStore, SaveOutcome, Versioned};

/// What the current request did to sessions.
#[derive(Default)]
struct Scope {
    /// Records the request read, with their versions.
    reads: HashMap<Id, Versioned>,
    /// Sessions the request deleted, to end on every node when it is done.
    deleted: Vec<(Id, Arc<Shared>)>,
    /// Whether the request created a session (with a delete: an id rotation).
    created: bool,
}

tokio::task_local! {
    static SCOPE: RefCell<Scope>;
}

/// How many times a merged save is retried against a record that keeps changing.
const MAX_ATTEMPTS: u32 = 16;

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

impl<S, R> Service<R> for HttpScope<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(SCOPE.scope(RefCell::default(), async move {
            let res = fut.await;
            let (deleted, created) = SCOPE.with(|s| {
                let mut s = s.borrow_mut();
                (std::mem::take(&mut s.deleted), s.created)
            });
            let reason = if created {
                EndReason::Rotated
            } else {
                EndReason::Revoked
            };
            for (id, shared) in deleted {
                shared.end(&id, reason, false).await;
            }
            res
        }))
    }
}

fn in_scope<T>(f: impl FnOnce(&mut Scope) -> T) -> Option<T> {
    SCOPE.try_with(|s| f(&mut s.borrow_mut())).ok()
}

/// The session store for the app's `SessionManagerLayer`: the same records as the socket side,
/// plus what the HTTP side does reaching the sockets. Get it from
/// [`SocketSessions::http_store`](crate::SocketSessions::http_store).
#[derive(Clone)]
pub struct HttpStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("store", &self.shared.store)
            .finish()
    }
}

impl HttpStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        HttpStore { shared }
    }

    fn plain(&self) -> &dyn SessionStore {
        match self.shared.store.backend() {
            Backend::Plain(s) => s.as_ref(),
            Backend::Conditional(s) => s.as_ref(),
        }
    }

    fn conditional(&self) -> Option<&dyn ConditionalStore> {
        match self.shared.store.backend() {
            Backend::Conditional(s) => Some(s.as_ref()),
            Backend::Plain(_) => None,
        }
    }

    /// Saves what the request changed on top of the record as stored now.
    async fn merge_save(
        &self,
        store: &dyn ConditionalStore,
        record: &Record,
        base: Versioned,
    ) -> session_store::Result<()> {
        let changes: Vec<(String, Option<Value>)> = record
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
                    in_scope(|s| {
                        s.reads.insert(
                            next.id,
                            Versioned {
                                record: next.clone(),
                                version: v,
                            },
                        )
                    });
                    return Ok(());
                }
                // Deleted meanwhile (a logout elsewhere): it stays deleted.
                SaveOutcome::Gone => return Ok(()),
                SaveOutcome::Conflict => {
                    let Some(fresh) = store.load_versioned(&record.id).await? else {
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
}

#[async_trait]
impl SessionStore for HttpStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.plain().create(record).await?;
        in_scope(|s| s.created = true);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if let Some(store) = self.conditional()
            && let Some(Some(base)) = in_scope(|s| s.reads.get(&record.id).cloned())
        {
            return self.merge_save(store, record, base).await;
        }
        self.plain().save(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        if let Some(store) = self.conditional()
            && in_scope(|_| ()).is_some()
        {
            let loaded = store.load_versioned(id).await?;
            return Ok(loaded.map(|v| {
                let record = v.record.clone();
                in_scope(|s| s.reads.insert(*id, v));
                record
            }));
        }
        self.plain().load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.plain().delete(id).await?;
        let deferred = in_scope(|s| {
            s.reads.remove(id);
            s.deleted.push((*id, self.shared.clone()));
        });
        if deferred.is_none() {
            self.shared.end(id, EndReason::Revoked, false).await;
        }
        Ok(())
    }
}
