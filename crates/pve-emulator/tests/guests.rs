//! Real guests: a busybox CT really runs with LXC on dir and ZFS storage.

mod common;
use common::*;
use testkit::{unique, OciImage};

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .to_string()
}

#[test]
fn busybox_ct_lifecycle_on_dir_storage() {
    let d = tempfile::tempdir().unwrap();
    let mut emu = builder(d.path()).own_bridge().start();
    let br = emu.bridge().unwrap().to_string();
    let tpl = busybox_template(d.path(), "busybox.tar.gz");
    // Upload through the API (multipart, file part named `filename`).
    emu.task_ok(
        "POST",
        "/nodes/pve/storage/local/upload",
        &[
            "-F",
            "content=vztmpl",
            "-F",
            &format!("filename=@{}", tpl.display()),
        ],
    );
    let id = vmid();
    let net = format!("name=eth0,bridge={},ip=10.199.0.2/24", br);
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            "ostemplate=local:vztmpl/busybox.tar.gz",
            "--data-urlencode",
            "entrypoint=/bin/sleep 1000",
            "--data-urlencode",
            &format!("net0={net}"),
            "-d",
            "memory=128",
            "-d",
            "cpulimit=1",
            "-d",
            "hostname=bb1",
        ],
    );
    // Unprivileged: files shifted by 100000.
    let (_, v) = emu.call(
        "GET",
        &format!("/nodes/pve/storage/local/content/local:subvol-{id}-disk-0"),
        &[],
    );
    let path = v["data"]["path"].as_str().unwrap().to_string();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::symlink_metadata(format!("{path}/bin/busybox"))
            .unwrap()
            .uid(),
        100000
    );

    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    assert_eq!(v["data"]["status"], "running", "{v}");
    let pid = v["data"]["pid"].as_u64().unwrap().to_string();
    assert!(v["data"]["mem"].as_u64().unwrap() > 0);
    // The process really runs, in its own namespaces, as mapped root.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with("/bin/sleep"), "{cmdline:?}");
    for kind in ["pid", "mnt", "net", "uts", "user"] {
        assert_ne!(ns(&pid, kind), ns("self", kind), "{kind} namespace");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("100000")),
        "{status}"
    );
    // Its veth is on the bridge.
    let links = sh("ip", &["link", "show", "master", &br]);
    assert!(links.contains(&format!("veth{id}i0")), "{links}");
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/interfaces"), &[]);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["inet"] == "10.199.0.2/24"),
        "{v}"
    );
    // The memory limit is applied to its cgroup (v1 memory controller here).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if let Some(path) = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|x| x.1.to_string()))
    {
        let limit =
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
                .unwrap();
        assert_eq!(limit.trim(), (128u64 << 20).to_string());
    } else {
        let path = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_string();
        let limit = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).unwrap();
        assert_eq!(limit.trim(), (128u64 << 20).to_string());
    }
    let (c, v) = emu.call("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    assert_eq!(
        (c, v["message"].as_str().unwrap().to_string()),
        (500, format!("CT {id} already running\n"))
    );
    let (c, v) = emu.call("DELETE", &format!("/nodes/pve/lxc/{id}"), &[]);
    assert_eq!(
        (c, v["message"].as_str().unwrap().to_string()),
        (
            500,
            format!("unable to destroy CT {id} - container is running\n")
        )
    );

    // Restarting the emulator (SIGTERM) leaves the CT running.
    emu.restart();
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    assert_eq!(v["data"]["pid"].as_u64().unwrap().to_string(), pid);

    // Snapshot round trip (dir storage keeps a copy).
    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/snapshot"),
        &["-d", "snapname=s1"],
    );
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/snapshot"), &[]);
    assert_eq!(v["data"][0]["name"], "s1");

    // The hostname is the CT's UTS name.
    let hn = sh("nsenter", &["-t", &pid, "-u", "hostname"]);
    assert_eq!(hn.trim(), "bb1");
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/suspend"), &[]);
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/resume"), &[]);
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/stop"), &[]);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    assert_eq!(v["data"]["status"], "stopped");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let (c, v) = emu.call("POST", &format!("/nodes/pve/lxc/{id}/status/stop"), &[]);
    assert_eq!(
        (c, v["message"].as_str().unwrap().to_string()),
        (500, format!("CT {id} not running\n"))
    );
    // Shutdown: sleep as init ignores the halt signal, so forceStop kills it after the timeout.
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/status/shutdown"),
        &["-d", "timeout=1", "-d", "forceStop=1"],
    );
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    assert_eq!(v["data"]["status"], "stopped");
    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{id}/snapshot/s1"), &[]);
    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{id}"), &[]);
    let left: Vec<_> = std::fs::read_dir(d.path().join("storage/local/images"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing left on the storage: {left:?}");
}

/// zfs-fuse pool on a file, destroyed at the end.
struct Pool(String);
impl Drop for Pool {
    fn drop(&mut self) {
        // zfs-fuse may keep the pool busy for a moment after its last user
        // left, and `zpool destroy` can then exit 0 without destroying it:
        // check that it is gone.
        let zpool = |args: &[&str]| {
            std::process::Command::new("zpool")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        for _ in 0..30 {
            zpool(&["destroy", "-f", &self.0]);
            if !zpool(&["list", &self.0]) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        eprintln!("could not destroy zpool {}", self.0);
    }
}

/// A zfs-fuse of our own, in this (private) mount namespace: its socket,
/// lock and cache directories are fresh tmpfs mounts, so a busy or wedged
/// zfs-fuse elsewhere on the host cannot hang or disturb the test.
struct PrivateZfsFuse {
    pidfile: std::path::PathBuf,
}

impl PrivateZfsFuse {
    fn start() -> PrivateZfsFuse {
        for d in ["/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs"] {
            std::fs::create_dir_all(d).unwrap();
            sh("mount", &["-t", "tmpfs", "none", d]);
        }
        let pidfile = std::path::PathBuf::from("/var/run/zfs/test-zfs-fuse.pid");
        let st = std::process::Command::new("zfs-fuse")
            .arg("--pidfile")
            .arg(&pidfile)
            .status()
            .expect("zfs-fuse is installed (scripts/install-deps.sh)");
        assert!(st.success());
        for _ in 0..100 {
            if std::path::Path::new("/var/run/zfs/zfs_socket").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        PrivateZfsFuse { pidfile }
    }
}

impl Drop for PrivateZfsFuse {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Runs the ZFS test body in a private mount namespace (see [`PrivateZfsFuse`]).
#[test]
fn zfs_subvol_with_refquota() {
    let st = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zfs_in_private_namespace",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PVE_EMULATOR_ZFS_NS", "1")
        .status()
        .unwrap();
    assert!(st.success(), "the ZFS test failed (output above)");
}

#[test]
#[ignore = "run by zfs_subvol_with_refquota in its own mount namespace"]
fn zfs_in_private_namespace() {
    assert_eq!(
        std::env::var("PVE_EMULATOR_ZFS_NS").as_deref(),
        Ok("1"),
        "run through zfs_subvol_with_refquota"
    );
    let _zfs = PrivateZfsFuse::start();
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("pool.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let pool = Pool(format!("emu{}x{}", std::process::id(), unique()));
    sh(
        "zpool",
        &[
            "create",
            "-m",
            &d.path().join("mnt").to_string_lossy(),
            &pool.0,
            &img.to_string_lossy(),
        ],
    );
    let tpl = busybox_template(d.path(), "bb.tar.zst");
    let ost = install_template(d.path(), &tpl);
    let emu = start(
        d.path(),
        &[
            "--storage",
            &format!("local=dir:{}", d.path().join("storage/local").display()),
            "--storage",
            &format!("tank=zfspool:{}/ct", pool.0),
        ],
    );
    let id = vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
            "-d",
            "rootfs=tank:1",
            "--data-urlencode",
            "entrypoint=/bin/sleep 1000",
        ],
    );
    let ds = format!("{}/ct/subvol-{id}-disk-0", pool.0);
    let q = sh("zfs", &["get", "-Hp", "-o", "value", "refquota", &ds]);
    assert_eq!(q.trim(), (1u64 << 30).to_string());
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    assert_eq!(
        v["data"]["rootfs"],
        format!("tank:subvol-{id}-disk-0,size=1G")
    );
    let (_, v) = emu.call(
        "GET",
        &format!("/nodes/pve/storage/tank/content/tank:subvol-{id}-disk-0"),
        &[],
    );
    assert_eq!(v["data"]["size"], 1u64 << 30);
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    assert_eq!(v["data"]["status"], "running");
    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/snapshot"),
        &["-d", "snapname=before"],
    );
    assert!(sh(
        "zfs",
        &["list", "-H", "-t", "snapshot", "-o", "name", "-r", &ds]
    )
    .contains("@before"));
    emu.task_ok(
        "DELETE",
        &format!("/nodes/pve/lxc/{id}"),
        &["-d", "force=1"],
    );
    let left = sh(
        "zfs",
        &["list", "-H", "-o", "name", "-r", &format!("{}/ct", pool.0)],
    );
    assert_eq!(left.trim(), format!("{}/ct", pool.0), "no dataset left");
}

/// An OCI-layout archive: busybox, then a layer that whites out bin/ls and adds etc/motd.
fn oci_archive(dir: &std::path::Path) -> std::path::PathBuf {
    OciImage::new()
        .layer(busybox_layer(dir))
        .layer_from(dir, |d| {
            std::fs::create_dir_all(d.join("bin")).unwrap();
            std::fs::create_dir_all(d.join("etc")).unwrap();
            std::fs::write(d.join("bin/.wh.ls"), "").unwrap();
            std::fs::write(d.join("etc/motd"), "layer two\n").unwrap();
        })
        .config(serde_json::json!({"Entrypoint": ["/bin/sleep"], "Cmd": ["1000"], "Env": ["FOO=bar", "PATH=/bin"], "User": "nobody", "WorkingDir": "/tmp"}))
        .archive(dir)
}

/// Creates a CT from `ost` and returns the task's exit status and log.
fn create_from(emu: &Emulator, ost: &str) -> (u32, String, String) {
    let id = vmid();
    let (_, v) = emu.call(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
        ],
    );
    let upid = v["data"].as_str().expect("a UPID").to_string();
    let st = emu.wait_task(&upid);
    let status = st["exitstatus"].as_str().unwrap_or_default().to_string();
    (id, status, emu.task_log(&upid).to_string())
}

#[test]
fn oci_config_newline_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(
        d.path(),
        &OciImage::new()
            .layer(busybox_layer(d.path()))
            .config(
                serde_json::json!({"Cmd": ["/bin/sh", "x\nlxc.hook.pre-start: touch /pwned #"]}),
            )
            .archive(d.path()),
    );
    let emu = start(d.path(), &[]);
    let (id, status, log) = create_from(&emu, &ost);
    assert_ne!(status, "OK", "{log}");
    assert!(log.contains("control character"), "{log}");
    let conf = d.path().join(format!("nodes/pve/lxc/{id}.conf"));
    let text = std::fs::read_to_string(conf).unwrap_or_default();
    assert!(!text.contains("lxc.hook"), "{text}");
}

