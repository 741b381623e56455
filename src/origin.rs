//! The origin gate: a tower layer that refuses Engine.IO requests from origins not on the
//! allowlist, before any cookie is parsed or any store is called.
//!
//! Browsers attach cookies to a WebSocket upgrade whatever page opened it, and CORS does not
//! apply to WebSockets, so without this check any site could open a socket authenticated as
//! the visitor (cross-site WebSocket hijacking).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{HeaderMap, Request, Response, StatusCode, header::ORIGIN};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;

/// What to do with a request that has no `Origin` header.
///
/// Browsers always send `Origin` on WebSocket upgrades and cross-origin requests, so its absence
/// means a non-browser client (or a same-origin polling `GET` from an old browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingOrigin {
    /// Let it through (the default): native clients, tests and server-to-server sockets.
    #[default]
    Allow,
    /// Refuse it with 403: only browsers on an allowed origin may connect.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` with at least one more label.
    Subdomains(String),
}

/// One allowed origin: `scheme://host[:port]`, host optionally `*.`-prefixed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

/// A parsed browser origin.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// Parses `scheme://host[:port]` as browsers serialize it; anything else is refused.
fn parse_origin(s: &str, allow_wildcard: bool) -> Result<(String, String, u16), &'static str> {
    let (scheme, rest) = s.split_once("://").ok_or("no `://`")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err("the scheme must be http or https"),
    };
    if rest.is_empty() {
        return Err("no host");
    }
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err("an origin has no path, query, fragment or user");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed `[`")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after `]`")?),
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("invalid IPv6 address");
        }
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().map_err(|_| "port out of range")?
        }
        Some(_) => return Err("invalid port"),
    };
    if !host.starts_with('[') {
        let name = if allow_wildcard {
            host.strip_prefix("*.").unwrap_or(&host)
        } else {
            &host
        };
        if name.is_empty() || name.ends_with('.') || name.starts_with('.') || name.contains("..") {
            return Err("empty label in host (a trailing dot is not accepted)");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err("invalid character in host");
        }
    }
    Ok((scheme, host, port))
}

impl OriginPattern {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        let (scheme, host, port) =
            parse_origin(s.trim(), true).map_err(|why| ConfigError::InvalidOrigin {
                origin: s.to_owned(),
                why,
            })?;
        let host = match host.strip_prefix("*.") {
            Some(suffix) => HostPattern::Subdomains(format!(".{suffix}")),
            None => HostPattern::Exact(host),
        };
        Ok(OriginPattern { scheme, host, port })
    }

    fn matches(&self, o: &Origin) -> bool {
        self.scheme == o.scheme
            && self.port == o.port
            && match &self.host {
                HostPattern::Exact(h) => *h == o.host,
                HostPattern::Subdomains(suffix) => {
                    o.host.len() > suffix.len() && o.host.ends_with(suffix.as_str())
                }
            }
    }
}

impl Origin {
    fn parse(header: &[u8]) -> Option<Origin> {
        let s = std::str::from_utf8(header).ok()?;
        if s.contains('*') {
            return None;
        }
        let (scheme, host, port) = parse_origin(s, false).ok()?;
        Some(Origin { scheme, host, port })
    }
}

#[derive(Debug, Clone)]
enum Allowed {
    Any,
    List(Vec<OriginPattern>),
}

/// Which origins may open Engine.IO connections.
///
/// Matching is exact on scheme, host (case-insensitive) and port (default ports filled in);
/// `https://*.example.com` matches any subdomain of `example.com` on a label boundary but not
/// `example.com` itself, nor `evil-example.com`. `null`, `file://`, empty, unparsable origins and
/// hosts with a trailing dot are always refused when an allowlist is set.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Allowed,
    missing: MissingOrigin,
}

impl OriginPolicy {
    /// Allows exactly the listed origins.
    ///
    /// # Examples
    /// ```
    /// use socketio_sessions::OriginPolicy;
    /// let policy = OriginPolicy::allow_list(["https://app.example.com", "https://*.example.org"]).unwrap();
    /// assert!(policy.allows(Some("https://app.example.com")));
    /// assert!(policy.allows(Some("https://eu.example.org")));
    /// assert!(!policy.allows(Some("https://evil.example.com")));
    /// assert!(!policy.allows(Some("null")));
    /// assert!(policy.allows(None)); // non-browser clients, see `with_missing`
    /// ```
    pub fn allow_list<I, S>(origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| OriginPattern::parse(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OriginPolicy {
            allowed: Allowed::List(list),
            missing: MissingOrigin::default(),
        })
    }

    /// Allows every origin. Only safe where no browser sends cookies that open a session (for
    /// example when every client authenticates with an explicit `auth` sid).
    pub fn any() -> Self {
        OriginPolicy {
            allowed: Allowed::Any,
            missing: MissingOrigin::default(),
        }
    }

    /// Sets what happens to requests without an `Origin` header.
    ///
    /// # Examples
    /// ```
    /// use socketio_sessions::origin::{MissingOrigin, OriginPolicy};
    /// let strict = OriginPolicy::allow_list(["https://app.example.com"]).unwrap()
    ///     .with_missing(MissingOrigin::Refuse);
    /// assert!(!strict.allows(None));
    /// ```
    pub fn with_missing(mut self, missing: MissingOrigin) -> Self {
        self.missing = missing;
        self
    }

