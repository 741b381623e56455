//! The demo app on a free port, and the HTTP calls the tests make to it.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;
use tower_sessions::session::Id;

use super::app::{self, DemoOptions};
use super::backend::{Backend, TestStore};
use super::secrets;
use super::wait::SOON;

/// The demo app on a free port, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// The demo over the test store (conditional or plain, as its backend is).
    pub async fn start(st: &TestStore, opts: impl FnOnce(&mut DemoOptions)) -> TestServer {
        let (backend, store, plain) = (st.backend, st.store.clone(), st.plain.clone());
        Self::start_with(
            move |o| async move {
                match backend {
                    Backend::PlainMemory => app::app(plain, o).await,
                    _ => app::app_conditional(store, o).await,
                }
            },
            opts,
        )
        .await
    }

    /// The demo built by `make` (e.g. over a store of the test's own).
    pub async fn start_with<F>(
        make: impl FnOnce(DemoOptions) -> F,
        opts: impl FnOnce(&mut DemoOptions),
    ) -> TestServer
    where
        F: std::future::Future<Output = Result<axum::Router, app::BoxError>>,
    {
        secrets::watch();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = DemoOptions::new(app::own_origins(addr));
        options.store_timeout = Duration::from_millis(500);
        opts(&mut options);
        let router = make(options).await.expect("the demo app builds");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                rx.await.ok();
            })
            .await
            .unwrap();
        });
        TestServer {
            addr,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Logs in over HTTP and returns the `Cookie` header value to send on sockets.
    pub async fn login(&self, name: &str) -> String {
        let res = http()
            .post(self.url("/login"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login failed");
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .expect("login sets the session cookie")
            .to_str()
            .unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        secrets::cookie(&cookie);
        cookie
    }

    /// Logs in again on an existing session (the server rotates its id); returns the new cookie.
    pub async fn relogin(&self, cookie: &str, name: &str) -> String {
        let res = http()
            .post(self.url("/login"))
            .header("cookie", cookie)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login failed");
        let set_cookie = res.headers().get("set-cookie").expect("a new cookie");
        let cookie: String = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        secrets::cookie(&cookie);
        cookie
    }

    /// `POST /logout?everywhere=true`: this session and every socket of its user.
    pub async fn logout_everywhere(&self, cookie: &str) {
        let res = http()
            .post(self.url("/logout?everywhere=true"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    /// `GET /api/session` with this cookie: status and body.
    pub async fn session(&self, cookie: &str) -> (u16, Value) {
        let res = http()
            .get(self.url("/api/session"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The session counter as the HTTP side sees it.
    pub async fn count(&self, cookie: &str) -> u64 {
        let (status, body) = self.session(cookie).await;
        assert_eq!(status, 200, "no session: {body}");
        body["count"].as_u64().unwrap()
    }

    /// Polls the HTTP counter until it equals `want`, failing if it overshoots or times out.
    pub async fn wait_count(&self, cookie: &str, want: u64) {
        let deadline = Instant::now() + SOON;
        loop {
            let n = self.count(cookie).await;
            assert!(n <= want, "counter overshot: {n} > {want}");
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "counter stuck at {n}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `POST /api/visit`: an HTTP-side write (`visits` + 1); returns the new value.
    pub async fn visit(&self, cookie: &str) -> u64 {
        let res = http()
            .post(self.url("/api/visit"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "visit failed");
        res.json::<Value>().await.unwrap()["visits"]
            .as_u64()
            .unwrap()
    }

    pub async fn logout(&self, cookie: &str) {
        let res = http()
            .post(self.url("/logout"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if !std::thread::panicking() {
            secrets::check();
        }
    }
}

/// The session id inside a plain `id=...` cookie.
pub fn cookie_id(cookie: &str) -> Id {
    use std::str::FromStr;
    Id::from_str(cookie.strip_prefix("id=").expect("a plain `id` cookie")).unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
