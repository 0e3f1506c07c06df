//! A minimal HTTP/1.1 server for the web UIs, over std's `TcpListener`.
//!
//! GET and HEAD only, `Connection: close`, one short-lived thread per
//! connection (at most [`MAX_CONNECTIONS`] at once), request heads limited
//! to [`MAX_HEAD_BYTES`] and a read timeout: the UIs serve a handful of
//! people and a test browser, and a hand-written server this small keeps
//! the limits in plain sight (no HTTP crate among the design's crates).

use ember_core::{EmberError, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most connections served at once; more are answered 503.
pub const MAX_CONNECTIONS: usize = 64;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method (`GET` or `HEAD`).
    pub method: String,
    /// The path, without the query, percent-decoded.
    pub path: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path split at `/`, without empty segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// A response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with an HTML page.
    pub fn html(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// 200 with JSON.
    pub fn json<T: serde::Serialize>(value: &T) -> Response {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Response {
                status: 200,
                content_type: "application/json",
                body,
            },
            Err(e) => Response::error(500, &format!("cannot encode JSON: {e}")),
        }
    }

    /// An error status with a plain-text message.
    pub fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
        }
    }

    /// 404 for `path`.
    pub fn not_found(path: &str) -> Response {
        Response::error(404, &format!("no such page: {path}"))
    }
}

/// Answers requests.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serves `handler` on `host:port`. With `fallback` (the driver's UI,
    /// as Spark's 4040, 4041, ...), a taken port moves on to the next of
    /// up to 16; port 0 picks a free one.
    pub fn start(host: &str, port: u16, fallback: bool, handler: Handler) -> Result<HttpServer> {
        let tries = if fallback && port != 0 { 16 } else { 1 };
        let mut last = None;
        for i in 0..tries {
            let p = port.saturating_add(i);
            match TcpListener::bind((host, p)) {
                Ok(listener) => return Self::run(listener, handler),
                Err(e) => last = Some(e),
            }
        }
        Err(EmberError::Network(format!(
            "bind web UI on {host}:{port}{}: {}",
            if tries > 1 {
                " (and the next 15 ports)"
            } else {
                ""
            },
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn run(listener: TcpListener, handler: Handler) -> Result<HttpServer> {
        let addr = listener
            .local_addr()
            .map_err(|e| EmberError::Network(e.to_string()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let stop = stopping.clone();
        std::thread::Builder::new()
            .name("ember-http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        active.fetch_sub(1, Ordering::SeqCst);
                        let _ = write_response(&mut conn, &Response::error(503, "busy"), false);
                        continue;
                    }
                    let handler = handler.clone();
                    let active = active.clone();
                    let spawned = std::thread::Builder::new()
                        .name("ember-http-conn".into())
                        .spawn(move || {
                            serve_one(conn, &handler);
                            active.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        tracing::warn!("web UI: cannot start a connection thread");
                    }
                }
            })
            .map_err(|e| EmberError::Network(format!("start web UI: {e}")))?;
        Ok(HttpServer { addr, stopping })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_one(mut conn: TcpStream, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let _ = conn.set_write_timeout(Some(READ_TIMEOUT));
    let response = match read_head(&mut conn) {
        Ok(head) => match parse_request(&head) {
            Ok(req) if req.method == "GET" || req.method == "HEAD" => {
                let head_only = req.method == "HEAD";
                // A handler bug must not take the server down.
                let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req)))
                    .unwrap_or_else(|_| Response::error(500, "internal error"));
                let _ = write_response(&mut conn, &resp, head_only);
                return;
            }
            Ok(_) => Response::error(405, "only GET and HEAD are served"),
            Err(msg) => Response::error(400, &msg),
        },
        Err(Some(msg)) => Response::error(431, &msg),
        Err(None) => return,
    };
    let _ = write_response(&mut conn, &response, false);
}

/// Reads up to the blank line ending the head. `Err(None)`: the peer went
/// away or timed out; `Err(Some)`: the head is too large.
fn read_head(conn: &mut TcpStream) -> std::result::Result<Vec<u8>, Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = conn.read(&mut buf).map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n").or_else(|| find(&head, b"\n\n")) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Some(format!(
                "request head larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a request head (request line and headers).
pub fn parse_request(head: &[u8]) -> std::result::Result<Request, String> {
    let text = std::str::from_utf8(head).map_err(|_| "request is not UTF-8".to_string())?;
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Request {
        method: method.to_ascii_uppercase(),
        path: percent_decode(path),
        query,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn write_response(conn: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(&r.body)?;
    }
    conn.flush()
}

/// Fetches `http://addr/path` with a plain GET (for tests and the CLI);
/// returns the status and body.
pub fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr)
        .map_err(|e| EmberError::Network(format!("connect to {addr}: {e}")))?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| EmberError::Network(e.to_string()))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)
        .map_err(|e| EmberError::Network(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EmberError::Network(format!("bad HTTP response from {addr}")))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_queries_and_escapes() {
        let r = parse_request(b"GET /api/v1/a%20b?x=1&y=two+words HTTP/1.1\r\nHost: h").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/v1/a b");
        assert_eq!(r.param("y"), Some("two words"));
        assert_eq!(r.segments(), vec!["api", "v1", "a b"]);
        assert!(parse_request(b"garbage").is_err());
        assert!(parse_request(b"GET / SPDY/9").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn the_server_answers_and_survives_bad_requests() {
        let handler: Handler = Arc::new(|r: &Request| Response::html(format!("<p>{}</p>", r.path)));
        let server = HttpServer::start("127.0.0.1", 0, false, handler).unwrap();
        let addr = server.addr().to_string();
        let mut big = TcpStream::connect(&addr).unwrap();
        let _ = big.write_all(&vec![b'A'; MAX_HEAD_BYTES + 10]);
        let mut raw = TcpStream::connect(&addr).unwrap();
        let _ = raw.write_all(b"\x00\x01\x02 nonsense\r\n\r\n");
        drop((big, raw));
        let (status, body) = get(&addr, "/hello").unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "<p>/hello</p>");
    }
}
