//! The client: one HTTPS agent, authentication, and the request loop with
//! retries. Endpoint methods live in `api/`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{Auth, ClientConfig, Tls};
use crate::error::{Error, Result};
use crate::params::Params;
use crate::secret::Secret;

/// Proxmox tickets live 2 h; renewing after 1 h 45 min leaves a margin for
/// clock skew and long tasks.
const DEFAULT_TICKET_RENEW_AFTER: Duration = Duration::from_secs(105 * 60);
const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Answers larger than this are refused rather than read into memory.
const MAX_BODY: u64 = 64 << 20;

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Characters kept as-is in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Encodes one path segment (node, storage, volume id, UPID). `.`/`..` and
/// empty segments are refused: URL parsers would collapse them.
pub(crate) fn seg(what: &str, s: &str) -> Result<String> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(Error::invalid(what, s, "must be a non-empty name"));
    }
    Ok(utf8_percent_encode(s, SEGMENT).to_string())
}

struct Ticket {
    ticket: Secret,
    csrf: Secret,
    obtained: Instant,
}

enum AuthState {
    Token {
        header: Secret,
    },
    Ticket {
        username: String,
        password: Secret,
        current: Mutex<Option<Ticket>>,
        renew_after: Mutex<Duration>,
    },
}

/// Login statistics, so callers (and tests) can see tickets being renewed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TicketStats {
    /// Logins with the password.
    pub logins: u64,
    /// Renewals with the previous ticket.
    pub renewals: u64,
}

/// A request body.
pub(crate) enum Body<'a> {
    /// Parameters in the query string (GET, DELETE) or form-encoded (POST, PUT).
    Params(&'a Params),
    /// A multipart upload: head, file, tail.
    Multipart(&'a crate::multipart::Multipart),
}

/// A blocking Proxmox VE API client. Cheap to share between threads.
pub struct Client {
    /// For GETs: keeps connections alive.
    agent: ureq::Agent,
    /// For writes: a fresh connection each time. ureq silently resends a
    /// request whose reused connection turned out closed (DELETE and PUT
    /// too); a write must be sent exactly as often as we count and decide.
    agent_once: ureq::Agent,
    origin: String,
    base: String,
    auth: AuthState,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    requests: AtomicU64,
    logins: AtomicU64,
    renewals: AtomicU64,
    observer: Option<crate::Observer>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.origin)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

fn normalize_url(raw: &str) -> Result<String> {
    let bad = |why: &str| Error::Config(format!("Proxmox URL {raw:?}: {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(bad(
            "must be https:// (credentials are never sent in clear)",
        ));
    }
    if !matches!(url.host_str(), Some(h) if !h.is_empty()) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() && path != "/api2/json" {
        return Err(bad("path must be empty or /api2/json"));
    }
    let mut origin = format!("https://{}", url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        origin.push_str(&format!(":{port}"));
    }
    Ok(origin)
}

