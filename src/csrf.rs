//! The CSRF guard: the origin allowlist of the Socket.IO handshake, applied to the app's
//! state-changing HTTP routes (login, logout, writes), so that another site cannot make a
//! visitor's browser post to them with the visitor's cookies.
//!
//! `SameSite` cookies help but do not settle it: `SameSite=Lax` still sends cookies from
//! sibling subdomains, a login form needs no cookie at all to be forged (login CSRF), and
//! `Origin: null` (sandboxed frames, some redirects) is easy to produce.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::header::{ORIGIN, REFERER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::origin::{OriginPolicy, origin_kind};

/// Tower layer that refuses cross-site state-changing HTTP requests with 403, from the same
/// [`OriginPolicy`] as the Socket.IO handshake. Get it from
/// [`SocketSessions::csrf_layer`](crate::SocketSessions::csrf_layer), or build it from a policy
/// with [`CsrfLayer::new`].
///
/// For every method but `GET`, `HEAD`, `OPTIONS` and `TRACE` (the safe ones, which must not
/// change state):
///
/// - with an `Origin` header, it must be on the allowlist: a foreign origin, `null`, a
///   malformed value or several `Origin` headers get 403;
/// - without `Origin` (older browsers on same-origin requests), the origin of the `Referer`
///   must be on the allowlist;
/// - with neither, the request passes only under [`MissingOrigin::Allow`] (the default: no
///   browser sends a cross-site `POST` without `Origin`, so these are native clients, scripts
///   and tests); with [`MissingOrigin::Refuse`] it gets 403 as well.
///
/// With [`OriginPolicy::any`] (`with_any_origin`) every request passes: the guard only
/// enforces an allowlist.
///
/// [`MissingOrigin::Allow`]: crate::origin::MissingOrigin::Allow
/// [`MissingOrigin::Refuse`]: crate::origin::MissingOrigin::Refuse
///
/// # Examples
/// ```
/// use axum::{Router, routing::post};
/// use socketio_sessions::{CsrfLayer, OriginPolicy};
///
/// let csrf = CsrfLayer::new(OriginPolicy::allow_list(["https://app.example.com"]).unwrap());
/// let app: Router = Router::new()
///     .route("/logout", post(|| async { "bye" }))
///     .layer(csrf);
/// ```
#[derive(Debug, Clone)]
pub struct CsrfLayer {
    policy: Arc<OriginPolicy>,
}

impl CsrfLayer {
    /// A guard enforcing `policy` on state-changing requests.
    pub fn new(policy: OriginPolicy) -> Self {
        CsrfLayer {
            policy: Arc::new(policy),
        }
    }

    pub(crate) fn from_shared(policy: Arc<OriginPolicy>) -> Self {
        CsrfLayer { policy }
    }

    /// Whether a request with this method and these headers may pass.
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use socketio_sessions::{CsrfLayer, OriginPolicy};
    ///
    /// let csrf = CsrfLayer::new(OriginPolicy::allow_list(["https://app.example.com"]).unwrap());
    /// let mut h = HeaderMap::new();
    /// h.insert("origin", "null".parse().unwrap());
    /// assert!(!csrf.allows(&Method::POST, &h));
    /// assert!(csrf.allows(&Method::GET, &h));
    /// ```
    pub fn allows(&self, method: &Method, headers: &HeaderMap) -> bool {
        if is_safe(method) {
            return true;
        }
        if headers.contains_key(ORIGIN) {
            return self.policy.allows_headers(headers);
        }
        let mut referers = headers.get_all(REFERER).iter();
        match (referers.next(), referers.next()) {
            (None, _) => self.policy.allows_missing(),
            (Some(r), None) => self.policy.allows_referer(r.as_bytes()),
            (Some(_), Some(_)) => false,
        }
    }
}

/// Methods that must not change state (RFC 9110 §9.2.1).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfGuard<S>;
    fn layer(&self, inner: S) -> CsrfGuard<S> {
        CsrfGuard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`CsrfLayer`]: answers 403 to a cross-site state-changing request,
/// passes the rest on.
#[derive(Debug, Clone)]
pub struct CsrfGuard<S> {
    inner: S,
    layer: CsrfLayer,
}

