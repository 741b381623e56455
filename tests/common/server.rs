//! The demo app on a free port, in a runtime of its own on a thread of its own, and the HTTP
//! calls the tests make to it.
//!
//! Stopping a server stops everything it started: its accept loop and connections, Engine.IO
//! sessions, the sessions' background work (revalidation, expiry timers, write-behind), the
//! Redis adapter and keyspace watch with their retry loops. They all run on the server's
//! runtime, which is shut down before [`TestServer`]'s drop returns, so nothing of one test's
//! server keeps running into the next test, and its logs are all written (and checked) by then.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tower_sessions::session::Id;

use super::app::{self, DemoOptions};
use super::backend::{Backend, TestStore};
use super::secrets;
use super::wait::SOON;

/// The store timeout of every test server, unless a test sets its own: long enough that a
/// healthy store on a loaded machine never reaches it (two handlers of one session may also
/// queue behind each other within it), short enough for tests that wait it out.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The demo app on a free port, stopped (with everything it started) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The demo's sessions (e.g. to shut them down as a deploy would).
    pub sessions: socketio_sessions::SocketSessions,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// The demo over the test store (conditional or plain, as its backend is).
    pub async fn start(st: &TestStore, opts: impl FnOnce(&mut DemoOptions)) -> TestServer {
        let (backend, store, plain) = (st.backend, st.store.clone(), st.plain.clone());
        Self::start_with(
            move |o| async move {
                match backend {
                    Backend::PlainMemory => app::app_last_writer_wins(plain, o).await,
                    _ => app::app(store, o).await,
                }
            },
            opts,
        )
        .await
    }

    /// The demo built by `make` (e.g. over a store of the test's own), on the server's runtime.
    pub async fn start_with<F, Fut>(make: F, opts: impl FnOnce(&mut DemoOptions)) -> TestServer
    where
        F: FnOnce(DemoOptions) -> Fut + Send + 'static,
        Fut: Future<Output = Result<app::DemoApp, app::BoxError>>,
    {
        secrets::watch();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = DemoOptions::new(app::own_origins(addr));
        options.store_timeout = STORE_TIMEOUT;
        opts(&mut options);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || run(listener, make, options, ready_tx, stop_rx))
            .expect("a thread for the test server");
        let mut stop = Some(stop_tx);
        let mut thread = Some(thread);
        let failed = match ready_rx.await {
            Ok(Ok(sessions)) => {
                return TestServer {
                    addr,
                    sessions,
                    stop,
                    thread,
                };
            }
            Ok(Err(e)) => format!("the demo app did not build: {e}"),
            Err(_) => "the test server's thread ended before it was ready".to_owned(),
        };
        if let Some(stop) = stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = thread.take() {
            thread.join().ok();
        }
        panic!("{failed}");
    }

    /// Stops the server as a deploy would (sessions shut down first) and waits until it is gone.
    pub async fn stop(mut self) {
        tokio::task::block_in_place(|| self.stop_and_wait());
    }

    /// Stops the server and waits until its runtime, and every task on it, is gone.
    fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the test server's thread panicked");
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
        let deadline = std::time::Instant::now() + SOON;
        loop {
            let n = self.count(cookie).await;
            assert!(n <= want, "counter overshot: {n} > {want}");
            if n == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
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
        self.stop_and_wait();
        if !std::thread::panicking() {
            secrets::check();
        }
    }
}

/// The server's thread: builds the app and serves it on a runtime of its own until told to
/// stop, shuts the app down, then drops the runtime, which ends every task the server started.
fn run<F, Fut>(
    listener: std::net::TcpListener,
    make: F,
    options: DemoOptions,
    ready: oneshot::Sender<Result<socketio_sessions::SocketSessions, String>>,
    stop: oneshot::Receiver<()>,
) where
    F: FnOnce(DemoOptions) -> Fut,
    Fut: Future<Output = Result<app::DemoApp, app::BoxError>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-server-worker")
        .enable_all()
        .build()
        .expect("the test server's runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let app::DemoApp { router, sessions } = match make(options).await {
            Ok(app) => app,
            Err(e) => {
                ready.send(Err(e.to_string())).ok();
                return;
            }
        };
        ready.send(Ok(sessions.clone())).ok();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        );
        tokio::select! {
            served = serve.into_future() => served.expect("the test server failed"),
            _ = stop => {}
        }
        shut_down(sessions).await;
    });
    // Ends every task still on the runtime: connections, Engine.IO sessions, timers, loops.
    runtime.shutdown_timeout(SOON);
}

/// THE ONE PLACE where a test server's app is shut down: after it stopped accepting, before its
/// runtime (and every task on it) is dropped, as the demo does on SIGTERM.
async fn shut_down(sessions: socketio_sessions::SocketSessions) {
    sessions.shutdown().await;
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
