//! Container volumes on ZFS or in directories, and the ZFS image cache.
//!
//! ```text
//! <zfs_parent>/containers/<name>     one clone per container (refquota, refreservation)
//! <zfs_parent>/images/<key>          one copy per image content, read-only
//! <zfs_parent>/images/<key>@image    the snapshot every container of the image clones
//! <dir_root>/containers/<name>/rootfs   (dir) a full copy per container
//! <dir_root>/containers/<name>/volume.json  its owner, for gc
//! ```
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Kind, QuotaProperty, ReservationProperty, StorageConfig};
use crate::copy::{copy_tree_with, CopyOptions};
use crate::error::{invalid, Context, Error, Result};
use crate::idshift::IdShift;
use crate::key::ImageKey;
use crate::lock::{self, Lock};
use crate::names;
use crate::progress::CopyStats;
use crate::progress::Progress;
use crate::size::{self, human};
use crate::zfs::{dir_is_empty, Zfs};

/// Annotation: the container's quota (`512M`, `8G`).
pub const QUOTA_ANNOTATION: &str = "io.proxmox-lxcri.storage.quota";
/// Annotation: the container's reservation.
pub const RESERVATION_ANNOTATION: &str = "io.proxmox-lxcri.storage.reservation";
/// ZFS user properties on our datasets.
pub const PROP_OWNER: &str = "io.proxmox-lxcri:owner";
pub const PROP_ID: &str = "io.proxmox-lxcri:id";
pub const PROP_IMAGE: &str = "io.proxmox-lxcri:image";
/// The snapshot of an image dataset that containers clone.
pub const IMAGE_SNAPSHOT: &str = "image";

/// A container's volume, as recorded in its state (before it is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub kind: Kind,
    /// zfs: the dataset; dir: the volume directory.
    pub name: String,
    /// The rootfs; empty until the volume is made.
    #[serde(default)]
    pub path: PathBuf,
    /// Image key of a zfs clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// What a container asks for.
#[derive(Debug, Clone)]
pub struct VolumeRequest<'a> {
    pub id: &'a str,
    /// Who owns the volume (the runtime's --root); gc only touches its own.
    pub owner: &'a Path,
    pub annotations: &'a BTreeMap<String, String>,
    /// uid/gid shift for an unprivileged container.
    pub shift: Option<IdShift>,
}

/// A checked request: names, sizes and the image digest, nothing made yet.
#[derive(Debug, Clone)]
pub struct VolumePlan {
    pub volume: Volume,
    pub id: String,
    pub owner: PathBuf,
    pub quota: Option<u64>,
    pub reservation: Option<u64>,
    pub digest: Option<String>,
    pub shift: Option<IdShift>,
}

/// A volume found on disk, with the owner recorded on it.
#[derive(Debug, Clone)]
pub struct FoundVolume {
    pub volume: Volume,
    pub owner: Option<PathBuf>,
    pub id: Option<String>,
}

/// A snapshot of a container volume.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// Unix time.
    pub created: u64,
    pub used_bytes: u64,
}

/// A cached image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub key: String,
    pub dataset: String,
    pub referenced_bytes: u64,
    /// Datasets cloned from it.
    pub clones: Vec<String>,
    /// False for an image whose copy never finished (a crash).
    pub complete: bool,
}

