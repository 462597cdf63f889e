//! A minimal HTTP/1.1 server for two GET paths. The exporter answers a
//! scraper or two, so a thread per connection and no keep-alive are enough;
//! a full HTTP stack would be most of the binary's size for this.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
static BUSY: AtomicUsize = AtomicUsize::new(0);

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
        // A few scrapers at a time; a flood of connections gets refused
        // instead of a thread each.
        if BUSY.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            BUSY.fetch_sub(1, Ordering::SeqCst);
            let mut conn = conn;
            // Take what already arrived, so closing does not reset the
            // connection before the client reads the answer.
            let _ = conn.set_nonblocking(true);
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        let h = handler.clone();
        std::thread::spawn(move || {
            if let Err(e) = answer(conn, &h) {
                tracing::debug!("metrics: connection: {e}");
            }
            BUSY.fetch_sub(1, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(port: u16, text: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn paths_methods_headers_and_a_connection_limit() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let handler: Handler = Arc::new(|path, accept| Reply {
            status: if path == "/x" { 200 } else { 404 },
            content_type: "text/plain",
            body: format!("{path} {accept}").into_bytes(),
        });
        std::thread::spawn(move || run(l, handler));
        let ok = request(
            port,
            "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: text/foo\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n/x text/foo"), "{ok}");
        assert!(request(port, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(request(port, "POST /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // The threads of the requests above free their slots just after
        // the client saw the answer: wait for that, or an idle connection
        // below could be the one refused.
        let t = std::time::Instant::now();
        while BUSY.load(Ordering::SeqCst) != 0 {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        // Connections that send nothing hold their slot (until the read
        // timeout); the next one beyond the limit is refused at once.
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut refused = String::new();
        s.read_to_string(&mut refused).unwrap();
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        drop(idle);
        // Slots come back once those connections end.
        let t = std::time::Instant::now();
        loop {
            let r = request(port, "GET /x HTTP/1.1\r\n\r\n");
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "{r}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
