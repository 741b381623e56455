//! A socket that keeps sending events its session has no room for: each is refused at once,
//! and once more are refused within a second than the session's queue holds, the client is not
//! backing off but flooding, and its socket is disconnected (no `sinvalid`: the session is
//! fine, the client is not, and socket.io-client does not reconnect after a server disconnect).
//! Every packet still buffered for it is then dropped by socketioxide without spawning a
//! handler, which is what keeps a flood's memory and CPU from reaching the other sessions.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// The fewest refusals in a window that cut a socket off, whatever the queue's size: with a
/// small queue setting, a burst is to refuse, not a flood to disconnect. Not higher: the cut-off
/// sends a DISCONNECT packet, which needs room in the socket's outgoing buffer, and every
/// refused event's error ack takes some.
pub(crate) const MIN_CUT_OFF: usize = 256;

/// How long refusals are counted together.
const WINDOW_MS: u64 = 1_000;

/// What a refusal means for its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The first in its window: worth a log line.
    First,
    /// One more in a window already logged.
    Again,
    /// Past the limit in one window: disconnect the socket (said once per window).
    Flooding,
}

/// One socket's refusals in the current window. Atomics, not a lock: refusals are counted on
/// the hot path of a flood, by as many tasks as the client sends events; an off-by-one between
/// two racing window resets only moves the cut-off by one event.
#[derive(Debug, Default)]
pub(crate) struct FloodWatch {
    /// When the current window began, in ms since the process's first refusal.
    window_start_ms: AtomicU64,
    refused: AtomicUsize,
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl FloodWatch {
    /// Counts a refused event; `limit` (at least [`MIN_CUT_OFF`]) refusals a window are
    /// tolerated.
    pub(crate) fn refuse(&self, limit: usize) -> Refusal {
        self.refuse_at(limit.max(MIN_CUT_OFF), now_ms())
    }

    fn refuse_at(&self, limit: usize, now: u64) -> Refusal {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        let count = self.refused.load(Ordering::Relaxed);
        if count == 0 || now.saturating_sub(start) >= WINDOW_MS {
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.refused.store(1, Ordering::Relaxed);
            return Refusal::First;
        }
        match self.refused.fetch_add(1, Ordering::Relaxed) + 1 {
            n if n == limit + 1 => Refusal::Flooding,
            _ => Refusal::Again,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_logged_and_the_one_past_the_limit_cuts_off_once() {
        let watch = FloodWatch::default();
        assert_eq!(watch.refuse_at(3, 5_000), Refusal::First);
        assert_eq!(watch.refuse_at(3, 5_001), Refusal::Again);
        assert_eq!(watch.refuse_at(3, 5_002), Refusal::Again);
        assert_eq!(watch.refuse_at(3, 5_003), Refusal::Flooding);
        assert_eq!(watch.refuse_at(3, 5_004), Refusal::Again);
    }

    #[test]
    fn a_small_queue_still_tolerates_a_burst() {
        let watch = FloodWatch::default();
        let cut_at = (1..=MIN_CUT_OFF + 1).find(|_| watch.refuse(2) == Refusal::Flooding);
        assert_eq!(cut_at, Some(MIN_CUT_OFF + 1));
    }

    #[test]
    fn a_new_window_starts_over() {
        let watch = FloodWatch::default();
        assert_eq!(watch.refuse_at(1, 5_000), Refusal::First);
        assert_eq!(watch.refuse_at(1, 5_000 + WINDOW_MS - 1), Refusal::Flooding);
        assert_eq!(watch.refuse_at(1, 5_000 + WINDOW_MS), Refusal::First);
        assert_eq!(watch.refuse_at(1, 5_000 + WINDOW_MS), Refusal::Flooding);
    }
}
