//! What a client needs to know to talk to a Proxmox VE node.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Connection settings for [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the node, `https://host:8006` (a trailing `/` or
    /// `/api2/json` is accepted and removed).
    pub url: String,
    pub auth: Auth,
    pub tls: Tls,
    /// Whole-request deadline (connect, send, answer). Uploads use it per
    /// read/write instead, since their size is unbounded.
    pub timeout: Duration,
    /// Extra attempts for requests that are safe to repeat (see
    /// [`crate::Error::is_retryable`]); 0 disables retries.
    pub retries: u32,
}

impl ClientConfig {
    /// Settings with a 30 s timeout and 3 retries.
    pub fn new(url: impl Into<String>, auth: Auth, tls: Tls) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            auth,
            tls,
            timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// An API token: `id` is `USER@REALM!TOKENID`. No CSRF token is needed.
    Token { id: String, secret: Secret },
    /// A user and password: the client logs in at `/access/ticket`, sends the
    /// ticket as a cookie (plus `CSRFPreventionToken` on writes) and renews it
    /// before it expires.
    Password { username: String, password: Secret },
}

impl Auth {
    pub fn token(id: impl Into<String>, secret: impl Into<Secret>) -> Auth {
        Auth::Token {
            id: id.into(),
            secret: secret.into(),
        }
    }

    pub fn password(username: impl Into<String>, password: impl Into<Secret>) -> Auth {
        Auth::Password {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses the `USER@REALM!TOKENID=SECRET` form (split at the last `=`, as
    /// Proxmox does).
    pub fn token_from_str(full: &str) -> Result<Auth> {
        let (id, secret) = full.rsplit_once('=').ok_or_else(|| {
            Error::Config("API token must look like USER@REALM!TOKENID=SECRET".into())
        })?;
        let auth = Auth::token(id, secret);
        auth.validate()?;
        Ok(auth)
    }

    /// The user the client acts as (for tokens, `USER@REALM!TOKENID`).
    pub fn user(&self) -> &str {
        match self {
            Auth::Token { id, .. } => id,
            Auth::Password { username, .. } => username,
        }
    }

    /// Checks the shape of the credentials so that nothing malformed (or able
    /// to inject a header) is ever sent.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Auth::Token { id, secret } => {
                let (user, tokenid) = id.split_once('!').ok_or_else(|| {
                    Error::Config(format!(
                        "API token id {id:?} must look like USER@REALM!TOKENID"
                    ))
                })?;
                check_userid(user)?;
                if tokenid.is_empty()
                    || !tokenid
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(Error::Config(format!(
                        "API token id {id:?}: the token name must be letters, digits, '-', '_' or '.'"
                    )));
                }
                check_secret_chars(secret, "API token secret")
            }
            Auth::Password { username, password } => {
                check_userid(username)?;
                check_secret_chars(password, "password")
            }
        }
    }
}

fn check_userid(user: &str) -> Result<()> {
    let ok = match user.rsplit_once('@') {
        Some((name, realm)) => {
            !name.is_empty()
                && !realm.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !"!:,;=\"'\\".contains(c))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "user {user:?} must look like USER@REALM (e.g. root@pam)"
        )))
    }
}

fn check_secret_chars(secret: &Secret, what: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(Error::Config(format!("{what} is empty")));
    }
    if secret.expose().chars().any(|c| c.is_control()) {
        return Err(Error::Config(format!(
            "{what} contains a control character (newline?)"
        )));
    }
    Ok(())
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Verify the chain and host name against a CA file (PEM), or the system
    /// roots when `None`. Proxmox nodes' default certificates are signed by the
    /// cluster CA in `/etc/pve/pve-root-ca.pem`.
    Verify { ca_file: Option<PathBuf> },
    /// Accept exactly the certificate with this SHA-256 fingerprint
    /// (`AA:BB:..`, colons optional, any case), as Proxmox's own tools do.
    Fingerprint(String),
    /// No certificate check at all. Logged as a warning when the client is made.
    Insecure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parsing_and_validation() {
        match Auth::token_from_str("root@pam!ci=aaaa-bbbb").unwrap() {
            Auth::Token { id, secret } => {
                assert_eq!(id, "root@pam!ci");
                assert_eq!(secret.expose(), "aaaa-bbbb");
            }
            _ => unreachable!(),
        }
        // Split at the last '=': the id would then hold a '=', which is refused.
        assert!(Auth::token_from_str("root@pam!ci=aaaa=cc").is_err());
        assert!(Auth::token_from_str("root@pam!ci=uuid").is_ok());
        assert!(Auth::token_from_str("root@pam=uuid").is_err());
        assert!(Auth::token_from_str("rootpam!ci=uuid").is_err());
        assert!(Auth::token("root@pam!ci", "a\r\nX-Evil: 1")
            .validate()
            .is_err());
        assert!(Auth::password("root@pam", "").validate().is_err());
        assert!(Auth::password("root", "pw").validate().is_err());
        assert!(Auth::password("root@pam", "pw").validate().is_ok());
    }

    #[test]
    fn errors_do_not_echo_secrets() {
        let err = Auth::token("root@pam!ci", "zq7\nxw9")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("zq7") && !err.contains("xw9"), "{err}");
    }
}
