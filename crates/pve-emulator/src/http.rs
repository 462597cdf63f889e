//! A small blocking HTTPS/1.1 server: a thread per connection, rustls for
//! TLS, httparse for the request head. It knows nothing of the API.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body ever accepted (template uploads); `Admit` sets the
/// limit of each request.
pub const MAX_BODY: usize = 2 << 30;

pub struct Request {
    pub method: String,
    /// The raw path (still percent-encoded), without the query.
    pub path: String,
    pub query: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub reason: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub enum Outcome {
    Respond(Response),
    /// Close the connection without answering (fault injection).
    Drop,
}

pub type Handler = dyn Fn(Request) -> Outcome + Send + Sync;
/// Looks at a request's head (its body still unread, empty): `Ok(limit)` lets
/// up to `limit` body bytes in, `Err` answers at once and closes the
/// connection, so unauthenticated clients cannot make it buffer bodies.
pub type Admit = dyn Fn(&Request) -> Result<usize, Outcome> + Send + Sync;

pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    admit: Arc<Admit>,
    handler: Arc<Handler>,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let tls = tls.clone();
        let (admit, handler) = (admit.clone(), handler.clone());
        std::thread::spawn(move || {
            let _ = connection(stream, tls, &*admit, &*handler);
        });
    }
}

/// What to do with a request whose head has been read.
enum Next {
    Handle(Request),
    /// Answer (then close): refused before or while reading the body.
    Refuse(Outcome),
}

fn too_large() -> Outcome {
    Outcome::Respond(Response {
        status: 413,
        reason: "Request Entity Too Large".into(),
        content_type: "application/json;charset=UTF-8",
        body: br#"{"data":null,"message":"request too large\n"}"#.to_vec(),
    })
}

fn write_response(tls: &mut impl Write, resp: &Response, close: bool) -> std::io::Result<()> {
    let reason: String = resp.reason.chars().filter(|c| !c.is_control()).collect();
    let head = format!(
        "HTTP/1.1 {} {}\r\nServer: pve-api-daemon/3.0\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: max-age=0\r\nPragma: no-cache\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\nConnection: {}\r\n\r\n",
        resp.status,
        reason,
        resp.content_type,
        resp.body.len(),
        if close { "close" } else { "Keep-Alive" }
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(&resp.body)?;
    tls.flush()
}

fn connection(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    admit: &Admit,
    handler: &Handler,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let _ = stream.set_nodelay(true);
    let conn = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(next) = read_request(&mut tls, &mut buf, admit)? else {
            return Ok(());
        };
        let (outcome, close) = match next {
            Next::Handle(req) => {
                let close = req
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                (handler(req), close)
            }
            // The body was not (fully) read: the connection cannot go on.
            Next::Refuse(o) => (o, true),
        };
        match outcome {
            Outcome::Drop => {
                let _ = tls.sock.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Outcome::Respond(resp) => {
                write_response(&mut tls, &resp, close)?;
                if close {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    return Ok(());
                }
            }
        }
    }
}

fn fill(s: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16384];
    match s.read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request; None when the peer closed between requests.
fn read_request(
    s: &mut (impl Read + Write),
    buf: &mut Vec<u8>,
    admit: &Admit,
) -> std::io::Result<Option<Next>> {
    let (head_len, method, target, headers) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut hs);
        match r.parse(buf).map_err(|e| bad(&e.to_string()))? {
            httparse::Status::Complete(n) => {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (
                    n,
                    r.method.unwrap_or("").to_string(),
                    r.path.unwrap_or("").to_string(),
                    headers,
                );
            }
            httparse::Status::Partial => {
                if buf.len() > 1 << 20 {
                    return Err(bad("request head too large"));
                }
                if !fill(s, buf)? {
                    return if buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(bad("truncated request"))
                    };
                }
            }
        }
    };
    buf.drain(..head_len);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut req = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    };
    let limit = match admit(&req) {
        Ok(l) => l.min(MAX_BODY),
        Err(o) => return Ok(Some(Next::Refuse(o))),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let len: usize = match req.header("content-length") {
        Some(v) if !chunked => v.trim().parse().map_err(|_| bad("bad content-length"))?,
        _ => 0,
    };
    // Too large by its announced length: 413 instead of "100 Continue".
    if len > limit {
        return Ok(Some(Next::Refuse(too_large())));
    }
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        s.flush()?;
    }
    let body = if chunked {
        match read_chunked(s, buf, limit)? {
            Some(b) => b,
            None => return Ok(Some(Next::Refuse(too_large()))),
        }
    } else {
        while buf.len() < len {
            if !fill(s, buf)? {
                return Err(bad("truncated body"));
            }
        }
        buf.drain(..len).collect()
    };
    req.body = body;
    Ok(Some(Next::Handle(req)))
}

/// A chunked body; None once it grows over `limit`.
fn read_chunked(
    s: &mut impl Read,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !fill(s, buf)? {
                return Err(bad("truncated chunk"));
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = p == 0;
                    buf.drain(..p + 2);
                    if empty {
                        return Ok(Some(body));
                    }
                } else if !fill(s, buf)? {
                    return Ok(Some(body));
                }
            }
        }
        if body.len().saturating_add(size) > limit {
            return Ok(None);
        }
        while buf.len() < size + 2 {
            if !fill(s, buf)? {
                return Err(bad("truncated chunk"));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}
