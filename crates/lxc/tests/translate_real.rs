//! Real runs of `translate()` output with `lxc-start -F`: a busybox rootfs,
//! our init replaced by a busybox script (lxc.init.cmd overridden) that
//! writes what it sees into the exchange directory.
//!
//! Needs root, lxc-start and a static /bin/busybox; fails (never skips) if
//! they are missing.
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use proxmox_lxcri_cgroups::CgroupLayout;
use proxmox_lxcri_lxc::config::{translate, TranslateContext};
use serde_json::{json, Value};
use testkit::Spec;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn require_env() {
    testkit::require_root_and_lxc("the translate_real tests (they run lxc-start)");
    testkit::busybox();
}

struct Bundle {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rootfs: PathBuf,
    exchange: PathBuf,
    name: String,
}

fn bundle() -> Bundle {
    require_env();
    let dir = tempfile::Builder::new()
        .prefix("lxcri-tr-")
        .tempdir()
        .unwrap();
    let root = dir.path().to_path_buf();
    let rootfs = testkit::Rootfs::busybox().build(&root.join("rootfs"));
    let exchange = root.join("exchange");
    std::fs::create_dir(&exchange).unwrap();
    let name = format!(
        "lxcri-tr-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    Bundle {
        _dir: dir,
        root,
        rootfs,
        exchange,
        name,
    }
}

/// runc's spec with no process restrictions (capabilities, rlimits, no new
/// privileges, masked and read-only paths) and no /dev/mqueue: each test
/// sees what it adds.
fn base_spec() -> Value {
    Spec::runc()
        .args(&["/bin/sh"])
        .env(&["PATH=/bin"])
        .hostname("trhost")
        .without_mount("/dev/mqueue")
        .remove("/process/terminal")
        .remove("/process/capabilities")
        .remove("/process/rlimits")
        .remove("/process/noNewPrivileges")
        .remove("/linux/maskedPaths")
        .remove("/linux/readonlyPaths")
        .into_value()
}

