//! A store wrapper that counts every call and can be made to fail or to hang, like a stopped or
//! stuck store. A hung call is parked until [`Probe::heal`] (or the test's end) releases it, so
//! that nothing a test hung outlives the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use socketio_sessions::store::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use tokio::sync::watch;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// What the probe does with each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Fail,
    Hang,
}

/// Wraps a store: counts every call and can be made to fail or hang.
#[derive(Debug, Clone)]
pub struct Probe<S> {
    pub inner: S,
    calls: Arc<AtomicUsize>,
    parked: Arc<AtomicUsize>,
    fault: Arc<watch::Sender<Fault>>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            calls: Arc::default(),
            parked: Arc::default(),
            fault: Arc::new(watch::Sender::new(Fault::None)),
        }
    }

    /// The wrapped store, for reads and writes behind the library's back.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many calls were made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many calls are hung right now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Every call fails from now on.
    pub fn fail(&self) {
        self.fault.send_replace(Fault::Fail);
    }

    /// Every call hangs from now on, until [`heal`](Self::heal).
    pub fn hang(&self) {
        self.fault.send_replace(Fault::Hang);
    }

    /// Calls go through again, the hung ones included.
    pub fn heal(&self) {
        self.fault.send_replace(Fault::None);
    }

    async fn enter(&self) -> session_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut fault = self.fault.subscribe();
        if *fault.borrow_and_update() == Fault::Hang {
            let _parked = Parked::new(&self.parked);
            // The sender lives as long as `self`: this returns only once the hang is lifted.
            fault.wait_for(|f| *f != Fault::Hang).await.ok();
        }
        match *fault.borrow() {
            Fault::Fail => Err(session_store::Error::Backend("probe: store stopped".into())),
            _ => Ok(()),
        }
    }
}

/// Counts a hung call for as long as it hangs, dropped call included.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
