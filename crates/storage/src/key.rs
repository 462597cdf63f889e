//! Image keys: which cached image a rootfs is. From an image digest when the
//! bundle names one, else from a fingerprint of the tree's metadata (one
//! `lstat` per entry, no file reads). Either way mixed with the uid shift,
//! so shifted and unshifted copies of an image never share a key.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{invalid, Error, Result};
use crate::idshift::IdShift;
use crate::names::hex;

/// Our annotation for an image digest (`sha256:<64 hex>`).
pub const DIGEST_ANNOTATION: &str = "io.proxmox-lxcri.image.digest";
/// containerd's CRI plugin: the image id (a digest) of the container.
pub const CRI_IMAGE_REF_ANNOTATION: &str = "io.kubernetes.cri.image-ref";
/// containerd's CRI plugin: the image name; a digest only if pinned (`name@sha256:...`).
pub const CRI_IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.image-name";

/// Identifies a cached image: `d-<hex>` (from a digest) or `f-<hex>` (from
/// a fingerprint); 66 characters, safe as a ZFS name component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageKey(String);

/// What a fingerprint walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSummary {
    pub entries: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

impl ImageKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse a key as [`ImageKey::as_str`] printed it.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() == 66
            && (s.starts_with("d-") || s.starts_with("f-"))
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(invalid("image key", s, "expected d-<64 hex> or f-<64 hex>"));
        }
        Ok(ImageKey(s.to_string()))
    }

    /// From an image digest `sha256:<64 hex>`.
    pub fn from_digest(digest: &str, shift: Option<&IdShift>) -> Result<Self> {
        let hexpart = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| invalid("image digest", digest, "expected sha256: and 64 hex digits"))?
            .to_ascii_lowercase();
        Ok(ImageKey(format!("d-{}", mix(&hexpart, shift))))
    }

    /// From a walk of the tree's metadata: path, type, size, mtime, mode,
    /// owner, link count, device number and symlink target of every entry
    /// (the root's own times are left out: an overlay's fresh upper dir
    /// gives each container of an image a new one).
    pub fn fingerprint(rootfs: &Path, shift: Option<&IdShift>) -> Result<(Self, TreeSummary)> {
        let mut h = Sha256::new();
        let mut sum = TreeSummary::default();
        let md = fs::symlink_metadata(rootfs).map_err(|e| io(rootfs, e))?;
        if !md.is_dir() {
            return Err(Error::Refused(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        h.update(format!("root {:o} {} {}\n", md.mode(), md.uid(), md.gid()));
        walk(rootfs, b"", &mut h, &mut sum)?;
        let hexpart = hex(&h.finalize());
        Ok((ImageKey(format!("f-{}", mix(&hexpart, shift))), sum))
    }

    /// The key of a bundle's rootfs: from the digest its annotations give
    /// (see [`ImageKey::digest_from_annotations`]), else a fingerprint.
    pub fn for_bundle(
        annotations: &BTreeMap<String, String>,
        rootfs: &Path,
        shift: Option<&IdShift>,
    ) -> Result<Self> {
        match Self::digest_from_annotations(annotations)? {
            Some(d) => Self::from_digest(&d, shift),
            None => Ok(Self::fingerprint(rootfs, shift)?.0),
        }
    }

    /// The digest a bundle's annotations give, if any: ours, then CRI's
    /// image-ref, then a CRI image name pinned by digest. A malformed value
    /// of our own annotation is an error; CRI values that are not digests
    /// are ignored (a name is not a digest).
    pub fn digest_from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let is_digest = |v: &str| {
            v.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        if let Some(v) = annotations.get(DIGEST_ANNOTATION) {
            if !is_digest(v) {
                return Err(invalid(
                    "annotation io.proxmox-lxcri.image.digest",
                    v,
                    "expected sha256: and 64 hex digits",
                ));
            }
            return Ok(Some(v.clone()));
        }
        if let Some(v) = annotations.get(CRI_IMAGE_REF_ANNOTATION) {
            if is_digest(v) {
                return Ok(Some(v.clone()));
            }
        }
        if let Some(v) = annotations.get(CRI_IMAGE_NAME_ANNOTATION) {
            if let Some((_, d)) = v.rsplit_once('@') {
                if is_digest(d) {
                    return Ok(Some(d.to_string()));
                }
            }
        }
        Ok(None)
    }
}

impl std::fmt::Display for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hex part of a key: as is without a shift, else hashed with it.
fn mix(hexpart: &str, shift: Option<&IdShift>) -> String {
    match shift.filter(|s| !s.is_identity()) {
        None => hexpart.to_string(),
        Some(s) => {
            let mut h = Sha256::new();
            h.update(hexpart.as_bytes());
            h.update(s.key_bytes());
            hex(&h.finalize())
        }
    }
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("reading {}", p.display()),
        source: e,
    }
}

fn walk(dir: &Path, rel: &[u8], h: &mut Sha256, sum: &mut TreeSummary) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| io(dir, e))?;
    // read_dir order is the filesystem's; the key must not depend on it.
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let mut r = rel.to_vec();
        r.push(b'/');
        r.extend_from_slice(name.as_bytes());
        let md = fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
        sum.entries += 1;
        h.update(&r);
        h.update([0]);
        let nlink = if md.is_dir() { 0 } else { md.nlink() };
        h.update(
            format!(
                "{:o} {} {}.{} {} {} {} {}",
                md.mode(),
                md.len(),
                md.mtime(),
                md.mtime_nsec(),
                md.uid(),
                md.gid(),
                nlink,
                md.rdev()
            )
            .as_bytes(),
        );
        if md.file_type().is_symlink() {
            let t = fs::read_link(&p).map_err(|e| io(&p, e))?;
            h.update(b" -> ");
            h.update(t.as_os_str().as_bytes());
        } else if md.is_file() {
            sum.bytes += md.len();
        }
        h.update(b"\n");
        if md.is_dir() {
            walk(&p, &r, h, sum)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idshift::IdRange;

    #[test]
    fn digests_and_shift() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let k = ImageKey::from_digest(&d, None).unwrap();
        assert_eq!(k.as_str(), format!("d-{}", "ab".repeat(32)));
        assert_eq!(ImageKey::parse(k.as_str()).unwrap(), k);
        let sh = IdShift::uniform(100000, 65536);
        let ks = ImageKey::from_digest(&d, Some(&sh)).unwrap();
        assert_ne!(k, ks);
        ImageKey::parse(ks.as_str()).unwrap();
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}/..", "a".repeat(62)),
        ] {
            assert!(ImageKey::from_digest(bad, None).is_err());
        }
        assert!(ImageKey::parse("d-../x").is_err());
    }

    #[test]
    fn annotations() {
        let d = format!("sha256:{}", "0f".repeat(32));
        let mut a = BTreeMap::new();
        assert_eq!(ImageKey::digest_from_annotations(&a).unwrap(), None);
        a.insert(
            CRI_IMAGE_NAME_ANNOTATION.into(),
            "docker.io/library/busybox:latest".into(),
        );
        assert_eq!(ImageKey::digest_from_annotations(&a).unwrap(), None);
        a.insert(
            CRI_IMAGE_NAME_ANNOTATION.into(),
            format!("docker.io/library/busybox@{d}"),
        );
        assert_eq!(
            ImageKey::digest_from_annotations(&a).unwrap(),
            Some(d.clone())
        );
        a.insert(DIGEST_ANNOTATION.into(), "sha256:../../etc".into());
        assert!(ImageKey::digest_from_annotations(&a).is_err());
        a.insert(DIGEST_ANNOTATION.into(), d.clone());
        assert_eq!(ImageKey::digest_from_annotations(&a).unwrap(), Some(d));
    }

    #[test]
    fn fingerprint_sees_metadata_changes_not_root_times() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/a"), "hello").unwrap();
        std::os::unix::fs::symlink("a", r.join("etc/l")).unwrap();
        let (k1, s1) = ImageKey::fingerprint(r, None).unwrap();
        assert_eq!(
            s1,
            TreeSummary {
                entries: 3,
                bytes: 5
            }
        );
        // Touching the root (as a fresh overlay upper dir does) keeps the key.
        fs::write(r.join("x"), "").unwrap();
        fs::remove_file(r.join("x")).unwrap();
        assert_eq!(ImageKey::fingerprint(r, None).unwrap().0, k1);
        fs::write(r.join("etc/a"), "hello!").unwrap();
        let (k2, _) = ImageKey::fingerprint(r, None).unwrap();
        assert_ne!(k1, k2);
        let sh = IdShift {
            uids: vec![IdRange {
                container_id: 0,
                host_id: 1000,
                size: 10,
            }],
            gids: vec![],
        };
        assert_ne!(ImageKey::fingerprint(r, Some(&sh)).unwrap().0, k2);
    }
}
