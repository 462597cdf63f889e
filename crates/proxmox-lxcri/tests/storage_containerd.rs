//! containerd 1.6 driving proxmox-lxcri with [storage] on ZFS (zfs-fuse):
//! each container of an image gets a dataset; from the second on, with
//! the image cached (the key comes from the overlay rootfs' fingerprint),
//! it is a clone; `ctr task rm` + `ctr c rm` leave the pool as it was.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::containerd::Containerd;
use storage::testpool::{run, TestPool};

fn zget(ds: &str, prop: &str) -> String {
    run("zfs", &["get", "-H", "-p", "-o", "value", prop, ds])
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn ctr_runs_on_zfs_and_the_second_container_is_a_clone() {
    let pool = TestPool::new(2 << 30).expect("test pool");
    let parent = format!("{}/lxcri", pool.name);
    let ctd = Containerd::start();
    // The shim runs the runtime with runc's arguments only: a wrapper adds
    // our --config.
    let config = pool.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nkind = \"zfs\"\nzfs_parent = \"{parent}\"\nlock_dir = \"{}\"\nproperties = {{ compression = \"on\" }}\n",
            pool.dir.path().join("locks").display()
        ),
    )
    .unwrap();
    let wrapper = pool.dir.path().join("lxcri-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --config {} \"$@\"\n",
            env!("CARGO_BIN_EXE_proxmox-lxcri"),
            config.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rt = wrapper.to_str().unwrap();

    let ids: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| format!("{}-{n}", ctd.namespace))
        .collect();
    for id in &ids {
        let o = ctd.run(rt, id, &["sleep", "1000"], &["-d"]);
        assert!(o.status.success(), "ctr run -d {id}:\n{}", ctd.explain(&o));
        ctd.wait_status(id, "RUNNING", Duration::from_secs(30));
    }
    let ds: Vec<String> = ids
        .iter()
        .map(|id| format!("{parent}/containers/{id}"))
        .collect();
    let origin = zget(&ds[0], "origin");
    assert!(
        origin.starts_with(&format!("{parent}/images/f-")) && origin.ends_with("@image"),
        "{origin}"
    );
    assert_eq!(zget(&ds[1], "origin"), origin, "same image, same snapshot");
    // The container sees the dataset as its root.
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &ids[1],
        "sh",
        "-c",
        "echo hi > /on-zfs",
    ]);
    assert!(o.status.success(), "{}", ctd.explain(&o));
    let mp = zget(&ds[1], "mountpoint");
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/on-zfs")).unwrap(),
        "hi\n"
    );

    for id in &ids {
        let o = ctd.ctr(&["task", "kill", "-s", "KILL", id]);
        assert!(o.status.success(), "{}", ctd.explain(&o));
        ctd.wait_status(id, "STOPPED", Duration::from_secs(30));
        for args in [
            vec!["task", "rm", id.as_str()],
            vec!["containers", "rm", id.as_str()],
        ] {
            let o = ctd.ctr(&args);
            assert!(o.status.success(), "{args:?}: {}", ctd.explain(&o));
        }
    }
    let all = pool.all();
    assert!(!all.iter().any(|d| d.contains("/containers/")), "{all:?}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_proxmox-lxcri"))
        .args(["--config", config.to_str().unwrap(), "image", "gc"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !pool.all().iter().any(|d| d.contains("/images/")),
        "{:?}",
        pool.all()
    );
}
