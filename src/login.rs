//! axum-login on the socket side (feature `axum-login`): who is logged in, checked as
//! axum-login checks it on HTTP requests.
//!
//! axum-login keeps the login in the session under `axum-login.data`: the user's id and the
//! user's session auth hash at login (e.g. a hash of the password hash). A socket's user is the
//! backend's `get_user` of that id, valid only while its auth hash still equals the one stored
//! (compared in constant time), so that a password change ends the logins made before it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum_login::{AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extensions::Extensions;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{FromConnectParts, FromMessageParts};
use socketioxide::socket::Socket;
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;
use tower_sessions::session_store;

use crate::config::Mode;
use crate::error::SessionError;
use crate::lifecycle::{EndHook, EndReason, end_socket};
use crate::session::{Binding, Phase, SocketSession};

/// The session key under which axum-login keeps the login (its default data key; a key set
/// with `AuthManagerLayerBuilder::with_data_key` is not followed).
pub const AXUM_LOGIN_DATA_KEY: &str = "axum-login.data";

/// axum-login's login record as it serializes it into the session. axum-login 0.18 reads it
/// only inside its HTTP layer and offers no public reader; `tests/axum_login.rs` checks this
/// shape against logins made by the real crate.
#[derive(Deserialize)]
struct LoginData<Id> {
    user_id: Option<Id>,
    auth_hash: Option<Vec<u8>>,
}

/// Whether someone is logged in on a session, by its data: the builder's `require` check
/// with axum-login.
pub(crate) fn logged_in(data: &HashMap<String, Value>) -> bool {
    data.get(AXUM_LOGIN_DATA_KEY)
        .and_then(|d| d.get("user_id"))
        .is_some_and(|id| !id.is_null())
}

/// What each socket holds for [`SocketAuth`]: the backend, the `on_end` hook, and the user
/// once checked (per-connection mode keeps it for the connection's life).
struct LoginState<B: AuthnBackend> {
    /// The app's backend (cheap to clone, as axum-login requires): asked for the user.
    backend: B,
    /// The builder's `on_end` hook, for a socket this extractor ends.
    on_end: Option<EndHook>,
    /// A `OnceCell`: concurrent handlers of one socket wait for one `get_user`, not one each.
    user: Arc<OnceCell<Option<B::User>>>,
}

impl<B: AuthnBackend> Clone for LoginState<B> {
    fn clone(&self) -> Self {
        LoginState {
            backend: self.backend.clone(),
            on_end: self.on_end.clone(),
            user: self.user.clone(),
        }
    }
}

/// The builder's bind hook for axum-login: each accepted socket gets the backend and a fresh
/// per-connection cache.
pub(crate) fn bind_hook<B: AuthnBackend + 'static>(
    backend: B,
    on_end: Option<EndHook>,
) -> Arc<dyn Fn(&Extensions) + Send + Sync> {
    Arc::new(move |extensions: &Extensions| {
        extensions.insert(LoginState {
            backend: backend.clone(),
            on_end: on_end.clone(),
            user: Arc::new(OnceCell::new()),
        });
    })
}

type BoxFuture<T = ()> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// The socket's axum-login user, for connect and message handlers. Enable it with
/// [`with_axum_login`](crate::SocketSessionsBuilder::with_axum_login).
///
/// [`user`](Self::user) calls the backend's `get_user` for the id axum-login stored at login
/// and checks the user's `session_auth_hash` against the one stored then, in constant time:
/// once per connection in [`Mode::PerConnection`], once per message (per handler) in
/// [`Mode::PerMessage`]. When the hash no longer matches (the password changed) or the user is
/// gone, the socket is ended with `session_revoked` and `user` answers `None`.
///
/// It carries the handler's session: use [`session`](Self::session) rather than a
/// `SocketSession` extractor beside it. In per-message mode each extractor holds the session
/// for its handler, so a second one would wait for the first until the handler returns.
///
/// ```
/// # #[cfg(feature = "axum-login")]
/// # mod app {
/// use axum_login::AuthnBackend;
/// use socketio_sessions::SocketAuth;
/// use socketioxide::extract::AckSender;
///
/// async fn whoami<B: AuthnBackend + 'static>(auth: SocketAuth<B>, ack: AckSender) {
///     let name = match auth.user().await {
///         Ok(Some(user)) => format!("{user:?}"),
///         _ => "nobody".into(),
///     };
///     ack.send(&name).ok();
/// }
/// # }
/// ```
pub struct SocketAuth<B: AuthnBackend> {
    /// The socket's session, as the handler's `SocketSession` would be.
    session: SocketSession,
    backend: B,
    /// The socket's cache (per connection) or this handler's own (per message).
    user: Arc<OnceCell<Option<B::User>>>,
    /// Ends this socket; erased so that the extractor does not name the socket's adapter.
    end: Arc<dyn Fn(EndReason) -> BoxFuture + Send + Sync>,
}

impl<B: AuthnBackend> fmt::Debug for SocketAuth<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketAuth")
            .field("session", &self.session)
            .field("user", &self.user.get())
            .finish_non_exhaustive()
    }
}