    /// Whether a request with this `Origin` header value (or none) may pass.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        self.allows_bytes(origin.map(str::as_bytes))
    }

    fn allows_bytes(&self, origin: Option<&[u8]>) -> bool {
        match (origin, &self.allowed) {
            (None, _) => self.missing == MissingOrigin::Allow,
            (Some(_), Allowed::Any) => true,
            (Some(raw), Allowed::List(list)) => match Origin::parse(raw) {
                Some(o) => list.iter().any(|p| p.matches(&o)),
                None => false,
            },
        }
    }

    fn allows_headers(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(ORIGIN).iter();
        match (values.next(), values.next()) {
            (None, _) => self.allows_bytes(None),
            (Some(v), None) => self.allows_bytes(Some(v.as_bytes())),
            // Several Origin headers: no browser sends that.
            (Some(_), Some(_)) => false,
        }
    }
}

/// Marks a request that the origin gate let through, so the connect middleware can tell that
/// the layer is installed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginChecked;

/// Tower layer that applies an [`OriginPolicy`] to every request under the Socket.IO path
/// (polling and WebSocket upgrade alike). Get it from
/// [`SocketSessions::origin_layer`](crate::SocketSessions::origin_layer) and add it around the
/// Socket.IO layer.
#[derive(Debug, Clone)]
pub struct OriginLayer {
    policy: Arc<OriginPolicy>,
    path: Arc<str>,
}

impl OriginLayer {
    pub(crate) fn new(policy: Arc<OriginPolicy>, path: Arc<str>) -> Self {
        OriginLayer { policy, path }
    }
}

impl<S> Layer<S> for OriginLayer {
    type Service = OriginGate<S>;
    fn layer(&self, inner: S) -> OriginGate<S> {
        OriginGate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`OriginLayer`]: answers 403 to a disallowed origin, passes the rest on.
#[derive(Debug, Clone)]
pub struct OriginGate<S> {
    inner: S,
    layer: OriginLayer,
}

/// The body of the 403 answer.
const FORBIDDEN_BODY: &str = "origin not allowed";

impl<S, B, ResBody> Service<Request<B>> for OriginGate<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !req.uri().path().starts_with(&*self.layer.path) {
            return Either::Left(self.inner.call(req));
        }
        if self.layer.policy.allows_headers(req.headers()) {
            req.extensions_mut().insert(OriginChecked);
            return Either::Left(self.inner.call(req));
        }
        tracing::debug!(
            origin = ?req.headers().get(ORIGIN),
            "refused an Engine.IO request from a disallowed origin"
        );
        let mut res = Response::new(ResBody::from(FORBIDDEN_BODY));
        *res.status_mut() = StatusCode::FORBIDDEN;
        Either::Right(ready(Ok(res)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> OriginPolicy {
        OriginPolicy::allow_list(list).unwrap()
    }

    #[test]
    fn exact_matrix() {
        let p = policy(&["https://app.example.com", "http://localhost:3000"]);
        let cases = [
            ("https://app.example.com", true),
            ("https://app.example.com:443", true),
            ("HTTPS://APP.EXAMPLE.COM", true),
            ("http://app.example.com", false),
            ("https://app.example.com:8443", false),
            ("https://app.example.com.", false),
            ("https://app.example.com/", false),
            ("https://app.example.com.evil.org", false),
            ("https://evilapp.example.com", false),
            ("http://localhost:3000", true),
            ("http://localhost", false),
            ("http://localhost:30000", false),
            ("null", false),
            ("file://", false),
            ("", false),
            ("https://", false),
            ("https://*.example.com", false),
            ("https://user@app.example.com", false),
        ];
        for (origin, expected) in cases {
            assert_eq!(p.allows(Some(origin)), expected, "{origin:?}");
        }
    }

    #[test]
    fn wildcard_on_label_boundary() {
        let p = policy(&["https://*.ex.com"]);
        assert!(p.allows(Some("https://org1.ex.com")));
        assert!(p.allows(Some("https://a.b.ex.com")));
        assert!(!p.allows(Some("https://ex.com")));
        assert!(!p.allows(Some("https://org1.prefix-ex.com")));
        assert!(!p.allows(Some("https://prefixex.com")));
        assert!(!p.allows(Some("http://org1.ex.com")));
        assert!(!p.allows(Some("https://org1.ex.com:8080")));
    }

    #[test]
    fn ipv6_and_ports() {
        let p = policy(&["http://[::1]:3000", "http://127.0.0.1:8080"]);
        assert!(p.allows(Some("http://[::1]:3000")));
        assert!(!p.allows(Some("http://[::1]")));
        assert!(p.allows(Some("http://127.0.0.1:8080")));
        assert!(!p.allows(Some("http://127.0.0.1:80800")));
    }

    #[test]
    fn missing_origin_policy() {
        assert!(policy(&["https://a.com"]).allows(None));
        assert!(
            !policy(&["https://a.com"])
                .with_missing(MissingOrigin::Refuse)
                .allows(None)
        );
        assert!(OriginPolicy::any().allows(Some("null")));
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for bad in [
            "app.example.com",
            "ftp://a.com",
            "https://a.com/path",
            "https://a.com.",
            "https://",
            "https://a.com:99999",
            "https://a..com",
        ] {
            assert!(
                matches!(
                    OriginPolicy::allow_list([bad]),
                    Err(ConfigError::InvalidOrigin { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_origin_headers_are_refused() {
        let p = policy(&["https://a.com"]);
        let mut h = HeaderMap::new();
        h.append(ORIGIN, "https://a.com".parse().unwrap());
        assert!(p.allows_headers(&h));
        h.append(ORIGIN, "https://a.com".parse().unwrap());
        assert!(!p.allows_headers(&h));
    }
}
