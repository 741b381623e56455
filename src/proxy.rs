//! The client address behind reverse proxies: the right-most untrusted hop of
//! `X-Forwarded-For` (or RFC 7239 `Forwarded`) when the TCP peer is a trusted proxy, else the
//! peer itself. Only the per-address failure limit uses it.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};

use crate::client::{ClientAddr, connect_info};
use crate::error::ConfigError;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8`; host bits are masked off.
    fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = canonical(addr.parse::<IpAddr>().ok()?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max)?
            }
            Some(_) => return None,
        };
        Some(Cidr {
            net: mask(net, prefix),
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack listener reports IPv4
/// peers) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Which header the trusted proxies append the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    XForwardedFor,
    Forwarded,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The reverse proxies in front of the app, so that the per-address failure limit counts
/// the client behind them, not the proxy (which would make every user share one address).
///
/// When a request's TCP peer (axum's `ConnectInfo<SocketAddr>`) is in this list, the client
/// address is the **right-most** address of `X-Forwarded-For` that is not a trusted proxy:
/// each proxy appends the address it received the request from, so entries to the right of
/// the first untrusted one were written by your proxies, and everything to its left was
/// sent by the client and may be forged. When the peer is not trusted, the headers are
/// ignored and the peer is the client. A header missing or unreadable where an address is
/// expected falls back to the nearest trusted hop (the proxy's own address): coarser, never
/// forgeable.
///
/// Only the header your proxies set is read (`X-Forwarded-For` unless
/// [`with_forwarded`](Self::with_forwarded)): the other one passes through them untouched,
/// so a client could write anything in it.
///
/// # Examples
/// ```
/// use std::net::IpAddr;
/// use socketio_sessions::TrustedProxies;
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.3".parse().unwrap());
/// let peer: IpAddr = "10.0.0.2".parse().unwrap();
/// // 10.0.0.3 is a proxy; 203.0.113.9 is the client; 198.51.100.1 is whatever it claimed.
/// assert_eq!(proxies.client_addr(peer, &headers), "203.0.113.9".parse::<IpAddr>().unwrap());
/// // A peer that is not a proxy is the client, whatever it says.
/// let direct: IpAddr = "192.0.2.50".parse().unwrap();
/// assert_eq!(proxies.client_addr(direct, &headers), direct);
/// ```
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Arc<[Cidr]>,
    header: Header,
}

impl TrustedProxies {
    /// The proxies' addresses or networks: `10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn new<I, S>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|e| {
                Cidr::parse(e.as_ref()).ok_or_else(|| ConfigError::InvalidProxy {
                    entry: e.as_ref().to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies {
            nets: nets.into(),
            header: Header::XForwardedFor,
        })
    }

    /// Reads the standard `Forwarded` header (RFC 7239, its `for=` parameters) instead of
    /// `X-Forwarded-For`: for proxies configured to set that one.
    pub fn with_forwarded(mut self) -> Self {
        self.header = Header::Forwarded;
        self
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request that came from `peer` with these headers.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut nearest = peer;
        let name = match self.header {
            Header::XForwardedFor => X_FORWARDED_FOR,
            Header::Forwarded => FORWARDED,
        };
        // Right to left: the last header line holds the nearest proxy's entry.
        for line in headers.get_all(&name).iter().rev() {
            let Ok(line) = std::str::from_utf8(line.as_bytes()) else {
                return nearest;
            };
            for element in line.rsplit(',') {
                let hop = match self.header {
                    Header::XForwardedFor => parse_node(element),
                    Header::Forwarded => forwarded_for(element).and_then(parse_node),
                };
                match hop.map(canonical) {
                    Some(ip) if self.is_trusted(ip) => nearest = ip,
                    Some(ip) => return ip,
                    // `unknown`, an obfuscated name or junk: whoever wrote it is not known.
                    None => return nearest,
                }
            }
        }
        // Every hop is a trusted proxy (or there were none): the left-most one.
        nearest
    }

