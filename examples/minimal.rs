//! The smallest complete app: HTTP login and logout with tower-sessions on SQLite, and Socket.IO
//! handlers that share the session, per connection.
//!
//! Run with `cargo run --example minimal` (feature `sqlite`), then:
//!
//! ```sh
//! curl -c jar -X POST -d name=alice http://127.0.0.1:3000/login
//! # a Socket.IO client sending that cookie can `whoami` and `incr`; then:
//! curl -b jar -X POST http://127.0.0.1:3000/logout   # its sockets get `sinvalid`
//! ```
//!
//! `MINIMAL_ADDR` (default `127.0.0.1:3000`) and `MINIMAL_DB` (default `sqlite://minimal.db`).

use std::time::Duration;

use axum::{Form, Router, http::StatusCode, routing::post};
use serde::Deserialize;
use socketio_sessions::store::{ExpiredDeletion, SqliteStore};
use socketio_sessions::{MaybeSocketSession, Mode, SocketSession, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::ConnectHandler;
use tower_sessions::{Expiry, Session};

#[derive(Deserialize)]
struct Login {
    name: String,
}

/// A new session id at login (the old cookie stops working), then the user.
async fn login(session: Session, Form(login): Form<Login>) -> StatusCode {
    let stored = async {
        session.cycle_id().await?;
        session.insert("user", login.name).await
    };
    match stored.await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Deletes the session: its sockets, on every node, get `sinvalid` `session_revoked`.
async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Registered before the client's connect ack, so that no early event is dropped.
fn handlers(socket: SocketRef) {
    socket.on("whoami", async |session: SocketSession, ack: AckSender| {
        ack.send(&session.get::<String>("user").await.ok().flatten())
            .ok();
    });
    socket.on("incr", async |session: SocketSession, ack: AckSender| {
        // Atomic; per connection it is saved at disconnect (or at shutdown).
        let n = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1);
        ack.send(&n.await.ok()).ok();
    });
    socket.on_disconnect(async |MaybeSocketSession(session): MaybeSocketSession| {
        if let Some(session) = session {
            tracing::info!(session = %session.tag(), "socket gone");
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::var("MINIMAL_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let db = std::env::var("MINIMAL_DB").unwrap_or_else(|_| "sqlite://minimal.db".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;

    let store = SqliteStore::connect(&db).await?;
    // Expired records stay in the table until deleted.
    tokio::spawn(
        store
            .clone()
            .continuously_delete_expired(Duration::from_secs(60)),
    );

    let sessions = SocketSessions::builder(store.clone())
        .with_mode(Mode::PerConnection)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)))
        .with_allowed_origins([format!("http://{local}")])
        .build()?;

    let (sio_layer, io) = SocketIo::new_layer();
    let middleware = sessions.middleware().with_setup(handlers);
    io.ns("/", (async |_: SocketRef| {}).with(middleware));
    sessions.attach(&io);

    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(sessions.session_layer().with_secure(false)) // plain http on localhost
        .layer(sessions.layer(sio_layer));

    println!("minimal: listening on http://{local}");
    let on_stop = sessions.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::signal::ctrl_c().await.ok();
        // Saves every socket's changes and tells the clients to reconnect later.
        on_stop.shutdown().await;
    })
    .await?;
    store.pool().close().await;
    Ok(())
}
