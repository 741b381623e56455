//! What the app installs around its routes, as one layer that cannot be put together in the
//! wrong order: [`SocketSessionsLayer`] (origin gate → Socket.IO → HTTP scope).

use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use futures_util::TryFutureExt;
use futures_util::future::MapOk;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{HttpScope, HttpScopeLayer};
use crate::origin::{OriginGate, OriginLayer};

/// The Socket.IO side of the app as one layer: the origin gate outermost (403 before anything
/// parses a handshake), then socketioxide's layer, then the HTTP scope that lets logout and
/// rotation reach sockets. Get it from
/// [`SocketSessions::layer`](crate::SocketSessions::layer) and add it after (outside) the
/// session layer: `.layer(sessions.session_layer()).layer(sessions.layer(sio_layer))`.
#[derive(Debug, Clone)]
pub struct SocketSessionsLayer<L> {
    origin: OriginLayer,
    sio: L,
}

impl<L> SocketSessionsLayer<L> {
    pub(crate) fn new(origin: OriginLayer, sio: L) -> Self {
        SocketSessionsLayer { origin, sio }
    }
}

impl<S, L: Layer<HttpScope<S>>> Layer<S> for SocketSessionsLayer<L> {
    type Service = OriginGate<AxumBody<L::Service>>;
    fn layer(&self, inner: S) -> Self::Service {
        let scoped = HttpScopeLayer::new().layer(inner);
        self.origin.layer(AxumBody(self.sio.layer(scoped)))
    }
}

/// Answers with axum's body type whatever body the Socket.IO service answers with, so that the
/// origin gate around it can answer 403 itself (axum's `Router::layer` does this between
/// separate layers; inside one layer it is ours to do).
#[derive(Debug, Clone)]
pub struct AxumBody<S>(S);

type ToAxum<B> = fn(Response<B>) -> Response<Body>;

impl<S, ReqBody, B> Service<Request<ReqBody>> for AxumBody<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = MapOk<S::Future, ToAxum<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let to_axum: ToAxum<B> = |res| res.map(Body::new);
        self.0.call(req).map_ok(to_axum)
    }
}
