//! axum-login with Socket.IO: users in SQLite, logins over HTTP, and sockets that know the
//! logged-in user, refuse anonymous sessions, and end at logout or password change.
//!
//! Run with `cargo run --example axum_login` (features `sqlite`, `redis`, `axum-login`), then:
//!
//! ```sh
//! curl -c jar -X POST -d 'name=alice&password=hunter2' http://127.0.0.1:3000/login
//! # a Socket.IO client sending that cookie can `whoami`; then either of:
//! curl -b jar -X POST -d password=new-secret http://127.0.0.1:3000/password  # sockets: session_revoked
//! curl -b jar -X POST http://127.0.0.1:3000/logout                           # sockets: session_revoked
//! ```
//!
//! `AXUM_LOGIN_ADDR` (default `127.0.0.1:3000`), `AXUM_LOGIN_DB` (users, and sessions unless
//! `AXUM_LOGIN_SESSIONS` is set; default `sqlite://axum_login.db`), `AXUM_LOGIN_SESSIONS`
//! (`redis://HOST:PORT`: sessions in Redis, so that several nodes share them),
//! `AXUM_LOGIN_MODE` (`per-message`, the default, or `per-connection`).

use axum::{Form, Router, extract::Extension, http::StatusCode, routing::post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use socketio_sessions::store::sqlx::{self, SqlitePool};
use socketio_sessions::store::{ConditionalStore, RedisStore, SqliteStore};
use socketio_sessions::{Mode, SocketAuth, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::ConnectHandler;

#[derive(Clone)]
struct User {
    id: i64,
    name: String,
    pw_hash: Vec<u8>,
}

// Not derived: the password hash stays out of logs.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl AuthUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
    /// Changes with the password, so that logins made before a change stop being valid.
    fn session_auth_hash(&self) -> &[u8] {
        &self.pw_hash
    }
}

/// SHA-256 keeps this example free of a password-hashing dependency; an app stores a slow,
/// salted hash (Argon2, e.g. the `password-auth` crate) instead.
fn hash(name: &str, password: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(name)
        .chain_update([0])
        .chain_update(password)
        .finalize()
        .to_vec()
}

#[derive(Clone, Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

#[derive(Clone)]
struct Backend {
    users: SqlitePool,
}

impl Backend {
    async fn find(&self, column: &str, value: &str) -> Result<Option<User>, sqlx::Error> {
        let query = format!("select id, name, pw_hash from users where {column} = ?");
        let row: Option<(i64, String, Vec<u8>)> = sqlx::query_as(&query)
            .bind(value)
            .fetch_optional(&self.users)
            .await?;
        Ok(row.map(|(id, name, pw_hash)| User { id, name, pw_hash }))
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = sqlx::Error;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, sqlx::Error> {
        let user = self.find("name", &creds.name).await?;
        Ok(user.filter(|u| u.pw_hash == hash(&creds.name, &creds.password)))
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, sqlx::Error> {
        self.find("id", &id.to_string()).await
    }
}

type Auth = AuthSession<Backend>;

async fn login(mut auth: Auth, Form(creds): Form<Credentials>) -> StatusCode {
    match auth.authenticate(creds).await {
        Ok(Some(user)) if auth.login(&user).await.is_ok() => StatusCode::NO_CONTENT,
        Ok(_) => StatusCode::UNAUTHORIZED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Deletes the session: its sockets get `session_revoked`.
async fn logout(mut auth: Auth) -> StatusCode {
    match auth.logout().await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Deserialize)]
struct Theme {
    theme: String,
}

/// Anyone may keep a preference: such an anonymous session exists, but gets no sockets.
async fn set_theme(auth: Auth, Form(t): Form<Theme>) -> StatusCode {
    match auth.session.insert("theme", t.theme).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// Every other login of the user stops being valid; this one is renewed with the new hash.
async fn change_password(
    mut auth: Auth,
    Extension(sessions): Extension<SocketSessions>,
    Form(new): Form<NewPassword>,
) -> StatusCode {
    let Some(user) = auth.user.clone() else {
        return StatusCode::UNAUTHORIZED;
    };
    let pw_hash = hash(&user.name, &new.password);
    let updated = sqlx::query("update users set pw_hash = ? where id = ?")
        .bind(&pw_hash)
        .bind(user.id)
        .execute(&auth.backend.users)
        .await;
    if updated.is_err()
        || auth
            .login(&User {
                pw_hash,
                ..user.clone()
            })
            .await
            .is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    // At once, on every node: without it each old socket ends at its next event.
    match sessions.disconnect_user(&user.id).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Who the socket is: checked against the users table at every event in per-message mode,
/// once per connection in per-connection mode.
async fn whoami(auth: SocketAuth<Backend>, ack: AckSender) {
    let name = auth.user().await.ok().flatten().map(|u| u.name);
    ack.send(&name).ok();
}

async fn serve<S: ConditionalStore + Clone>(
    store: S,
    backend: Backend,
    listener: tokio::net::TcpListener,
) -> Result<(), Box<dyn std::error::Error>> {
    let local = listener.local_addr()?;
    let mode = match std::env::var("AXUM_LOGIN_MODE").as_deref() {
        // The user is checked once, at connect; a password change reaches sockets through
        // `disconnect_user`.
        Ok("per-connection") => Mode::PerConnection,
        _ => Mode::PerMessage,
    };
    let sessions = SocketSessions::builder(store)
        .with_mode(mode)
        .with_allowed_origins([format!("http://{local}")])
        .with_axum_login(backend.clone()) // anonymous sessions get `session_invalid`
        .on_end(|end| tracing::info!(reason = %end.reason, user = ?end.user, "socket ended"))
        .build()?;
    if let Ok(url) = std::env::var("AXUM_LOGIN_SESSIONS") {
        // Deletions by another node (logout) reach this node's sockets at once.
        sessions
            .watch_redis(
                socketio_sessions::store::fred::prelude::Config::from_url(&url)?,
                true,
            )
            .await?;
    }

    let (sio_layer, io) = SocketIo::new_layer();
    let middleware = sessions.middleware().with_setup(|socket: SocketRef| {
        socket.on("whoami", whoami);
    });
    io.ns("/", (async |_: SocketRef| {}).with(middleware));
    sessions.attach(&io);

    let session_layer = sessions.session_layer().with_secure(false); // plain http on localhost
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/password", post(change_password))
        .route("/theme", post(set_theme))
        .layer(Extension(sessions.clone()))
        .layer(AuthManagerLayerBuilder::new(backend, session_layer).build())
        .layer(sessions.layer(sio_layer));

    println!("axum_login: listening on http://{local}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::signal::ctrl_c().await.ok();
        sessions.shutdown().await;
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::var("AXUM_LOGIN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let db = std::env::var("AXUM_LOGIN_DB").unwrap_or_else(|_| "sqlite://axum_login.db".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;

    // The sessions' SQLite store opens the file; the users table lives beside its sessions.
    let sqlite = SqliteStore::connect(&db).await?;
    let users = sqlite.pool().clone();
    sqlx::query("create table if not exists users (id integer primary key, name text unique not null, pw_hash blob not null)")
        .execute(&users)
        .await?;
    for (name, password) in [("alice", "hunter2"), ("bob", "correct horse")] {
        sqlx::query("insert or ignore into users (name, pw_hash) values (?, ?)")
            .bind(name)
            .bind(hash(name, password))
            .execute(&users)
            .await?;
    }
    let backend = Backend { users };
    match std::env::var("AXUM_LOGIN_SESSIONS") {
        Ok(url) => serve(RedisStore::connect(&url).await?, backend, listener).await,
        Err(_) => serve(sqlite, backend, listener).await,
    }
}
