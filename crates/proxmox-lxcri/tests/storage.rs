//! Containers on [storage]: real ZFS (zfs-fuse, a pool on a file per test)
//! and plain directories, through the CLI.
mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use storage::testpool::{run, TestPool};
use support::Env;

struct ZEnv {
    env: Env,
    pool: TestPool,
    parent: String,
}

fn zenv(extra: &str) -> ZEnv {
    let mut env = Env::new();
    let pool = TestPool::new(2 << 30).expect("test pool");
    let parent = format!("{}/lxcri", pool.name);
    let config = env.tmp.path().join("config.toml");
    // zfs-fuse knows no lz4; "on" is its lzjb.
    std::fs::write(
        &config,
        format!(
            "[storage]\nkind = \"zfs\"\nzfs_parent = \"{parent}\"\nlock_dir = \"{}\"\nproperties = {{ compression = \"on\", atime = \"off\" }}\n{extra}",
            env.tmp.path().join("locks").display()
        ),
    )
    .unwrap();
    env.config = Some(config.clone());
    ZEnv { env, pool, parent }
}

impl ZEnv {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        self.env.cmd(args)
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn fails(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    /// `create` with the container's stdio in files (as Env::create).
    fn create(&self, id: &str, bundle: &Path) -> std::process::Output {
        self.env.create(id, bundle)
    }
    fn must_create(&self, id: &str, bundle: &Path) {
        let o = self.create(id, bundle);
        assert!(o.status.success(), "create {id}: {}", self.env.log_of(id));
    }
    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }
    fn wait_stopped(&self, id: &str) {
        let t = std::time::Instant::now();
        while self.state(id)["status"] != "stopped" {
            assert!(t.elapsed().as_secs() < 60, "{id} does not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    fn dataset(&self, id: &str) -> String {
        format!("{}/containers/{id}", self.parent)
    }
}

fn zget(ds: &str, prop: &str) -> String {
    run("zfs", &["get", "-H", "-p", "-o", "value", prop, ds])
        .unwrap()
        .trim()
        .to_string()
}

fn with_annotations<'a>(
    pairs: &'a [(&'a str, &'a str)],
) -> impl FnOnce(&mut serde_json::Value) + 'a {
    move |s| {
        let m: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        s["annotations"] = serde_json::Value::Object(m);
    }
}

#[test]
fn zfs_quota_holds_inside_a_running_container_and_the_second_is_a_clone() {
    let z = zenv("");
    let script = "dd if=/dev/urandom of=/big bs=1M count=64 2>&1; echo rc=$?";
    let b = z.env.bundle(
        "b",
        &["sh", "-c", script],
        with_annotations(&[
            ("io.proxmox-lxcri.storage.quota", "32M"),
            ("io.proxmox-lxcri.storage.reservation", "8M"),
        ]),
    );
    z.must_create("q1", &b);
    let ds = z.dataset("q1");
    assert_eq!(zget(&ds, "refquota"), (32u64 << 20).to_string());
    assert_eq!(zget(&ds, "refreservation"), (8u64 << 20).to_string());
    assert_eq!(zget(&ds, "compression"), "on");
    assert_eq!(z.state("q1")["rootfs"], zget(&ds, "mountpoint"));
    z.ok(&["start", "q1"]);
    z.wait_stopped("q1");
    let out = z.env.stdout_of("q1");
    // zfs-fuse (like kernel ZFS) reports a full quota as EDQUOT.
    assert!(
        out.contains("Disk quota exceeded") || out.contains("No space left on device"),
        "{out}"
    );
    assert!(out.contains("rc=1"), "{out}");

    // Same rootfs, another container: a clone of the image snapshot.
    z.must_create("q2", &b);
    let origin = zget(&z.dataset("q2"), "origin");
    assert!(
        origin.starts_with(&format!("{}/images/f-", z.parent)) && origin.ends_with("@image"),
        "{origin}"
    );
    assert_eq!(zget(&ds, "origin"), origin);
    let images = z.ok(&["image", "list"]);
    assert!(images.contains(" 2 ready"), "{images}");

    let before_delete: Vec<String> = z.pool.all();
    assert!(before_delete.contains(&ds));
    z.ok(&["delete", "q1"]);
    z.ok(&["delete", "--force", "q2"]);
    assert!(!z.pool.all().contains(&ds), "delete destroys the dataset");
    let gc = z.ok(&["image", "gc"]);
    assert!(gc.contains("removed image f-"), "{gc}");
    let mut want = vec![
        z.pool.name.clone(),
        z.parent.clone(),
        format!("{}/containers", z.parent),
        format!("{}/images", z.parent),
    ];
    want.sort();
    assert_eq!(z.pool.all(), want);
}

