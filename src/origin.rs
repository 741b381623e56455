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

use crate::client::{ClientAddr, Throttle, connect_info};
use crate::error::ConfigError;
use crate::observe::{self, THROTTLED};

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
    /// let policy =
    ///     OriginPolicy::allow_list(["https://app.example.com", "https://*.example.org"]).unwrap();
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

    /// Whether requests without `Origin` (and, for the CSRF guard, without `Referer`) pass.
    pub(crate) fn allows_missing(&self) -> bool {
        self.missing == MissingOrigin::Allow
    }

    /// Whether the origin of a `Referer` URL (`scheme://host[:port]`, what comes before its
    /// path, query or fragment) is allowed. Unparsable referrers are refused.
    pub(crate) fn allows_referer(&self, referer: &[u8]) -> bool {
        if matches!(self.allowed, Allowed::Any) {
            return true;
        }
        let Ok(url) = std::str::from_utf8(referer) else {
            return false;
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        self.allows_bytes(Some(&url.as_bytes()[..scheme.len() + 3 + end]))
    }

    pub(crate) fn allows_headers(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(ORIGIN).iter();
        match (values.next(), values.next()) {
            (None, _) => self.allows_bytes(None),
            (Some(v), None) => self.allows_bytes(Some(v.as_bytes())),
            // Several Origin headers: no browser sends that.
            (Some(_), Some(_)) => false,
        }
    }
}

/// What kind of `Origin` a refused request carried, for logs that never echo client input.
pub(crate) fn origin_kind(headers: &HeaderMap) -> &'static str {
    let mut values = headers.get_all(ORIGIN).iter();
    match (values.next(), values.next()) {
        (None, _) => "none",
        (Some(_), Some(_)) => "several",
        (Some(v), None) if v.as_bytes() == b"null" => "null",
        (Some(v), None) if Origin::parse(v.as_bytes()).is_some() => "not on the allowlist",
        (Some(_), None) => "malformed",
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
#[derive(Clone)]
pub struct OriginLayer {
    policy: Arc<OriginPolicy>,
    path: Arc<str>,
    /// Shared by every layer of one `SocketSessions`: the buckets are per address, not per
    /// layer.
    throttle: Option<Arc<Throttle>>,
    /// How to find the client behind trusted proxies; `ConnectInfo` when `None`.
    client_addr: Option<ClientAddr>,
}

impl std::fmt::Debug for OriginLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginLayer")
            .field("policy", &self.policy)
            .field("path", &self.path)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl OriginLayer {
    /// `path` is the Engine.IO path as configured (`/socket.io/` or `/socket.io`): the gate
    /// covers it with and without its trailing slash, and everything below it.
    pub(crate) fn new(policy: Arc<OriginPolicy>, path: Arc<str>) -> Self {
        OriginLayer {
            policy,
            path: engine_base(&path),
            throttle: None,
            client_addr: None,
        }
    }

    /// Also throttles new Engine.IO sessions per client address.
    pub(crate) fn with_throttle(
        mut self,
        throttle: Option<Arc<Throttle>>,
        client_addr: Option<ClientAddr>,
    ) -> Self {
        self.throttle = throttle;
        self.client_addr = client_addr;
        self
    }

    /// Whether a new Engine.IO session from this request's client is over its rate.
    fn throttled<B>(&self, req: Request<B>) -> (Request<B>, bool) {
        let Some(throttle) = &self.throttle else {
            return (req, false);
        };
        let new_session = req.method() == http::Method::GET
            && !req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("sid=")));
        if !new_session {
            return (req, false);
        }
        let (parts, body) = req.into_parts();
        let ip = match &self.client_addr {
            Some(client_addr) => client_addr(&parts),
            None => connect_info(&parts),
        };
        let throttled = ip.is_some_and(|ip| !throttle.admit(ip));
        (Request::from_parts(parts, body), throttled)
    }
}

/// The configured Engine.IO path without its trailing slashes (`/socket.io/` → `/socket.io`;
/// `/` → the empty string, which covers every path).
fn engine_base(path: &str) -> Arc<str> {
    Arc::from(path.trim_end_matches('/'))
}

