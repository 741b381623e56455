//! Guards of the connect path: a cap on session loads in flight (a slow store must not pile up
//! handshakes) and a per-address limit on handshakes with invalid or unknown sessions (session
//! id enumeration), both refusing before any store call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many handshakes with invalid or unknown sessions one address may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures allowed per window; past them, handshakes are refused without a store call.
    pub max_failures: u32,
    /// The window.
    pub window: Duration,
}

impl Default for FailureLimit {
    fn default() -> Self {
        FailureLimit {
            max_failures: 30,
            window: Duration::from_secs(60),
        }
    }
}

/// Where a handshake comes from: axum's `ConnectInfo<SocketAddr>` when the app is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`, else a custom function's answer.
pub(crate) type ClientAddr = Arc<dyn Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync>;

pub(crate) fn connect_info(parts: &http::request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Counts failures per address in fixed windows.
#[derive(Debug)]
pub(crate) struct Failures {
    limit: FailureLimit,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Past this many tracked addresses, expired windows are dropped.
const PRUNE_AT: usize = 10_000;

impl Failures {
    pub(crate) fn new(limit: FailureLimit) -> Self {
        Failures {
            limit,
            seen: Mutex::default(),
        }
    }

    /// Whether `ip` is over its limit now.
    pub(crate) fn limited(&self, ip: IpAddr) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&ip).is_some_and(|(n, since)| {
            since.elapsed() < self.limit.window && *n >= self.limit.max_failures
        })
    }

    /// Records one failed handshake from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= PRUNE_AT {
            let window = self.limit.window;
            seen.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = seen.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.limit.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// A cap on session loads in flight at connect.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        InFlight(Arc::new(Semaphore::new(max)))
    }

    /// A permit, or `None` at once when the cap is reached.
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_limit_per_address_and_window() {
        let f = Failures::new(FailureLimit {
            max_failures: 3,
            window: Duration::from_millis(200),
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(!f.limited(a));
            f.failed(a);
        }
        assert!(f.limited(a));
        assert!(!f.limited(b));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.limited(a));
    }

    #[test]
    fn in_flight_cap_refuses_at_once() {
        let cap = InFlight::new(2);
        let (p1, p2) = (cap.try_enter(), cap.try_enter());
        assert!(p1.is_some() && p2.is_some());
        assert!(cap.try_enter().is_none());
        drop(p1);
        assert!(cap.try_enter().is_some());
    }
}