#[test]
fn zfs_snapshots_through_the_cli() {
    let z = zenv("default_quota = \"64M\"\n");
    let b = z.env.bundle("b", &["sleep", "30"], |_| {});
    z.must_create("s1", &b);
    assert_eq!(
        zget(&z.dataset("s1"), "refquota"),
        (64u64 << 20).to_string()
    );
    let rootfs = PathBuf::from(z.state("s1")["rootfs"].as_str().unwrap().to_string());
    z.ok(&["snapshot", "create", "s1", "clean"]);
    std::fs::write(rootfs.join("etc/changed"), "x").unwrap();
    z.ok(&["snapshot", "create", "s1", "changed"]);
    let list = z.ok(&["snapshot", "list", "s1"]);
    assert!(list.contains("clean") && list.contains("changed"), "{list}");
    z.ok(&["snapshot", "rollback", "s1", "clean"]);
    assert!(!rootfs.join("etc/changed").exists());
    let list = z.ok(&["snapshot", "list", "--format", "json", "s1"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{list}");
    for bad in ["a/b", "a@b", "a b", "..", "../x"] {
        let e = z.fails(&["snapshot", "create", "s1", bad]);
        assert!(e.contains("snapshot name"), "{bad}: {e}");
    }
    z.ok(&["start", "s1"]);
    let e = z.fails(&["snapshot", "rollback", "s1", "clean"]);
    assert!(e.contains("running"), "{e}");
    z.ok(&["snapshot", "delete", "s1", "clean"]);
    z.ok(&["delete", "--force", "s1"]);
    z.ok(&["image", "gc"]);
    assert!(!z
        .pool
        .all()
        .iter()
        .any(|d| d.contains("/containers/") || d.contains("/images/")));
}

#[test]
fn zfs_bad_input_leaves_nothing_behind() {
    let z = zenv("");
    let before = z.pool.all();
    for (id, ann, want) in [
        (
            "b1",
            ("io.proxmox-lxcri.storage.quota", "8X"),
            "storage quota",
        ),
        (
            "b2",
            ("io.proxmox-lxcri.storage.quota", "1G/../x"),
            "storage quota",
        ),
        (
            "b3",
            ("io.proxmox-lxcri.storage.reservation", "-1"),
            "storage reservation",
        ),
        (
            "b4",
            ("io.proxmox-lxcri.image.digest", "sha256:../../x"),
            "image.digest",
        ),
        (
            "b5",
            ("io.proxmox-lxcri.storage.quota", "100K"),
            "smaller than the rootfs",
        ),
    ] {
        let b = z.env.bundle(id, &["true"], with_annotations(&[ann]));
        let o = z.create(id, &b);
        assert!(!o.status.success(), "{id} should fail");
        let log = z.env.log_of(id);
        assert!(log.contains(want), "{id}: {log}");
        z.env.assert_gone(id);
    }
    let b = z.env.bundle("ok", &["true"], |_| {});
    for id in ["a@b", "a b", "..", "a/b"] {
        let e = z.fails(&["create", "--bundle", b.to_str().unwrap(), id]);
        assert!(e.contains("invalid container id"), "{id:?}: {e}");
    }
    // zfs_parent and its two children may have been made; nothing else.
    let after: Vec<String> = z
        .pool
        .all()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    let parents = [
        z.parent.clone(),
        format!("{}/containers", z.parent),
        format!("{}/images", z.parent),
    ];
    assert!(after.iter().all(|d| parents.contains(d)), "{after:?}");

    // A missing pool.
    let cfg = z.env.tmp.path().join("nopool.toml");
    std::fs::write(
        &cfg,
        "[storage]\nkind = \"zfs\"\nzfs_parent = \"no-such-pool-lxcri/x\"\n",
    )
    .unwrap();
    let mut env2 = Env::new();
    env2.config = Some(cfg);
    let b = env2.bundle("ok", &["true"], |_| {});
    let o = env2.create("np", &b);
    assert!(!o.status.success());
    let log = env2.log_of("np");
    assert!(
        log.contains("no-such-pool-lxcri") && log.contains("is not available"),
        "{log}"
    );
    env2.assert_gone("np");
}

#[test]
fn gc_removes_interrupted_creates_and_orphan_volumes() {
    let z = zenv("");
    let b = z.env.bundle("b", &["sleep", "30"], |_| {});
    // A create that "crashed" after its volume was made: status creating,
    // nothing running.
    z.must_create("crashed", &b);
    let st_file = z.env.root.join("containers/crashed/state.json");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&st_file).unwrap()).unwrap();
    z.ok(&["kill", "crashed", "KILL"]);
    z.wait_stopped("crashed");
    st["status"] = json!("creating");
    std::fs::write(&st_file, st.to_string()).unwrap();
    // A volume whose container state is gone.
    z.must_create("orphan", &b);
    z.ok(&["kill", "orphan", "KILL"]);
    z.wait_stopped("orphan");
    std::fs::remove_dir_all(z.env.root.join("containers/orphan")).unwrap();
    // A live container gc must not touch.
    z.must_create("live", &b);

    let dry = z.ok(&["gc", "--dry-run"]);
    assert!(dry.contains("would remove create crashed"), "{dry}");
    assert!(
        dry.contains(&format!("would remove volume {}", z.dataset("orphan"))),
        "{dry}"
    );
    assert!(!dry.contains("live"), "{dry}");
    let out = z.ok(&["gc"]);
    assert!(out.contains("removed create crashed"), "{out}");
    let all = z.pool.all();
    assert!(
        !all.contains(&z.dataset("crashed")) && !all.contains(&z.dataset("orphan")),
        "{all:?}"
    );
    assert!(all.contains(&z.dataset("live")));
    assert_eq!(z.state("live")["status"], "created");
    z.ok(&["delete", "--force", "live"]);
    // The lost container's id is free again (its empty cgroups are reused).
    z.must_create("orphan", &b);
    z.ok(&["delete", "--force", "orphan"]);
    z.env.assert_gone("orphan");
    assert_eq!(z.ok(&["gc"]), "");
    z.ok(&["image", "gc"]);
    assert!(!z
        .pool
        .all()
        .iter()
        .any(|d| d.contains("/containers/") || d.contains("/images/")));
}

