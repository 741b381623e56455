//! How long tests wait. Every upper bound a test asserts is one of these, or a configured delay
//! plus [`SLACK`]: tests run two at a time on a 2-core machine that others build on meanwhile,
//! so a bound must hold on a loaded machine and still fail on the bug it is there for (a
//! missing timer, a hang, a deletion never noticed). Tests that prove something is pushed
//! rather than polled set the polling interval to [`NEVER`] instead of timing the push.

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once": an ack, an event, a handshake.
pub const SOON: Duration = Duration::from_secs(10);

/// Added to a configured delay (a timeout, an interval, a TTL) for its upper bound.
pub const SLACK: Duration = Duration::from_secs(5);

/// An interval or timeout that no test lives to see: set it so that only the mechanism under
/// test can explain what the test observes.
pub const NEVER: Duration = Duration::from_secs(3600);

/// Polls `check` every 25 ms until it returns `Some`, failing with `what` after [`SOON`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + SOON;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {SOON:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
