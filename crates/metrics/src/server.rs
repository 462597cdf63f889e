//! A minimal HTTP/1.1 server for two GET paths. The exporter answers a
//! scraper or two, so a thread per connection and no keep-alive are enough;
//! a full HTTP stack would be most of the binary's size for this.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// An answer: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Called with the path and the Accept header.
pub type Handler = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// Serve `handler` on `listener` until the process ends.
pub fn run(listener: TcpListener, handler: Handler) -> std::io::Result<()> {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                continue;
            }
        };
        let h = handler.clone();
        std::thread::spawn(move || {
            if let Err(e) = answer(conn, &h) {
                tracing::debug!("metrics: connection: {e}");
            }
        });
    }
    Ok(())
}

fn answer(conn: TcpStream, handler: &Handler) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Headers: only Accept matters (bounded, so a client cannot hold memory).
    let mut total = 0;
    let mut accept = String::new();
    loop {
        let mut h = String::new();
        let n = reader.by_ref().take(8192).read_line(&mut h)?;
        total += n;
        if n == 0 || h == "\r\n" || h == "\n" || total > 65536 {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("accept") {
                accept = v.trim().to_string();
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let reply = match method {
        "GET" | "HEAD" => handler(path, &accept),
        _ => Reply {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: b"only GET\n".to_vec(),
        },
    };
    let reason = match reply.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )?;
    if method != "HEAD" {
        w.write_all(&reply.body)?;
    }
    w.flush()
}
