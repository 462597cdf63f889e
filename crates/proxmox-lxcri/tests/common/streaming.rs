//! The CRI's streaming calls as the kubelet's clients (kubectl exec/attach/port-forward)
//! use them: Exec, Attach and PortForward return a URL on containerd's streaming server,
//! spoken to over WebSocket with Kubernetes' channel protocols (each binary message's
//! first byte is its channel).
//!
//! - exec/attach (`v4.channel.k8s.io`): 0 stdin, 1 stdout, 2 stderr, 3 the end as a JSON
//!   `Status` (`Success`, or `NonZeroExitCode` with the code in `details.causes`);
//! - port-forward (`v4.channel.k8s.io` on `/portforward/...?ports=P`): channel 0 data, 1
//!   errors, each opened by the port as two little-endian bytes.
use std::net::TcpStream;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::cri::Cri;

/// What an exec or attach stream gave: stdout, stderr, and the exit code from the
/// status channel (0 for `Success`).
#[derive(Debug, Default)]
pub struct Streamed {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
}

fn connect(url: &str) -> WebSocket<TcpStream> {
    let url = url.replacen("http://", "ws://", 1);
    let mut req = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|e| panic!("streaming URL {url}: {e}"));
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().expect("a header value"),
    );
    let host = req.uri().authority().expect("host:port").to_string();
    let tcp = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connecting {host}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (ws, _) = tungstenite::client(req, tcp)
        .unwrap_or_else(|e| panic!("WebSocket handshake with {url}: {e}"));
    ws
}

/// The exit code in a v4 status message.
fn exit_code_of(status: &str) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(status).ok()?;
    match v["status"].as_str()? {
        "Success" => Some(0),
        _ => v["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok(),
    }
}

/// Speak to an exec/attach stream: send `stdin` (if any) at once, then read until the
/// status arrives (or the server closes).
fn converse(mut ws: WebSocket<TcpStream>, stdin: Option<&[u8]>) -> Streamed {
    if let Some(data) = stdin {
        let mut msg = vec![0u8];
        msg.extend_from_slice(data);
        ws.send(Message::Binary(msg)).expect("sending stdin");
    }
    let mut out = Streamed::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(_) => break,
        };
        let data = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => t.into_bytes(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&ch, rest)) = data.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(rest);
        match ch {
            1 => out.stdout.push_str(&text),
            2 => out.stderr.push_str(&text),
            3 => {
                out.exit_code = exit_code_of(&text);
                break;
            }
            _ => {}
        }
    }
    let _ = ws.close(None);
    out
}

