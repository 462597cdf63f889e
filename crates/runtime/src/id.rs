//! Container ids, with runc's rule: letters, digits, `_ + - .`, not `.` or `..`.
use crate::error::{Error, Result};

/// Longest id accepted. runc has no limit, but the id ends up in paths, an
/// LXC name and cgroup names; 1024 keeps every path well under PATH_MAX.
pub const MAX_ID_LEN: usize = 1024;

pub fn validate(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for id in [
            "a",
            "c1",
            "my_ctr.2",
            "a+b-c",
            "..a",
            "a..",
            "0123456789abcdef",
        ] {
            validate(id).unwrap();
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        for id in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "a\nb",
            "a\0b",
            "é",
            "a:b",
            long.as_str(),
        ] {
            let err = validate(id).unwrap_err().to_string();
            assert!(err.contains("invalid container id"), "{id:?}: {err}");
        }
    }
}
