//! socketioxide extractors for the socket's session. They are synchronous: the connect
//! middleware did the loading and left a binding in the socket's extensions.

use std::convert::Infallible;
use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::handler::{FromConnectParts, FromDisconnectParts, FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};

use crate::error::SessionError;
use crate::session::{Binding, Phase, SocketSession};

fn handle<A: Adapter>(s: &Arc<Socket<A>>, phase: Phase) -> Option<SocketSession> {
    s.extensions.get::<Binding>().map(|b| b.handle(phase))
}

impl<A: Adapter> FromConnectParts<A> for SocketSession {
    type Error = SessionError;
    fn from_connect_parts(s: &Arc<Socket<A>>, _: &Option<Value>) -> Result<Self, SessionError> {
        handle(s, Phase::Connect).ok_or(SessionError::NotEnabled)
    }
}

impl<A: Adapter> FromMessageParts<A> for SocketSession {
    type Error = SessionError;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, SessionError> {
        handle(s, Phase::Message).ok_or(SessionError::NotEnabled)
    }
}

/// The socket's session if it has one. Never fails, so it is the form to use in disconnect
/// handlers (a failing disconnect extractor would skip socketioxide's cleanup).
#[derive(Debug, Clone)]
pub struct MaybeSocketSession(pub Option<SocketSession>);

impl<A: Adapter> FromConnectParts<A> for MaybeSocketSession {
    type Error = Infallible;
    fn from_connect_parts(s: &Arc<Socket<A>>, _: &Option<Value>) -> Result<Self, Infallible> {
        Ok(MaybeSocketSession(handle(s, Phase::Connect)))
    }
}

impl<A: Adapter> FromMessageParts<A> for MaybeSocketSession {
    type Error = Infallible;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(MaybeSocketSession(handle(s, Phase::Message)))
    }
}

impl<A: Adapter> FromDisconnectParts<A> for MaybeSocketSession {
    type Error = Infallible;
    fn from_disconnect_parts(s: &Arc<Socket<A>>, _: DisconnectReason) -> Result<Self, Infallible> {
        Ok(MaybeSocketSession(handle(s, Phase::Disconnect)))
    }
}
