//! The storage manager of proxmox-lxcri: container root filesystems on ZFS
//! datasets (quota, reservation, properties, snapshots) with an image cache
//! of clones, or in plain directories.
//!
//! # How a container gets its rootfs
//!
//! [`Storage::plan`] checks a request (id, annotations, uid shift) without
//! making anything, and names the [`Volume`]; the runtime records that in
//! the container's state; [`Storage::create`] then makes it:
//!
//! * `zfs`: the rootfs content gets an [`ImageKey`] (from an image digest
//!   annotation, else a metadata fingerprint of the tree: one `lstat` per
//!   entry). The first container of a key copies the rootfs into
//!   `<zfs_parent>/images/<key>` and snapshots it `@image`; every container
//!   (the first too) is a `zfs clone` of that snapshot with its quota and
//!   reservation: O(1) once the image is cached.
//! * `dir`: a full [`copy_tree`] into `<dir_root>/containers/<name>/rootfs`.
//!
//! [`Storage::destroy`] removes a volume and nothing else;
//! [`Storage::image_gc`] removes images no clone needs; [`Storage::volumes`]
//! lists volumes with their recorded owner, for a runtime's `gc`.
//!
//! # For engines that get their volume from someone else
//!
//! * [`Storage::populate_named`]`(dataset, source_rootfs, &key, shift, progress)`
//!   replaces an empty dataset that Proxmox made and named
//!   (`rpool/data/subvol-105-disk-0`) by a clone of the image, keeping its
//!   local properties (refquota, mountpoint, ...). Get the key with
//!   [`ImageKey::from_digest`] or [`ImageKey::fingerprint`].
//! * [`copy_tree`]`(src, dst, shift, progress)` fills a plain directory.
//! * [`fill_volume`] picks between the two for a volume mounted at a path.
//!
//! Everything that reaches a `zfs` command line or a path is checked
//! ([`names`], [`size`]); `zfs` runs without a shell.
pub mod config;
pub mod copy;
pub mod error;
pub mod foreign;
pub mod idshift;
pub mod key;
pub mod lock;
pub mod names;
pub mod progress;
pub mod size;
pub mod storage;
#[cfg(feature = "testpool")]
pub mod testpool;
pub mod zfs;

pub use config::{Kind, StorageConfig, XattrPolicy};
pub use copy::{copy_tree, copy_tree_with, CopyOptions};
pub use error::{Error, Result};
pub use foreign::fill_volume;
pub use idshift::{IdRange, IdShift};
pub use key::{ImageKey, TreeSummary, DIGEST_ANNOTATION};
pub use progress::{CopyStats, NoProgress, Progress, TerminalProgress};
pub use storage::{
    FoundVolume, ImageInfo, SnapshotInfo, Storage, Volume, VolumePlan, VolumeRequest,
    QUOTA_ANNOTATION, RESERVATION_ANNOTATION,
};
