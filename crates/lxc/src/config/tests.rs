//! Shared helpers of the translator tests (the cgroups and process tests
//! next to their code use them too), and the tests of LxcConfig, the
//! basics, mounts, namespaces and cross-cutting checks.
use serde_json::{json, Value};

use super::*;

pub(crate) const HYBRID_V1: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];
pub(crate) const V2_ALL: [&str; 7] = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"];

/// A runc-`spec`-like config.json.
pub(crate) fn base() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 18},
            "args": ["/bin/sh", "-c", "echo hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/work",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_AUDIT_WRITE"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                "ambient": []
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys"]
        }
    })
}

pub(crate) fn spec(v: Value) -> Spec {
    serde_json::from_value(v).expect("valid spec JSON")
}

pub(crate) fn ctx(layout: CgroupLayout) -> TranslateContext {
    TranslateContext {
        id: "ctr1".into(),
        rootfs: "/b/rootfs".into(),
        bundle: std::env::temp_dir(),
        exchange_dir: "/run/x/exch".into(),
        init_binary: "/usr/bin/proxmox-lxcri".into(),
        log_file: "/run/x/lxc.log".into(),
        copyup_dir: "/run/x/copyup".into(),
        log_level: "ERROR".into(),
        cgroups: layout,
        apparmor_enabled: false,
        selinux_enabled: false,
    }
}

pub(crate) fn hybrid() -> CgroupLayout {
    CgroupLayout::hybrid(&HYBRID_V1, &["hugetlb"])
}

pub(crate) fn ok(v: Value) -> Translation {
    translate(&spec(v), &ctx(hybrid())).expect("translates")
}

pub(crate) fn ok_with(v: Value, layout: CgroupLayout) -> Translation {
    translate(&spec(v), &ctx(layout)).expect("translates")
}

pub(crate) fn err(v: Value) -> TranslateError {
    translate(&spec(v), &ctx(hybrid())).expect_err("must fail")
}

pub(crate) fn err_with(v: Value, layout: CgroupLayout) -> TranslateError {
    translate(&spec(v), &ctx(layout)).expect_err("must fail")
}

/// Asserts the error names `field` (prefix match) and that its message does.
pub(crate) fn assert_field(e: &TranslateError, field: &str) {
    assert!(
        e.field().starts_with(field),
        "expected field {field}, got {e:?}"
    );
    assert!(
        e.to_string().contains(field),
        "message must name {field}: {e}"
    );
}

pub(crate) fn set(v: &mut Value, pointer: &str, new: Value) {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = new;
}

// ---------------------------------------------------------------- LxcConfig

#[test]
fn lxc_config_push_get_set_render() {
    let mut c = LxcConfig::new();
    c.push("lxc.mount.entry", "a b none bind 0 0").unwrap();
    c.push("lxc.init.cmd", "/x").unwrap();
    c.push("lxc.mount.entry", "c d none bind 0 0").unwrap();
    c.push("lxc.mount.auto", "").unwrap();
    assert_eq!(
        c.get("lxc.mount.entry"),
        vec!["a b none bind 0 0", "c d none bind 0 0"]
    );
    c.set("lxc.mount.entry", "e f none bind 0 0").unwrap();
    assert_eq!(c.get("lxc.mount.entry"), vec!["e f none bind 0 0"]);
    assert_eq!(
        c.entries()[0].0,
        "lxc.mount.entry",
        "set keeps the first position"
    );
    c.set("lxc.uts.name", "h").unwrap();
    assert_eq!(c.entries().last().unwrap().0, "lxc.uts.name");
    assert_eq!(c.remove("lxc.init.cmd"), 1);
    assert_eq!(
        c.render(),
        "lxc.mount.entry = e f none bind 0 0\nlxc.mount.auto = \nlxc.uts.name = h\n"
    );
}

#[test]
fn lxc_config_insert_before_first() {
    let mut c = LxcConfig::new();
    c.push("lxc.a", "1").unwrap();
    c.push("lxc.hook.mount", "/y hook").unwrap();
    c.insert_before_first("lxc.hook.mount", "/x hook").unwrap();
    c.insert_before_first("lxc.other", "2").unwrap();
    assert_eq!(c.get("lxc.hook.mount"), vec!["/x hook", "/y hook"]);
    assert_eq!(c.entries().last().unwrap().0, "lxc.other");
    assert!(c.insert_before_first("lxc.hook.mount", "a\nb").is_err());
}