#[test]
fn oci_layers_cannot_escape_the_rootfs() {
    let d = tempfile::tempdir().unwrap();
    // The host directory a malicious image aims at.
    let target = d.path().join(format!("host-target-{}", unique()));
    std::fs::create_dir_all(&target).unwrap();
    let image = OciImage::new().layer_from(d.path(), |s| {
        std::os::unix::fs::symlink(&target, s.join("x")).unwrap();
    });
    // Only the file, no `x/` entry: tar would then follow the symlink `x`.
    let src = d.path().join("l2src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x/authorized_keys"), "ssh-ed25519 AAAA evil\n").unwrap();
    let l2 = d.path().join("l2.tar");
    sh(
        "tar",
        &[
            "-cf",
            &l2.to_string_lossy(),
            "-C",
            &src.to_string_lossy(),
            "./x/authorized_keys",
        ],
    );
    let l2 = std::fs::read(l2).unwrap();
    let ost = install_template(
        d.path(),
        &image
            .layer(l2)
            .config(serde_json::json!({"Cmd": ["/bin/sh"]}))
            .archive(d.path()),
    );
    let emu = start(d.path(), &[]);
    let _ = create_from(&emu, &ost);
    assert!(
        !target.join("authorized_keys").exists(),
        "a layer wrote through a symlink to the host"
    );

    // A blob that is a symlink to a host file is refused.
    let layout = d.path().join("sym-layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let h = "0".repeat(64);
    std::os::unix::fs::symlink("/etc/hostname", layout.join("blobs/sha256").join(&h)).unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{h}"), "size": 1}]}).to_string(),
    )
    .unwrap();
    let out = d.path().join("symblob_latest.tar");
    sh(
        "tar",
        &[
            "-cf",
            &out.to_string_lossy(),
            "-C",
            &layout.to_string_lossy(),
            "oci-layout",
            "index.json",
            "blobs",
        ],
    );
    let ost = install_template(d.path(), &out);
    let (_, status, log) = create_from(&emu, &ost);
    assert_ne!(status, "OK", "{log}");
    assert!(log.contains("not a regular file"), "{log}");
}

