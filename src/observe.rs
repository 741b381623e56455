//! What an operator can watch: counters, gauges and histograms through the [`metrics`] facade
//! (feature `metrics`; the app installs the recorder and exporter it likes, before `build()`:
//! a gauge's units taken before the recorder exists are given back to it later, negative).
//! Every name is here, so that README's table and the code cannot drift apart. Without the
//! feature each function is empty and compiles to nothing.
//!
//! [`metrics`]: https://docs.rs/metrics

// Without the feature the names and descriptions stay (one list, whatever the build), unread.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

/// Sockets bound to a session (handshakes accepted).
pub(crate) const BINDS: &str = "socketio_sessions_binds_total";
/// Handshakes refused, by `reason` ([`InvalidReason::as_str`](crate::InvalidReason::as_str)).
pub(crate) const REFUSALS: &str = "socketio_sessions_refusals_total";
/// Sockets told `sinvalid` and disconnected, by `reason`
/// ([`EndReason::as_str`](crate::EndReason::as_str)); counted by the node that ended them,
/// wherever the sockets were.
pub(crate) const ENDS: &str = "socketio_sessions_ends_total";
/// New Engine.IO sessions refused (`429`) by the per-address handshake rate.
pub(crate) const THROTTLED: &str = "socketio_sessions_handshakes_throttled_total";
/// Session saves that reached the store.
pub(crate) const SAVES: &str = "socketio_sessions_saves_total";
/// Conditional saves refused because another writer saved first.
pub(crate) const SAVE_CONFLICTS: &str = "socketio_sessions_save_conflicts_total";
/// Saves tried again on a fresh record after a conflict.
pub(crate) const SAVE_RETRIES: &str = "socketio_sessions_save_retries_total";
/// Saves dropped because the session was gone (logged out, expired, deleted).
pub(crate) const SAVES_GONE: &str = "socketio_sessions_saves_dropped_gone_total";
/// Store calls that failed, by `op`.
pub(crate) const STORE_ERRORS: &str = "socketio_sessions_store_errors_total";
/// Store calls that did not answer within the store timeout, by `op`.
pub(crate) const STORE_TIMEOUTS: &str = "socketio_sessions_store_timeouts_total";
/// Store call latency in seconds, by `op` (answered calls, failed or not).
pub(crate) const STORE_SECONDS: &str = "socketio_sessions_store_call_seconds";
/// Sessions with at least one socket (or a handshake loading) on this node.
pub(crate) const LIVE_SESSIONS: &str = "socketio_sessions_live_sessions";
/// Sockets bound to a session on this node.
pub(crate) const BOUND_SOCKETS: &str = "socketio_sessions_bound_sockets";

/// Every metric with its kind, for describing them to the recorder.
pub(crate) const ALL: [(&str, Kind, &str); 13] = [
    (BINDS, Kind::Counter, "Sockets bound to a session."),
    (REFUSALS, Kind::Counter, "Handshakes refused, by reason."),
    (
        ENDS,
        Kind::Counter,
        "Sockets told sinvalid and disconnected, by reason.",
    ),
    (
        THROTTLED,
        Kind::Counter,
        "New Engine.IO sessions refused by the per-address handshake rate.",
    ),
    (SAVES, Kind::Counter, "Session saves written to the store."),
    (
        SAVE_CONFLICTS,
        Kind::Counter,
        "Conditional saves refused because another writer saved first.",
    ),
    (
        SAVE_RETRIES,
        Kind::Counter,
        "Saves retried on a fresh record after a conflict.",
    ),
    (
        SAVES_GONE,
        Kind::Counter,
        "Saves dropped because the session no longer existed.",
    ),
    (
        STORE_ERRORS,
        Kind::Counter,
        "Store calls that failed, by op.",
    ),
    (
        STORE_TIMEOUTS,
        Kind::Counter,
        "Store calls past the store timeout, by op.",
    ),
    (
        STORE_SECONDS,
        Kind::Histogram,
        "Store call latency in seconds, by op.",
    ),
    (
        LIVE_SESSIONS,
        Kind::Gauge,
        "Sessions with a socket or a loading handshake on this node.",
    ),
    (
        BOUND_SOCKETS,
        Kind::Gauge,
        "Sockets bound to a session on this node.",
    ),
];

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Describes every metric to the installed recorder (units and help texts). Called when a
/// runtime is built; recorders ignore a second description.
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    for (name, kind, help) in ALL {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => {
                metrics::describe_histogram!(name, metrics::Unit::Seconds, help)
            }
        }
    }
}

/// Adds one to a counter.
#[inline]
pub(crate) fn count(name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}

/// Adds one to a counter with one label.
#[inline]
pub(crate) fn count_by(name: &'static str, label: &'static str, value: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name, label => value).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, label, value);
}

/// Adds `n` to a counter with one label.
#[inline]
pub(crate) fn count_n(name: &'static str, label: &'static str, value: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name, label => value).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, label, value, n);
}

/// A store operation, as the `op` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Load,
    Reload,
    SaveIf,
    Save,
    Create,
    Delete,
}

impl StoreOp {
    fn as_str(self) -> &'static str {
        match self {
            StoreOp::Load => "load",
            StoreOp::Reload => "reload",
            StoreOp::SaveIf => "save_if",
            StoreOp::Save => "save",
            StoreOp::Create => "create",
            StoreOp::Delete => "delete",
        }
    }
}

/// The clock of one store call: started before the call, finished with what it gave.
#[derive(Debug)]
pub(crate) struct StoreCall {
    op: StoreOp,
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

/// How a store call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallEnd {
    Answered,
    Failed,
    TimedOut,
}

impl StoreCall {
    #[inline]
    pub(crate) fn start(op: StoreOp) -> Self {
        StoreCall {
            op,
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    #[inline]
    pub(crate) fn finish(self, end: CallEnd) {
        let op = self.op.as_str();
        match end {
            CallEnd::TimedOut => count_by(STORE_TIMEOUTS, "op", op),
            CallEnd::Failed | CallEnd::Answered => {
                if end == CallEnd::Failed {
                    count_by(STORE_ERRORS, "op", op);
                }
                #[cfg(feature = "metrics")]
                metrics::histogram!(STORE_SECONDS, "op" => op)
                    .record(self.started.elapsed().as_secs_f64());
            }
        }
    }
}

/// Holds one unit of a gauge while it lives: `LIVE_SESSIONS` for a live session,
/// `BOUND_SOCKETS` for a binding. A guard rather than paired calls, so that no path that drops
/// the owner can forget the decrement. Zero-sized without the feature.
#[derive(Debug)]
pub(crate) struct Held {
    #[cfg(feature = "metrics")]
    name: &'static str,
}

impl Held {
    #[inline]
    pub(crate) fn new(name: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!(name).increment(1.0);
            Held { name }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = name;
            Held {}
        }
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(self.name).decrement(1.0);
    }
}
