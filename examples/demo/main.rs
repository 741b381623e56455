//! The socketio-sessions demo: log in over HTTP, then count and chat over Socket.IO with the
//! same session. Run with `cargo run --example demo` and open http://127.0.0.1:3000.
//!
//! Environment: `DEMO_ADDR` (default `127.0.0.1:3000`), `DEMO_STORE` (`memory`,
//! `sqlite://PATH`, `postgres://USER@HOST/DB`, `mysql://USER@HOST/DB`, `redis://HOST:PORT`,
//! `redis-cluster://HOST:PORT[,HOST:PORT...]`), `DEMO_MODE` (`per-message`, `per-connection`),
//! `DEMO_SESSION_TTL_SECS` (default 3600), `DEMO_ALLOWED_ORIGINS` (comma-separated; default the
//! demo's own origin), `DEMO_SIGNING_SECRET` (32+ bytes: sign the session cookie), `DEMO_AUTH_SID=1` (also accept
//! the cookie's value as `auth: {sid}`), `DEMO_REVALIDATE_SECS` (default 30), `DEMO_ROLLING_MS`
//! (rolling expiry: socket activity extends the session, one write per interval at most).
//! With `DEMO_STORE=redis://...` or `redis-cluster://...` the node joins the others on that Redis
//! (Socket.IO Redis adapter, keyspace notifications). `DEMO_REDIS_REPLICAS=N`: each save waits
//! until N replicas have it (at most 500 ms), so that a failover loses no acknowledged save.
//! `DEMO_EXPRESS_SECRET=secret1[,secret2]` (with `DEMO_STORE=redis://...`): read an Express app's
//! sessions (`connect.sid`, connect-redis records) instead of the demo's own.
//! `DEMO_TRUSTED_PROXIES` (comma-separated IPs/CIDRs of reverse proxies whose
//! `X-Forwarded-For` names the client), `DEMO_FAILURE_LIMIT` (`N` or `N/SECS`: invalid-session
//! handshakes per client address, default 30/60).
//! `GET /metrics` serves the library's metrics in Prometheus text format.

mod app;
mod store;

use std::time::Duration;

use socketio_sessions::{ExpressSecrets, FailureLimit, Mode, TrustedProxies};
use tower_sessions::cookie::Key;
use tracing_subscriber::EnvFilter;

use app::DemoOptions;
use store::DemoStore;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn fail(msg: String) -> ! {
    eprintln!("demo: {msg}");
    std::process::exit(2);
}

/// SIGTERM (a deploy, `docker stop`, systemd) or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok();
}