    /// The client-address function the failure limit calls.
    pub(crate) fn into_client_addr(self) -> ClientAddr {
        Arc::new(move |parts: &http::request::Parts| {
            connect_info(parts).map(|peer| self.client_addr(peer, &parts.headers))
        })
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (addr, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c, Cidr::parse("10.0.0.0/8").unwrap());
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped IPv6");
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12:3456::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0/8",
            "host",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "[::1]",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad:?}");
        }
        assert!(matches!(
            TrustedProxies::new(["10.0.0.0/8", "nope"]),
            Err(ConfigError::InvalidProxy { entry }) if entry == "nope"
        ));
    }

    #[test]
    fn nodes_as_proxies_write_them() {
        for (node, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            (" 192.0.2.1:4711 ", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:4711", Some("2001:db8::1")),
            ("[2001:db8::1]x", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:port", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
        ] {
            assert_eq!(parse_node(node), want.map(ip), "{node:?}");
        }
    }

    /// The table of who the client is: (trusted, peer, header lines, client).
    #[test]
    fn right_most_untrusted_hop_when_the_peer_is_trusted() {
        let p = TrustedProxies::new(["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let xff = "x-forwarded-for";
        for (peer, lines, want) in [
            // Not a proxy: headers ignored.
            ("203.0.113.5", &["198.51.100.1"][..], "203.0.113.5"),
            // One proxy, one client.
            ("127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
            // A forged left part is skipped.
            ("127.0.0.1", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
            // Two proxies.
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            // Split over header lines, in order.
            (
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.1", "10.0.0.2"],
                "198.51.100.1",
            ),
            // Ports and IPv6.
            ("10.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
            ("10.0.0.1", &["198.51.100.1:5000"], "198.51.100.1"),
            // No header: the proxy itself.
            ("10.0.0.1", &[], "10.0.0.1"),
            // All trusted: the left-most.
            ("10.0.0.1", &["10.0.0.9, 10.0.0.2"], "10.0.0.9"),
            // Junk where an address belongs: the nearest trusted hop.
            ("10.0.0.1", &["198.51.100.1, garbage"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.1, garbage, 10.0.0.2"], "10.0.0.2"),
            ("10.0.0.1", &["garbage, 198.51.100.1"], "198.51.100.1"),
            // A dual-stack listener's view of an IPv4 proxy.
            ("::ffff:127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
        ] {
            let got = p.client_addr(ip(peer), &headers(xff, lines));
            assert_eq!(got, ip(want), "{peer} {lines:?}");
        }
        // A `Forwarded` header is the client's own text when the proxies set X-Forwarded-For.
        let h = headers("forwarded", &["for=6.6.6.6"]);
        assert_eq!(p.client_addr(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_header() {
        let p = TrustedProxies::new(["10.0.0.0/8"])
            .unwrap()
            .with_forwarded();
        let fwd = "forwarded";
        for (lines, want) in [
            (&["for=198.51.100.1"][..], "198.51.100.1"),
            (
                &["for=6.6.6.6, for=198.51.100.1;proto=https"],
                "198.51.100.1",
            ),
            (
                &[r#"for="[2001:db8::7]:4711", For=10.0.0.2"#],
                "2001:db8::7",
            ),
            (
                &["for=6.6.6.6", "proto=https;for=198.51.100.1;by=10.0.0.1"],
                "198.51.100.1",
            ),
            (&["for=unknown"], "10.0.0.1"),
            (&["for=198.51.100.1, for=_hidden"], "10.0.0.1"),
            (&["proto=https"], "10.0.0.1"),
            // An unbalanced quote from the client cannot swallow the proxy's element.
            (&[r#"for="6.6.6.6, for=198.51.100.1"#], "198.51.100.1"),
        ] {
            let got = p.client_addr(ip("10.0.0.1"), &headers(fwd, lines));
            assert_eq!(got, ip(want), "{lines:?}");
        }
        let h = headers("x-forwarded-for", &["6.6.6.6"]);
        assert_eq!(p.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }
}
