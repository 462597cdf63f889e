//! Checks at start-up that fail early and say why, instead of letting
//! every CT start fail later with LXC's bare "Failed to spawn container".
//!
//! An unprivileged CT's root is host uid 100000 (gid 100000): LXC sets up
//! its rootfs and runs it as that user, who must be able to traverse every
//! directory above the rootfs volumes and LXC's own directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::runner::ID_OFFSET;

/// Whether host uid/gid `ID_OFFSET` may search (`x`) the directory with
/// this metadata: as its owner, its group, or as "others".
fn traversable(md: &std::fs::Metadata) -> bool {
    let mode = md.mode();
    if md.uid() == ID_OFFSET {
        return mode & 0o100 != 0;
    }
    if md.gid() == ID_OFFSET {
        return mode & 0o010 != 0;
    }
    mode & 0o001 != 0
}

/// Refuses, naming the directory and the fix, when `path` or one of its
/// parents cannot be traversed by unprivileged CTs' root. `what` says
/// what `path` is (for the message).
pub fn check_traversable(path: &Path, what: &str) -> Result<()> {
    let mut cur: Option<&Path> = Some(path);
    while let Some(d) = cur {
        let md = std::fs::metadata(d)
            .map_err(|e| anyhow::anyhow!("{what} {}: {}: {e}", path.display(), d.display()))?;
        if !traversable(&md) {
            bail!(
                "{what} {} cannot be reached by unprivileged CTs: their root is host uid {ID_OFFSET}, \
                 and {} (mode {:04o}, owner uid {}) does not let it pass; \
                 allow it with `chmod o+x {}` (or use a directory outside it)",
                path.display(),
                d.display(),
                md.mode() & 0o7777,
                md.uid(),
                d.display()
            );
        }
        cur = d.parent();
    }
    Ok(())
}

/// The directories unprivileged CTs need: LXC's (`lxcpath`) and where each
/// storage keeps rootfs volumes.
pub fn check_all(lxcpath: &Path, volume_dirs: &[(String, PathBuf)]) -> Result<()> {
    check_traversable(lxcpath, "the LXC directory of the data dir")?;
    for (id, d) in volume_dirs {
        check_traversable(d, &format!("storage '{id}':"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn names_the_blocking_dir_and_the_fix() {
        // Under /tmp (1777) so only the test's own dirs decide.
        let top = tempfile::tempdir_in("/tmp").unwrap();
        let inner = top.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        chmod(top.path(), 0o755);
        chmod(&top.path().join("a"), 0o700);
        chmod(&inner, 0o755);
        let e = check_traversable(&inner, "the data dir")
            .unwrap_err()
            .to_string();
        let blocked = top.path().join("a");
        assert!(
            e.contains(&format!("chmod o+x {}", blocked.display())),
            "{e}"
        );
        assert!(e.contains("mode 0700"), "{e}");
        chmod(&blocked, 0o711);
        check_traversable(&inner, "the data dir").unwrap();
        // Owned by the CTs' root, the owner bits decide.
        std::os::unix::fs::chown(&blocked, Some(ID_OFFSET), None).unwrap();
        chmod(&blocked, 0o700);
        check_traversable(&inner, "the data dir").unwrap();
        let missing = top.path().join("nope");
        assert!(check_traversable(&missing, "x").is_err());
    }
}
