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
    /// Calls that returned an error (a timed-out call, dropped, is not one).
    failed: Arc<AtomicUsize>,
    parked: Arc<AtomicUsize>,
    fault: Arc<watch::Sender<Fault>>,
    /// Where calls run when set: a database pool's connections belong to the runtime that
    /// opened them, and a test's servers each have a runtime that ends before the store does.
    home: Option<tokio::runtime::Handle>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            calls: Arc::default(),
            failed: Arc::default(),
            parked: Arc::default(),
            fault: Arc::new(watch::Sender::new(Fault::None)),
            home: None,
        }
    }

    /// Runs every call on `home`, a runtime that lives as long as the store.
    pub fn at_home(mut self, home: tokio::runtime::Handle) -> Self {
        self.home = Some(home);
        self
    }

    /// The wrapped store, for reads and writes behind the library's back.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many calls were made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many calls returned an error so far.
    pub fn failures(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
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

impl<S: Clone + Send + 'static> Probe<S> {
    /// Runs `call` on a clone of the wrapped store, on the home runtime if there is one.
    async fn run<T, F, Fut>(&self, call: F) -> session_store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(S) -> Fut,
        Fut: Future<Output = session_store::Result<T>> + Send + 'static,
    {
        self.enter().await?;
        let call = call(self.inner.clone());
        let result = match &self.home {
            Some(home) => {
                // Dropped (a store timeout gave up on it): the call stops too, as it would in
                // the caller's own task.
                let mut task = AbortOnDrop(home.spawn(call));
                (&mut task.0)
                    .await
                    .unwrap_or_else(|e| Err(session_store::Error::Backend(e.to_string())))
            }
            None => call.await,
        };
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

/// A spawned call, aborted if whoever awaits it gives up.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
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
impl<S: ConditionalStore + Clone + 'static> ConditionalStore for Probe<S> {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        let id = *id;
        self.run(move |s| async move { s.load_versioned(&id).await })
            .await
    }
    async fn reload_versioned(&self, id: &Id, v: &Version) -> session_store::Result<Reloaded> {
        let (id, v) = (*id, v.clone());
        self.run(move |s| async move { s.reload_versioned(&id, &v).await })
            .await
    }
    async fn save_if(&self, r: &Record, v: &Version) -> session_store::Result<SaveOutcome> {
        let (r, v) = (r.clone(), v.clone());
        self.run(move |s| async move { s.save_if(&r, &v).await })
            .await
    }
    fn write_timeout(&self) -> Option<std::time::Duration> {
        self.inner.write_timeout()
    }
    // A dropped call is dropped before or inside the wrapped store's, as without the probe.
    fn refuses_late_saves(&self) -> bool {
        self.inner.refuses_late_saves()
    }
    // Records and versions pass through unchanged.
    fn versions_hold_records(&self) -> bool {
        self.inner.versions_hold_records()
    }
}

#[async_trait]
impl<S: SessionStore + Clone + 'static> SessionStore for Probe<S> {
    async fn create(&self, r: &mut Record) -> session_store::Result<()> {
        let mut record = r.clone();
        let created = self
            .run(move |s| async move { s.create(&mut record).await.map(|()| record) })
            .await?;
        *r = created;
        Ok(())
    }
    async fn save(&self, r: &Record) -> session_store::Result<()> {
        let r = r.clone();
        self.run(move |s| async move { s.save(&r).await }).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let id = *id;
        self.run(move |s| async move { s.load(&id).await }).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let id = *id;
        self.run(move |s| async move { s.delete(&id).await }).await
    }
}
