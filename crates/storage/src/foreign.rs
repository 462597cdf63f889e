//! Volumes that another manager made (a Proxmox CT's rootfs, made by the
//! Proxmox storage layer): this crate only fills them.
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Kind;
use crate::error::Result;
use crate::{copy_tree, IdShift, ImageKey, Progress, Storage};

/// Put the rootfs `src` into the empty volume mounted at `dst`: with a ZFS
/// `storage` and `dst` a ZFS dataset, the dataset becomes a clone of the
/// cached image (O(1) once cached; the other manager keeps seeing its own
/// dataset); else a copy. Owners are shifted by `shift`.
pub fn fill_volume(
    storage: Option<&Storage>,
    src: &Path,
    dst: &Path,
    annotations: &BTreeMap<String, String>,
    shift: Option<&IdShift>,
    progress: &mut dyn Progress,
) -> Result<()> {
    if let Some(st) = storage.filter(|s| s.config().kind == Kind::Zfs) {
        if let Some(ds) = st.dataset_at(dst) {
            let key = ImageKey::for_bundle(annotations, src, shift)?;
            return st.populate_named(&ds, src, &key, shift, progress);
        }
    }
    copy_tree(src, dst, shift, progress)?;
    Ok(())
}

impl Storage {
    /// The ZFS filesystem mounted at `path`, if any.
    pub fn dataset_at(&self, path: &Path) -> Option<String> {
        let out = self
            .zfs()
            .run(["list", "-H", "-o", "name,mountpoint", "-t", "filesystem"])
            .ok()?;
        out.lines().find_map(|l| {
            let (name, mp) = l.split_once('\t')?;
            (Path::new(mp) == path).then(|| name.to_string())
        })
    }
}
