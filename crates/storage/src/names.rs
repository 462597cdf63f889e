//! Names that reach `zfs` command lines and paths. Everything is checked
//! against a small allow-list; nothing is escaped into shape.
use sha2::{Digest, Sha256};

use crate::error::{invalid, Result};

/// ZFS's limit for a full name (pool/.../fs@snap), minus one for the NUL.
pub const MAX_DATASET_NAME: usize = 255;
/// Longest snapshot name we accept.
pub const MAX_SNAPSHOT_NAME: usize = 64;
/// Longest container id kept verbatim in a dataset name; longer ids are
/// shortened and made unique by a hash.
const MAX_VERBATIM_ID: usize = 64;

fn component_ok(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && !c.starts_with('-')
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A dataset name from the config (e.g. `tank/lxcri`): `/`-separated
/// components of letters, digits and `_ - . :`.
pub fn validate_dataset(what: &'static str, name: &str) -> Result<()> {
    if name.len() > MAX_DATASET_NAME - 80 {
        return Err(invalid(what, name, "too long"));
    }
    if !name.split('/').all(component_ok) {
        return Err(invalid(
            what,
            name,
            "a ZFS dataset is pool/child/...: letters, digits and _ - . : per component, no empty, . or .. component, no @ or spaces",
        ));
    }
    Ok(())
}

/// A snapshot name given by a user: letters, digits and `_ - . :`, no `..`.
pub fn validate_snapshot(name: &str) -> Result<()> {
    if name.len() > MAX_SNAPSHOT_NAME {
        return Err(invalid(
            "snapshot name",
            name,
            format!("longer than {MAX_SNAPSHOT_NAME} characters"),
        ));
    }
    if !component_ok(name) || name.contains("..") {
        return Err(invalid(
            "snapshot name",
            name,
            "use letters, digits and _ - . : (no /, @, spaces or ..; not starting with -)",
        ));
    }
    Ok(())
}

/// The dataset/directory component for a container id. Ids are runc's
/// `[A-Za-z0-9_+.-]+`; ids that are ZFS-safe and short are kept as they are,
/// others (with `+`, leading `-`, or long) become a readable prefix plus a
/// hash of the whole id, so distinct ids never share a name.
pub fn container_component(id: &str) -> Result<String> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return Err(invalid(
            "container id",
            id,
            "only letters, digits and _ + - . are allowed (not . or ..)",
        ));
    }
    if id.len() <= MAX_VERBATIM_ID && component_ok(id) && !id.contains('+') {
        return Ok(id.to_string());
    }
    let prefix: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(32)
        .collect();
    let prefix = prefix.trim_start_matches(['-', '.']);
    Ok(format!(
        "{prefix}_h{}",
        &hex(&Sha256::digest(id.as_bytes()))[..16]
    ))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_components() {
        assert_eq!(container_component("c1").unwrap(), "c1");
        assert_eq!(container_component("a..b").unwrap(), "a..b");
        let plus = container_component("a+b").unwrap();
        assert!(plus.starts_with("ab_h") && component_ok(&plus), "{plus}");
        assert_ne!(plus, container_component("a+b+").unwrap());
        let long = "x".repeat(1000);
        let c = container_component(&long).unwrap();
        assert!(c.len() < 60 && component_ok(&c));
        let dash = container_component("-x").unwrap();
        assert!(component_ok(&dash), "{dash}");
        for bad in ["", ".", "..", "a/b", "a@b", "a b", "../x", "a\nb", "a:b"] {
            assert!(container_component(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn snapshot_and_dataset_names() {
        validate_snapshot("before-upgrade_1").unwrap();
        for bad in [
            "",
            "a/b",
            "a@b",
            "a b",
            "..",
            "a..b",
            "-r",
            "x\n",
            &"s".repeat(65),
        ] {
            assert!(validate_snapshot(bad).is_err(), "{bad:?}");
        }
        validate_dataset("p", "tank/lxcri").unwrap();
        for bad in [
            "",
            "/tank",
            "tank/",
            "tank//x",
            "tank/../x",
            "tank@s",
            "tank/a b",
            "-tank",
        ] {
            assert!(validate_dataset("p", bad).is_err(), "{bad:?}");
        }
    }
}
