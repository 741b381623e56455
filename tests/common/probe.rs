//! A store wrapper that counts every call and can be made to fail or to hang, like a stopped or
//! stuck store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use async_trait::async_trait;
use socketio_sessions::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// What a store wrapper does with each call.
const NORMAL: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// Wraps a store: counts every call and can be made to fail or hang (a stopped store).
#[derive(Debug, Clone)]
pub struct Probe<S> {
    inner: S,
    pub calls: Arc<AtomicUsize>,
    fault: Arc<AtomicU8>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            calls: Arc::default(),
            fault: Arc::default(),
        }
    }
    /// The wrapped store, for reads and writes behind the library's back.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn fail(&self) {
        self.fault.store(FAIL, Ordering::SeqCst);
    }
    pub fn hang(&self) {
        self.fault.store(HANG, Ordering::SeqCst);
    }
    pub fn heal(&self) {
        self.fault.store(NORMAL, Ordering::SeqCst);
    }
    async fn enter(&self) -> session_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.fault.load(Ordering::SeqCst) {
            FAIL => Err(session_store::Error::Backend("probe: store stopped".into())),
            HANG => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl<S: ConditionalStore + Clone> ConditionalStore for Probe<S> {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.enter().await?;
        self.inner.load_versioned(id).await
    }
    async fn reload_versioned(&self, id: &Id, v: &Version) -> session_store::Result<Reloaded> {
        self.enter().await?;
        self.inner.reload_versioned(id, v).await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        self.enter().await?;
        self.inner.save_if(r, v).await
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for Probe<S> {
    async fn create(&self, r: &mut Record) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.create(r).await
    }
    async fn save(&self, r: &Record) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.save(r).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.enter().await?;
        self.inner.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.enter().await?;
        self.inner.delete(id).await
    }
}
