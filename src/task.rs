//! Small runtime helpers every stage uses: spawning work that may outlive its caller, locks that
//! keep waits out of handler futures, and the stop signal that ends background work.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// Spawns on the current runtime, if there still is one (drops may run during shutdown).
pub(crate) fn spawn_detached(fut: impl Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(fut);
    }
}

/// Takes an async lock that is nearly always free without putting the wait for it in the
/// caller's future (handler futures are moved several times when socketioxide spawns them).
pub(crate) async fn lock<T>(mutex: &tokio::sync::Mutex<T>) -> tokio::sync::MutexGuard<'_, T> {
    match mutex.try_lock() {
        Ok(guard) => guard,
        Err(_) => Box::pin(mutex.lock()).await,
    }
}

/// Takes a std lock, ignoring poisoning: every critical section here leaves its data valid
/// whether or not it completes.
pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's stop signal: set once by shutdown; background loops (expiry, revalidation,
/// write-behind, keyspace notifications) end when they see it.
#[derive(Debug)]
pub(crate) struct Stop(watch::Sender<bool>);

impl Default for Stop {
    fn default() -> Self {
        Stop(watch::Sender::new(false))
    }
}

impl Stop {
    /// Sets the signal; returns whether it was already set.
    pub(crate) fn stop(&self) -> bool {
        self.0.send_replace(true)
    }

    /// Whether the signal is set.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is set.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            // An error means the sender is gone: the node is gone, so stop too.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Reads a std `RwLock`, ignoring poisoning (see [`locked`]).
pub(crate) fn locked_read<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Writes a std `RwLock`, ignoring poisoning (see [`locked`]).
pub(crate) fn locked_write<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
