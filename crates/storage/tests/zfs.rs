//! The storage manager on real ZFS (zfs-fuse here): a pool on a sparse file
//! per test, destroyed at the end.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use storage::testpool::{run, TestPool};
use storage::{
    CopyStats, IdShift, ImageKey, Kind, NoProgress, Progress, Storage, StorageConfig,
    VolumeRequest, XattrPolicy, DIGEST_ANNOTATION, QUOTA_ANNOTATION, RESERVATION_ANNOTATION,
};

const GIB: u64 = 1 << 30;

struct Fixture {
    pool: TestPool,
    storage: Storage,
    parent: String,
    owner: PathBuf,
    _locks: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let pool = TestPool::new(2 * GIB).expect("test pool");
    let parent = format!("{}/lxcri", pool.name);
    run("zfs", &["create", &parent]).unwrap();
    let locks = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(Kind::Zfs);
    cfg.zfs_parent = Some(parent.clone());
    // zfs-fuse knows no lz4.
    cfg.properties.insert("compression".into(), "on".into());
    cfg.properties.insert("atime".into(), "off".into());
    cfg.lock_dir = locks.path().to_path_buf();
    Fixture {
        storage: Storage::new(cfg).unwrap(),
        owner: pool.dir.path().join("root"),
        pool,
        parent,
        _locks: locks,
    }
}

/// A small rootfs: busybox and a few files.
fn rootfs(dir: &Path, extra: &str) -> PathBuf {
    let r = dir.join(format!("rootfs-{extra}"));
    fs::create_dir_all(r.join("bin")).unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
    fs::write(r.join("etc/hostname"), extra).unwrap();
    r
}

#[derive(Default)]
struct Count(u64);
impl Progress for Count {
    fn update(&mut self, _: &CopyStats) {}
    fn finish(&mut self, _: &CopyStats) {
        self.0 += 1;
    }
}

fn get(ds: &str, prop: &str) -> String {
    run("zfs", &["get", "-H", "-p", "-o", "value", prop, ds])
        .unwrap()
        .trim()
        .to_string()
}

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Fixture {
    fn req<'a>(&'a self, id: &'a str, a: &'a BTreeMap<String, String>) -> VolumeRequest<'a> {
        VolumeRequest {
            id,
            owner: &self.owner,
            annotations: a,
            shift: None,
        }
    }
}

#[test]
fn quota_reservation_properties_and_clones_of_one_image() {
    let f = fixture();
    let src = rootfs(f.pool.dir.path(), "a");
    let a = ann(&[(QUOTA_ANNOTATION, "64M"), (RESERVATION_ANNOTATION, "16M")]);
    let mut count = Count::default();
    let plan = f.storage.plan(&f.req("c1", &a)).unwrap();
    let v1 = f.storage.create(&plan, &src, &mut count).unwrap();
    assert_eq!(v1.name, format!("{}/containers/c1", f.parent));
    assert_eq!(get(&v1.name, "refquota"), (64u64 << 20).to_string());
    assert_eq!(get(&v1.name, "refreservation"), (16u64 << 20).to_string());
    assert_eq!(get(&v1.name, "compression"), "on");
    assert_eq!(get(&v1.name, "atime"), "off");
    assert_eq!(get(&v1.name, "io.proxmox-lxcri:id"), "c1");
    assert!(v1.path.join("bin/busybox").exists());
    assert_eq!(
        fs::read_to_string(v1.path.join("etc/hostname")).unwrap(),
        "a"
    );

    // The second container of the same content: a clone, no copy.
    let none = ann(&[]);
    let plan2 = f.storage.plan(&f.req("c2", &none)).unwrap();
    let v2 = f.storage.create(&plan2, &src, &mut count).unwrap();
    assert_eq!(count.0, 1, "the rootfs was copied once");
    let key = v1.image.clone().unwrap();
    assert!(key.starts_with("f-"), "{key}");
    let snap = format!("{}/images/{key}@image", f.parent);
    assert_eq!(get(&v2.name, "origin"), snap);
    assert_eq!(get(&v1.name, "origin"), snap);
    assert_eq!(get(&v2.name, "refquota"), "0", "no quota asked, none set");

    // The quota holds: writing past it fails.
    let big = v1.path.join("big");
    let err = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", big.display()),
            "bs=1M",
            "count=100",
        ])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success(), "dd past the quota succeeded");
    assert!(
        msg.contains("Disk quota exceeded") || msg.contains("No space left"),
        "{msg}"
    );

    // The image cannot go while clones need it; it goes after.
    assert!(f.storage.image_gc().unwrap().is_empty());
    f.storage.destroy(&v1).unwrap();
    assert!(f.storage.image_gc().unwrap().is_empty());
    f.storage.destroy(&v2).unwrap();
    f.storage.destroy(&v2).unwrap(); // idempotent
    assert_eq!(f.storage.image_gc().unwrap(), vec![key]);
    let c = format!("{}/containers", f.parent);
    let i = format!("{}/images", f.parent);
    let mut want = vec![f.pool.name.clone(), f.parent.clone(), c, i];
    want.sort();
    assert_eq!(
        f.pool.all(),
        want,
        "the pool is as it was (plus our two parents)"
    );
}

