//! The client's error type. Every message names the endpoint (method and
//! path) it came from and never carries a secret.

use std::collections::BTreeMap;

/// Errors returned by the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an HTTP error status (Proxmox's
    /// `{"data":null,"message":..,"errors":{param: reason}}` body, decoded).
    #[error("{endpoint}: HTTP {status}: {message}{}", fmt_errors(.errors))]
    Http {
        /// `METHOD /path` of the request, e.g. `POST /nodes/pve/lxc`.
        endpoint: String,
        status: u16,
        message: String,
        /// Per-parameter reasons (Proxmox's `errors` object), empty if none.
        errors: BTreeMap<String, String>,
    },
    /// The TLS handshake failed: untrusted certificate, pinned fingerprint
    /// mismatch, name mismatch. Never retried.
    #[error("{0}")]
    Tls(String),
    /// The connection could not be made, so the request was not sent.
    #[error("{0}")]
    Connect(String),
    /// The request was sent but the answer did not come in time.
    #[error("{0}")]
    Timeout(String),
    /// The connection broke after the request was (possibly) sent, so whether
    /// the server acted on it is unknown.
    #[error("{0}")]
    Disconnected(String),
    /// A task ended with an exit status other than `OK` / `WARNINGS: N`.
    #[error("task {upid} failed: {exitstatus}")]
    Task { upid: String, exitstatus: String },
    /// The answer could not be decoded into the expected shape.
    #[error("{0}")]
    Decode(String),
    /// A property-string or parameter value that would break the string it
    /// goes into, or is out of range.
    #[error("invalid {key} value {value:?}: {reason}")]
    InvalidProperty {
        key: String,
        value: String,
        reason: String,
    },
    /// Login or ticket renewal was refused, or the credentials are malformed.
    #[error("{0}")]
    Auth(String),
    /// The client configuration is unusable (URL, CA file, fingerprint, secret file).
    #[error("{0}")]
    Config(String),
}

fn fmt_errors(errors: &BTreeMap<String, String>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.trim_end()))
        .collect();
    format!(" ({})", parts.join("; "))
}

/// HTTP statuses that mean "the request did not reach a worker", so a GET can
/// be sent again: bad gateway, unavailable, and Proxmox's proxy errors.
pub(crate) const RETRYABLE_STATUS: [u16; 4] = [502, 503, 595, 596];

impl Error {
    /// Whether sending the same *idempotent* request again is reasonable:
    /// connection failures, timeouts, dropped connections and gateway-type
    /// statuses. For non-idempotent requests only [`Error::is_not_sent`]
    /// errors are safe to repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect(_) | Error::Timeout(_) | Error::Disconnected(_) => true,
            Error::Http { status, .. } => RETRYABLE_STATUS.contains(status),
            _ => false,
        }
    }

    /// True when the request certainly never reached the server.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, Error::Connect(_))
    }

    /// The HTTP status of an [`Error::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message of an [`Error::Http`], or the exit status of a
    /// failed task (useful to match on texts like "already running").
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Http { message, .. } => Some(message),
            Error::Task { exitstatus, .. } => Some(exitstatus),
            _ => None,
        }
    }

    pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Error {
        Error::InvalidProperty {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_error_names_endpoint_and_parameter_errors() {
        let mut errors = BTreeMap::new();
        errors.insert("vmid".to_string(), "VM 100 already exists\n".to_string());
        let e = Error::Http {
            endpoint: "GET /cluster/nextid".into(),
            status: 400,
            message: "Parameter verification failed.".into(),
            errors,
        };
        assert_eq!(
            e.to_string(),
            "GET /cluster/nextid: HTTP 400: Parameter verification failed. (vmid: VM 100 already exists)"
        );
        assert_eq!(e.status(), Some(400));
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_classification() {
        let http = |status| Error::Http {
            endpoint: "GET /x".into(),
            status,
            message: String::new(),
            errors: BTreeMap::new(),
        };
        assert!(http(503).is_retryable());
        assert!(http(596).is_retryable());
        assert!(!http(500).is_retryable());
        assert!(Error::Connect("c".into()).is_not_sent());
        assert!(!Error::Timeout("t".into()).is_not_sent());
        assert!(!Error::Tls("t".into()).is_retryable());
    }
}
