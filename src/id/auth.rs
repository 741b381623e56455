//! The client model of Node's socket.io-sessions: the session id in the Socket.IO `auth`
//! payload, `{"sid": "..."}`, for clients that cannot send cookies. Off unless enabled, since a
//! JS-readable session id is easier to steal than an HttpOnly cookie.

use std::sync::Arc;

use serde::Deserialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::TryData;
use socketioxide::handler::{FromConnectParts, Value};
use socketioxide::socket::Socket;

#[derive(Deserialize)]
struct AuthPayload {
    sid: Option<String>,
}

/// The `sid` string of the `auth` payload, if it is an object with a string `sid`.
pub(crate) fn auth_sid<A: Adapter>(s: &Arc<Socket<A>>, auth: &Option<Value>) -> Option<String> {
    auth.as_ref()?;
    let Ok(TryData(Ok(payload))) = TryData::<AuthPayload>::from_connect_parts(s, auth) else {
        return None;
    };
    payload.sid
}