#[test]
fn lxc_config_rejects_injection() {
    let mut c = LxcConfig::new();
    for v in ["a\nlxc.init.cmd = /evil", "a\rb", "a\0b"] {
        assert!(c.push("lxc.uts.name", v).is_err(), "{v:?}");
        assert!(c.set("lxc.uts.name", v).is_err(), "{v:?}");
    }
    for k in [
        "lxc.uts name",
        "lxc.a=b",
        "lxc.a\n",
        "uts.name",
        "lxc.",
        "lxc..a",
        "lxc.a/b",
        "",
    ] {
        assert!(c.push(k, "v").is_err(), "{k:?}");
    }
    assert!(c.entries().is_empty());
}

// ---------------------------------------------------------------- basics

#[test]
fn basics_and_init_config() {
    let t = ok(base());
    let l = &t.lxc;
    assert_eq!(l.get("lxc.rootfs.path"), vec!["dir:/b/rootfs"]);
    assert_eq!(l.get("lxc.rootfs.managed"), vec!["0"]);
    // root.readonly is the init's job: no mount hook.
    assert!(l.get("lxc.hook.mount").is_empty());
    assert!(t.init.readonly_root);
    assert!(l.get("lxc.rootfs.options").is_empty());
    assert_eq!(l.get("lxc.init.cmd"), vec![crate::init_config::INIT_PATH]);
    assert_eq!(l.get("lxc.init.uid"), vec!["0"]);
    assert_eq!(l.get("lxc.init.gid"), vec!["0"]);
    assert_eq!(l.get("lxc.uts.name"), vec!["box"]);
    assert_eq!(l.get("lxc.console.path"), vec!["none"]);
    assert_eq!(l.get("lxc.tty.max"), vec!["0"]);
    assert_eq!(l.get("lxc.log.file"), vec!["/run/x/lxc.log"]);
    assert_eq!(l.get("lxc.log.level"), vec!["ERROR"]);
    assert_eq!(l.get("lxc.apparmor.profile"), vec!["unconfined"]);
    assert_eq!(l.get("lxc.no_new_privs"), vec!["1"]);
    assert_eq!(l.get("lxc.prlimit.nofile"), vec!["1024:1024"]);
    assert_eq!(
        l.get("lxc.cgroup.dir.container"),
        vec!["proxmox-lxcri/ctr1"]
    );
    assert_eq!(
        l.get("lxc.cgroup.dir.monitor"),
        vec!["proxmox-lxcri/ctr1.monitor"]
    );
    for forbidden in [
        "lxc.cap.keep",
        "lxc.cap.drop",
        "lxc.seccomp.profile",
        "lxc.init.cwd",
        "lxc.environment",
        "lxc.init.groups",
    ] {
        assert!(
            l.get(forbidden).is_empty(),
            "{forbidden} must not be emitted"
        );
    }

    let i = &t.init;
    assert_eq!(i.args, vec!["/bin/sh", "-c", "echo hi"]);
    assert_eq!(i.env, vec!["PATH=/usr/bin:/bin", "TERM=xterm"]);
    assert_eq!(i.cwd, "/work");
    assert_eq!((i.uid, i.gid), (1000, 1000));
    assert_eq!(i.additional_gids, vec![10, 20]);
    assert_eq!(i.umask, Some(18));
    assert!(i.no_new_privileges);
    assert!(!i.terminal);
    let caps = i.capabilities.as_ref().unwrap();
    assert_eq!(caps.bounding, vec!["CAP_AUDIT_WRITE", "CAP_KILL"]);
    assert_eq!(caps.effective, vec!["CAP_KILL"]);
    assert!(caps.inheritable.is_empty());
    assert_eq!(i.masked_paths, vec!["/proc/kcore", "/sys/firmware"]);
    assert_eq!(i.readonly_paths, vec!["/proc/sys"]);
    assert_eq!(i.hook_state, Value::Null);
    assert_eq!(i.domainname, None);

    // Rendering round-trips every entry as one line.
    let text = l.render();
    assert_eq!(text.lines().count(), l.entries().len());
}

#[test]
fn no_hostname_means_no_uts_name_and_writable_root() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("hostname");
    set(&mut v, "/root/readonly", json!(false));
    let t = ok(v);
    assert!(t.lxc.get("lxc.uts.name").is_empty());
    assert!(t.lxc.get("lxc.hook.mount").is_empty());
}

// ---------------------------------------------------------------- mounts