#[test]
fn oci_archive_template() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &oci_archive(d.path()));
    let emu = start(d.path(), &[]);
    let id = vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
        ],
    );
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    let c = &v["data"];
    assert_eq!(c["entrypoint"], "/bin/sleep 1000", "{c}");
    assert_eq!(c["env"], "FOO=bar\0PATH=/bin");
    assert_eq!(c["cmode"], "console");
    let lxc: Vec<(String, String)> = serde_json::from_value(c["lxc"].clone()).unwrap();
    for kv in [
        ("lxc.init.uid", "65534"),
        ("lxc.init.gid", "65534"),
        ("lxc.init.cwd", "/tmp"),
    ] {
        assert!(
            lxc.contains(&(kv.0.to_string(), kv.1.to_string())),
            "{kv:?} in {lxc:?}"
        );
    }
    let (_, v) = emu.call(
        "GET",
        &format!("/nodes/pve/storage/local/content/local:subvol-{id}-disk-0"),
        &[],
    );
    let root = std::path::PathBuf::from(v["data"]["path"].as_str().unwrap());
    assert!(!root.join("bin/ls").exists(), "whiteout applied");
    assert!(!root.join("bin/.wh.ls").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "layer two\n"
    );

    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    let pid = v["data"]["pid"].as_u64().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ.split(|b| *b == 0).any(|e| e == b"FOO=bar"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&(100000 + 65534).to_string())),
        "{status}"
    );
    // Seen from the host, the cwd is relative to the CT's root.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::path::Path::new("/tmp")
    );
    emu.task_ok(
        "DELETE",
        &format!("/nodes/pve/lxc/{id}"),
        &["-d", "force=1"],
    );
}