#[test]
fn dir_storage_copies_the_rootfs_and_refuses_quotas() {
    let mut env = Env::new();
    let dir_root = env.tmp.path().join("volumes");
    let cfg = env.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\ndir_root = \"{}\"\n", dir_root.display()),
    )
    .unwrap();
    env.config = Some(cfg);
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "echo hi > /etc/written; cat /etc/passwd | head -1",
        ],
        |_| {},
    );
    env.must_create("d1", &b);
    let st = env.state("d1");
    let rootfs = PathBuf::from(st["rootfs"].as_str().unwrap());
    assert_eq!(rootfs, dir_root.join("containers/d1/rootfs"));
    env.ok(&["start", "d1"]);
    env.wait_status("d1", "stopped");
    assert_eq!(env.stdout_of("d1"), "root:x:0:0:root:/root:/bin/sh\n");
    assert!(rootfs.join("etc/written").exists());
    assert!(
        !b.join("rootfs/etc/written").exists(),
        "the bundle is untouched"
    );
    env.ok(&["delete", "d1"]);
    assert!(!dir_root.join("containers/d1").exists());

    let q = env.bundle(
        "q",
        &["true"],
        with_annotations(&[("io.proxmox-lxcri.storage.quota", "1G")]),
    );
    let o = env.create("d2", &q);
    assert!(!o.status.success());
    assert!(
        env.log_of("d2").contains("cannot enforce a quota"),
        "{}",
        env.log_of("d2")
    );
    env.assert_gone("d2");
    assert!(!dir_root.join("containers/d2").exists());
    let e = env.fails(&["snapshot", "create", "d2", "s"]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn a_create_killed_mid_copy_leaves_nothing_gc_does_not_remove() {
    let z = zenv("");
    let b = z.env.bundle("big", &["true"], |_| {});
    // 150 MB of incompressible data: the copy into the image takes a while.
    let st = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", b.join("rootfs/blob").display()),
            "bs=1M",
            "count=150",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let before = z.pool.all();
    let mut child = std::process::Command::new(support::BIN)
        .arg("--root")
        .arg(&z.env.root)
        .arg("--config")
        .arg(z.env.config.as_ref().unwrap())
        .args(["create", "--bundle", b.to_str().unwrap(), "k1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the copy has begun (the volume is recorded by then).
    let state = z.env.root.join("containers/k1/state.json");
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains("\"volume\"")
    {
        assert!(
            t.elapsed().as_secs() < 30,
            "create never recorded its volume"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = z.ok(&["gc"]);
    assert!(out.contains("removed create k1"), "{out}");
    z.env.assert_gone("k1");
    // The interrupted image copy (a dataset without its snapshot), if the
    // kill came after it was begun.
    let images = z.ok(&["image", "gc"]);
    eprintln!("image gc: {images}");
    let after: Vec<String> = z
        .pool
        .all()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    let parents = [
        z.parent.clone(),
        format!("{}/containers", z.parent),
        format!("{}/images", z.parent),
    ];
    assert!(after.iter().all(|d| parents.contains(d)), "{after:?}");
}