#[test]
fn mounts_default_set() {
    let t = ok(base());
    let m = t.lxc.get("lxc.mount.entry");
    assert_eq!(
        m,
        vec![
            "proc proc proc create=dir 0 0",
            "shm dev/shm tmpfs nosuid,noexec,nodev,mode=1777,size=65536k,create=dir 0 0",
            "mqueue dev/mqueue mqueue nosuid,noexec,nodev,create=dir 0 0",
            "/run/x/exch dev/.lxcri none bind,create=dir 0 0",
            "/usr/bin/proxmox-lxcri dev/.lxcri-init none bind,create=file,ro 0 0",
        ]
    );
    // sysfs + cgroup through lxc.mount.auto (cgroup needs :force with a cgroupns).
    assert_eq!(t.lxc.get("lxc.mount.auto"), vec!["sys:ro cgroup:ro:force"]);
    assert_eq!(t.lxc.get("lxc.autodev"), vec!["1"]);
    assert_eq!(
        t.lxc.get("lxc.autodev.tmpfs.size"),
        vec![(65536u64 * 1024).to_string().as_str()]
    );
}

#[test]
fn sysfs_without_cgroup_mount_is_an_entry() {
    let mut v = base();
    v["mounts"].as_array_mut().unwrap().pop();
    let t = ok(v);
    assert_eq!(t.lxc.get("lxc.mount.auto"), vec![""]);
    assert!(t
        .lxc
        .get("lxc.mount.entry")
        .contains(&"sysfs sys sysfs nosuid,noexec,nodev,ro,create=dir 0 0"));
}

#[test]
fn bind_mounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("hosts"), "x").unwrap();
    let mut v = base();
    let mounts = v["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "rslave", "ro"]}));
    mounts.push(json!({"destination": "/etc//hosts", "source": dir.path().join("hosts"), "options": ["bind"]}));
    mounts.push(json!({"destination": "/x/./y", "type": "none", "source": "data", "options": ["bind", "private"]}));
    let mut c = ctx(hybrid());
    c.bundle = dir.path().to_path_buf();
    let t = translate(&spec(v), &c).unwrap();
    let e = t.lxc.get("lxc.mount.entry");
    let d = dir.path().display();
    assert!(
        e.contains(&format!("{d}/data data none rbind,rslave,ro,create=dir 0 0").as_str()),
        "{e:?}"
    );
    assert!(
        e.contains(&format!("{d}/hosts etc/hosts none bind,create=file 0 0").as_str()),
        "{e:?}"
    );
    assert!(
        e.contains(&format!("{d}/data x/y none bind,private,create=dir 0 0").as_str()),
        "{e:?}"
    );
    // The init mounts stay last.
    assert!(e[e.len() - 1].contains("dev/.lxcri-init"));

    let mut v = base();
    v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/d", "type": "bind", "source": "/nonexistent/xyz", "options": ["bind"]}));
    assert_field(&err(v), "mounts[7].source");
}

#[test]
fn mount_destination_checks() {
    for (dest, what) in [
        ("/a/../etc", ".."),
        ("relative", "absolute"),
        ("/", "root"),
        ("/a b", "whitespace"),
        ("/a\nlxc.init.cmd = /evil", "newline"),
        ("/a\\040b", "backslash"),
    ] {
        let mut v = base();
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
        let e = err(v);
        assert_field(&e, "mounts[7].destination");
        let _ = what;
    }
}