#[test]
fn digest_key_shift_and_snapshots() {
    let f = fixture();
    let src = rootfs(f.pool.dir.path(), "b");
    let digest = format!("sha256:{}", "1f".repeat(32));
    let a = ann(&[(DIGEST_ANNOTATION, &digest)]);
    let v = f
        .storage
        .create(
            &f.storage.plan(&f.req("d1", &a)).unwrap(),
            &src,
            &mut NoProgress,
        )
        .unwrap();
    assert_eq!(
        v.image.as_deref(),
        Some(format!("d-{}", "1f".repeat(32)).as_str())
    );

    // Shifted: its own image, files owned by the mapped ids.
    let shift = IdShift::uniform(100000, 65536);
    let mut req = f.req("d2", &a);
    req.shift = Some(shift);
    let v2 = f
        .storage
        .create(&f.storage.plan(&req).unwrap(), &src, &mut NoProgress)
        .unwrap();
    assert_ne!(v2.image, v.image);
    assert_eq!(
        fs::metadata(v2.path.join("bin/busybox")).unwrap().uid(),
        100000
    );
    assert_eq!(fs::metadata(v.path.join("bin/busybox")).unwrap().uid(), 0);

    // Snapshots: create, list, rollback, delete.
    f.storage.snapshot_create(&v, "s1").unwrap();
    fs::write(v.path.join("after"), "x").unwrap();
    f.storage.snapshot_create(&v, "s2").unwrap();
    let names: Vec<String> = f
        .storage
        .snapshot_list(&v)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["s1", "s2"]);
    f.storage.snapshot_rollback(&v, "s1").unwrap();
    assert!(!v.path.join("after").exists(), "rollback brought back s1");
    let names: Vec<String> = f
        .storage
        .snapshot_list(&v)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["s1"], "later snapshots go with the rollback");
    f.storage.snapshot_delete(&v, "s1").unwrap();
    assert!(f.storage.snapshot_list(&v).unwrap().is_empty());
    for bad in ["a/b", "a@b", "a b", "..", "x..y", "-r", ""] {
        assert!(f.storage.snapshot_create(&v, bad).is_err(), "{bad:?}");
    }
    assert!(f
        .storage
        .snapshot_rollback(&v, "nope")
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    f.storage.destroy(&v).unwrap();
    f.storage.destroy(&v2).unwrap();
    assert_eq!(f.storage.image_gc().unwrap().len(), 2);
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let f = fixture();
    let src = rootfs(f.pool.dir.path(), "c");
    // Make the parents so that "as it was" is easy to state.
    let warm = f
        .storage
        .create(
            &f.storage.plan(&f.req("warm", &ann(&[]))).unwrap(),
            &src,
            &mut NoProgress,
        )
        .unwrap();
    f.storage.destroy(&warm).unwrap();
    f.storage.image_gc().unwrap();
    let before = f.pool.all();

    for (id, a, want) in [
        ("q1", ann(&[(QUOTA_ANNOTATION, "8X")]), "storage quota"),
        ("q2", ann(&[(QUOTA_ANNOTATION, "../1G")]), "storage quota"),
        (
            "q3",
            ann(&[(RESERVATION_ANNOTATION, "1G"), (QUOTA_ANNOTATION, "100M")]),
            "larger than the quota",
        ),
        (
            "q4",
            ann(&[(DIGEST_ANNOTATION, "sha256:x y")]),
            "image.digest",
        ),
        ("a/b", ann(&[]), "container id"),
        ("a@b", ann(&[]), "container id"),
        ("a b", ann(&[]), "container id"),
        ("..", ann(&[]), "container id"),
    ] {
        let e = f.storage.plan(&f.req(id, &a)).unwrap_err().to_string();
        assert!(e.contains(want), "{id}: {e}");
    }
    // A quota below the rootfs (busybox alone is ~2M): refused after the
    // image copy, which then goes too.
    let a = ann(&[(QUOTA_ANNOTATION, "100K")]);
    let e = f
        .storage
        .create(
            &f.storage.plan(&f.req("small", &a)).unwrap(),
            &src,
            &mut NoProgress,
        )
        .unwrap_err();
    assert!(e.to_string().contains("smaller than the rootfs"), "{e}");
    assert_eq!(f.pool.all(), before);

    // A missing pool.
    let mut cfg = f.storage.config().clone();
    cfg.zfs_parent = Some("no-such-pool-lxcri/x".into());
    let s = Storage::new(cfg).unwrap();
    let e = s
        .create(
            &s.plan(&f.req("p", &ann(&[]))).unwrap(),
            &src,
            &mut NoProgress,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("ZFS pool \"no-such-pool-lxcri\""),
        "{e}"
    );

    // zfs-fuse stores no xattrs: a rootfs with one is refused, or with
    // xattrs = "skip" copied without it.
    let xsrc = rootfs(f.pool.dir.path(), "x");
    rustix::fs::lsetxattr(
        xsrc.join("etc/hostname"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let e = f
        .storage
        .create(
            &f.storage.plan(&f.req("x1", &ann(&[]))).unwrap(),
            &xsrc,
            &mut NoProgress,
        )
        .unwrap_err();
    assert!(e.to_string().contains("xattrs = \"skip\""), "{e}");
    assert_eq!(f.pool.all(), before);
    let mut cfg = f.storage.config().clone();
    cfg.xattrs = XattrPolicy::Skip;
    let s = Storage::new(cfg).unwrap();
    let v = s
        .create(
            &s.plan(&f.req("x2", &ann(&[]))).unwrap(),
            &xsrc,
            &mut NoProgress,
        )
        .unwrap();
    s.destroy(&v).unwrap();
    s.image_gc().unwrap();
    assert_eq!(f.pool.all(), before);
}

#[test]
fn interrupted_image_copy_is_rebuilt_or_collected() {
    let f = fixture();
    let src = rootfs(f.pool.dir.path(), "d");
    let (key, _) = ImageKey::fingerprint(&src, None).unwrap();
    // What a crash mid-copy leaves: the image dataset without its snapshot.
    let half = format!("{}/images/{key}", f.parent);
    run("zfs", &["create", "-p", &half]).unwrap();
    let v = f
        .storage
        .create(
            &f.storage.plan(&f.req("r1", &ann(&[]))).unwrap(),
            &src,
            &mut NoProgress,
        )
        .unwrap();
    assert!(v.path.join("bin/busybox").exists());
    f.storage.destroy(&v).unwrap();
    run(
        "zfs",
        &[
            "create",
            &format!("{}/images/{}", f.parent, "f-".to_string() + &"0".repeat(64)),
        ],
    )
    .unwrap();
    let mut gone = f.storage.image_gc().unwrap();
    gone.sort();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(f.storage.images().unwrap().is_empty());
}

#[test]
fn populate_named_replaces_a_proxmox_volume_by_a_clone() {
    let f = fixture();
    let src = rootfs(f.pool.dir.path(), "e");
    let data = format!("{}/data", f.pool.name);
    let vol = format!("{data}/subvol-105-disk-0");
    run("zfs", &["create", "-p", &data]).unwrap();
    let mp = f.pool.dir.path().join("ct105");
    run(
        "zfs",
        &[
            "create",
            "-o",
            "refquota=1G",
            "-o",
            &format!("mountpoint={}", mp.display()),
            &vol,
        ],
    )
    .unwrap();
    let (key, _) = ImageKey::fingerprint(&src, None).unwrap();
    f.storage
        .populate_named(&vol, &src, &key, None, &mut NoProgress)
        .unwrap();
    assert_eq!(
        get(&vol, "origin"),
        format!("{}/images/{key}@image", f.parent)
    );
    assert_eq!(get(&vol, "refquota"), GIB.to_string());
    assert_eq!(get(&vol, "mountpoint"), mp.display().to_string());
    assert!(mp.join("bin/busybox").exists());
    assert_eq!(get(&vol, "mounted"), "yes");
    assert_eq!(get(&vol, "canmount"), "on");
    // Not empty any more: a second fill is refused.
    let e = f
        .storage
        .populate_named(&vol, &src, &key, None, &mut NoProgress)
        .unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(f
        .storage
        .populate_named("x/../y", &src, &key, None, &mut NoProgress)
        .is_err());
    // A second CT of the same image: a clone, no copy.
    let vol2 = format!("{data}/subvol-106-disk-0");
    run("zfs", &["create", "-o", "refquota=512M", &vol2]).unwrap();
    let key2 = ImageKey::for_bundle(&BTreeMap::new(), &src, None).unwrap();
    assert_eq!(key2, key);
    let mut count = Count::default();
    f.storage
        .populate_named(&vol2, &src, &key2, None, &mut count)
        .unwrap();
    assert_eq!(count.0, 0, "no copy for a cached image");
    assert_eq!(get(&vol2, "origin"), get(&vol, "origin"));
    assert_eq!(get(&vol2, "refquota"), (512u64 << 20).to_string());
    f.storage
        .zfs()
        .destroy_with(&["destroy", &vol2], &vol2)
        .unwrap();
    // The image stays while the CT volume needs it.
    assert!(f.storage.image_gc().unwrap().is_empty());
    f.storage
        .zfs()
        .destroy_with(&["destroy", &vol], &vol)
        .unwrap();
    assert_eq!(f.storage.image_gc().unwrap(), vec![key.to_string()]);
}