/// Translates, replaces the init by `script`, runs the container, returns
/// what the script wrote to /dev/.lxcri/out.
fn run(b: &Bundle, spec: Value, script: &str) -> String {
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
    let ctx = TranslateContext {
        id: b.name.clone(),
        rootfs: b.rootfs.clone(),
        bundle: b.root.clone(),
        exchange_dir: b.exchange.clone(),
        init_binary: PathBuf::from("/bin/busybox"),
        log_file: b.root.join("lxc.log"),
        copyup_dir: b.root.join("copyup"),
        log_level: "DEBUG".into(),
        cgroups: CgroupLayout::detect().unwrap(),
        apparmor_enabled: false,
        selinux_enabled: false,
    };
    let mut t = translate(&spec, &ctx).expect("translate");
    std::fs::write(
        b.exchange.join("check.sh"),
        format!("#!/bin/busybox sh\nexec >/dev/.lxcri/out 2>&1\n{script}\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        b.exchange.join("check.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    t.lxc.set("lxc.init.cmd", "/dev/.lxcri/check.sh").unwrap();
    let conf = b.root.join("lxc.conf");
    std::fs::write(&conf, t.lxc.render()).unwrap();
    let lxcpath = b.root.join("lxcpath");
    std::fs::create_dir_all(&lxcpath).unwrap();
    let out = Command::new("timeout")
        .arg("60")
        .arg("lxc-start")
        .arg("-F")
        .arg("-P")
        .arg(&lxcpath)
        .arg("-n")
        .arg(&b.name)
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(b.root.join("lxc.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "lxc-start failed: {:?}\nstderr: {}\nconfig:\n{}\nlog errors:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        t.lxc.render(),
        log.lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::read_to_string(b.exchange.join("out")).expect("the script wrote its output")
}

/// Memory limit and pids limit reach the container's cgroup; a mount point
/// missing from the image still gets created under a read-only root;
/// hostname set; /dev size from the spec's /dev tmpfs.
#[test]
fn limits_readonly_root_hostname() {
    let b = bundle();
    let layout = CgroupLayout::detect().unwrap();
    let mut spec = base_spec();
    spec["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    spec["linux"]["resources"]["pids"] = json!({"limit": 77});
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/new/dir", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    let (mem_file, pids_file) = if layout.v1_controllers().any(|c| c == "memory") {
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
        )
    } else {
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max")
    };
    let out = run(
        &b,
        spec,
        &format!(
            "echo mem=$(/bin/busybox cat {mem_file})\n\
             echo pids=$(/bin/busybox cat {pids_file})\n\
             /bin/busybox touch /rootwrite && echo root=rw || echo root=ro\n\
             /bin/busybox touch /new/dir/x && echo newdir=rw || echo newdir=ro\n\
             echo host=$(/bin/busybox hostname)\n\
             /bin/busybox grep ' /dev ' /proc/self/mountinfo\n"
        ),
    );
    assert!(out.contains("mem=67108864"), "{out}");
    assert!(out.contains("pids=77"), "{out}");
    // LXC leaves the root writable: our init remounts it read-only before
    // the process runs (InitConfig::readonly_root; checked through the whole
    // runtime by tests/runc_compat.rs and Docker's --read-only). The script
    // here replaces our init, so it sees LXC's part only.
    assert!(out.contains("root=rw"), "{out}");
    assert!(out.contains("newdir=rw"), "{out}");
    assert!(out.contains("host=trhost"), "{out}");
    assert!(out.contains("size=65536k"), "{out}");
}

/// cgroupsPath lands where asked (no cgroup namespace, so /proc/self/cgroup
/// shows host paths); bind mount with propagation and ro; sysctl and rlimit.
#[test]
fn cgroups_path_bind_sysctl_rlimit() {
    let b = bundle();
    let host_dir = b.root.join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "from-host").unwrap();
    let cg = format!("/proxmox-lxcri-test/{}", b.name);
    let mut spec = base_spec();
    spec["root"]["readonly"] = json!(false);
    spec["linux"]["cgroupsPath"] = json!(cg);
    spec["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    spec["mounts"].as_array_mut().unwrap().pop(); // no cgroup mount without cgroupns
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/mnt/shared", "type": "bind", "source": "shared", "options": ["rbind", "rslave", "ro"]}),
    );
    spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321"});
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888}]);
    let out = run(
        &b,
        spec,
        "/bin/busybox cat /proc/self/cgroup\n\
         echo hello=$(/bin/busybox cat /mnt/shared/hello)\n\
         /bin/busybox touch /mnt/shared/x && echo bind=rw || echo bind=ro\n\
         echo fwd=$(/bin/busybox cat /proc/sys/net/ipv4/ip_forward)\n\
         echo msgmax=$(/bin/busybox cat /proc/sys/kernel/msgmax)\n\
         /bin/busybox grep 'open files' /proc/self/limits\n",
    );
    // LXC removes the container's cgroups but not the parents it created;
    // their removal can lag behind lxc-start's exit: retry for a while.
    for _ in 0..50 {
        let mut left = false;
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = h.path().join("proxmox-lxcri-test");
            if p.exists() && std::fs::remove_dir(&p).is_err() {
                left = true;
            }
        }
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        out.contains(&format!(":{cg}\n")),
        "cgroup path not {cg}: {out}"
    );
    assert!(out.contains("hello=from-host"), "{out}");
    assert!(out.contains("bind=ro"), "{out}");
    assert!(out.contains("fwd=1"), "{out}");
    assert!(out.contains("msgmax=4321"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Max open files") && l.contains("777") && l.contains("888")),
        "{out}"
    );
}

/// Device cgroup: default deny plus runc's defaults; /dev/null usable,
/// a device not allowed cannot be created.
#[test]
fn device_rules_enforced() {
    let b = bundle();
    let out = run(
        &b,
        base_spec(),
        "echo x > /dev/null && echo null=ok || echo null=denied\n\
         /bin/busybox mknod /dev/sda-test b 8 0 && (/bin/busybox cat /dev/sda-test >/dev/null 2>&1 && echo sda=readable || echo sda=denied) || echo sda=denied\n",
    );
    assert!(out.contains("null=ok"), "{out}");
    assert!(out.contains("sda=denied"), "{out}");
}