#[test]
fn mount_option_and_source_injection() {
    let hostile = [
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m\nlxc.init.cmd = /evil"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m 0 0"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["a,b"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["optional"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["create=file"]}),
        json!({"destination": "/t", "type": "bind", "source": "/tmp", "options": ["tmpcopyup"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "size=1m\nx"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
        json!({"destination": "/t", "type": "tmpfs", "source": "#tmpfs"}),
        json!({"destination": "/t", "type": "tmpfs", "source": "tmp\u{0}fs"}),
        json!({"destination": "/t", "type": "tmp fs", "source": "tmpfs"}),
        json!({"destination": "/t", "type": "tmpfs\n", "source": "tmpfs"}),
    ];
    for m in hostile {
        let mut v = base();
        v["mounts"].as_array_mut().unwrap().push(m.clone());
        let e = err(v);
        assert!(e.field().starts_with("mounts[7]"), "{m}: {e}");
    }
}

#[test]
fn tmpcopyup_becomes_a_staged_bind_in_place() {
    let mut v = base();
    v["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
               "options": ["rw", "rprivate", "nosuid", "nodev", "size=1m", "mode=755", "tmpcopyup"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["bind", "ro"]}),
    ]);
    let t = ok(v);
    let entries = t.lxc.get("lxc.mount.entry");
    let at = entries
        .iter()
        .position(|e| e.contains(" etc none "))
        .expect("a bind entry for /etc");
    assert_eq!(
        entries[at],
        "/run/x/copyup/0 etc none bind,rw,rprivate,nosuid,nodev,create=dir 0 0"
    );
    // In the spec's order: the /etc/hosts bind comes after, onto the tmpfs.
    assert!(entries[at + 1].contains(" etc/hosts none "), "{entries:?}");
    assert_eq!(
        t.copyups,
        vec![crate::config::Copyup {
            destination: "etc".into(),
            staging: "/run/x/copyup/0".into(),
            data: vec!["size=1m".into(), "mode=755".into()],
            flags: vec!["nosuid".into(), "nodev".into()],
        }]
    );
}

#[test]
fn dev_must_be_tmpfs_and_cgroup_only_at_sys_fs_cgroup() {
    let mut v = base();
    set(
        &mut v,
        "/mounts/1",
        json!({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}),
    );
    assert_field(&err(v), "mounts[1].destination");
    let mut v = base();
    set(&mut v, "/mounts/6/destination", json!("/cg"));
    assert_field(&err(v), "mounts[6].destination");
    let mut v = base();
    set(&mut v, "/mounts/6/options", json!(["rw"]));
    assert_eq!(
        ok(v).lxc.get("lxc.mount.auto"),
        vec!["sys:ro cgroup:rw:force"]
    );
}

#[test]
fn context_paths_are_checked() {
    let mut c = ctx(hybrid());
    c.exchange_dir = "/run/a b".into();
    assert_eq!(
        translate(&spec(base()), &c).unwrap_err().field(),
        "context.exchange_dir"
    );
    let mut c = ctx(hybrid());
    c.log_level = "ERROR\nlxc.x = y".into();
    assert_eq!(
        translate(&spec(base()), &c).unwrap_err().field(),
        "context.log_level"
    );
}

// ---------------------------------------------------------------- namespaces

#[test]
fn namespaces_clone_share_and_host() {
    let t = ok(base());
    assert_eq!(
        t.lxc.get("lxc.namespace.clone"),
        vec!["mnt pid uts ipc net cgroup"]
    );
    assert_eq!(t.lxc.get("lxc.net.0.type"), vec!["empty"]);
    assert!(
        t.lxc.get("lxc.namespace.keep").is_empty(),
        "keep conflicts with clone in LXC"
    );

    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}]),
    );
    v.as_object_mut().unwrap().remove("hostname");
    let t = ok(v);
    assert_eq!(t.lxc.get("lxc.namespace.clone"), vec!["mnt pid"]);
    assert_eq!(
        t.lxc.get("lxc.namespace.share.net"),
        vec!["/proc/self/ns/net"]
    );
    assert!(t.lxc.get("lxc.net.0.type").is_empty());

    let mut v = base();
    set(&mut v, "/linux/namespaces", json!([{"type": "mount"}]));
    v.as_object_mut().unwrap().remove("hostname");
    v["mounts"].as_array_mut().unwrap().pop(); // no cgroup mount
    assert_eq!(ok(v).lxc.get("lxc.net.0.type"), vec!["none"]);
}

#[test]
fn namespace_errors() {
    let mut v = base();
    set(&mut v, "/linux/namespaces", json!([{"type": "pid"}]));
    assert_field(&err(v), "linux.namespaces");
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount", "path": "/proc/self/ns/mnt"}]),
    );
    assert_field(&err(v), "linux.namespaces");
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "pid"}, {"type": "pid"}]),
    );
    assert_field(&err(v), "linux.namespaces[2].type");
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/nonexistent/ns"}]),
    );
    assert_field(&err(v), "linux.namespaces[2].path");
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "relative/ns"}]),
    );
    assert_field(&err(v), "linux.namespaces[2].path");
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/proc/../proc/self/ns/net"}]),
    );
    assert_field(&err(v), "linux.namespaces[2].path");
    // hostname without a new UTS namespace (as runc).
    let mut v = base();
    set(&mut v, "/linux/namespaces", json!([{"type": "mount"}]));
    assert_field(&err(v), "hostname");
}

