//! Guards of the connect path: a cap on session loads in flight (a slow store must not pile up
//! handshakes) and a per-address limit on handshakes with invalid or unknown sessions (session
//! id enumeration), both refusing before any store call, with a retryable answer: an address
//! may be shared by many users (a NAT, a proxy), and cookies that verify are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::InvalidReason;
use crate::id::SessionKey;

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

/// Counts failures per address in fixed windows. A handshake whose session is looked up on an
/// id nobody vouched for (a plain cookie) first reserves a failure slot, so that concurrent
/// guesses cannot overshoot the limit; the slot is given back when the session exists.
#[derive(Debug)]
pub(crate) struct Failures {
    limit: FailureLimit,
    seen: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// Failures counted in the current window.
    failures: u32,
    /// Slots reserved by lookups in flight.
    pending: u32,
    since: Instant,
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

    /// Runs `f` on `ip`'s entry, in its current window.
    fn with_entry<T>(&self, ip: IpAddr, f: impl FnOnce(&mut Entry, u32) -> T) -> T {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.limit.window;
        if seen.len() >= PRUNE_AT {
            seen.retain(|_, e| e.pending > 0 || e.since.elapsed() < window);
        }
        let entry = seen.entry(ip).or_insert_with(|| Entry {
            failures: 0,
            pending: 0,
            since: Instant::now(),
        });
        if entry.since.elapsed() >= window {
            entry.failures = 0;
            entry.since = Instant::now();
        }
        f(entry, self.limit.max_failures)
    }

    /// Counts one failure that needed no lookup (a malformed or forged value); `false` when
    /// `ip` is over its limit already (then nothing is counted).
    pub(crate) fn try_fail(&self, ip: IpAddr) -> bool {
        self.with_entry(ip, |e, max| {
            if e.failures.saturating_add(e.pending) >= max {
                return false;
            }
            e.failures += 1;
            true
        })
    }

    /// Reserves a failure slot for a store lookup, or `None` when `ip` is over its limit.
    pub(crate) fn reserve(&self, ip: IpAddr) -> Option<Slot<'_>> {
        self.with_entry(ip, |e, max| {
            if e.failures.saturating_add(e.pending) >= max {
                return None;
            }
            e.pending += 1;
            Some(Slot {
                failures: self,
                ip,
                failed: false,
            })
        })
    }

    fn settle(&self, ip: IpAddr, failed: bool) {
        self.with_entry(ip, |e, _| {
            e.pending = e.pending.saturating_sub(1);
            if failed {
                e.failures = e.failures.saturating_add(1);
            }
        });
    }

    /// Decides whether a handshake may go on, before any store call: a handshake without a
    /// session passes (it will be refused as `session_invalid` without a lookup), so does one
    /// whose cookie verified (signed, private, express: the app issued it); a malformed or
    /// forged value is counted; a plain id reserves a slot for its lookup. An address over
    /// its limit gets [`InvalidReason::RateLimited`] (retryable).
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        key: &Result<SessionKey, InvalidReason>,
    ) -> Result<Option<Slot<'_>>, InvalidReason> {
        match key {
            Ok(key) if key.verified => Ok(None),
            Ok(_) => self.reserve(ip).map(Some).ok_or(InvalidReason::RateLimited),
            Err(InvalidReason::Malformed) if !self.try_fail(ip) => Err(InvalidReason::RateLimited),
            Err(_) => Ok(None),
        }
    }
}

/// A failure slot held by one store lookup: [`failed`](Slot::failed) when the session was
/// unknown keeps it as a failure; dropping it otherwise gives it back.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    failures: &'a Failures,
    ip: IpAddr,
    failed: bool,
}

impl Slot<'_> {
    /// The lookup found no session: the slot becomes a failure.
    pub(crate) fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.failures.settle(self.ip, self.failed);
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

    fn limit(max_failures: u32, ms: u64) -> Failures {
        Failures::new(FailureLimit {
            max_failures,
            window: Duration::from_millis(ms),
        })
    }

    fn key(verified: bool) -> Result<SessionKey, InvalidReason> {
        Ok(SessionKey::for_tests(verified))
    }

    #[test]
    fn failures_limit_per_address_and_window() {
        let f = limit(3, 200);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            f.reserve(a).unwrap().failed();
        }
        assert!(f.reserve(a).is_none());
        assert!(!f.try_fail(a));
        assert!(f.reserve(b).is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(f.reserve(a).is_some());
    }

    #[test]
    fn found_sessions_give_their_slot_back() {
        let f = limit(2, 60_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            drop(f.reserve(a).unwrap());
        }
        f.reserve(a).unwrap().failed();
        assert!(f.reserve(a).is_some());
    }

    /// Slots in flight count: however many lookups run at once, no more than the limit are
    /// let through.
    #[test]
    fn concurrent_lookups_cannot_overshoot() {
        let f = limit(30, 60_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..200).filter_map(|_| f.reserve(a)).collect();
        assert_eq!(held.len(), 30);
        for slot in held {
            slot.failed();
        }
        assert!(f.reserve(a).is_none());
    }

    #[test]
    fn admission_by_kind_of_handshake() {
        let f = limit(2, 60_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        // Malformed values count without a slot; then the address is limited.
        assert!(matches!(
            f.admit(a, &Err(InvalidReason::Malformed)),
            Ok(None)
        ));
        assert!(matches!(
            f.admit(a, &Err(InvalidReason::Malformed)),
            Ok(None)
        ));
        for limited in [Err(InvalidReason::Malformed), key(false)] {
            assert_eq!(
                f.admit(a, &limited).unwrap_err(),
                InvalidReason::RateLimited
            );
        }
        assert!(InvalidReason::RateLimited.is_retryable());
        // A verified cookie, or no cookie at all, is never limited.
        assert!(matches!(f.admit(a, &key(true)), Ok(None)));
        assert!(matches!(f.admit(a, &Err(InvalidReason::Missing)), Ok(None)));
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
