//! Request parameters: an ordered key/value list, sent form-encoded (writes)
//! or as the query string (reads, deletes). Values are not restricted, since
//! the encoding carries any byte; keys are, since a key is never user data.

use crate::error::{Error, Result};

/// Ordered parameters. Setting a key twice replaces the first value in place.
/// A bad key does not panic: it is remembered and reported when the request
/// is made (or by [`Params::check`]).
#[derive(Clone, Default, PartialEq)]
#[must_use]
pub struct Params {
    pairs: Vec<(String, String)>,
    invalid: Option<String>,
}

/// Keys only: values include passwords and tickets (login, renewal,
/// `password` of a new CT), which must never reach a log.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field(
                "keys",
                &self
                    .pairs
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("invalid", &self.invalid)
            .finish()
    }
}

/// Proxmox parameter names: `vmid`, `net0`, `ssh-public-keys`, `forceStop`,
/// `destroy-unreferenced-disks`.
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && key.len() <= 64
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets `key` to a string value.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Params {
        self.insert(key, value.into());
        self
    }

    /// Sets `key` when `value` is `Some`.
    pub fn opt(self, key: &str, value: Option<impl Into<String>>) -> Params {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// Sets a boolean the way Proxmox wants it: `1` or `0`.
    pub fn bool(self, key: &str, value: bool) -> Params {
        self.set(key, if value { "1" } else { "0" })
    }

    /// Sets an integer.
    pub fn int(self, key: &str, value: impl Into<i64>) -> Params {
        self.set(key, value.into().to_string())
    }

    /// Adds `delete=a,b` for a config update (removes those keys).
    pub fn delete(self, keys: &[&str]) -> Params {
        if let Some(bad) = keys.iter().find(|k| !valid_key(k)) {
            let mut p = self;
            p.invalid.get_or_insert_with(|| bad.to_string());
            return p;
        }
        self.set("delete", keys.join(","))
    }

    /// Sets `key` in place (the non-builder form).
    pub fn insert(&mut self, key: &str, value: String) {
        if !valid_key(key) {
            self.invalid.get_or_insert_with(|| key.to_string());
            return;
        }
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((key.to_string(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// The pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The keys in insertion order (safe to log; values may be secrets).
    pub fn keys(&self) -> Vec<&str> {
        self.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Fails if any key given so far was not a valid parameter name.
    pub fn check(&self) -> Result<()> {
        match &self.invalid {
            Some(key) => Err(Error::invalid(
                "parameter name",
                key,
                "must be a letter followed by letters, digits, '-' or '_'",
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_keys_not_values() {
        let p = Params::new()
            .set("username", "root@pam")
            .set("password", "hunter2");
        let d = format!("{p:?}");
        assert!(d.contains("password") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn ordered_with_replacement_and_booleans() {
        let p = Params::new()
            .int("vmid", 100)
            .set("hostname", "a")
            .bool("unprivileged", true)
            .bool("start", false)
            .set("hostname", "b")
            .opt("pool", None::<String>)
            .opt("tags", Some("x;y"));
        let got: Vec<_> = p.iter().collect();
        assert_eq!(
            got,
            vec![
                ("vmid", "100"),
                ("hostname", "b"),
                ("unprivileged", "1"),
                ("start", "0"),
                ("tags", "x;y"),
            ]
        );
        p.check().unwrap();
    }

    #[test]
    fn bad_keys_are_reported() {
        for key in ["", "net0=x", "a b", "9net", "x\n", "a&b"] {
            let p = Params::new().set(key, "v").set("ok", "1");
            let err = p.check().unwrap_err().to_string();
            assert!(err.contains("parameter name"), "{key:?}: {err}");
            assert_eq!(p.get(key), None);
        }
        assert!(Params::new().delete(&["mp0", "x=y"]).check().is_err());
        assert_eq!(
            Params::new().delete(&["mp0", "net1"]).get("delete"),
            Some("mp0,net1")
        );
        assert!(Params::new()
            .set("forceStop", "1")
            .set("ssh-public-keys", "k")
            .check()
            .is_ok());
    }
}
