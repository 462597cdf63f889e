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

/// Parses `USER@REALM!ID=SECRET` from the command line or a token file.
/// The error never shows the value: it holds a secret.
pub fn parse_token_arg(s: &str) -> Result<(String, String), String> {
    const BAD: &str = "the token is not USER@REALM!ID=SECRET (value not shown)";
    let (id, secret) = s.rsplit_once('=').ok_or(BAD)?;
    let re = regex::Regex::new(r"^[^\s:/!@]+@[A-Za-z][A-Za-z0-9\.\-_]+![A-Za-z][A-Za-z0-9\.\-_]+$")
        .unwrap();
    if !re.is_match(id) || secret.is_empty() || secret.chars().any(|c| c.is_whitespace()) {
        return Err(BAD.into());
    }
    Ok((id.to_string(), secret.to_string()))
}

/// Reads a secret file, refusing one that group or others may read.
pub fn read_secret_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let m = f.metadata()?;
    if !m.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    if m.mode() & 0o044 != 0 {
        anyhow::bail!(
            "{} is readable by group or others (mode {:o}): chmod 600 it",
            path.display(),
            m.mode() & 0o7777
        );
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &f, &mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

/// The tokens of a `--token-file`: one `USER@REALM!ID=SECRET` a line
/// (blank lines and `#` comments skipped).
pub fn read_token_file(path: &Path) -> Result<Vec<(String, String)>> {
    read_secret_file(path)?
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            parse_token_arg(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The password of a `--root-password-file`: its first line.
pub fn read_password_file(path: &Path) -> Result<String> {
    let text = read_secret_file(path)?;
    let pw = text.lines().next().unwrap_or("");
    anyhow::ensure!(!pw.is_empty(), "{} holds no password", path.display());
    Ok(pw.to_string())
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
        // The secret is not echoed.
        let e = parse_token_arg("root@pam!t=topsecret").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
        let e = parse_token_arg("topsecret").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn secret_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tokens");
        std::fs::write(&f, "# ci\nroot@pam!ci=s3cr3t\n\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_token_file(&f).unwrap(),
            vec![("root@pam!ci".to_string(), "s3cr3t".to_string())]
        );
        for mode in [0o640, 0o604] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_token_file(&f).unwrap_err().to_string();
            assert!(e.contains("readable by group or others"), "{e}");
        }
        let p = d.path().join("pw");
        std::fs::write(&p, "hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "hunter2");
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(read_password_file(&l).is_err());
    }
}
