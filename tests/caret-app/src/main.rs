//! Installs socketio-sessions as an app would, with the app's own caret dependencies on axum,
//! socketioxide and tower-sessions: their types must be the ones the crate takes.

use axum::Router;
use axum::routing::post;
use socketio_sessions::store::{ExpiredDeletion, SqliteStore};
use socketio_sessions::{SocketSession, SocketSessions};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::ConnectHandler;
use tower_sessions::Session;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::connect("sqlite://caret-app.db").await?;
    tokio::spawn(
        store
            .clone()
            .continuously_delete_expired(std::time::Duration::from_secs(60)),
    );
    let sessions = SocketSessions::builder(store)
        .with_allowed_origins(["http://127.0.0.1:3000"])
        .build()?;
    let (sio_layer, io) = SocketIo::new_layer();
    let middleware = sessions.middleware().with_setup(|socket: SocketRef| {
        socket.on("whoami", async |session: SocketSession, ack: AckSender| {
            ack.send(&session.get::<String>("user").await.ok().flatten())
                .ok();
        });
    });
    io.ns("/", (async |_: SocketRef| {}).with(middleware));
    let app = Router::new()
        .route(
            "/login",
            post(async |session: Session| {
                session.insert("user", "alice").await.ok();
            }),
        )
        .layer(sessions.session_layer())
        .layer(sessions.layer(sio_layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
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
