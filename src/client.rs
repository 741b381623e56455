//! Who is asking: the client address of a request (axum's `ConnectInfo`, or a function that
//! reads it behind trusted proxies), and the per-address throttle on new Engine.IO sessions
//! that the origin gate applies before engineioxide allocates one.
//!
//! An Engine.IO session that never joins a namespace is held (about 20 KiB) until socketioxide's
//! connect timeout; a client opening them as fast as it can would make the server hold
//! thousands. Each address gets a token bucket of new sessions instead: requests past it are
//! answered `429` with `Retry-After`, which socket.io-client treats as a failed attempt and
//! retries with its backoff.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where a request comes from: axum's `ConnectInfo<SocketAddr>` when the app is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`, else a custom function's answer.
pub(crate) type ClientAddr = Arc<dyn Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync>;

pub(crate) fn connect_info(parts: &http::request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// How many new Engine.IO sessions (handshakes without a `sid`) one client address may open:
/// `burst` at once, then `per_second`. The default, 100 a second after a burst of 500, holds a
/// flood from one address to about 1,000 sessions at socketioxide's 5 s connect timeout as the
/// demo sets it, and lets a NAT of a few hundred users reconnect at once after a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeRate {
    /// Sustained new sessions a second.
    pub per_second: u32,
    /// New sessions allowed at once.
    pub burst: u32,
}

impl Default for HandshakeRate {
    fn default() -> Self {
        HandshakeRate {
            per_second: 100,
            burst: 500,
        }
    }
}

/// The bucket an address draws from: its IPv6 /64, since one client usually holds a whole /64
/// and could otherwise open a fresh burst from each address in it; an IPv4 address (or an
/// IPv4-mapped IPv6 one) alone.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// A token bucket per address.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: HandshakeRate,
    /// Behind a plain mutex: one short map operation per new Engine.IO session, never held
    /// across an await.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Past this many tracked addresses, the full buckets (idle addresses) are dropped.
const PRUNE_AT: usize = 10_000;

impl Throttle {
    pub(crate) fn new(rate: HandshakeRate) -> Self {
        Throttle {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for a new session from `ip`; `false` when it has none left.
    pub(crate) fn admit(&self, ip: IpAddr) -> bool {
        self.admit_at(bucket_key(ip), Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> bool {
        let burst = f64::from(self.rate.burst);
        let refill = |b: &Bucket| {
            let secs = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + secs * f64::from(self.rate.per_second)).min(burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, b| refill(b) < burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refill(bucket);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let throttle = Throttle::new(HandshakeRate {
            per_second: 10,
            burst: 3,
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| throttle.admit_at(a, t0)));
        assert!(!throttle.admit_at(a, t0), "past the burst");
        assert!(
            throttle.admit_at(b, t0),
            "another address has its own bucket"
        );
        assert!(!throttle.admit_at(a, t0 + Duration::from_millis(50)));
        assert!(
            throttle.admit_at(a, t0 + Duration::from_millis(100)),
            "one token in 100 ms"
        );
        let (p1, p2): (IpAddr, IpAddr) = (
            "2001:db8:1:2::1".parse().unwrap(),
            "2001:db8:1:2:ffff::9".parse().unwrap(),
        );
        assert_eq!(bucket_key(p1), bucket_key(p2), "one /64, one bucket");
        assert_ne!(
            bucket_key(p1),
            bucket_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            bucket_key("::ffff:192.0.2.1".parse().unwrap()),
            bucket_key(a),
            "an IPv4-mapped address is its IPv4 address"
        );
        let later = t0 + Duration::from_secs(60);
        assert!(
            (0..3).all(|_| throttle.admit_at(a, later)),
            "refilled up to the burst"
        );
        assert!(!throttle.admit_at(a, later));
    }
}
