//! Just enough HTTP/1.1 to log in before the load (keep-alive, `Content-Length` bodies), and
//! just enough RESP to ask our redis-server a question.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// A logged-in session: the `name=value` of its cookie, and its data's size as the server
/// reports it.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) cookie: String,
    pub(crate) bytes: u64,
}

struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("login: connect {addr}: {e}"))?;
        tcp.set_nodelay(true).ok();
        Ok(Conn {
            stream: BufReader::new(tcp),
        })
    }

    /// `POST path` with an empty body; returns (status, set-cookie, keep-alive, body).
    async fn post(
        &mut self,
        addr: SocketAddr,
        path: &str,
    ) -> Result<(u16, Option<String>, bool, String), String> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nAccept: application/json\r\n\r\n"
        );
        let s = &mut self.stream;
        s.get_mut()
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("login: write: {e}"))?;
        let mut line = String::new();
        s.read_line(&mut line)
            .await
            .map_err(|e| format!("login: read: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("login: bad status line {line:?}"))?;
        let mut cookie = None;
        let mut length = None;
        let mut keep_alive = true;
        loop {
            line.clear();
            let n = s
                .read_line(&mut line)
                .await
                .map_err(|e| format!("login: read: {e}"))?;
            if n == 0 {
                return Err("login: connection closed in the headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "set-cookie" => {
                    cookie = Some(value.split(';').next().unwrap_or_default().to_owned())
                }
                "content-length" => length = value.parse::<usize>().ok(),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => {
                    return Err(format!("login: unsupported transfer-encoding {value}"));
                }
                _ => {}
            }
        }
        let mut body = vec![0; length.unwrap_or(0)];
        s.read_exact(&mut body)
            .await
            .map_err(|e| format!("login: body: {e}"))?;
        Ok((
            status,
            cookie,
            keep_alive,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// Logs in `n` users (`POST /login?name=bench-<prefix>-<i>`) over `concurrency` keep-alive
/// connections, in order of `i`.
pub(crate) async fn login_many(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Login>, String> {
    let next = Arc::new(Mutex::new(0usize));
    let results: Arc<Mutex<Vec<Option<Login>>>> = Arc::new(Mutex::new(vec![None; n]));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let next = next.clone();
        let results = results.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            loop {
                let i = {
                    let mut g = next.lock().await;
                    let i = *g;
                    *g += 1;
                    i
                };
                if i >= n {
                    return Ok::<(), String>(());
                }
                let path = format!("/login?name=bench-{prefix}-{i}");
                let mut attempt = 0;
                let login = loop {
                    attempt += 1;
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => conn.insert(Conn::open(addr).await?),
                    };
                    match c.post(addr, &path).await {
                        Ok((200, Some(cookie), keep_alive, body)) => {
                            if !keep_alive {
                                conn = None;
                            }
                            let bytes = serde_json::from_str::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v.get("bytes").and_then(|b| b.as_u64()))
                                .unwrap_or(0);
                            break Login { cookie, bytes };
                        }
                        Ok((status, _, _, body)) => {
                            return Err(format!("login: status {status}: {body}"));
                        }
                        // A keep-alive connection the server closed: open another one.
                        Err(_) if attempt < 3 => conn = None,
                        Err(e) => return Err(e),
                    }
                };
                results.lock().await[i] = Some(login);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("login task: {e}"))??;
    }
    let results = std::mem::take(&mut *results.lock().await);
    results
        .into_iter()
        .map(|l| l.ok_or_else(|| "login: missing result".to_owned()))
        .collect()
}

/// Sends one RESP command and returns the first reply line (`+PONG`, `:123`, `-ERR ...`).
pub(crate) async fn redis_command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let io = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut s = BufReader::new(tcp);
        s.get_mut().write_all(cmd.as_bytes()).await?;
        let mut line = String::new();
        s.read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| "redis: no answer within 2 s".to_owned())?
        .map_err(|e| format!("redis: {e}"))
}