impl<B: AuthnBackend + 'static> SocketAuth<B> {
    /// The logged-in user, or `None` (nobody logged in, the user is gone, or the password
    /// changed since the login: then the socket is being ended with `session_revoked`).
    pub async fn user(&self) -> Result<Option<B::User>, SessionError> {
        self.user.get_or_try_init(|| self.check()).await.cloned()
    }

    /// The session this user is logged in on.
    pub fn session(&self) -> &SocketSession {
        &self.session
    }

    async fn check(&self) -> Result<Option<B::User>, SessionError> {
        match verify(&self.session, &self.backend).await? {
            Login::Valid(user) => Ok(Some(user)),
            Login::Nobody => Ok(None),
            Login::Stale => {
                tracing::info!(
                    session = %self.session.tag(),
                    "login no longer valid (password changed or user gone): ending the socket"
                );
                // Spawned: the end waits for the client's acknowledgement of `sinvalid`,
                // which this handler's own ack may be queued behind.
                tokio::spawn((self.end)(EndReason::Revoked));
                Ok(None)
            }
        }
    }
}

/// What a session's login is worth now.
enum Login<U> {
    /// Nobody is logged in.
    Nobody,
    /// The user, whose auth hash still matches the login's.
    Valid(U),
    /// A login whose user is gone or whose auth hash changed (e.g. the password).
    Stale,
}

/// The session's login checked as axum-login checks it: the backend's user for the stored id,
/// with the stored auth hash equal to the user's, compared in constant time.
async fn verify<B: AuthnBackend>(
    session: &SocketSession,
    backend: &B,
) -> Result<Login<B::User>, SessionError> {
    let data: Option<LoginData<UserId<B>>> = session.get(AXUM_LOGIN_DATA_KEY).await?;
    let Some(LoginData {
        user_id: Some(id),
        auth_hash,
    }) = data
    else {
        return Ok(Login::Nobody);
    };
    let user = backend
        .get_user(&id)
        .await
        .map_err(|e| SessionError::Store(session_store::Error::Backend(e.to_string())))?;
    Ok(match (user, auth_hash) {
        (Some(user), Some(hash)) if bool::from(hash.ct_eq(user.session_auth_hash())) => {
            Login::Valid(user)
        }
        _ => Login::Stale,
    })
}

/// The connect check with axum-login: a handshake whose login is stale is refused, like one
/// without a login. `None` when the backend or the store failed.
#[allow(clippy::type_complexity)] // the connect stage names it `ConnectCheck`
pub(crate) fn connect_check<B: AuthnBackend + 'static>()
-> Arc<dyn Fn(&Extensions) -> BoxFuture<Option<bool>> + Send + Sync> {
    Arc::new(|extensions: &Extensions| -> BoxFuture<Option<bool>> {
        let (Some(binding), Some(state)) = (
            extensions.get::<Binding>(),
            extensions.get::<LoginState<B>>(),
        ) else {
            return Box::pin(async { Some(false) });
        };
        let session = binding.handle(Phase::Connect);
        Box::pin(async move {
            match verify(&session, &state.backend).await {
                Ok(Login::Valid(user)) => {
                    // Per connection, the check at connect is the connection's.
                    if session.mode() == Mode::PerConnection {
                        let _ = state.user.set(Some(user));
                    }
                    Some(true)
                }
                Ok(_) => Some(false),
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the login at connect");
                    None
                }
            }
        })
    })
}

fn extract<A: Adapter, B: AuthnBackend + 'static>(
    s: &Arc<Socket<A>>,
    phase: Phase,
) -> Result<SocketAuth<B>, SessionError> {
    let binding = s
        .extensions
        .get::<Binding>()
        .ok_or(SessionError::NotEnabled)?;
    let login = s
        .extensions
        .get::<LoginState<B>>()
        .ok_or(SessionError::NotEnabled)?;
    let session = binding.handle(phase);
    let user = match session.mode() {
        Mode::PerConnection => login.user.clone(),
        _ => Arc::new(OnceCell::new()),
    };
    let socket = SocketRef::from(s.clone());
    let hook = login.on_end.clone();
    let end = Arc::new(move |reason: EndReason| -> BoxFuture {
        let (socket, hook) = (socket.clone(), hook.clone());
        Box::pin(async move { end_socket(socket, reason, hook.as_ref()).await })
    });
    Ok(SocketAuth {
        session,
        backend: login.backend,
        user,
        end,
    })
}

impl<A: Adapter, B: AuthnBackend + 'static> FromConnectParts<A> for SocketAuth<B> {
    type Error = SessionError;
    fn from_connect_parts(
        s: &Arc<Socket<A>>,
        _: &Option<socketioxide::handler::Value>,
    ) -> Result<Self, SessionError> {
        extract(s, Phase::Connect)
    }
}

impl<A: Adapter, B: AuthnBackend + 'static> FromMessageParts<A> for SocketAuth<B> {
    type Error = SessionError;
    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        _: &Option<i64>,
    ) -> Result<Self, SessionError> {
        extract(s, Phase::Message)
    }
}
