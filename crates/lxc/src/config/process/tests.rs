//! The process translator, through [`crate::config::translate`].
use std::path::PathBuf;

use serde_json::json;

use crate::config::tests::{assert_field, base, ctx, err, hybrid, ok, set, spec};
use crate::config::translate;

#[test]
fn process_is_required() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("process");
    assert_field(&err(v), "process");
    let mut v = base();
    set(&mut v, "/process/args", json!([]));
    assert_field(&err(v), "process.args");
    let mut v = base();
    set(&mut v, "/process/cwd", json!("relative"));
    assert_field(&err(v), "process.cwd");
    let mut v = base();
    set(&mut v, "/process/env", json!(["NOEQUALS"]));
    assert_field(&err(v), "process.env[0]");
    let mut v = base();
    v.as_object_mut().unwrap().remove("root");
    assert_field(&err(v), "root");
}

#[test]
fn capabilities_absent_means_none() {
    let mut v = base();
    v["process"].as_object_mut().unwrap().remove("capabilities");
    assert_eq!(ok(v).init.capabilities, None);
}

#[test]
fn start_container_hooks_copied_others_not() {
    let mut v = base();
    v["hooks"] = json!({
        "startContainer": [{"path": "/bin/hook", "args": ["hook", "a"], "timeout": 5}],
        "prestart": [{"path": "/bin/pre"}],
        "poststop": [{"path": "/bin/post"}]
    });
    let t = ok(v);
    assert_eq!(t.init.start_container_hooks.len(), 1);
    assert_eq!(
        t.init.start_container_hooks[0].path(),
        &PathBuf::from("/bin/hook")
    );
    let text = t.lxc.render();
    assert!(
        !text.contains("/bin/hook") && !text.contains("/bin/pre") && !text.contains("/bin/post")
    );
}

#[test]
fn hostname_and_domainname_injection() {
    for h in [
        "a\nlxc.init.cmd = /evil",
        "a b",
        "a\0",
        "a\r",
        &"x".repeat(65),
    ] {
        let mut v = base();
        v["hostname"] = json!(h);
        assert_field(&err(v), "hostname");
        let mut v = base();
        v["domainname"] = json!(h);
        assert_field(&err(v), "domainname");
    }
    let mut v = base();
    v["domainname"] = json!("example.org");
    assert_eq!(ok(v).init.domainname.as_deref(), Some("example.org"));
}

#[test]
fn sysctl_rlimits_oom() {
    let mut v = base();
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4096", "net/ipv4/conf/all/forwarding": "1"});
    v["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_CORE", "soft": 18446744073709551615u64, "hard": 18446744073709551615u64}
    ]);
    v["process"]["oomScoreAdj"] = json!(500);
    let t = ok(v);
    assert_eq!(t.lxc.get("lxc.sysctl.net.ipv4.ip_forward"), vec!["1"]);
    assert_eq!(t.lxc.get("lxc.sysctl.kernel.msgmax"), vec!["4096"]);
    assert_eq!(
        t.lxc.get("lxc.sysctl.net.ipv4.conf.all.forwarding"),
        vec!["1"]
    );
    assert_eq!(t.lxc.get("lxc.prlimit.nofile"), vec!["1024:4096"]);
    assert_eq!(t.lxc.get("lxc.prlimit.core"), vec!["unlimited:unlimited"]);
    assert_eq!(t.lxc.get("lxc.proc.oom_score_adj"), vec!["500"]);

    for (key, val) in [
        ("net.ipv4.ip_forward", "1\nlxc.init.cmd = /evil"),
        ("net.ipv4 .x", "1"),
        ("net.ipv4.x\n", "1"),
        ("vm.swappiness", "1"),   // not namespaced: would change the host
        ("kernel.hostname", "x"), // use hostname
        ("net/ipv4/conf/eth0.1/x", "1"),
        ("net..x", "1"),
    ] {
        let mut v = base();
        v["linux"]["sysctl"] = json!({key: val});
        let e = err(v);
        assert!(e.field().starts_with("linux.sysctl"), "{key}: {e}");
    }
    // net.* without a private netns
    let mut v = base();
    set(
        &mut v,
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "uts"}]),
    );
    v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    assert_field(&err(v), "linux.sysctl.net.ipv4.ip_forward");

    let mut v = base();
    v["process"]["oomScoreAdj"] = json!(5000);
    assert_field(&err(v), "process.oomScoreAdj");
    let mut v = base();
    v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}]);
    assert_field(&err(v), "process.rlimits[0]");
}

#[test]
fn security_labels() {
    let mut v = base();
    v["process"]["apparmorProfile"] = json!("docker-default");
    assert_field(&err(v.clone()), "process.apparmorProfile");
    let mut c = ctx(hybrid());
    c.apparmor_enabled = true;
    let t = translate(&spec(v), &c).unwrap();
    assert_eq!(t.lxc.get("lxc.apparmor.profile"), vec!["docker-default"]);
    let mut v = base();
    v["process"]["apparmorProfile"] = json!("p\nlxc.init.cmd = /evil");
    assert!(translate(&spec(v), &c).is_err());

    let mut v = base();
    v["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    assert_field(&err(v.clone()), "process.selinuxLabel");
    let mut c = ctx(hybrid());
    c.selinux_enabled = true;
    let t = translate(&spec(v), &c).unwrap();
    assert_eq!(
        t.lxc.get("lxc.selinux.context"),
        vec!["system_u:system_r:container_t:s0"]
    );
    let mut v = base();
    v["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    assert_field(&err(v), "linux.mountLabel");
}

#[test]
fn init_paths_validated() {
    for (ptr, val, field) in [
        (
            "/linux/maskedPaths",
            json!(["/proc/../etc"]),
            "linux.maskedPaths[0]",
        ),
        (
            "/linux/readonlyPaths",
            json!(["proc/sys"]),
            "linux.readonlyPaths[0]",
        ),
        ("/process/args", json!(["/bin/sh\u{0}x"]), "process.args[0]"),
        ("/process/env", json!(["A=b\u{0}"]), "process.env[0]"),
    ] {
        let mut v = base();
        set(&mut v, ptr, val);
        assert_field(&err(v), field);
    }
    let mut v = base();
    v["linux"]["devices"] =
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
    assert_eq!(ok(v).init.devices.len(), 1);
    for dev in [
        json!({"path": "/etc/fuse", "type": "c", "major": 10, "minor": 229}),
        json!({"path": "/dev/../etc/x", "type": "c", "major": 10, "minor": 229}),
        json!({"path": "/dev/x", "type": "a", "major": 10, "minor": 229}),
        json!({"path": "/dev/.lxcri/x", "type": "c", "major": 1, "minor": 3}),
        json!({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}),
    ] {
        let mut v = base();
        v["linux"]["devices"] = json!([dev]);
        assert!(err(v).field().starts_with("linux.devices[0]"));
    }
    let mut v = base();
    v["hooks"] = json!({"startContainer": [{"path": "relative/hook"}]});
    assert_field(&err(v), "hooks.startContainer[0].path");
}