#[test]
fn vlan_tag_on_host_veth() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &busybox_template(d.path(), "bb.tar"));
    let emu = builder(d.path()).own_bridge().start();
    let br = emu.bridge().unwrap().to_string();
    let id = vmid();
    let net = format!("name=eth0,bridge={},tag=42,ip=10.198.0.2/24", br);
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
            "-d",
            "unprivileged=0",
            "--data-urlencode",
            "entrypoint=/bin/sleep 1000",
            "--data-urlencode",
            &format!("net0={net}"),
        ],
    );
    let (c, v) = emu.call("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    assert_eq!(c, 200, "{v}");
    let st = emu.wait_task(v["data"].as_str().unwrap());
    if st["exitstatus"] == "OK" {
        let vlans = sh("bridge", &["vlan", "show", "dev", &format!("veth{id}i0")]);
        assert!(vlans.contains("42"), "{vlans}");
    } else {
        // The kernel may refuse VLAN filtering: then the error says so and the CT is not left running.
        let msg = st["exitstatus"].as_str().unwrap();
        assert!(msg.contains("VLAN tag 42"), "{msg}");
        let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
        assert_eq!(v["data"]["status"], "stopped");
    }
    // Privileged CT: files keep their owners.
    let (_, v) = emu.call(
        "GET",
        &format!("/nodes/pve/storage/local/content/local:subvol-{id}-disk-0"),
        &[],
    );
    use std::os::unix::fs::MetadataExt;
    let p = format!("{}/bin/busybox", v["data"]["path"].as_str().unwrap());
    assert_eq!(std::fs::metadata(p).unwrap().uid(), 0);
    emu.task_ok(
        "DELETE",
        &format!("/nodes/pve/lxc/{id}"),
        &["-d", "force=1"],
    );
}

