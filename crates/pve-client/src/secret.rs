//! A string that must never be printed: passwords, token secrets, tickets.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroize;

use crate::error::{Error, Result};

/// A secret value. `Debug` and `Display` print `[redacted]`; the memory is
/// wiped on drop. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret from a file that only its owner may read (mode 0600 or
    /// stricter); one trailing newline is removed. A group- or world-readable
    /// file is refused, since anyone able to read it holds the credential.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Secret> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::Config(format!("cannot read secret file {}: {e}", path.display()))
        })?;
        if !meta.is_file() {
            return Err(Error::Config(format!(
                "secret file {} is not a regular file",
                path.display()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "secret file {} is accessible by group or others (mode {mode:04o}); \
                 restrict it with `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let mut text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read secret file {}: {e}", path.display()))
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            return Err(Error::Config(format!(
                "secret file {} is empty",
                path.display()
            )));
        }
        Ok(Secret(text))
    }

    /// The secret's value. Call only where it is sent, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn redacted_in_debug_and_display() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_checks_mode_and_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        fs::write(&p, "abc-123\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("accessible by group or others"), "{err}");
        assert!(err.contains("0644"), "{err}");
        assert!(!err.contains("abc-123"), "{err}");

        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc-123");

        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Secret::from_file(&p).is_err());

        let missing = Secret::from_file(dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("cannot read secret file"));
    }
}
