//! How long tests wait.

use std::time::Duration;

/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);