/// Raw keys as a node treats them (pve-container's list): kept ones reach
/// LXC, old spellings are renamed with a warning, `lxc.rootfs.*` is refused
/// and every other key is dropped with a warning in the start task's log.
#[test]
fn raw_keys_a_node_drops_never_reach_lxc() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &oci_archive(d.path()));
    let emu = start(d.path(), &[]);
    let (id, status, log) = create_from(&emu, &ost);
    assert_eq!(status, "OK", "{log}");
    let conf = d.path().join(format!("nodes/pve/lxc/{id}.conf"));
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(
        "lxc.proc.oom_score_adj: 77\n\
         lxc.sysctl.net.ipv4.ip_forward: 1\n\
         lxc.prlimit.nofile: 111:222\n\
         lxc.rootfs.path: /tmp\n\
         lxc.utsname: renamed\n",
    );
    std::fs::write(&conf, text).unwrap();
    let (_, v) = emu.call("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    let upid = v["data"].as_str().expect("a UPID").to_string();
    let st = emu.wait_task(&upid);
    let log = emu.task_log(&upid).to_string();
    assert_eq!(st["exitstatus"], "OK", "{log}");
    for w in [
        format!("vm {id} - unable to parse config: lxc.proc.oom_score_adj: 77"),
        format!("vm {id} - unable to parse config: lxc.sysctl.net.ipv4.ip_forward: 1"),
        "lxc.rootfs.path is not supported".to_string(),
        format!("vm {id} - deprecated lxc.conf key lxc.utsname, renamed to lxc.uts.name"),
    ] {
        assert!(log.contains(&w), "{w:?} not in {log}");
    }
    assert!(!log.contains("prlimit"), "{log}");
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/status/current"), &[]);
    let pid = v["data"]["pid"].as_u64().expect("running").to_string();
    // Dropped: LXC never saw them.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "0"
    );
    let in_ns = |ns: &str, file: &str| {
        sh(
            "nsenter",
            &["-t", &pid, ns, "--", "cat", &format!("/proc/sys/{file}")],
        )
        .trim()
        .to_string()
    };
    assert_eq!(in_ns("-n", "net/ipv4/ip_forward"), "0");
    // Kept and renamed: applied.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 111 ") && l.contains(" 222 ")),
        "{limits}"
    );
    assert_eq!(
        sh("nsenter", &["-t", &pid, "-u", "--", "hostname"]).trim(),
        "renamed"
    );
    emu.task_ok(
        "DELETE",
        &format!("/nodes/pve/lxc/{id}"),
        &["-d", "force=1"],
    );
}

