//! Tickets, CSRF tokens and API tokens, as pve-access-control has them.

use std::path::Path;

use anyhow::{Context, Result};
use ring::hmac;

/// Tickets are valid for two hours (and from 5 minutes in the future, for
/// clock skew), as in AccessControl.pm.
pub const TICKET_LIFETIME: i64 = 7200;

#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Ticket {
        user: String,
    },
    /// `user` is `USER@REALM`, `token` the token id.
    Token {
        user: String,
        token: String,
    },
}

impl Identity {
    /// The name Proxmox puts in UPIDs and logs: `root@pam` or `root@pam!tok`.
    pub fn name(&self) -> String {
        match self {
            Identity::Ticket { user } => user.clone(),
            Identity::Token { user, token } => format!("{user}!{token}"),
        }
    }
    /// Only a root@pam ticket is root@pam; a token of root is not.
    pub fn is_root_pam(&self) -> bool {
        matches!(self, Identity::Ticket { user } if user == "root@pam")
    }
}

pub struct Auth {
    key: hmac::Key,
    root_password: Option<String>,
    /// (`USER@REALM!ID`, secret)
    tokens: Vec<(String, String)>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}

/// Constant-time comparison for secrets.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    /// The signing key lives in `dir/authkey.secret` so tickets survive a restart.
    pub fn new(
        dir: &Path,
        root_password: Option<String>,
        tokens: Vec<(String, String)>,
    ) -> Result<Self> {
        let path = dir.join("authkey.secret");
        let secret = match std::fs::read(&path) {
            Ok(s) if s.len() == 32 => s,
            _ => {
                let mut s = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
                    .map_err(|_| anyhow::anyhow!("no randomness"))?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                f.write_all(&s)?;
                s
            }
        };
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            root_password,
            tokens,
        })
    }

    fn sign(&self, data: &str) -> String {
        hex(hmac::sign(&self.key, data.as_bytes()).as_ref())
    }

    pub fn make_ticket(&self, user: &str) -> String {
        let data = format!("PVE:{user}:{:08X}", now());
        format!("{data}::{}", self.sign(&data))
    }

    pub fn make_csrf(&self, user: &str) -> String {
        let t = format!("{:08X}", now());
        format!("{t}:{}", self.sign(&format!("{t}:{user}")))
    }

    /// The user of a valid, unexpired ticket.
    pub fn verify_ticket(&self, ticket: &str) -> Option<String> {
        let (data, sig) = ticket.rsplit_once("::")?;
        let mut parts = data.splitn(3, ':');
        if parts.next()? != "PVE" {
            return None;
        }
        let user = parts.next()?;
        let time = i64::from_str_radix(parts.next()?, 16).ok()?;
        if !same(&self.sign(data), sig) {
            return None;
        }
        let age = now() - time;
        if !(-300..TICKET_LIFETIME).contains(&age) {
            return None;
        }
        Some(user.to_string())
    }

    pub fn verify_csrf(&self, token: &str, user: &str) -> bool {
        let Some((t, sig)) = token.split_once(':') else {
            return false;
        };
        let Ok(time) = i64::from_str_radix(t, 16) else {
            return false;
        };
        let age = now() - time;
        (-300..TICKET_LIFETIME).contains(&age) && same(&self.sign(&format!("{t}:{user}")), sig)
    }

    /// Password login (only root@pam with --root-password), or renewal by
    /// passing a valid ticket of the same user as the password.
    pub fn login(&self, username: &str, password: &str) -> Option<String> {
        if let Some(u) = self.verify_ticket(password) {
            return (u == username).then_some(u);
        }
        match &self.root_password {
            Some(p) if username == "root@pam" && same(p, password) => Some(username.to_string()),
            _ => None,
        }
    }

    /// `PVEAPIToken=USER@REALM!ID=SECRET` (split on the last `=`).
    pub fn verify_token_header(&self, value: &str) -> Option<Identity> {
        let rest = value
            .strip_prefix("PVEAPIToken")
            .map(|r| r.trim_start_matches([' ', '=']))?;
        let (id, secret) = rest.rsplit_once('=')?;
        let (user, token) = id.split_once('!')?;
        self.tokens
            .iter()
            .find(|(tid, s)| tid == id && same(s, secret))
            .map(|_| Identity::Token {
                user: user.to_string(),
                token: token.to_string(),
            })
    }
}

/// Parses `USER@REALM!ID=SECRET` from the command line.
pub fn parse_token_arg(s: &str) -> Result<(String, String), String> {
    let (id, secret) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("token '{s}' is not USER@REALM!ID=SECRET"))?;
    let re = regex::Regex::new(r"^[^\s:/!@]+@[A-Za-z][A-Za-z0-9\.\-_]+![A-Za-z][A-Za-z0-9\.\-_]+$")
        .unwrap();
    if !re.is_match(id) || secret.is_empty() || secret.chars().any(|c| c.is_whitespace()) {
        return Err(format!("token '{s}' is not USER@REALM!ID=SECRET"));
    }
    Ok((id.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_csrf() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::new(
            dir.path(),
            Some("pw".into()),
            vec![("root@pam!t".into(), "s3".into())],
        )
        .unwrap();
        assert_eq!(a.login("root@pam", "pw").as_deref(), Some("root@pam"));
        assert_eq!(a.login("root@pam", "nope"), None);
        let t = a.make_ticket("root@pam");
        assert!(t.starts_with("PVE:root@pam:"));
        assert_eq!(a.verify_ticket(&t).as_deref(), Some("root@pam"));
        assert_eq!(a.verify_ticket(&t.replace("PVE:root", "PVE:toor")), None);
        assert_eq!(a.login("root@pam", &t).as_deref(), Some("root@pam"));
        let c = a.make_csrf("root@pam");
        assert!(a.verify_csrf(&c, "root@pam"));
        assert!(!a.verify_csrf(&c, "other@pve"));
        let id = a.verify_token_header("PVEAPIToken=root@pam!t=s3").unwrap();
        assert_eq!(id.name(), "root@pam!t");
        assert!(!id.is_root_pam());
        assert!(a.verify_token_header("PVEAPIToken=root@pam!t=s4").is_none());
        assert!(parse_token_arg("root@pam!tk=abc").is_ok());
        // Token names are at least two characters, as in Proxmox.
        assert!(parse_token_arg("root@pam!t=abc").is_err());
        assert!(parse_token_arg("root@pam=abc").is_err());
    }
}