/// The body of the 403 answer.
const FORBIDDEN_BODY: &str = "cross-site request refused";

impl<S, B, ResBody> Service<Request<B>> for CsrfGuard<S>
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
        if self.layer.allows(req.method(), req.headers()) {
            return Either::Left(self.inner.call(req));
        }
        // Never the headers' values: whatever a client sends stays out of the logs.
        tracing::debug!(
            method = %req.method(),
            origin = origin_kind(req.headers()),
            "refused a cross-site state-changing request"
        );
        let mut res = Response::new(ResBody::from(FORBIDDEN_BODY));
        *res.status_mut() = StatusCode::FORBIDDEN;
        Either::Right(ready(Ok(res)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::MissingOrigin;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn state_changing_methods_need_an_allowed_origin() {
        let policy = OriginPolicy::allow_list(["https://app.example.com"]).unwrap();
        let lax = CsrfLayer::new(policy.clone());
        let strict = CsrfLayer::new(policy.with_missing(MissingOrigin::Refuse));
        let own = "https://app.example.com";
        let evil = "https://evil.example";
        type Headers<'a> = &'a [(&'a str, &'a str)];
        // (headers, allowed by `lax`, allowed by `strict`)
        let cases: &[(Headers<'_>, bool, bool)] = &[
            (&[("origin", own)], true, true),
            (&[("origin", evil)], false, false),
            (&[("origin", "null")], false, false),
            (&[("origin", "garbage")], false, false),
            (&[("origin", own), ("origin", own)], false, false),
            // Origin decides when present, whatever the Referer says.
            (
                &[("origin", evil), ("referer", "https://app.example.com/")],
                false,
                false,
            ),
            (
                &[("origin", own), ("referer", "https://evil.example/")],
                true,
                true,
            ),
            // Without Origin, the Referer's origin.
            (&[("referer", "https://app.example.com/page")], true, true),
            (&[("referer", "https://evil.example/page")], false, false),
            (
                &[("referer", "https://app.example.com.evil.example/")],
                false,
                false,
            ),
            (&[("referer", "garbage")], false, false),
            (
                &[
                    ("referer", "https://app.example.com/"),
                    ("referer", "https://app.example.com/"),
                ],
                false,
                false,
            ),
            // Neither: the missing-origin policy.
            (&[], true, false),
        ];
        for (pairs, lax_ok, strict_ok) in cases {
            let h = headers(pairs);
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                assert_eq!(lax.allows(&method, &h), *lax_ok, "{method} {pairs:?}");
                assert_eq!(
                    strict.allows(&method, &h),
                    *strict_ok,
                    "strict {method} {pairs:?}"
                );
            }
            let custom = Method::from_bytes(b"PURGE").unwrap();
            assert_eq!(lax.allows(&custom, &h), *lax_ok, "PURGE {pairs:?}");
            for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
                assert!(strict.allows(&method, &h), "{method} {pairs:?}");
            }
        }
        let any = CsrfLayer::new(OriginPolicy::any());
        assert!(any.allows(&Method::POST, &headers(&[("origin", "null")])));
    }

    #[derive(Clone)]
    struct Ok200;

    impl Service<Request<()>> for Ok200 {
        type Response = Response<String>;
        type Error = std::convert::Infallible;
        type Future = Ready<Result<Response<String>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            ready(Ok(Response::new("ok".into())))
        }
    }

    #[test]
    fn the_service_answers_403() {
        let layer = CsrfLayer::new(OriginPolicy::allow_list(["https://a.example"]).unwrap());
        let call = |method: &str, origin: &str| {
            let req = Request::builder()
                .method(method)
                .uri("/logout")
                .header("origin", origin)
                .body(())
                .unwrap();
            let res = futures_util::FutureExt::now_or_never(layer.layer(Ok200).call(req))
                .unwrap()
                .unwrap();
            (res.status().as_u16(), res.into_body())
        };
        assert_eq!(call("POST", "https://a.example"), (200, "ok".into()));
        assert_eq!(call("POST", "null"), (403, FORBIDDEN_BODY.into()));
        assert_eq!(call("GET", "null"), (200, "ok".into()));
    }
}