/// A VM is a real QEMU process (TCG: nested KVM hangs on these machines):
/// its options on the command line as qemu-server puts them, its NIC a tap
/// on the bridge, pause/resume/reset over QMP, a shutdown the guest ignores
/// fails unless forced, stop ends the process.
#[test]
fn qemu_vms_run_for_real() {
    let d = tempfile::tempdir().unwrap();
    let emu = builder(d.path()).own_bridge().start();
    let br = emu.bridge().unwrap().to_string();
    let id = vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/qemu",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            "memory=128",
            "-d",
            "cores=2",
            "--data-urlencode",
            &format!("net0=virtio,bridge={br}"),
            "-d",
            "serial0=socket",
            "-d",
            "virtio0=local:1",
            "-d",
            "scsi0=local:0.5",
            "-d",
            "scsihw=virtio-scsi-pci",
        ],
    );
    // The disks are real sparse files on the dir storage, listed as images.
    let (_, c) = emu.call(
        "GET",
        "/nodes/pve/storage/local/content",
        &["-G", "-d", "content=images"],
    );
    let mut disks: Vec<(String, u64)> = c["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vmid"].as_u64() == Some(id as u64))
        .map(|e| {
            (
                e["volid"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    disks.sort();
    let mut sizes: Vec<u64> = disks.iter().map(|d| d.1).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1 << 29, 1 << 30], "{c}");
    assert_eq!(disks[0].0, format!("local:{id}/vm-{id}-disk-0.raw"));
    assert_eq!(disks[1].0, format!("local:{id}/vm-{id}-disk-1.raw"));
    let (_, v) = emu.call("GET", &format!("/nodes/pve/qemu/{id}/config"), &[]);
    let net0 = v["data"]["net0"].as_str().unwrap().to_string();
    assert!(net0.starts_with("virtio=BC:24:11:"), "{net0}");
    let mac = net0["virtio=".len()..]
        .split(',')
        .next()
        .unwrap()
        .to_lowercase();

    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/start"), &[]);
    let status = |emu: &Emulator| {
        emu.call("GET", &format!("/nodes/pve/qemu/{id}/status/current"), &[])
            .1["data"]
            .clone()
    };
    let st = status(&emu);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["qmpstatus"], "running", "{st}");
    let pid = st["pid"].as_u64().expect("a pid").to_string();
    assert!(st["mem"].as_u64().unwrap() > 0, "{st}");
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    for part in [
        "-m 128",
        "-smp 2,sockets=1,cores=2",
        "-accel tcg,tb-size=128",
        &format!("ifname=tap{id}i0"),
        &format!(
            "mac={}",
            &net0["virtio=".len()..].split(',').next().unwrap()
        ),
        "isa-serial,chardev=serial0",
        ".raw,if=none,id=drive-virtio0",
        ".raw,if=none,id=drive-scsi0",
        "virtio-blk-pci,drive=drive-virtio0",
        "virtio-scsi-pci,id=scsihw0",
        "scsi-hd,bus=scsihw0.0,scsi-id=0,drive=drive-scsi0",
    ] {
        assert!(cmd.contains(part), "{part} in {cmd}");
    }
    let links = sh("ip", &["link", "show", "master", &br]);
    assert!(links.contains(&format!("tap{id}i0")), "{links}");
    // The guest's MAC is on the NIC QEMU emulates (the tap is its host end).
    let _ = mac;

    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/suspend"), &[]);
    assert_eq!(status(&emu)["qmpstatus"], "paused");
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/resume"), &[]);
    assert_eq!(status(&emu)["qmpstatus"], "running");
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/reset"), &[]);
    assert_eq!(status(&emu)["pid"].as_u64().unwrap().to_string(), pid);
    // No OS answers the power button: the shutdown task fails, the VM runs.
    let (_, v) = emu.call(
        "POST",
        &format!("/nodes/pve/qemu/{id}/status/shutdown"),
        &["-d", "timeout=2"],
    );
    let t = emu.wait_task(v["data"].as_str().unwrap());
    assert_ne!(t["exitstatus"], "OK", "{t}");
    assert_eq!(status(&emu)["status"], "running");
    let (c, _) = emu.call("DELETE", &format!("/nodes/pve/qemu/{id}"), &[]);
    assert_eq!(c, 500, "a running VM is not destroyed");
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/stop"), &[]);
    assert_eq!(status(&emu)["status"], "stopped");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!std::path::Path::new(&format!("/sys/class/net/tap{id}i0")).exists());
    emu.task_ok("DELETE", &format!("/nodes/pve/qemu/{id}"), &[]);
    // Its disks went with it.
    let (_, c) = emu.call(
        "GET",
        "/nodes/pve/storage/local/content",
        &["-G", "-d", "content=images"],
    );
    assert!(
        !c["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["vmid"].as_u64() == Some(id as u64)),
        "{c}"
    );
}

/// `args` (raw QEMU options) are root@pam's only, as on a node, and go
/// last on the QEMU command line, split as a shell splits them.
#[test]
fn qemu_args_are_root_only_and_go_last() {
    let d = tempfile::tempdir().unwrap();
    let emu = builder(d.path()).start();
    let id = vmid();
    let args = "args=-no-reboot -name 'vm one,debug-threads=on'";
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/qemu",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            "memory=64",
            "--data-urlencode",
            args,
        ],
    );
    assert_eq!(c, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("only root can set 'args'"),
        "{v}"
    );
    let (_, v) = emu.call(
        "POST",
        "/access/ticket",
        &[
            "-d",
            "username=root@pam",
            "-d",
            &format!("password={ROOT_PASSWORD}"),
        ],
    );
    let cookie = format!(
        "Cookie: PVEAuthCookie={}",
        v["data"]["ticket"].as_str().unwrap()
    );
    let csrf = format!(
        "CSRFPreventionToken: {}",
        v["data"]["CSRFPreventionToken"].as_str().unwrap()
    );
    let (c, v) = emu.curl(
        "POST",
        &emu.api_url("/nodes/pve/qemu"),
        &[
            "-H",
            &cookie,
            "-H",
            &csrf,
            "-d",
            &format!("vmid={id}"),
            "-d",
            "memory=64",
            "--data-urlencode",
            args,
        ],
    );
    assert_eq!(c, 200, "{v}");
    emu.wait_task(v["data"].as_str().unwrap());
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/start"), &[]);
    let (_, st) = emu.call("GET", &format!("/nodes/pve/qemu/{id}/status/current"), &[]);
    let pid = st["data"]["pid"].as_u64().expect("a pid");
    let cmd: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split('\0')
        .map(String::from)
        .collect();
    let n = cmd.len();
    assert_eq!(
        cmd[n - 4..n - 1],
        ["-no-reboot", "-name", "vm one,debug-threads=on"],
        "{cmd:?}"
    );
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/stop"), &[]);
    emu.task_ok("DELETE", &format!("/nodes/pve/qemu/{id}"), &[]);
}