#[derive(Debug, Clone)]
pub struct Storage {
    cfg: StorageConfig,
    zfs: Zfs,
    /// Image cache lookups by this value (hits, misses), for metrics.
    cache_hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cache_misses: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Storage {
    pub fn new(cfg: StorageConfig) -> Result<Self> {
        cfg.validate()?;
        let zfs = Zfs::new(cfg.zfs_command.clone());
        Ok(Storage {
            cfg,
            zfs,
            cache_hits: Default::default(),
            cache_misses: Default::default(),
        })
    }

    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    /// Image cache lookups so far: (found cached, had to copy).
    pub fn image_cache_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.cache_hits.load(Relaxed),
            self.cache_misses.load(Relaxed),
        )
    }

    pub fn zfs(&self) -> &Zfs {
        &self.zfs
    }

    fn parent(&self) -> &str {
        self.cfg.zfs_parent.as_deref().unwrap_or_default()
    }
    fn containers_dataset(&self) -> String {
        format!("{}/containers", self.parent())
    }
    fn images_dataset(&self) -> String {
        format!("{}/images", self.parent())
    }
    fn dir_containers(&self) -> PathBuf {
        self.cfg.dir_root.join("containers")
    }

    /// Check a request; nothing is made. Bad annotations, names and sizes
    /// are errors here.
    pub fn plan(&self, req: &VolumeRequest) -> Result<VolumePlan> {
        let component = names::container_component(req.id)?;
        let ann = |k: &str| req.annotations.get(k).map(String::as_str);
        let quota = match ann(QUOTA_ANNOTATION).or(self.cfg.default_quota.as_deref()) {
            Some(q) => Some(size::parse(
                "storage quota (io.proxmox-lxcri.storage.quota)",
                q,
            )?),
            None => None,
        };
        let reservation =
            match ann(RESERVATION_ANNOTATION).or(self.cfg.default_reservation.as_deref()) {
                Some(r) => Some(size::parse(
                    "storage reservation (io.proxmox-lxcri.storage.reservation)",
                    r,
                )?),
                None => None,
            };
        if let (Some(q), Some(r)) = (quota, reservation) {
            if r > q {
                return Err(Error::Refused(format!(
                    "storage reservation {} is larger than the quota {}",
                    human(r),
                    human(q)
                )));
            }
        }
        let digest = ImageKey::digest_from_annotations(req.annotations)?;
        let volume = match self.cfg.kind {
            Kind::Zfs => {
                let name = format!("{}/{component}", self.containers_dataset());
                if name.len() + 1 + names::MAX_SNAPSHOT_NAME > names::MAX_DATASET_NAME {
                    return Err(invalid("dataset", &name, "too long for ZFS"));
                }
                Volume {
                    kind: Kind::Zfs,
                    name,
                    path: PathBuf::new(),
                    image: None,
                }
            }
            Kind::Dir => {
                if quota.is_some() || reservation.is_some() {
                    return Err(Error::Refused(format!(
                        "{QUOTA_ANNOTATION} / {RESERVATION_ANNOTATION}: storage kind \"dir\" cannot enforce a quota or reservation; use kind = \"zfs\""
                    )));
                }
                let dir = self.dir_containers().join(&component);
                Volume {
                    kind: Kind::Dir,
                    name: dir.to_string_lossy().into_owned(),
                    path: PathBuf::new(),
                    image: None,
                }
            }
        };
        Ok(VolumePlan {
            volume,
            id: req.id.to_string(),
            owner: req.owner.to_path_buf(),
            quota,
            reservation,
            digest,
            shift: req.shift.clone().filter(|s| !s.is_identity()),
        })
    }

    /// Make the volume of a plan and fill it from `source`. On error,
    /// whatever this call made is gone again.
    pub fn create(
        &self,
        plan: &VolumePlan,
        source: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Volume> {
        match plan.volume.kind {
            Kind::Zfs => self.create_zfs(plan, source, progress),
            Kind::Dir => self.create_dir(plan, source, progress),
        }
    }

    fn create_dir(
        &self,
        plan: &VolumePlan,
        source: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Volume> {
        let dir = PathBuf::from(&plan.volume.name);
        let parent = self.dir_containers();
        fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Refused(format!(
                    "volume directory {} already exists (another container with id {} under another --root, or a leftover: `proxmox-lxcri gc`)",
                    dir.display(),
                    plan.id
                )))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
        }
        let res = (|| {
            let owner = serde_json::json!({"owner": plan.owner, "id": plan.id});
            fs::write(dir.join("volume.json"), owner.to_string())
                .ctx(|| format!("writing {}/volume.json", dir.display()))?;
            let rootfs = dir.join("rootfs");
            fs::create_dir(&rootfs).ctx(|| format!("creating {}", rootfs.display()))?;
            self.copy(source, &rootfs, plan.shift.as_ref(), progress)?;
            Ok(Volume {
                path: rootfs,
                ..plan.volume.clone()
            })
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        res
    }

    fn copy(
        &self,
        src: &Path,
        dst: &Path,
        shift: Option<&IdShift>,
        progress: &mut dyn Progress,
    ) -> Result<CopyStats> {
        let opts = CopyOptions {
            shift,
            xattrs: self.cfg.xattrs,
        };
        let stats = copy_tree_with(src, dst, &opts, progress)?;
        tracing::info!(
            "copied {} ({} entries, {}) to {}",
            src.display(),
            stats.entries(),
            human(stats.bytes),
            dst.display()
        );
        Ok(stats)
    }

    /// The pool must exist; our two parent datasets are made on demand.
    /// One `zfs list` when they exist (zfs-fuse takes 10-40 ms a command).
    fn ensure_parents(&self) -> Result<()> {
        let (c, i) = (self.containers_dataset(), self.images_dataset());
        if self.zfs.run(["list", "-H", "-o", "name", &c, &i]).is_ok() {
            return Ok(());
        }
        let parent = self.parent();
        let pool = parent.split('/').next().unwrap_or(parent);
        if let Err(e) = self.zfs.run(["list", "-H", "-o", "name", pool]) {
            return Err(Error::Refused(format!(
                "ZFS pool {pool:?} (from storage.zfs_parent = {parent:?}) is not available: {e}"
            )));
        }
        for ds in [c, i] {
            if !self.zfs.exists(&ds) {
                if let Err(e) = self.zfs.create(&ds, &[], true) {
                    if !self.zfs.exists(&ds) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn props(&self) -> Vec<(String, String)> {
        self.cfg
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn create_zfs(
        &self,
        plan: &VolumePlan,
        source: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Volume> {
        self.ensure_parents()?;
        let key = match &plan.digest {
            Some(d) => ImageKey::from_digest(d, plan.shift.as_ref())?,
            None => {
                let (key, summary) = ImageKey::fingerprint(source, plan.shift.as_ref())?;
                progress.set_total(summary.bytes);
                key
            }
        };
        // Held until the clone exists, so image gc cannot take the image away.
        let image = self.ensure_image(&key, source, plan.shift.as_ref(), progress)?;
        let res = self.clone_for(plan, &image, &key);
        if res.is_err() && image.created {
            // Leave nothing behind: an image made for a container that
            // could not be made goes too.
            let _ = self.zfs.destroy_recursive(&image.dataset);
        }
        res
    }

    fn clone_for(&self, plan: &VolumePlan, image: &CachedImage, key: &ImageKey) -> Result<Volume> {
        let name = &plan.volume.name;
        let referenced = image.referenced;
        if let Some(q) = plan.quota {
            if q < referenced {
                return Err(Error::Refused(format!(
                    "storage quota {} is smaller than the rootfs ({} on disk); raise {QUOTA_ANNOTATION} or storage.default_quota",
                    human(q),
                    human(referenced)
                )));
            }
        }
        let mut props = self.props();
        if let Some(q) = plan.quota {
            let p = match self.cfg.quota_property {
                QuotaProperty::Refquota => "refquota",
                QuotaProperty::Quota => "quota",
            };
            props.push((p.into(), q.to_string()));
        }
        if let Some(r) = plan.reservation {
            let p = match self.cfg.reservation_property {
                ReservationProperty::Refreservation => "refreservation",
                ReservationProperty::Reservation => "reservation",
            };
            props.push((p.into(), r.to_string()));
        }
        props.push((PROP_OWNER.into(), plan.owner.to_string_lossy().into_owned()));
        props.push((PROP_ID.into(), plan.id.clone()));
        props.push((PROP_IMAGE.into(), key.to_string()));
        if let Err(e) = self.zfs.clone_snapshot(&image.snapshot, name, &props) {
            if matches!(&e, Error::Zfs { stderr, .. } if stderr.contains("exists")) {
                let owner = self.zfs.get(name, PROP_OWNER).ok().flatten();
                return Err(Error::Refused(format!(
                    "dataset {name} already exists (owner {}: another container with id {} under another --root, or a leftover: `proxmox-lxcri gc`)",
                    owner.as_deref().unwrap_or("unknown"),
                    plan.id
                )));
            }
            return Err(e);
        }
        match self.zfs.mountpoint(name) {
            Ok(path) => Ok(Volume {
                kind: Kind::Zfs,
                name: name.clone(),
                path,
                image: Some(key.to_string()),
            }),
            Err(e) => {
                let _ = self.zfs.destroy_recursive(name);
                Err(e)
            }
        }
    }

    /// The image snapshot for `key`, made from `source` if not cached.
    /// The returned value holds the image's lock.
    fn ensure_image(
        &self,
        key: &ImageKey,
        source: &Path,
        shift: Option<&IdShift>,
        progress: &mut dyn Progress,
    ) -> Result<CachedImage> {
        let lock = lock::lock(&self.cfg.lock_dir, &self.lock_name(key.as_str()))?;
        let dataset = format!("{}/{key}", self.images_dataset());
        let snapshot = format!("{dataset}@{IMAGE_SNAPSHOT}");
        // Its size tells that it exists: one command on the cached path.
        if let Ok(referenced) = self.zfs.get_u64(&snapshot, "referenced") {
            self.cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(CachedImage {
                dataset,
                snapshot,
                referenced,
                created: false,
                _lock: lock,
            });
        }
        self.cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A dataset without its snapshot is a copy a crash interrupted.
        self.zfs.destroy_recursive(&dataset)?;
        let mut props = self.props();
        props.push((PROP_IMAGE.into(), key.to_string()));
        self.zfs.create(&dataset, &props, false)?;
        let res = (|| {
            let mp = self.zfs.mountpoint(&dataset)?;
            self.copy(source, &mp, shift, progress)?;
            self.zfs.snapshot(&snapshot)?;
            // The snapshot is what counts; nobody should write to the copy.
            self.zfs.set(&dataset, "readonly", "on")
        })();
        match res.and_then(|_| self.zfs.get_u64(&snapshot, "referenced")) {
            Ok(referenced) => Ok(CachedImage {
                dataset,
                snapshot,
                referenced,
                created: true,
                _lock: lock,
            }),
            Err(e) => {
                let _ = self.zfs.destroy_recursive(&dataset);
                Err(e)
            }
        }
    }

    fn lock_name(&self, key: &str) -> String {
        // Lock files are per pool-wide image name; '/' cannot be in a file name.
        format!("image-{}-{key}", self.parent().replace('/', "+"))
    }

    /// Destroy a volume (and only it); fine if it is already gone.
    pub fn destroy(&self, vol: &Volume) -> Result<()> {
        match vol.kind {
            Kind::Zfs => {
                self.check_ours(vol)?;
                self.zfs.destroy_recursive(&vol.name)
            }
            Kind::Dir => {
                self.check_ours(vol)?;
                match fs::remove_dir_all(&vol.name) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e).ctx(|| format!("removing {}", vol.name)),
                }
            }
        }
    }

    /// A recorded volume must lie where this storage puts volumes (a state
    /// file edited by hand must not make us destroy something else).
    fn check_ours(&self, vol: &Volume) -> Result<()> {
        let ok = match vol.kind {
            Kind::Zfs => {
                self.cfg.kind == Kind::Zfs
                    && vol
                        .name
                        .strip_prefix(&format!("{}/", self.containers_dataset()))
                        .is_some_and(|c| !c.contains('/') && !c.contains('@') && !c.is_empty())
            }
            Kind::Dir => {
                let p = Path::new(&vol.name);
                p.parent() == Some(self.dir_containers().as_path())
                    && p.file_name().is_some_and(|n| n != "." && n != "..")
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "volume {} is not under this storage's {} (was the [storage] config changed?)",
                vol.name,
                match self.cfg.kind {
                    Kind::Zfs => self.containers_dataset(),
                    Kind::Dir => self.dir_containers().display().to_string(),
                }
            )))
        }
    }

    fn zfs_volume(&self, vol: &Volume, what: &str) -> Result<()> {
        if vol.kind != Kind::Zfs {
            return Err(Error::Refused(format!(
                "{what} needs storage kind \"zfs\"; this container's rootfs is a plain directory"
            )));
        }
        self.check_ours(vol)
    }

    pub fn snapshot_create(&self, vol: &Volume, name: &str) -> Result<()> {
        names::validate_snapshot(name)?;
        self.zfs_volume(vol, "a snapshot")?;
        self.zfs.snapshot(&format!("{}@{name}", vol.name))
    }

    pub fn snapshot_list(&self, vol: &Volume) -> Result<Vec<SnapshotInfo>> {
        self.zfs_volume(vol, "a snapshot")?;
        Ok(self
            .zfs
            .snapshots(&vol.name)?
            .into_iter()
            .map(|(name, created, used_bytes)| SnapshotInfo {
                name,
                created,
                used_bytes,
            })
            .collect())
    }

    /// Roll back to `name`, destroying later snapshots (`zfs rollback -r`).
    pub fn snapshot_rollback(&self, vol: &Volume, name: &str) -> Result<()> {
        names::validate_snapshot(name)?;
        self.zfs_volume(vol, "a rollback")?;
        let snap = format!("{}@{name}", vol.name);
        if !self.zfs.exists(&snap) {
            return Err(Error::NotFound(format!("snapshot {snap}")));
        }
        self.zfs.run_patient(&["rollback", "-r", &snap]).map(|_| ())
    }

    pub fn snapshot_delete(&self, vol: &Volume, name: &str) -> Result<()> {
        names::validate_snapshot(name)?;
        self.zfs_volume(vol, "a snapshot")?;
        let snap = format!("{}@{name}", vol.name);
        if !self.zfs.exists(&snap) {
            return Err(Error::NotFound(format!("snapshot {snap}")));
        }
        self.zfs.destroy_with(&["destroy", &snap], &snap)
    }

    /// Every container volume of this storage, with its recorded owner.
    pub fn volumes(&self) -> Result<Vec<FoundVolume>> {
        let mut out = vec![];
        match self.cfg.kind {
            Kind::Zfs => {
                // One command for all: name, property, value per line.
                let parent = self.containers_dataset();
                if !self.zfs.exists(&parent) {
                    return Ok(out);
                }
                let props = format!("{PROP_OWNER},{PROP_ID},mountpoint");
                let text = self.zfs.run([
                    "get",
                    "-H",
                    "-p",
                    "-o",
                    "name,property,value",
                    "-r",
                    "-d",
                    "1",
                    &props,
                    &parent,
                ])?;
                let mut by_name: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                for line in text.lines() {
                    let mut f = line.splitn(3, '\t');
                    let (Some(n), Some(p), Some(v)) = (f.next(), f.next(), f.next()) else {
                        continue;
                    };
                    if n == parent || n.contains('@') {
                        continue;
                    }
                    if v != "-" {
                        by_name
                            .entry(n.into())
                            .or_default()
                            .insert(p.into(), v.into());
                    } else {
                        by_name.entry(n.into()).or_default();
                    }
                }
                for (ds, p) in by_name {
                    out.push(FoundVolume {
                        volume: Volume {
                            kind: Kind::Zfs,
                            path: p.get("mountpoint").map(PathBuf::from).unwrap_or_default(),
                            name: ds,
                            image: None,
                        },
                        owner: p.get(PROP_OWNER).map(PathBuf::from),
                        id: p.get(PROP_ID).cloned(),
                    });
                }
            }
            Kind::Dir => {
                let rd = match fs::read_dir(self.dir_containers()) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => {
                        return Err(e)
                            .ctx(|| format!("reading {}", self.dir_containers().display()))
                    }
                };
                for e in rd.flatten() {
                    let dir = e.path();
                    let meta: serde_json::Value = fs::read(dir.join("volume.json"))
                        .ok()
                        .and_then(|d| serde_json::from_slice(&d).ok())
                        .unwrap_or_default();
                    out.push(FoundVolume {
                        volume: Volume {
                            kind: Kind::Dir,
                            name: dir.to_string_lossy().into_owned(),
                            path: dir.join("rootfs"),
                            image: None,
                        },
                        owner: meta["owner"].as_str().map(PathBuf::from),
                        id: meta["id"].as_str().map(str::to_string),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The image cache (zfs; empty for dir).
    pub fn images(&self) -> Result<Vec<ImageInfo>> {
        if self.cfg.kind != Kind::Zfs {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for ds in self.zfs.children(&self.images_dataset())? {
            let key = ds.rsplit('/').next().unwrap_or_default().to_string();
            let complete = self.zfs.exists(&format!("{ds}@{IMAGE_SNAPSHOT}"));
            out.push(ImageInfo {
                referenced_bytes: self.zfs.get_u64(&ds, "referenced").unwrap_or(0),
                clones: self.zfs.clones_of(&ds)?,
                key,
                dataset: ds,
                complete,
            });
        }
        Ok(out)
    }

    /// Destroy cached images that no dataset is cloned from (and copies a
    /// crash interrupted). An image being made or cloned right now is
    /// locked and skipped. Returns the keys removed.
    pub fn image_gc(&self) -> Result<Vec<String>> {
        let mut removed = vec![];
        for img in self.images()? {
            if !img.clones.is_empty() {
                continue;
            }
            let Some(_lock) = lock::try_lock(&self.cfg.lock_dir, &self.lock_name(&img.key))? else {
                continue;
            };
            // Checked again under the lock: a clone may have appeared.
            if !self.zfs.clones_of(&img.dataset)?.is_empty() {
                continue;
            }
            self.zfs.destroy_recursive(&img.dataset)?;
            removed.push(img.key);
        }
        Ok(removed)
    }

    /// For engines whose volumes someone else names and makes (Proxmox: the
    /// CT's `subvol-<vmid>-disk-<n>`): replace the empty dataset `dataset`
    /// by a clone of the image of `source` (cached under `key`), keeping its
    /// locally set properties (refquota, mountpoint, acltype, ...). O(1)
    /// once the image is cached. A dataset in another pool than the image
    /// cache cannot be a clone; it gets a copy instead.
    pub fn populate_named(
        &self,
        dataset: &str,
        source: &Path,
        key: &ImageKey,
        shift: Option<&IdShift>,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        if self.cfg.kind != Kind::Zfs {
            return Err(Error::Refused(
                "populate_named needs storage kind \"zfs\"".into(),
            ));
        }
        names::validate_dataset("dataset", dataset)?;
        if !self.zfs.exists(dataset) {
            return Err(Error::NotFound(format!("dataset {dataset}")));
        }
        let mp = self.zfs.mountpoint(dataset)?;
        if !dir_is_empty(&mp)? {
            return Err(Error::Refused(format!(
                "dataset {dataset} (mounted at {}) is not empty; populate_named fills only a fresh volume",
                mp.display()
            )));
        }
        if !self.zfs.snapshots(dataset)?.is_empty() {
            return Err(Error::Refused(format!(
                "dataset {dataset} has snapshots; it is not a fresh volume"
            )));
        }
        let pool = |n: &str| n.split('/').next().unwrap_or(n).to_string();
        if pool(dataset) != pool(self.parent()) {
            tracing::warn!("{dataset} is not in the image cache's pool: copying");
            self.copy(source, &mp, shift, progress)?;
            return Ok(());
        }
        self.ensure_parents()?;
        let image = self.ensure_image(key, source, shift, progress)?;
        let local = self.zfs.local_properties(dataset)?;
        let referenced = image.referenced;
        for (k, v) in &local {
            if k == "refquota" || k == "quota" {
                if let Ok(q) = v.parse::<u64>() {
                    if q > 0 && q < referenced {
                        return Err(Error::Refused(format!(
                            "{dataset}: {k} {} is smaller than the rootfs ({} on disk)",
                            human(q),
                            human(referenced)
                        )));
                    }
                }
            }
        }
        // Every locally set property (refquota, mountpoint, acltype, ...)
        // is kept: the empty dataset goes and the clone takes its name.
        // (Cloning under a temporary name and renaming would keep the old
        // one longer, but zfs-fuse leaves a renamed clone "busy" for long.)
        // Should the clone fail, an empty dataset like the old one is put
        // back.
        let mut props = local;
        props.push((PROP_IMAGE.into(), key.to_string()));
        self.zfs.destroy_with(&["destroy", dataset], dataset)?;
        if let Err(e) = self.zfs.clone_snapshot(&image.snapshot, dataset, &props) {
            let restore: Vec<(String, String)> = props
                .iter()
                .filter(|(k, _)| k != PROP_IMAGE)
                .cloned()
                .collect();
            if let Err(r) = self.zfs.create(dataset, &restore, false) {
                tracing::error!("putting back the empty {dataset}: {r}");
            }
            return Err(e);
        }
        Ok(())
    }
}

/// A complete image snapshot, with its lock held.
struct CachedImage {
    dataset: String,
    snapshot: String,
    /// Bytes the snapshot refers to (what a clone starts with).
    referenced: u64,
    created: bool,
    _lock: Lock,
}