#[test]
fn user_namespace_and_idmaps() {
    let mut v = base();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let t = ok(v);
    assert_eq!(
        t.lxc.get("lxc.idmap"),
        vec!["u 0 100000 65536", "g 0 200000 65536"]
    );
    assert!(t.lxc.get("lxc.namespace.clone")[0].contains("user"));

    let mut v = base();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    assert_field(&err(v), "linux.uidMappings");
    let mut v = base();
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}]);
    assert_field(&err(v), "linux.uidMappings");
}

#[test]
fn time_namespace_and_offsets() {
    let mut v = base();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    v["linux"]["timeOffsets"] = json!({"boottime": {"secs": 3600}, "monotonic": {"nanosecs": 500}});
    let t = ok(v);
    assert!(t.lxc.get("lxc.namespace.clone")[0].ends_with("time"));
    assert_eq!(t.lxc.get("lxc.time.offset.boot"), vec!["3600s"]);
    assert_eq!(t.lxc.get("lxc.time.offset.monotonic"), vec!["500ns"]);

    let mut v = base();
    v["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
    assert_field(&err(v), "linux.timeOffsets");
    let mut v = base();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    v["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1, "nanosecs": 1}});
    assert_field(&err(v), "linux.timeOffsets.boottime");
    let mut v = base();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    v["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
    assert_field(&err(v), "linux.timeOffsets.realtime");
}

// ---------------------------------------------------------------- the rest

#[test]
fn unsupported_fields_are_errors() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "linux.intelRdt",
            Box::new(|v| v["linux"]["intelRdt"] = json!({"closID": "x"})),
        ),
        (
            "linux.personality.flags",
            Box::new(|v| v["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["x"]})),
        ),
        (
            "linux.rootfsPropagation",
            Box::new(|v| v["linux"]["rootfsPropagation"] = json!("rshared")),
        ),
        (
            "linux.netDevices",
            Box::new(|v| v["linux"]["netDevices"] = json!({"eth1": {}})),
        ),
        (
            "linux.memoryPolicy",
            Box::new(|v| v["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"})),
        ),
        (
            // Handed over at start; a relative path names nothing.
            "linux.seccomp.listenerPath",
            Box::new(|v| {
                v["linux"]["seccomp"] =
                    json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "run/l.sock"})
            }),
        ),
        (
            "process.ioPriority",
            Box::new(|v| {
                v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 1})
            }),
        ),
        (
            "process.scheduler",
            Box::new(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_OTHER"})),
        ),
        (
            "process.commandLine",
            Box::new(|v| v["process"]["commandLine"] = json!("cmd.exe")),
        ),
        (
            "vm",
            Box::new(|v| v["vm"] = json!({"hypervisor": {"path": "/x"}, "kernel": {"path": "/k"}})),
        ),
        (
            "windows",
            Box::new(|v| v["windows"] = json!({"layerFolders": []})),
        ),
        (
            "mounts[7].uidMappings",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}], "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}));
            }),
        ),
    ];
    for (field, f) in cases {
        let mut v = base();
        f(&mut v);
        assert_field(&err(v), field);
    }
    // Mapped ones.
    let mut v = base();
    v["linux"]["personality"] = json!({"domain": "LINUX32"});
    v["linux"]["rootfsPropagation"] = json!("rprivate");
    assert_eq!(ok(v).lxc.get("lxc.arch"), vec!["i686"]);
    let mut v = base();
    v["linux"]["rootfsPropagation"] = json!("rslave");
    ok(v);
}

#[test]
fn annotations_never_reach_the_config() {
    let mut v = base();
    v["annotations"] = json!({"x\nlxc.init.cmd = /evil": "y\nlxc.init.cmd = /evil"});
    let t = ok(v);
    assert!(!t.lxc.render().contains("evil"));
    for (k, val) in t.lxc.entries() {
        assert!(!k.contains('\n') && !val.contains('\n'));
    }
}

/// A namespace path must be a namespace file of the listed type.
#[test]
fn namespace_paths_are_checked_for_their_type() {
    let with_net = |path: &str| {
        let mut v = base();
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": path}));
        v
    };
    ok(with_net("/proc/self/ns/net"));
    let e = err(with_net("/proc/self/ns/uts"));
    assert!(e.to_string().contains("another type than net"), "{e}");
    let e = err(with_net("/proc/self/status"));
    assert!(e.to_string().contains("not a namespace file"), "{e}");
}
