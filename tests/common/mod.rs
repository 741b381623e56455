//! The shared harness: real stores (memory, a SQLite temp file, a `redis-server` spawned on a
//! free port), the real demo app on `127.0.0.1:0` in a runtime of its own, real HTTP and a real
//! Socket.IO client (rust_socketio) over WebSocket and polling.
//!
//! One concept per file:
//! - [`required`]: what a missing real part (redis-server, node, chattr) does: skip or fail.
//! - [`wait`]: how long tests wait, and waiting for a condition instead of sleeping.
//! - [`redis`]: a `redis-server` of the test's own.
//! - [`redis_cluster`]: a Redis Cluster of the test's own (3 primaries, 3 replicas).
//! - [`probe`]: a store wrapper that counts calls and can fail or hang (until healed).
//! - [`sql`]: a Postgres or MySQL database of the test's own, dropped after.
//! - [`sql_server`]: a Postgres or MariaDB server of the test's own, to kill and restart.
//! - [`backend`]: the stores every suite runs on, closed when the test ends.
//! - [`server`]: the demo app on a free port, stopped with everything it started.
//! - [`client`]: Socket.IO clients and raw Engine.IO handshakes.
//! - [`process`]: the real demo as a child process, and the calls tests make to it.
//! - [`secrets`]: no session secret in the server's logs or in what clients receive.
//! - [`store_tests`]: the macro that runs a suite's cases on every store.
//! - [`forward`]: the macro that hands a wrapper store's plain calls to the store it wraps.
#![allow(dead_code, unused_imports)]

#[path = "../../examples/demo/app.rs"]
pub mod app;
#[path = "../../examples/demo/store.rs"]
pub mod store;

pub mod backend;
pub mod client;
pub mod forward;
pub mod probe;
pub mod process;
pub mod redis;
pub mod redis_cluster;
pub mod required;
pub mod secrets;
pub mod server;
pub mod sql;
pub mod sql_server;
pub mod store_tests;
pub mod wait;

pub use app::DemoOptions;
pub use backend::{Backend, TestStore};
pub use client::{
    Dial, Outcome, TRANSPORTS, TestSocket, Transport, connected, dial, polling_connect,
    polling_handshake, polling_open, websocket_handshake,
};
pub(crate) use forward::session_store_via_inner;
pub use probe::Probe;
pub use redis::{RedisServer, free_port};
pub use redis_cluster::RedisCluster;
pub use required::{REQUIRE_ENV, required};
pub use server::{STORE_TIMEOUT, TestServer, cookie_id, http};
pub use store::DemoStore;
pub(crate) use store_tests::store_tests;
pub use wait::{NEVER, SLACK, SOON, eventually};