/// One QMP command on the VM's socket (a test's own look inside QEMU).
fn qmp(emu: &Emulator, id: u32, command: &str) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let path = emu
        .data_dir()
        .join("run")
        .join("qemu-server")
        .join(format!("{id}.qmp"));
    let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut next = || loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v.get("event").is_none() {
            return v;
        }
    };
    next();
    writeln!(w, r#"{{"execute":"qmp_capabilities"}}"#).unwrap();
    next();
    writeln!(w, r#"{{"execute":"{command}"}}"#).unwrap();
    next()["return"].clone()
}

/// A disk allocated with `POST .../content` and added to a running VM's
/// config is hot-plugged (a virtio-blk device with its serial, as
/// qemu-server does); on a stopped VM, deleting it keeps the volume as
/// `unused<n>`, and deleting that frees the volume.
#[test]
fn qemu_disks_are_allocated_and_hot_plugged() {
    let d = tempfile::tempdir().unwrap();
    let emu = builder(d.path()).start();
    let id = vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/qemu",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            "memory=128",
            "-d",
            "virtio0=local:0.0625",
        ],
    );
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/storage/local/content",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("filename=vm-{id}-lxcri-test"),
            "-d",
            "size=16M",
        ],
    );
    assert_eq!(c, 200, "{v}");
    let volid = v["data"].as_str().unwrap().to_string();
    assert_eq!(volid, format!("local:{id}/vm-{id}-lxcri-test.raw"));
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/storage/local/content",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            "filename=vm-1-other",
            "-d",
            "size=16M",
        ],
    );
    assert_eq!(c, 500, "another VM's name: {v}");
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/start"), &[]);
    let (c, v) = emu.call(
        "PUT",
        &format!("/nodes/pve/qemu/{id}/config"),
        &[
            "--data-urlencode",
            &format!("virtio1={volid},serial=lxcri-virtio1"),
        ],
    );
    assert_eq!(c, 200, "{v}");
    let blocks = qmp(&emu, id, "query-block");
    let plugged = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["qdev"].as_str().is_some_and(|q| q.contains("virtio1")))
        .unwrap_or_else(|| panic!("no virtio1 in {blocks}"));
    assert!(
        plugged["inserted"]["file"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("vm-{id}-lxcri-test.raw")),
        "{plugged}"
    );
    // Replacing a disk of a running VM is refused.
    let (c, _) = emu.call(
        "PUT",
        &format!("/nodes/pve/qemu/{id}/config"),
        &["--data-urlencode", &format!("virtio1={volid}")],
    );
    assert_eq!(c, 500);
    // (Unplugging needs a guest that lets the device go: tests/cri_vm.rs in the runtime.)
    emu.task_ok("POST", &format!("/nodes/pve/qemu/{id}/status/stop"), &[]);
    let (c, v) = emu.call(
        "PUT",
        &format!("/nodes/pve/qemu/{id}/config"),
        &["-d", "delete=virtio1"],
    );
    assert_eq!(c, 200, "{v}");
    let (_, v) = emu.call("GET", &format!("/nodes/pve/qemu/{id}/config"), &[]);
    assert_eq!(v["data"]["unused0"], volid.as_str(), "{v}");
    assert!(v["data"].get("virtio1").is_none(), "{v}");
    let (c, v) = emu.call(
        "PUT",
        &format!("/nodes/pve/qemu/{id}/config"),
        &["-d", "delete=unused0"],
    );
    assert_eq!(c, 200, "{v}");
    let (_, c) = emu.call(
        "GET",
        "/nodes/pve/storage/local/content",
        &["-G", "-d", "content=images"],
    );
    assert!(
        !c["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["volid"] == volid.as_str()),
        "{c}"
    );
    emu.task_ok("DELETE", &format!("/nodes/pve/qemu/{id}"), &[]);
}