impl Cri {
    /// Exec `cmd` in container `id` through the streaming server.
    pub fn exec_stream(&self, id: &str, cmd: &[&str], stdin: Option<&[u8]>, tty: bool) -> Streamed {
        let req = cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin: stdin.is_some(),
            stdout: true,
            stderr: !tty,
        };
        let url = self
            .runtime(|mut c| async move { c.exec(req).await })
            .unwrap_or_else(|e| panic!("Exec: {e}"))
            .url;
        converse(connect(&url), stdin)
    }

    /// Attach to container `id`'s stdio (stdin, stdout, stderr; no tty), send `stdin`,
    /// read until the container's stream ends.
    pub fn attach_stream(&self, id: &str, stdin: Option<&[u8]>) -> Streamed {
        let req = cri::AttachRequest {
            container_id: id.into(),
            stdin: stdin.is_some(),
            tty: false,
            stdout: true,
            stderr: true,
        };
        let url = self
            .runtime(|mut c| async move { c.attach(req).await })
            .unwrap_or_else(|e| panic!("Attach: {e}"))
            .url;
        converse(connect(&url), stdin)
    }

    /// PortForward to `port` of pod `pod`: send `request`, return what came back until
    /// the pod's side closed (or `until` appeared in it).
    pub fn port_forward(&self, pod: &str, port: u16, request: &[u8], until: &str) -> String {
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![port as i32],
        };
        let url = self
            .runtime(|mut c| async move { c.port_forward(req).await })
            .unwrap_or_else(|e| panic!("PortForward: {e}"))
            .url;
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut ws = connect(&format!("{url}{sep}ports={port}"));
        let mut msg = vec![0u8];
        msg.extend_from_slice(request);
        ws.send(Message::Binary(msg)).expect("sending to the port");
        // Each channel opens with the port (2 bytes); after that, data.
        let mut opened = [false; 2];
        let mut got = Vec::new();
        let mut errors = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let data = match ws.read() {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            let ch = ch as usize;
            if ch < 2 && !opened[ch] {
                opened[ch] = true;
                // The port number; anything after it is already data.
                let rest = rest.get(2..).unwrap_or_default();
                if ch == 0 {
                    got.extend_from_slice(rest);
                }
                continue;
            }
            match ch {
                0 => got.extend_from_slice(rest),
                _ => errors.push_str(&String::from_utf8_lossy(rest)),
            }
            if String::from_utf8_lossy(&got).contains(until) {
                break;
            }
        }
        let _ = ws.close(None);
        assert!(errors.is_empty(), "port-forward errors: {errors}");
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// A pod's server and an interactive container, driven through the CRI's streaming server:
/// what `kubectl exec`, `kubectl attach` and `kubectl port-forward` do.
pub fn exec_attach_and_port_forward(
    cri: &Cri,
    pod: &str,
    config: &k8s_cri::v1::PodSandboxConfig,
    port: u16,
) {
    let serve = format!(
        "mkdir -p /www && echo pong >/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let server = cri
        .create_container(pod, config, "web", &["sh", "-c", &serve])
        .unwrap_or_else(|e| panic!("CreateContainer web: {e}\n{}", cri.log_tail(30)));
    cri.start_container(&server)
        .unwrap_or_else(|e| panic!("StartContainer web: {e}\n{}", cri.log_tail(30)));
    // Exec: stdout, stderr and the exit code apart; stdin; a terminal.
    let r = cri.exec_stream(
        &server,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        None,
        false,
    );
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.exit_code),
        ("out\n", "err\n", Some(3)),
        "{r:?}"
    );
    let r = cri.exec_stream(
        &server,
        &["sh", "-c", "read l; echo got $l"],
        Some(b"hello\n"),
        false,
    );
    assert_eq!(
        (r.stdout.trim(), r.exit_code),
        ("got hello", Some(0)),
        "{r:?}"
    );
    // A terminal, as `kubectl exec -it` asks for it: with stdin (containerd 1.6 relays no
    // terminal output without stdin, under runc too).
    let r = cri.exec_stream(
        &server,
        &["sh", "-c", "read x; tty; test -t 0 && echo interactive"],
        Some(b"x\r"),
        true,
    );
    assert!(
        r.stdout.contains("/dev/pts/")
            && r.stdout.contains("interactive")
            && r.exit_code == Some(0),
        "exec -t: {r:?}"
    );
    // PortForward: into the pod's network namespace, to a port bound to its localhost only.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = cri.port_forward(pod, port, b"GET / HTTP/1.0\r\n\r\n", "pong");
        if got.contains("pong") {
            assert!(got.starts_with("HTTP/1."), "{got:?}");
            break;
        }
        assert!(Instant::now() < deadline, "port-forward to {port}: {got:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Attach: the container's own stdin and stdout.
    let mut c = cri.container_config("talk", &["sh", "-c", "read l; echo heard $l"]);
    c.stdin = true;
    c.stdin_once = true;
    let talk = cri
        .create_container_cfg(pod, config, c)
        .unwrap_or_else(|e| panic!("CreateContainer talk: {e}"));
    cri.start_container(&talk)
        .unwrap_or_else(|e| panic!("StartContainer talk: {e}"));
    let r = cri.attach_stream(&talk, Some(b"you\n"));
    assert_eq!(r.stdout.trim(), "heard you", "attach: {r:?}");
    let st = cri.wait_exited(&talk, Duration::from_secs(20));
    assert_eq!(st.exit_code, 0, "{st:?}");
}