impl Client {
    /// Checks the settings and prepares TLS; no request is made yet (a
    /// password login happens on the first call).
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let origin = normalize_url(&cfg.url)?;
        cfg.auth.validate()?;
        if cfg.timeout.is_zero() {
            return Err(Error::Config("timeout must be greater than zero".into()));
        }
        if matches!(cfg.tls, Tls::Insecure) {
            tracing::warn!(
                url = %origin,
                "TLS certificate verification is DISABLED for this Proxmox client; \
                 anyone on the path can read the credentials. Pin the node's fingerprint instead."
            );
        }
        let tls = crate::tls::client_config(&cfg.tls)?;
        let builder = || {
            ureq::AgentBuilder::new()
                .tls_config(tls.clone())
                .timeout_connect(cfg.timeout)
                .timeout_read(cfg.timeout)
                .timeout_write(cfg.timeout)
                .redirects(0)
                .user_agent(concat!("proxmox-lxcri/", env!("CARGO_PKG_VERSION")))
        };
        let agent = builder().build();
        let agent_once = builder().max_idle_connections(0).build();
        let auth = match cfg.auth {
            Auth::Token { id, secret } => AuthState::Token {
                header: Secret::new(format!("PVEAPIToken={id}={}", secret.expose())),
            },
            Auth::Password { username, password } => AuthState::Ticket {
                username,
                password,
                current: Mutex::new(None),
                renew_after: Mutex::new(DEFAULT_TICKET_RENEW_AFTER),
            },
        };
        Ok(Client {
            agent,
            agent_once,
            base: format!("{origin}/api2/json"),
            origin,
            auth,
            timeout: cfg.timeout,
            retries: cfg.retries,
            backoff: Duration::from_millis(100),
            requests: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            observer: None,
        })
    }

    /// HTTP requests sent so far: API calls, logins, ticket renewals and
    /// retries. Writes are exact; ureq may resend a GET once on a kept-alive
    /// connection that turned out closed, which is not seen here.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The node's base URL, `https://host:port`.
    pub fn url(&self) -> &str {
        &self.origin
    }

    /// Renew the ticket once it is older than this (default 1 h 45 min;
    /// tickets expire after 2 h). Has no effect with API tokens.
    pub fn set_ticket_renew_after(&self, after: Duration) {
        if let AuthState::Ticket { renew_after, .. } = &self.auth {
            *lock(renew_after) = after;
        }
    }

    /// First delay between retries (doubles each time, capped at 2 s).
    pub fn set_retry_backoff(&mut self, first: Duration) {
        self.backoff = first;
    }

    /// Called after every HTTP exchange with its method, endpoint template,
    /// status and duration (for latency and error metrics).
    pub fn set_observer(&mut self, observer: crate::Observer) {
        self.observer = Some(observer);
    }

    pub fn ticket_stats(&self) -> TicketStats {
        TicketStats {
            logins: self.logins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }

    /// Any API call, for endpoints without a typed method: `path` is below
    /// `/api2/json` with its segments already encoded; returns `data`.
    pub fn call(&self, method: Method, path: &str, params: &Params) -> Result<Value> {
        self.request(method, path, Body::Params(params))
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T> {
        let data = self.request(Method::Get, path, Body::Params(params))?;
        decode(Method::Get, path, data)
    }

    pub(crate) fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &Params,
    ) -> Result<T> {
        let data = self.request(method, path, Body::Params(params))?;
        decode(method, path, data)
    }

    /// Sends a request with authentication, retrying what is safe to retry.
    pub(crate) fn request(&self, method: Method, path: &str, body: Body<'_>) -> Result<Value> {
        if let Body::Params(p) = &body {
            p.check()?;
        }
        let endpoint = format!("{method} {path}");
        let mut attempt = 0u32;
        let mut relogged = false;
        loop {
            let headers = self.auth_headers(method, &endpoint)?;
            let err = match self.send_once(method, path, &body, &headers, &endpoint) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // A ticket can become invalid before its time (server restart
            // with a new key): log in again once. A 401 was not acted on.
            if err.status() == Some(401) && !relogged {
                if let AuthState::Ticket { current, .. } = &self.auth {
                    relogged = true;
                    *lock(current) = None;
                    tracing::debug!(%endpoint, "ticket refused, logging in again");
                    continue;
                }
            }
            let safe = err.is_not_sent() || (method == Method::Get && err.is_retryable());
            if !safe || attempt >= self.retries {
                return Err(err);
            }
            let delay = self.backoff_delay(attempt);
            tracing::warn!(%endpoint, attempt = attempt + 1, ?delay, error = %err, "retrying Proxmox API request");
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    fn backoff_delay(&self, attempt: u32) -> Duration {
        let d = self.backoff.saturating_mul(1u32 << attempt.min(16));
        d.min(Duration::from_secs(2))
    }

    /// One HTTP exchange; answers `data` of a 2xx reply.
    fn send_once(
        &self,
        method: Method,
        path: &str,
        body: &Body<'_>,
        headers: &[(&'static str, String)],
        endpoint: &str,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let agent = match method {
            Method::Get => &self.agent,
            _ => &self.agent_once,
        };
        let mut req = agent.request(method.as_str(), &url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = match body {
            Body::Params(params) => {
                let req = req.timeout(self.timeout);
                match method {
                    Method::Get | Method::Delete => {
                        let mut req = req;
                        for (k, v) in params.iter() {
                            req = req.query(k, v);
                        }
                        req.call()
                    }
                    Method::Post | Method::Put => {
                        let pairs: Vec<(&str, &str)> = params.iter().collect();
                        req.send_form(&pairs)
                    }
                }
            }
            Body::Multipart(m) => {
                // No whole-request deadline: the file may be large. Each read
                // and write still times out.
                let reader = m.reader().map_err(|e| {
                    Error::Config(format!("{endpoint}: cannot read upload file: {e}"))
                })?;
                req.set("Content-Type", &m.content_type())
                    .set("Content-Length", &m.len().to_string())
                    .send(reader)
            }
        };
        let elapsed = started.elapsed();
        if let Some(obs) = &self.observer {
            let status = match &result {
                Ok(resp) => Some(resp.status()),
                Err(ureq::Error::Status(s, _)) => Some(*s),
                Err(ureq::Error::Transport(_)) => None,
            };
            obs(&crate::ApiRequest {
                method: method.as_str(),
                endpoint: crate::endpoint_template(path),
                status,
                duration: elapsed,
            });
        }
        match result {
            Ok(resp) => {
                tracing::debug!(%endpoint, status = resp.status(), ?elapsed, "Proxmox API call");
                let body = read_json(resp, endpoint)?;
                Ok(match body {
                    Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
                    _ => Value::Null,
                })
            }
            Err(ureq::Error::Status(status, resp)) => {
                tracing::debug!(%endpoint, status, ?elapsed, "Proxmox API call failed");
                Err(http_error(endpoint, status, resp))
            }
            Err(ureq::Error::Transport(t)) => {
                let err = self.transport_error(endpoint, &t);
                tracing::debug!(%endpoint, ?elapsed, error = %err, "Proxmox API call failed");
                Err(err)
            }
        }
    }

    fn transport_error(&self, endpoint: &str, t: &ureq::Transport) -> Error {
        use ureq::ErrorKind as K;
        let detail = transport_detail(t);
        if let Some(tls) = find_rustls_error(t) {
            return Error::Tls(format!(
                "{endpoint}: TLS handshake with {} failed: {tls}",
                self.origin
            ));
        }
        let timed_out = is_timeout(t);
        match t.kind() {
            K::Dns | K::ConnectionFailed if timed_out => Error::Connect(format!(
                "{endpoint}: connecting to {} timed out after {:?}",
                self.origin, self.timeout
            )),
            K::Dns | K::ConnectionFailed => Error::Connect(format!(
                "{endpoint}: cannot connect to {}: {detail}",
                self.origin
            )),
            K::InvalidUrl | K::UnknownScheme => Error::Config(format!("{endpoint}: {detail}")),
            _ if timed_out => Error::Timeout(format!(
                "{endpoint}: no answer from {} within {:?}",
                self.origin, self.timeout
            )),
            _ => Error::Disconnected(format!(
                "{endpoint}: connection to {} lost after the request was sent: {detail}",
                self.origin
            )),
        }
    }

    /// Headers that authenticate a request, logging in or renewing the
    /// ticket first when needed.
    fn auth_headers(&self, method: Method, endpoint: &str) -> Result<Vec<(&'static str, String)>> {
        match &self.auth {
            AuthState::Token { header } => Ok(vec![("Authorization", header.expose().to_string())]),
            AuthState::Ticket {
                username,
                password,
                current,
                renew_after,
            } => {
                let renew_after = *lock(renew_after);
                let mut cur = lock(current);
                let fresh = match cur.as_ref() {
                    Some(t) if t.obtained.elapsed() < renew_after => None,
                    Some(t) => match self.login(username, &t.ticket, true) {
                        Ok(new) => Some(new),
                        // Still valid: keep using it, renewal is tried again next time.
                        Err(e) if e.is_retryable() && t.obtained.elapsed() < TICKET_LIFETIME => {
                            tracing::warn!(%endpoint, error = %e, "ticket renewal failed, keeping the current ticket");
                            None
                        }
                        Err(e) if e.is_retryable() => return Err(e),
                        Err(_) => Some(self.login(username, password, false)?),
                    },
                    None => Some(self.login(username, password, false)?),
                };
                if let Some(t) = fresh {
                    *cur = Some(t);
                }
                let t = cur.as_ref().expect("ticket set above");
                let mut headers = vec![("Cookie", format!("PVEAuthCookie={}", t.ticket.expose()))];
                if method != Method::Get {
                    headers.push(("CSRFPreventionToken", t.csrf.expose().to_string()));
                }
                Ok(headers)
            }
        }
    }

    /// `POST /access/ticket` with the password, or with the current ticket
    /// as the password to renew it.
    fn login(&self, username: &str, password: &Secret, renew: bool) -> Result<Ticket> {
        const PATH: &str = "/access/ticket";
        let endpoint = format!("POST {PATH}");
        let params = Params::new()
            .set("username", username)
            .set("password", password.expose());
        let mut attempt = 0;
        let data = loop {
            match self.send_once(Method::Post, PATH, &Body::Params(&params), &[], &endpoint) {
                Ok(d) => break d,
                Err(e) if e.is_not_sent() && attempt < self.retries => {
                    std::thread::sleep(self.backoff_delay(attempt));
                    attempt += 1;
                }
                Err(Error::Http { status: 401, .. }) => {
                    let what = if renew { "ticket renewal" } else { "login" };
                    return Err(Error::Auth(format!(
                        "{endpoint}: {what} refused for {username}: authentication failure"
                    )));
                }
                Err(e) => return Err(e),
            }
        };
        if data.get("NeedTFA").is_some_and(|v| !v.is_null()) {
            return Err(Error::Auth(format!(
                "{endpoint}: {username} needs a second factor, which this client does not do; use an API token"
            )));
        }
        let field = |name: &str| -> Result<Secret> {
            data.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
                .map(Secret::new)
                .ok_or_else(|| Error::Decode(format!("{endpoint}: answer has no usable {name}")))
        };
        let ticket = Ticket {
            ticket: field("ticket")?,
            csrf: field("CSRFPreventionToken")?,
            obtained: Instant::now(),
        };
        if renew {
            self.renewals.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(user = username, "Proxmox ticket renewed");
        } else {
            self.logins.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(user = username, "logged in to Proxmox");
        }
        Ok(ticket)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_json(resp: ureq::Response, endpoint: &str) -> Result<Value> {
    let mut text = String::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut text)
        .map_err(|e| Error::Disconnected(format!("{endpoint}: reading the answer failed: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::Decode(format!("{endpoint}: answer is not JSON: {e}")))
}

fn http_error(endpoint: &str, status: u16, resp: ureq::Response) -> Error {
    let reason = resp.status_text().trim().to_string();
    let body = read_json(resp, endpoint).unwrap_or(Value::Null);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or(reason);
    let mut errors = BTreeMap::new();
    if let Some(map) = body.get("errors").and_then(Value::as_object) {
        for (k, v) in map {
            let text = crate::de::value_to_string(v).unwrap_or_else(|| v.to_string());
            errors.insert(k.clone(), text.trim_end().to_string());
        }
    }
    Error::Http {
        endpoint: endpoint.to_string(),
        status,
        message,
        errors,
    }
}

pub(crate) fn decode<T: DeserializeOwned>(method: Method, path: &str, data: Value) -> Result<T> {
    serde_json::from_value(data)
        .map_err(|e| Error::Decode(format!("{method} {path}: unexpected answer: {e}")))
}

/// The transport failure in words (no URL: it is in the endpoint already).
fn transport_detail(t: &ureq::Transport) -> String {
    let mut parts = Vec::new();
    if let Some(m) = t.message() {
        parts.push(m.to_string());
    }
    let mut src = std::error::Error::source(t);
    while let Some(e) = src {
        parts.push(e.to_string());
        src = e.source();
    }
    if parts.is_empty() {
        parts.push(t.kind().to_string());
    }
    parts.join(": ")
}

fn is_timeout(t: &ureq::Transport) -> bool {
    let mut src = std::error::Error::source(t);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        src = e.source();
    }
    false
}

/// rustls errors hide inside io::Error, whose `source()` skips the wrapped
/// error itself, so look inside with `get_ref`.
fn find_rustls_error(t: &ureq::Transport) -> Option<String> {
    let mut src = std::error::Error::source(t);
    while let Some(e) = src {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(describe_rustls(r));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(describe_rustls(r));
            }
        }
        src = e.source();
    }
    None
}

fn describe_rustls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => o.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_or_refused() {
        assert_eq!(
            normalize_url("https://pve:8006").unwrap(),
            "https://pve:8006"
        );
        assert_eq!(
            normalize_url("https://pve:8006/").unwrap(),
            "https://pve:8006"
        );
        assert_eq!(
            normalize_url("https://10.0.0.1:8006/api2/json/").unwrap(),
            "https://10.0.0.1:8006"
        );
        assert_eq!(
            normalize_url("https://[::1]:8006").unwrap(),
            "https://[::1]:8006"
        );
        for bad in [
            "http://pve:8006",
            "pve:8006",
            "https://u:p@pve:8006",
            "https://pve:8006/x",
            "https://pve:8006/?a=b",
            "",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("node", "pve").unwrap(), "pve");
        assert_eq!(
            seg("volume", "local:vztmpl/a b.tar").unwrap(),
            "local%3Avztmpl%2Fa%20b.tar"
        );
        assert_eq!(
            seg("upid", "UPID:pve:0000:root@pam!t:").unwrap(),
            "UPID%3Apve%3A0000%3Aroot%40pam%21t%3A"
        );
        assert!(seg("node", "..").is_err());
        assert!(seg("node", "").is_err());
    }

    #[test]
    fn client_is_send_sync_and_hides_secrets() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
        let c = Client::new(ClientConfig::new(
            "https://127.0.0.1:1",
            Auth::token("root@pam!t", "s3cr3t-value"),
            Tls::Insecure,
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = Client::new(ClientConfig::new(
            "https://127.0.0.1:1",
            Auth::token("root@pam!t", "s"),
            Tls::Insecure,
        ))
        .unwrap();
        assert_eq!(c.backoff_delay(0), Duration::from_millis(100));
        assert_eq!(c.backoff_delay(1), Duration::from_millis(200));
        assert_eq!(c.backoff_delay(10), Duration::from_secs(2));
        assert_eq!(c.backoff_delay(40), Duration::from_secs(2));
    }

    #[test]
    fn connection_refused_is_retried_then_reported() {
        // Bind and drop to get a port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = ClientConfig::new(
            format!("https://127.0.0.1:{port}"),
            Auth::token("root@pam!t", "s"),
            Tls::Insecure,
        );
        cfg.retries = 2;
        let mut c = Client::new(cfg).unwrap();
        c.set_retry_backoff(Duration::from_millis(1));
        // POST too: a refused connection never carried the request.
        let err = c
            .call(Method::Post, "/nodes/pve/lxc", &Params::new())
            .unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("POST /nodes/pve/lxc: cannot connect"),
            "{err}"
        );
        assert_eq!(c.requests(), 3);
    }

    #[test]
    fn bad_params_fail_before_sending() {
        let c = Client::new(ClientConfig::new(
            "https://127.0.0.1:1",
            Auth::token("root@pam!t", "s"),
            Tls::Insecure,
        ))
        .unwrap();
        let err = c
            .call(Method::Get, "/version", &Params::new().set("a=b", "1"))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidProperty { .. }), "{err:?}");
        assert_eq!(c.requests(), 0);
    }
}