#[tokio::main]
async fn main() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // socketioxide logs every received CONNECT packet, `auth` payload included, at DEBUG under
    // `socketioxide::client`: keep it at INFO unless RUST_LOG names it on purpose.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("socketioxide::client")) {
        filter = filter.add_directive("socketioxide::client=info".parse().expect("a directive"));
    }
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let addr = env("DEMO_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    let local = listener.local_addr().expect("bound socket has an address");

    let mut opts = DemoOptions::new(app::own_origins(local));
    if let Some(mode) = env("DEMO_MODE") {
        opts.mode = match mode.as_str() {
            "per-message" => Mode::PerMessage,
            "per-connection" => Mode::PerConnection,
            other => fail(format!(
                "unknown DEMO_MODE `{other}`: use `per-message` or `per-connection`"
            )),
        };
    }
    if let Some(ttl) = env("DEMO_SESSION_TTL_SECS") {
        let secs: u64 = ttl.parse().ok().filter(|s| *s > 0).unwrap_or_else(|| {
            fail(format!(
                "DEMO_SESSION_TTL_SECS must be a positive whole number, not `{ttl}`"
            ))
        });
        opts.ttl = Duration::from_secs(secs);
    }
    if let Some(origins) = env("DEMO_ALLOWED_ORIGINS") {
        opts.allowed_origins = origins.split(',').map(|o| o.trim().to_owned()).collect();
    }
    if let Some(secret) = env("DEMO_SIGNING_SECRET") {
        if secret.len() < 32 {
            fail("DEMO_SIGNING_SECRET must be at least 32 bytes".into());
        }
        opts.signing_key = Some(Key::derive_from(secret.as_bytes()));
    }
    opts.on_invalid = Some(std::sync::Arc::new(
        |ev: &socketio_sessions::InvalidSession| {
            tracing::info!(reason = ?ev.reason, "sinvalid: socket refused its session");
        },
    ));
    opts.auth_sid = env("DEMO_AUTH_SID").is_some_and(|v| v == "1" || v == "true");
    let store_url = env("DEMO_STORE").unwrap_or_else(|| "memory".into());
    opts.metrics = Some(install_metrics());
    if let Some(secs) = env("DEMO_REVALIDATE_SECS") {
        let secs: u64 = secs.parse().ok().filter(|s| *s > 0).unwrap_or_else(|| {
            fail(format!(
                "DEMO_REVALIDATE_SECS must be a positive whole number, not `{secs}`"
            ))
        });
        opts.revalidate_every = Duration::from_secs(secs);
    }
    if let Some(ms) = env("DEMO_ROLLING_MS") {
        let ms: u64 = ms.parse().ok().filter(|s| *s > 0).unwrap_or_else(|| {
            fail(format!(
                "DEMO_ROLLING_MS must be a positive whole number, not `{ms}`"
            ))
        });
        opts.rolling = Some(Duration::from_millis(ms));
    }
    if let Some(list) = env("DEMO_TRUSTED_PROXIES") {
        let proxies = TrustedProxies::new(list.split(',').map(str::trim))
            .unwrap_or_else(|e| fail(format!("DEMO_TRUSTED_PROXIES: {e}")));
        opts.trusted_proxies = Some(proxies);
    }
    if let Some(limit) = env("DEMO_FAILURE_LIMIT") {
        let (n, secs) = limit.split_once('/').unwrap_or((&limit, "60"));
        let parsed = (n.trim().parse::<u32>(), secs.trim().parse::<u64>());
        let (Ok(max_failures), Ok(secs @ 1..)) = parsed else {
            fail(format!(
                "DEMO_FAILURE_LIMIT must be `N` or `N/SECS` (whole numbers), not `{limit}`"
            ))
        };
        opts.failure_limit = Some(FailureLimit {
            max_failures,
            window: Duration::from_secs(secs),
        });
    }
    let express = env("DEMO_EXPRESS_SECRET").map(|secrets| {
        ExpressSecrets::new(secrets.split(',').map(str::trim))
            .unwrap_or_else(|| fail("DEMO_EXPRESS_SECRET is empty".into()))
    });
    let store = match &express {
        Some(_) => DemoStore::open_express(&store_url).await,
        None => DemoStore::open(&store_url).await,
    }
    .unwrap_or_else(|e| fail(e));
    let store = match env("DEMO_REDIS_REPLICAS") {
        Some(n) => {
            let replicas: u32 = n.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                fail(format!(
                    "DEMO_REDIS_REPLICAS must be a positive whole number, not `{n}`"
                ))
            });
            store
                .with_replica_wait(replicas, Duration::from_millis(500))
                .unwrap_or_else(|e| fail(e))
        }
        None => store,
    };
    opts.express_secrets = express;
    if store_url.starts_with("redis://") || store_url.starts_with("redis-cluster://") {
        opts.redis_adapter = Some(store_url.clone());
    }
    let app::DemoApp { router, sessions } = app::app(store.clone(), opts.clone())
        .await
        .unwrap_or_else(|e| fail(e.to_string()));

    tracing::info!(
        "store: {}, mode: {:?}, adapter: {}",
        store_url.split("://").next().unwrap_or("memory"),
        opts.mode,
        if opts.redis_adapter.is_some() {
            "redis"
        } else {
            "local"
        }
    );
    // A stable line that scripts and the end-to-end tests wait for.
    println!("demo: listening on http://{local}");
    // Client addresses feed the per-address limit on invalid-session handshakes.
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop_signal().await;
        // Sockets are told `server_shutdown` (they reconnect) and every unsaved change is
        // saved before the server stops.
        let report = sessions.shutdown().await;
        tracing::info!(?report, "sessions shut down");
    });
    server
        .await
        .unwrap_or_else(|e| fail(format!("server error: {e}")));
    store.close().await;
    println!("demo: stopped");
}

/// Installs the process-wide Prometheus recorder before the sessions are built (they describe
/// their metrics to it), and keeps its histograms drained.
fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .and_then(|b| b.install_recorder())
        .unwrap_or_else(|e| fail(format!("cannot install the metrics recorder: {e}")));
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    handle
}
