//! The `[storage]` section of the config file.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{names, size};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Plain directories under `dir_root`: a full copy per container.
    #[default]
    Dir,
    /// Datasets under `zfs_parent`, made with the `zfs` command.
    Zfs,
}

/// Which ZFS property a quota or reservation sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaProperty {
    /// Limits the data the dataset refers to (snapshots not counted), as
    /// Proxmox sets the size of a subvol. A clone refers to its image's data
    /// too, so the quota must hold the rootfs.
    #[serde(rename = "refquota")]
    Refquota,
    /// Limits the dataset with its snapshots.
    #[serde(rename = "quota")]
    Quota,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationProperty {
    #[serde(rename = "refreservation")]
    Refreservation,
    #[serde(rename = "reservation")]
    Reservation,
}

/// `[storage]`; see docs/config.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub kind: Kind,
    /// Parent dataset: `<zfs_parent>/containers/<name>`, `<zfs_parent>/images/<key>`.
    #[serde(default)]
    pub zfs_parent: Option<String>,
    #[serde(default = "default_dir_root")]
    pub dir_root: PathBuf,
    /// Quota of a container without the quota annotation (zfs only).
    #[serde(default)]
    pub default_quota: Option<String>,
    /// Reservation of a container without the reservation annotation (zfs only).
    #[serde(default)]
    pub default_reservation: Option<String>,
    #[serde(default = "default_quota_property")]
    pub quota_property: QuotaProperty,
    #[serde(default = "default_reservation_property")]
    pub reservation_property: ReservationProperty,
    /// ZFS properties of every dataset we make (e.g. compression, atime).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Host-wide lock directory (the image cache's locks).
    #[serde(default = "default_lock_dir")]
    pub lock_dir: PathBuf,
    /// The zfs binary.
    #[serde(default = "default_zfs_command")]
    pub zfs_command: PathBuf,
    /// What to do with extended attributes the target cannot store
    /// (zfs-fuse stores none): "require" fails the copy, "skip" drops them
    /// with a warning.
    #[serde(default)]
    pub xattrs: XattrPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XattrPolicy {
    #[default]
    Require,
    Skip,
}

fn default_dir_root() -> PathBuf {
    "/var/lib/proxmox-lxcri/rootfs".into()
}
fn default_quota_property() -> QuotaProperty {
    QuotaProperty::Refquota
}
fn default_reservation_property() -> ReservationProperty {
    ReservationProperty::Refreservation
}
fn default_lock_dir() -> PathBuf {
    "/run/lock/proxmox-lxcri".into()
}
fn default_zfs_command() -> PathBuf {
    "zfs".into()
}

/// Properties the storage manager sets itself.
const MANAGED: &[&str] = &[
    "quota",
    "refquota",
    "reservation",
    "refreservation",
    "mountpoint",
    "canmount",
    "origin",
];

impl StorageConfig {
    /// A config of `kind` with every other key at its default.
    pub fn new(kind: Kind) -> Self {
        StorageConfig {
            kind,
            zfs_parent: None,
            dir_root: default_dir_root(),
            default_quota: None,
            default_reservation: None,
            quota_property: default_quota_property(),
            reservation_property: default_reservation_property(),
            properties: BTreeMap::new(),
            lock_dir: default_lock_dir(),
            zfs_command: default_zfs_command(),
            xattrs: XattrPolicy::default(),
        }
    }

    /// Check every key; called when the config file is loaded.
    pub fn validate(&self) -> Result<()> {
        match self.kind {
            Kind::Zfs => {
                let p = self.zfs_parent.as_deref().ok_or_else(|| {
                    Error::Config("kind = \"zfs\" needs zfs_parent (e.g. \"tank/lxcri\")".into())
                })?;
                names::validate_dataset("storage.zfs_parent", p)?;
            }
            Kind::Dir => {
                if self.default_quota.is_some() || self.default_reservation.is_some() {
                    return Err(Error::Config(
                        "default_quota and default_reservation need kind = \"zfs\" (a plain directory cannot enforce them)".into(),
                    ));
                }
            }
        }
        if !self.dir_root.is_absolute() {
            return Err(Error::Config(format!(
                "dir_root {} must be an absolute path",
                self.dir_root.display()
            )));
        }
        if let Some(q) = &self.default_quota {
            size::parse("storage.default_quota", q)?;
        }
        if let Some(r) = &self.default_reservation {
            size::parse("storage.default_reservation", r)?;
        }
        for (k, v) in &self.properties {
            let key_ok = !k.is_empty()
                && k.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && k.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
                });
            if !key_ok {
                return Err(Error::Config(format!(
                    "properties: bad ZFS property name {k:?}"
                )));
            }
            if MANAGED.contains(&k.as_str()) {
                return Err(Error::Config(format!(
                    "properties: {k} is set by proxmox-lxcri itself (use default_quota / default_reservation or the annotations)"
                )));
            }
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
                return Err(Error::Config(format!(
                    "properties: value of {k} must be non-empty and have no control characters"
                )));
            }
        }
        Ok(())
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self::new(Kind::Dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StorageConfig, String> {
        let c: StorageConfig = toml::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn issue_example_parses() {
        let c = parse(
            r#"
kind = "zfs"
zfs_parent = "tank/lxcri"
dir_root = "/var/lib/proxmox-lxcri/rootfs"
default_quota = "8G"
properties = { compression = "lz4", atime = "off" }
"#,
        )
        .unwrap();
        assert_eq!(c.kind, Kind::Zfs);
        assert_eq!(c.properties["compression"], "lz4");
        assert_eq!(parse("").unwrap().kind, Kind::Dir);
    }

    #[test]
    fn bad_configs() {
        for (s, want) in [
            ("kind = \"zfs\"", "needs zfs_parent"),
            ("kind = \"zfs\"\nzfs_parent = \"tank/../x\"", "zfs_parent"),
            ("kind = \"btrfs\"", "unknown variant"),
            ("default_quota = \"8G\"", "need kind"),
            (
                "kind = \"zfs\"\nzfs_parent = \"t\"\ndefault_quota = \"8Q\"",
                "default_quota",
            ),
            (
                "kind = \"zfs\"\nzfs_parent = \"t\"\nproperties = { refquota = \"1G\" }",
                "set by proxmox-lxcri",
            ),
            (
                "kind = \"zfs\"\nzfs_parent = \"t\"\nproperties = { \"a b\" = \"1\" }",
                "bad ZFS property",
            ),
            ("dir_root = \"rel\"", "absolute"),
            ("typo = 1", "unknown field"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