/// Whether engineioxide may serve `path` under the Engine.IO path `base` (as
/// [`engine_base`] made it): `base` itself, `base/`, and anything below `base/`, never a
/// sibling such as `/socket.io-admin`. engineioxide serves `/socket.io` and `/socket.io/…`
/// alike, so a gate that looked only under `/socket.io/` would have a side door.
fn covers(base: &str, path: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether the "handshake did not pass through the origin layer" error was logged already.
static NOT_CHECKED_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Reports a Socket.IO handshake that did not pass through the [`OriginLayer`]: at ERROR the
/// first time in this process (a configuration mistake, said once), at DEBUG afterwards, so a
/// client retrying in a loop cannot flood the logs.
pub(crate) fn report_unchecked_handshake() {
    use std::sync::atomic::Ordering;
    if !NOT_CHECKED_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!(
            "refusing Socket.IO connections: a handshake did not pass through the origin \
             layer; add `.layer(sessions.origin_layer())` around the Socket.IO layer, and give \
             `with_path` the path socketioxide serves (`req_path`, default `/socket.io`); \
             logged once, further refusals are logged at DEBUG"
        );
    } else {
        tracing::debug!("refused a Socket.IO handshake that did not pass through the origin layer");
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

/// The body of the 429 answer.
const THROTTLED_BODY: &str = "too many new connections from this address";

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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !covers(&self.layer.path, req.uri().path()) {
            return Either::Left(self.inner.call(req));
        }
        if self.layer.policy.allows_headers(req.headers()) {
            let (mut req, throttled) = self.layer.throttled(req);
            if throttled {
                observe::count(THROTTLED);
                tracing::debug!("refused a new Engine.IO session: over the address's rate");
                let mut res = Response::new(ResBody::from(THROTTLED_BODY));
                *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                res.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                return Either::Right(ready(Ok(res)));
            }
            req.extensions_mut().insert(OriginChecked);
            return Either::Left(self.inner.call(req));
        }
        // Not the header's value: whatever a client sends stays out of the logs.
        tracing::debug!(
            origin = origin_kind(req.headers()),
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

    /// The inner service: answers 200, and says whether the gate marked the request.
    #[derive(Clone)]
    struct Inner;

    impl Service<Request<()>> for Inner {
        type Response = Response<String>;
        type Error = std::convert::Infallible;
        type Future = Ready<Result<Response<String>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<()>) -> Self::Future {
            let marked = req.extensions().get::<OriginChecked>().is_some();
            ready(Ok(Response::new(
                if marked { "checked" } else { "not checked" }.into(),
            )))
        }
    }

    fn gate(configured: &str, req: Request<()>) -> (u16, String) {
        let layer = OriginLayer::new(
            Arc::new(policy(&["https://app.example.com"])),
            Arc::from(configured),
        );
        let res = futures_util::FutureExt::now_or_never(layer.layer(Inner).call(req))
            .expect("the gate answers at once")
            .unwrap();
        (res.status().as_u16(), res.into_body())
    }

    fn request(method: &str, uri: &str, transport: &str, origin: Option<&str>) -> Request<()> {
        let mut req = Request::builder().method(method).uri(uri);
        if transport == "websocket" {
            req = req
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        req.body(()).unwrap()
    }

    /// Every form of the Engine.IO path engineioxide serves (with and without the trailing
    /// slash, with and without a query), under both ways of configuring it, on both
    /// transports, from every kind of origin: foreign, `null` and malformed origins get 403,
    /// and whatever passes is marked as checked. Other paths pass untouched.
    #[test]
    fn the_gate_covers_every_path_engine_io_serves() {
        let gated = [
            "/socket.io",
            "/socket.io/",
            "/socket.io?EIO=4&transport={t}",
            "/socket.io/?EIO=4&transport={t}",
            "/socket.io/?EIO=4&transport={t}&sid=abc",
            "/socket.io/anything",
            "http://app.example.com/socket.io?EIO=4&transport={t}",
        ];
        let ungated = [
            "/",
            "/login",
            "/socket.io-admin",
            "/socket.iox?EIO=4&transport={t}",
            "/api/socket.io/",
            "/SOCKET.IO/",
        ];
        let origins = [
            (Some("https://app.example.com"), true),
            (None, true),
            (Some("https://evil.example"), false),
            (Some("null"), false),
            (Some("https://app.example.com.evil.example"), false),
            (Some("not an origin"), false),
        ];
        let mut cases = 0;
        for configured in ["/socket.io/", "/socket.io", "/socket.io//"] {
            for (transport, methods) in [("polling", &["GET", "POST"][..]), ("websocket", &["GET"])]
            {
                for method in methods {
                    for (origin, allowed) in origins {
                        for path in gated {
                            let uri = path.replace("{t}", transport);
                            let got = gate(configured, request(method, &uri, transport, origin));
                            let want = if allowed {
                                (200, "checked".to_owned())
                            } else {
                                (403, FORBIDDEN_BODY.to_owned())
                            };
                            assert_eq!(
                                got, want,
                                "{configured} {method} {uri} {transport} {origin:?}"
                            );
                            cases += 1;
                        }
                        for path in ungated {
                            let uri = path.replace("{t}", transport);
                            let got = gate(configured, request(method, &uri, transport, origin));
                            assert_eq!(got, (200, "not checked".to_owned()), "{configured} {uri}");
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 3 * 3 * 6 * 13);
        // A gate configured at the root covers everything.
        assert_eq!(
            gate("/", request("GET", "/x", "polling", Some("null"))).0,
            403
        );
    }

    #[test]
    fn a_missing_origin_layer_is_reported_once_at_error() {
        let logs = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                report_unchecked_handshake();
            }
        });
        let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let level = |l: &&str| l.split_whitespace().nth(1).unwrap_or("").to_owned();
        let errors = logs.lines().filter(|l| level(l) == "ERROR").count();
        let debugs = logs.lines().filter(|l| level(l) == "DEBUG").count();
        assert_eq!((errors, debugs), (1, 99), "{logs}");
    }

    struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn referers_are_checked_by_their_origin() {
        let p = policy(&["https://app.example.com"]);
        for (referer, ok) in [
            ("https://app.example.com/", true),
            ("https://app.example.com", true),
            ("https://app.example.com/page?x=1#y", true),
            ("https://app.example.com:443/p", true),
            ("https://app.example.com.evil.example/", false),
            ("https://evil.example/https://app.example.com/", false),
            ("https://user@app.example.com/", false),
            ("http://app.example.com/", false),
            ("null", false),
            ("", false),
            ("/relative", false),
        ] {
            assert_eq!(p.allows_referer(referer.as_bytes()), ok, "{referer}");
        }
        assert!(OriginPolicy::any().allows_referer(b"anything"));
    }

    #[test]
    fn refused_origins_are_described_without_their_value() {
        let kind = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(ORIGIN, v.parse().unwrap());
            }
            origin_kind(&h)
        };
        assert_eq!(kind(&[]), "none");
        assert_eq!(kind(&["null"]), "null");
        assert_eq!(kind(&["https://evil.example"]), "not on the allowlist");
        assert_eq!(kind(&["id=secret"]), "malformed");
        assert_eq!(kind(&["https://a.com", "https://b.com"]), "several");
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
