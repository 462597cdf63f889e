//! The pve-lxc engine against pve-emulator (real HTTPS, an API token, the
//! certificate pinned): the CT as Proxmox sees it, state following the CT,
//! and recovery from API faults and from a runtime killed at each step.
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::emulator::RuntimeConfig;
use support::Env;

fn config_of(env: &Env, vmid: u64) -> Value {
    env.emu().get(&format!("/nodes/pve/lxc/{vmid}/config"))["data"].clone()
}

/// Nothing at all on the node: no CT, no volume.
fn assert_node_empty(env: &Env) {
    assert_eq!(
        env.emu().ct_ids(),
        Vec::<u32>::new(),
        "CTs left on the node"
    );
    assert_eq!(
        env.emu().volumes(),
        Vec::<std::path::PathBuf>::new(),
        "volumes left"
    );
}

fn add_fault(env: &Env, rule: Value) {
    env.emu().request(
        "POST",
        "/_emulator/faults",
        &[],
        Some(&json!({ "rules": [rule] })),
    );
}

fn faults(env: &Env) -> Value {
    env.emu().get("/_emulator/faults")["data"].clone()
}

fn clear_faults(env: &Env) {
    env.emu().request("DELETE", "/_emulator/faults", &[], None);
}

#[test]
fn the_ct_carries_the_spec_and_is_gone_after_delete() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["sh", "-c", "echo hi-$(hostname); sleep 1000"], |s| {
        s["linux"]["resources"] = json!({
            "memory": {"limit": 268435456},
            "cpu": {"quota": 50000, "period": 100000, "cpus": "0-1", "shares": 512}
        });
        s["annotations"] = json!({
            "io.proxmox-lxcri.net.ip": "10.251.7.2/24",
            "io.proxmox-lxcri.net.gw": "10.251.7.1"
        });
    });
    env.must_create("web", &b);
    let vmid = env.vmid("web");
    let conf = config_of(&env, vmid);
    assert_eq!(conf["memory"].as_u64(), Some(256), "{conf}");
    assert_eq!(conf["cores"].as_u64(), Some(2), "{conf}");
    assert_eq!(conf["cpuunits"].as_u64(), Some(512), "{conf}");
    assert_eq!(
        conf["cpulimit"].to_string().trim_matches('"'),
        "0.5",
        "{conf}"
    );
    assert_eq!(conf["unprivileged"].as_u64(), Some(1), "{conf}");
    assert_eq!(conf["hostname"], "lxcri-test");
    let net0 = conf["net0"].as_str().unwrap();
    assert!(
        net0.contains(&format!("bridge={}", env.emu().bridge().unwrap())),
        "{net0}"
    );
    assert!(
        net0.contains("ip=10.251.7.2/24") && net0.contains("gw=10.251.7.1"),
        "{net0}"
    );
    let tags = conf["tags"].as_str().unwrap();
    assert!(
        tags.contains("proxmox-lxcri") && tags.contains("lxcri-web"),
        "{tags}"
    );
    assert!(conf["description"]
        .as_str()
        .unwrap()
        .contains("container web "));

    // Created: the CT runs (our init waits), the process has not started.
    let status = env
        .emu()
        .get(&format!("/nodes/pve/lxc/{vmid}/status/current"))["data"]
        .clone();
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(env.stdout_of("web"), "");
    env.ok(&["start", "web"]);
    let t = Instant::now();
    while env.stdout_of("web").is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no output from the CT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(env.stdout_of("web"), "hi-lxcri-test\n");
    assert_eq!(env.status("web"), "running");
    // Its NIC is on the bridge.
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", env.emu().bridge().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&links.stdout).contains(&format!("veth{vmid}i0")),
        "{links:?}"
    );
    // `update` changes the cgroup and the CT's options alike.
    env.ok(&[
        "update",
        "--memory",
        "536870912",
        "--memory-swap",
        "536870912",
        "--cpu-quota",
        "150000",
        "web",
    ]);
    let conf = config_of(&env, vmid);
    assert_eq!(conf["memory"].as_u64(), Some(512), "{conf}");
    assert_eq!(
        conf["cpulimit"].to_string().trim_matches('"'),
        "1.5",
        "{conf}"
    );
    env.ok(&["kill", "web", "KILL"]);
    env.wait_status("web", "stopped");
    env.ok(&["delete", "web"]);
    env.assert_gone("web");
    assert_node_empty(&env);

    // Each operation's API requests are counted, and there are few.
    let events = std::fs::read_to_string(env.root.join("runtime/events.log")).unwrap();
    let calls: Vec<(String, u64)> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["operation"].as_str().unwrap().to_string(),
                v["api_calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let of = |op: &str| calls.iter().find(|(o, _)| o == op).unwrap().1;
    // nextid, the template check (first create of this root), POST, its
    // task, config, volume, start, its task: 8 (+1 upload and its task
    // when the template is new, +1 task poll on a slow machine).
    assert!((8..=12).contains(&of("create")), "{calls:?}");
    assert_eq!(of("start"), 0, "{calls:?}");
    assert_eq!(of("kill"), 0, "{calls:?}");
    // Still ours?, DELETE and its task (one more poll when the machine is slow).
    assert!((3..=5).contains(&of("delete")), "{calls:?}");
}

#[test]
fn a_ct_stopped_from_proxmox_shows_stopped() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("s1", &b);
    env.ok(&["start", "s1"]);
    assert_eq!(env.status("s1"), "running");
    let vmid = env.vmid("s1");
    let r = env
        .emu()
        .post(&format!("/nodes/pve/lxc/{vmid}/status/stop"), &[]);
    assert!(r["data"].as_str().unwrap_or("").starts_with("UPID:"), "{r}");
    env.wait_status("s1", "stopped");
    // A task of someone else's still holds the CT's lock: delete waits for
    // it to go, then destroys.
    add_fault(
        &env,
        json!({"method": "DELETE", "path": "^/nodes/pve/lxc/[0-9]+$", "action": "lock", "message": "backup", "count": 1}),
    );
    env.ok(&["delete", "s1"]);
    assert_eq!(faults(&env)[0]["hits"].as_u64(), Some(1));
    env.assert_gone("s1");
    assert_node_empty(&env);
}

#[test]
fn bad_pve_input_is_refused_before_anything_is_made() {
    let env = Env::with_pve();
    for (i, (k, v, why)) in [
        ("io.proxmox-lxcri.net.ip", "10.0.0.2/24,bridge=evil", "net0"),
        ("io.proxmox-lxcri.net.vlan", "5000", "VLAN"),
        ("io.proxmox-lxcri.features", "mknod=1", "unknown feature"),
        ("io.proxmox-lxcri.storage.quota", "8 G", "size"),
        ("io.proxmox-lxcri.privileged", "maybe", "true or false"),
    ]
    .into_iter()
    .enumerate()
    {
        let b = env.bundle(&format!("b{i}"), &["true"], |s| {
            s["annotations"] = json!({ k: v });
        });
        let id = format!("bad{i}");
        let o = env.create(&id, &b);
        assert!(!o.status.success(), "{k}={v} was accepted");
        let log = env.log_of(&id);
        assert!(log.contains(why), "{k}={v}: {log}");
        env.assert_gone(&id);
        assert_node_empty(&env);
    }
}

/// An API failure at each step of create: a clear error, nothing left.
#[test]
fn an_api_error_at_each_create_step_leaves_nothing() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["true"], |_| {});
    let steps = [
        json!({"method": "GET", "path": "^/nodes/pve/storage/local/content$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/upload$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/upload$", "action": "fail_task", "message": "upload broke", "count": 1}),
        json!({"method": "GET", "path": "^/cluster/nextid$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/lxc$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/lxc$", "action": "fail_task", "message": "disk full", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/lxc$", "action": "drop", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/lxc/[0-9]+/config$", "action": "error", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/storage/local/content/.+", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/status/start$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/status/start$", "action": "fail_task", "message": "start broke", "count": 1}),
    ];
    for (i, rule) in steps.iter().enumerate() {
        // The template steps need a runtime that has not cached it yet.
        let _ = std::fs::remove_file(env.root.join("pve-template"));
        if i == 0 {
            assert!(!env.root.join("pve-template").exists());
        }
        add_fault(&env, rule.clone());
        let id = format!("f{i}");
        let o = env.create(&id, &b);
        let hits = faults(&env)[0]["hits"].as_u64().unwrap_or(0);
        clear_faults(&env);
        assert!(!o.status.success(), "step {rule}: create succeeded");
        assert!(hits >= 1, "step {rule}: the fault was never hit");
        let log = env.log_of(&id);
        assert!(
            log.contains("Proxmox") || log.contains("broke") || log.contains("disk full"),
            "step {rule}: unclear error: {log}"
        );
        env.assert_gone(&id);
        assert_node_empty(&env);
    }
    // And with the faults gone, the same bundle works.
    env.must_create("ok", &b);
    env.ok(&["delete", "ok"]);
    env.assert_gone("ok");
    assert_node_empty(&env);
}

/// Another node takes the VMID between nextid and create: a new VMID, one CT.
#[test]
fn a_taken_vmid_is_retried_and_never_duplicated() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["true"], |_| {});
    add_fault(
        &env,
        json!({"method": "POST", "path": "^/nodes/pve/lxc$", "action": "error",
               "status": 500, "message": "CT 100 already exists on node 'pve2'", "count": 1}),
    );
    env.must_create("r", &b);
    assert_eq!(env.emu().ct_ids().len(), 1);
    env.ok(&["delete", "r"]);
    assert_node_empty(&env);
}

/// The runtime SIGKILLed while each API request of create is in flight:
/// `gc` then removes the state, the CT, its volume and our monitor.
#[test]
fn sigkill_at_each_create_step_then_gc_leaves_nothing() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["true"], |_| {});
    // Cache the template first, so every step below is a create's own.
    env.must_create("warm", &b);
    env.ok(&["delete", "warm"]);
    let steps = [
        ("GET", "^/cluster/nextid$"),
        ("POST", "^/nodes/pve/lxc$"),
        ("GET", "^/nodes/pve/lxc/[0-9]+/config$"),
        ("GET", "^/nodes/pve/storage/local/content/.+"),
        ("POST", "/status/start$"),
    ];
    for (i, (method, path)) in steps.iter().enumerate() {
        add_fault(
            &env,
            json!({"method": method, "path": path, "action": "latency", "ms": 1500, "count": 1}),
        );
        let id = format!("k{i}");
        let mut child = env
            .base()
            .args(["create", "--bundle", b.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while faults(&env)[0]["hits"].as_u64().unwrap_or(0) == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "step {path} never reached"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Let the request the runtime no longer waits for finish on the node.
        std::thread::sleep(Duration::from_millis(2000));
        clear_faults(&env);
        let out = env.ok(&["gc"]);
        // The CT may still have been in its create task; a second gc gets it.
        if !env.emu().ct_ids().is_empty() {
            std::thread::sleep(Duration::from_millis(1000));
            env.ok(&["gc"]);
        }
        env.assert_gone(&id);
        assert_node_empty(&env);
        let _ = out;
    }
}

/// On a zfspool storage with `[storage] kind = "zfs"`, the CT's own volume
/// (`subvol-<vmid>-disk-0`, which Proxmox sees and snapshots) is a clone of
/// the image cached under `zfs_parent`: the second CT of a bundle costs no
/// copy. Unprivileged, so the image is shifted by 100000.
#[test]
fn on_zfs_the_ct_volume_is_a_clone_of_the_cached_image() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use storage::testpool::{run, TestPool};
    // The pool first: locals drop in reverse, so even when the test fails
    // the env (emulator, CTs) goes before the pool is destroyed.
    let pool = TestPool::new(2 << 30).expect("a zfs-fuse test pool");
    let mut env = Env::new();
    // The CT's unprivileged root must reach its rootfs under the pool.
    for d in [
        pool.mountpoint().parent().unwrap().to_path_buf(),
        pool.mountpoint(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    run("zfs", &["create", &format!("{}/pve", pool.name)]).unwrap();
    let emu = support::emulator::builder(env.tmp.path())
        .args(&["--storage", &format!("tank=zfspool:{}/pve", pool.name)])
        .start();
    let cfg = env.tmp.path().join("config.toml");
    emu.write_config_with(
        &cfg,
        "pve-lxc",
        "tank",
        &format!(
            "[storage]\nkind = \"zfs\"\nzfs_parent = \"{}/lxcri\"\nlock_dir = \"{}\"\nproperties = {{ compression = \"on\" }}\n",
            pool.name,
            env.tmp.path().join("locks").display()
        ),
    );
    env.config = Some(cfg);
    env.pve = Some(emu);

    let b = env.bundle("b", &["sh", "-c", "id -u; cat /etc/group | head -1"], |s| {
        s["annotations"] = json!({"io.proxmox-lxcri.storage.quota": "64M"});
    });
    env.must_create("z1", &b);
    env.must_create("z2", &b);
    let origin_of = |id: &str| {
        let ds = format!("{}/pve/subvol-{}-disk-0", pool.name, env.vmid(id));
        let origin = run("zfs", &["get", "-H", "-o", "value", "origin", &ds]).unwrap();
        let refquota = run("zfs", &["get", "-H", "-o", "value", "refquota", &ds]).unwrap();
        (ds, origin.trim().to_string(), refquota.trim().to_string())
    };
    let (ds1, o1, q1) = origin_of("z1");
    let (_, o2, _) = origin_of("z2");
    assert!(
        o1.starts_with(&format!("{}/lxcri/images/", pool.name)) && o1.ends_with("@image"),
        "{ds1}: origin {o1}"
    );
    assert_eq!(o1, o2, "both CTs are clones of one image");
    assert_eq!(q1, "64M", "{ds1}: refquota");
    // Shifted owners: root of the CT is host uid 100000.
    let mp = run("zfs", &["get", "-H", "-o", "value", "mountpoint", &ds1]).unwrap();
    let md = std::fs::metadata(std::path::Path::new(mp.trim()).join("bin/busybox")).unwrap();
    assert_eq!(md.uid(), 100_000);

    env.ok(&["start", "z1"]);
    env.wait_status("z1", "stopped");
    assert_eq!(env.stdout_of("z1"), "0\nroot:x:0:\n");
    // The image stays while Proxmox's volumes are its clones.
    env.ok(&["image", "gc"]);
    assert!(
        pool.all().contains(&o1),
        "image gc took {o1} from under its clones"
    );
    for id in ["z1", "z2"] {
        env.ok(&["delete", "--force", id]);
        env.assert_gone(id);
    }
    env.ok(&["image", "gc"]);
    let left: Vec<String> = pool
        .all()
        .into_iter()
        .filter(|d| d.contains("/pve/") || d.contains("/images/"))
        .collect();
    assert!(left.is_empty(), "datasets left: {left:?}");
    assert_node_empty(&env);
    // The emulator goes before the pool.
    env.pve = None;
}

/// A CT destroyed from the Proxmox side whose VMID went to another guest:
/// `delete` of the container must not destroy that guest.
#[test]
fn delete_never_destroys_a_guest_that_reused_the_vmid() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("mine", &b);
    let vmid = env.vmid("mine").to_string();
    let wait = |r: Value| {
        let upid = r["data"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string();
        let enc: String = upid
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let t = Instant::now();
        loop {
            let st = env.emu().get(&format!("/nodes/pve/tasks/{enc}/status"));
            if st["data"]["status"] == "stopped" {
                assert_eq!(st["data"]["exitstatus"], "OK", "{st}");
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "task {upid} hangs");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // An admin destroys it in the UI, then makes another CT with that VMID.
    wait(env.emu().request(
        "DELETE",
        &format!("/nodes/pve/lxc/{vmid}?force=1&purge=1"),
        &[],
        None,
    ));
    env.wait_status("mine", "stopped");
    wait(env.emu().post(
        "/nodes/pve/lxc",
        &[
            ("vmid", vmid.as_str()),
            ("ostemplate", "local:vztmpl/proxmox-lxcri-base.tar"),
            ("hostname", "someone-else"),
        ],
    ));
    env.ok(&["delete", "--force", "mine"]);
    env.assert_gone("mine");
    let conf = config_of(&env, vmid.parse().unwrap());
    assert_eq!(
        conf["hostname"], "someone-else",
        "the other guest was destroyed: {conf}"
    );
    wait(env.emu().request(
        "DELETE",
        &format!("/nodes/pve/lxc/{vmid}?purge=1"),
        &[],
        None,
    ));
    assert_node_empty(&env);
}

/// A token secret others can read is refused at create, before any request.
#[test]
fn a_readable_token_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_pve();
    let secret = env.config.as_ref().unwrap().with_file_name("token-secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let b = env.bundle("b", &["true"], |_| {});
    let o = env.create("leaky", &b);
    assert!(!o.status.success());
    let log = env.log_of("leaky");
    assert!(
        log.contains("chmod 600") && log.contains("token_secret_file"),
        "{log}"
    );
    env.assert_gone("leaky");
    assert_node_empty(&env);
}

/// The Proxmox API restarting (pveproxy restarts, or the emulator here)
/// leaves running containers alone; the same certificate is pinned after.
#[test]
fn containers_outlive_an_api_restart() {
    let mut env = Env::with_pve();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("r1", &b);
    env.ok(&["start", "r1"]);
    let fingerprint = env.emu().fingerprint().to_string();
    env.pve.as_mut().unwrap().restart();
    assert_eq!(
        env.emu().fingerprint(),
        fingerprint,
        "the node certificate changed"
    );
    let cfg = env.config.clone().unwrap();
    env.emu().write_config(&cfg, "pve-lxc");
    assert_eq!(env.status("r1"), "running");
    env.ok(&["kill", "r1", "KILL"]);
    env.wait_status("r1", "stopped");
    env.ok(&["delete", "r1"]);
    env.assert_gone("r1");
    assert_node_empty(&env);
}

/// The API away for a while: `state` and `kill` need none; `delete` fails
/// clearly and keeps the state, and succeeds once the API is back.
#[test]
fn an_api_outage_is_survived() {
    let env = Env::with_pve();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("o1", &b);
    env.ok(&["start", "o1"]);
    add_fault(
        &env,
        json!({"method": "*", "path": "^/", "action": "error", "status": 503, "message": "pveproxy restarting"}),
    );
    assert_eq!(env.status("o1"), "running");
    env.ok(&["kill", "o1", "KILL"]);
    env.wait_status("o1", "stopped");
    let err = env.fails(&["delete", "o1"]);
    assert!(err.contains("Proxmox API") && err.contains("503"), "{err}");
    assert_eq!(env.status("o1"), "stopped", "the state is kept for a retry");
    assert_eq!(env.emu().ct_ids().len(), 1);
    clear_faults(&env);
    env.ok(&["delete", "o1"]);
    env.assert_gone("o1");
    assert_node_empty(&env);
}

/// A bind mount of a host directory becomes the CT's `mp0` when the runtime
/// logs in as root@pam (Proxmox refuses bind mount points to tokens); with
/// a token it stays a raw LXC mount entry. Either way the container sees it.
#[test]
fn bind_mounts_are_mount_points_for_root_pam() {
    use std::os::unix::fs::PermissionsExt;
    for root_pam in [true, false] {
        let mut env = Env::new();
        let emu = support::emulator::builder(env.tmp.path())
            .root_password("pw-for-the-test")
            .start();
        let cfg = env.tmp.path().join("config.toml");
        if root_pam {
            emu.write_config_root_pam(&cfg);
        } else {
            emu.write_config(&cfg, "pve-lxc");
        }
        env.config = Some(cfg);
        env.pve = Some(emu);
        let host = env.tmp.path().join("shared");
        std::fs::create_dir(&host).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(host.join("hello"), "hello from the host\n").unwrap();
        let b = env.bundle("b", &["cat", "/data/hello"], |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/data", "type": "bind",
                "source": host.to_str().unwrap(), "options": ["rbind", "ro"]
            }));
        });
        env.must_create("m1", &b);
        let conf = config_of(&env, env.vmid("m1"));
        let raw = conf["lxc"].to_string();
        if root_pam {
            let mp0 = conf["mp0"]
                .as_str()
                .unwrap_or_else(|| panic!("no mp0: {conf}"));
            assert!(
                mp0.contains(&format!("{},", host.display()))
                    && mp0.contains("mp=/data")
                    && mp0.contains("ro=1"),
                "{mp0}"
            );
            assert!(!raw.contains(host.to_str().unwrap()), "also raw: {raw}");
        } else {
            assert!(conf.get("mp0").is_none(), "{conf}");
            assert!(raw.contains(host.to_str().unwrap()), "not raw: {raw}");
        }
        env.ok(&["start", "m1"]);
        env.wait_status("m1", "stopped");
        assert_eq!(
            env.stdout_of("m1"),
            "hello from the host\n",
            "root@pam: {root_pam}"
        );
        env.ok(&["delete", "m1"]);
        env.assert_gone("m1");
        assert_node_empty(&env);
        assert!(host.join("hello").exists(), "the host directory must stay");
    }
}

/// A CT start that LXC itself refuses: `create` fails with the start task's
/// log lines (LXC's reasons), not only Proxmox's "startup for container
/// 'N' failed", and leaves nothing behind.
#[test]
fn a_failed_start_task_shows_its_log_lines() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_pve();
    let b = env.bundle("b", &["true"], |_| {});
    // The CTs' root (host uid 100000) can no longer pass the volumes' dir,
    // so LXC cannot reach the rootfs (the emulator checked it at start).
    let images = env.emu().data_dir().join("storage/images");
    let mode = std::fs::metadata(&images).unwrap().permissions().mode();
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = env.create("nostart", &b);
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(mode)).unwrap();
    assert!(!o.status.success(), "create succeeded");
    let log = env.log_of("nostart");
    println!("create's error: {log}");
    assert!(log.contains("startup for container"), "{log}");
    let lines = log
        .split_once("task log: ")
        .map(|x| x.1)
        .unwrap_or_else(|| panic!("no task log lines: {log}"));
    assert!(lines.contains("Failed to"), "LXC's lines: {log}");
    assert!(!lines.contains("TASK ERROR"), "{log}");
    env.assert_gone("nostart");
    assert_node_empty(&env);
}

/// A node keeps only its list of raw keys (the emulator drops the rest, as
/// pve-container does): the runtime writes only those, carries the others
/// itself, and every spec setting still shows inside the container. Without
/// an AppArmor profile in the spec the CT keeps the node's generated one
/// (this kernel has no AppArmor, so that is checked in the config, not
/// enforced).
#[test]
fn every_spec_setting_shows_inside_with_only_the_keys_a_node_keeps() {
    let env = Env::with_pve();
    let script = "cat /proc/self/oom_score_adj; \
        cat /proc/sys/net/ipv4/ip_forward; \
        cat /proc/sys/kernel/msgmax; \
        grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status | tr -d ' \t'; \
        ulimit -n; ulimit -Hn; \
        wc -c < /proc/cpuinfo; wc -c < /proc/version; \
        (touch /t && echo touch-ok) 2>/dev/null || echo touch-failed; \
        (mkdir /m && echo mkdir-ok) 2>/dev/null || echo mkdir-blocked; \
        (echo 0 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo sys-rw || echo sys-ro";
    let b = env.bundle("b", &["sh", "-c", script], |s| {
        s["process"]["oomScoreAdj"] = json!(123);
        s["process"]["noNewPrivileges"] = json!(true);
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
        let caps = json!(["CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE"]);
        s["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
        s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321"});
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
        s["linux"]["maskedPaths"] = json!(["/proc/cpuinfo"]);
        s["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    });
    env.must_create("c", &b);
    let vmid = env.vmid("c");
    let conf_file = env
        .emu()
        .data_dir()
        .join(format!("nodes/pve/lxc/{vmid}.conf"));
    let conf = std::fs::read_to_string(&conf_file).unwrap();
    let raw: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("lxc."))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert!(raw.contains(&"lxc.init.cmd"), "{conf}");
    for k in &raw {
        assert!(
            proxmox_lxcri_pve_raw_keys::kept(k),
            "{k} would be dropped by a node:\n{conf}"
        );
    }
    assert!(!conf.contains("unconfined"), "{conf}");
    env.ok(&["start", "c"]);
    env.wait_status("c", "stopped");
    // /proc/cpuinfo masked (empty), /proc/version not (its length here).
    let version = std::fs::read("/proc/version").unwrap().len();
    assert_eq!(
        env.stdout_of("c"),
        format!(
            "123\n1\n4321\nCapEff:0000000000000023\nNoNewPrivs:1\nSeccomp:2\n\
             321\n654\n0\n{version}\ntouch-ok\nmkdir-blocked\nsys-ro\n"
        ),
        "stderr: {}",
        env.stderr_of("c")
    );
    env.ok(&["delete", "c"]);
    assert_node_empty(&env);
}

/// A create that must fail: its error (create logs to a file).
fn create_fails(env: &Env, id: &str, bundle: &std::path::Path) -> String {
    let o = env.create(id, bundle);
    assert!(!o.status.success(), "create {id} should fail");
    format!("{}{}", String::from_utf8_lossy(&o.stderr), env.log_of(id))
}

/// A configured network: each CT's net0 gets the network's bridge, an
/// address leased from its range with the gateway, a pinned MAC, the MTU,
/// Proxmox's firewall for port security and the network's DNS. Leases are
/// unique, released by delete and by a failed create, refused clearly when
/// the range is exhausted (leaving nothing), and reclaimed by gc once their
/// container is gone.
#[test]
fn containers_on_a_configured_network_get_leased_addresses() {
    let mut env = Env::with_pve();
    let cfg = env.tmp.path().join("net.toml");
    env.emu().write_config_with(
        &cfg,
        "pve-lxc",
        "local",
        &format!(
            "[network.blue]\nbridge = \"{}\"\nsubnet = \"10.252.0.0/24\"\n\
             gateway = \"10.252.0.1\"\nrange = \"10.252.0.10-10.252.0.11\"\nmtu = 1400\n\
             dns = [\"10.252.0.1\"]\nsearch = [\"blue.test\"]\n",
            env.emu().bridge().unwrap()
        ),
    );
    env.config = Some(cfg);
    let on_blue = |env: &Env, name: &str, extra: &[(&str, &str)]| {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.bundle(name, &["sleep", "1000"], move |s| {
            let mut a = json!({"io.proxmox-lxcri.network": "blue"});
            for (k, v) in extra {
                a[k] = json!(v);
            }
            s["annotations"] = a;
        })
    };
    let leases = |env: &Env| -> Vec<Value> {
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "blue"])).unwrap()
    };

    let b1 = on_blue(&env, "b1", &[]);
    env.must_create("c1", &b1);
    let conf = config_of(&env, env.vmid("c1"));
    let net0 = conf["net0"].as_str().unwrap();
    for part in [
        format!("bridge={}", env.emu().bridge().unwrap()),
        "ip=10.252.0.10/24".into(),
        "gw=10.252.0.1".into(),
        "mtu=1400".into(),
        "firewall=1".into(),
        "hwaddr=02:".into(),
    ] {
        assert!(net0.contains(&part), "{part} in {net0}");
    }
    assert_eq!(conf["nameserver"], "10.252.0.1", "{conf}");
    assert_eq!(conf["searchdomain"], "blue.test", "{conf}");
    let l = leases(&env);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["owner"]["id"], "c1");
    assert!(
        net0.to_ascii_lowercase()
            .contains(l[0]["mac"].as_str().unwrap()),
        "{net0} {l:?}"
    );

    let b2 = on_blue(&env, "b2", &[]);
    env.must_create("c2", &b2);
    assert!(config_of(&env, env.vmid("c2"))["net0"]
        .as_str()
        .unwrap()
        .contains("ip=10.252.0.11/24"));
    // Exhausted: a clear error, nothing made.
    let b3 = on_blue(&env, "b3", &[]);
    let err = create_fails(&env, "c3", &b3);
    assert!(err.contains("no free address"), "{err}");
    env.assert_gone("c3");
    assert_eq!(env.emu().ct_ids().len(), 2);
    assert_eq!(leases(&env).len(), 2);
    // A fixed address inside the subnet, outside the range, is fine; a
    // taken one is refused.
    let b4 = on_blue(&env, "b4", &[("io.proxmox-lxcri.net.ip", "10.252.0.50")]);
    env.must_create("c4", &b4);
    assert!(config_of(&env, env.vmid("c4"))["net0"]
        .as_str()
        .unwrap()
        .contains("ip=10.252.0.50/24"));
    let b5 = on_blue(&env, "b5", &[("io.proxmox-lxcri.net.ip", "10.252.0.50")]);
    let err = create_fails(&env, "c5", &b5);
    assert!(err.contains("leased to another container"), "{err}");
    env.assert_gone("c5");
    // Unknown network and a conflicting annotation: refused up front.
    let bad = env.bundle("bad", &["true"], |s| {
        s["annotations"] = json!({"io.proxmox-lxcri.network": "red"});
    });
    let err = create_fails(&env, "c6", &bad);
    assert!(
        err.contains("red") && err.contains("is not configured"),
        "{err}"
    );
    let b7 = on_blue(&env, "b7", &[("io.proxmox-lxcri.net.bridge", "vmbr9")]);
    let err = create_fails(&env, "c7", &b7);
    assert!(err.contains("set by network"), "{err}");
    assert_eq!(env.emu().ct_ids().len(), 3);

    // delete releases: the next container gets the address back.
    env.ok(&["delete", "--force", "c1"]);
    assert_eq!(leases(&env).len(), 2);
    env.must_create("c3", &b3);
    assert!(config_of(&env, env.vmid("c3"))["net0"]
        .as_str()
        .unwrap()
        .contains("ip=10.252.0.10/24"));
    // A failed create (the API refuses the CT) releases its lease.
    env.ok(&["delete", "--force", "c3"]);
    add_fault(
        &env,
        json!({"method": "POST", "path": "^/nodes/[^/]+/lxc$", "action": "error",
               "status": 500, "message": "boom", "count": 1}),
    );
    create_fails(&env, "c8", &b3);
    clear_faults(&env);
    env.assert_gone("c8");
    assert_eq!(leases(&env).len(), 2);
    // A container whose state vanished (a crash, a wiped root): gc frees
    // its lease with its CT.
    std::fs::remove_dir_all(env.root.join("containers/c2")).unwrap();
    let out = env.ok(&["gc", "--dry-run"]);
    assert!(out.contains("lease blue/c2"), "{out}");
    env.ok(&["gc"]);
    let l = leases(&env);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["owner"]["id"], "c4");
    let out = env.ok(&["network", "list", "-f", "json"]);
    let nets: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nets[0]["name"], "blue");
    assert_eq!(nets[0]["leases"], 1);
    let err = env.fails(&["network", "release", "blue", "c4"]);
    assert!(err.contains("exists"), "{err}");
    env.ok(&["delete", "--force", "c4"]);
    assert!(leases(&env).is_empty());
    assert_node_empty(&env);
}

/// Port security on pve-lxc is Proxmox's own firewall: the runtime turns on
/// the CT's firewall with ipfilter and macfilter and puts the lease into the
/// `ipfilter-net0` IP set; once the datacenter firewall is on (the admin's
/// switch), a CT that takes another address or MAC cannot send.
#[test]
fn port_security_is_proxmoxs_firewall() {
    let mut env = Env::with_pve();
    let n = std::process::id() % 200 + 20;
    let cfg = env.tmp.path().join("net.toml");
    env.emu().write_config_with(
        &cfg,
        "pve-lxc",
        "local",
        &format!(
            "[network.sec]\nbridge = \"{}\"\nsubnet = \"10.249.{n}.0/24\"\n\
             gateway = \"10.249.{n}.1\"\n",
            env.emu().bridge().unwrap()
        ),
    );
    env.config = Some(cfg);
    let b = env.bundle("b", &["sleep", "1000"], |s| {
        let caps = json!(["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_KILL"]);
        s["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
        s["annotations"] = json!({"io.proxmox-lxcri.network": "sec"});
    });
    for id in ["fw-a", "fw-b"] {
        env.must_create(id, &b);
        env.ok(&["start", id]);
    }
    let vmid = env.vmid("fw-a");
    let fw = env
        .emu()
        .get(&format!("/nodes/pve/lxc/{vmid}/firewall/options"))["data"]
        .clone();
    assert_eq!(
        (&fw["enable"], &fw["ipfilter"], &fw["macfilter"]),
        (&json!(1), &json!(1), &json!(1)),
        "{fw}"
    );
    let set = env.emu().get(&format!(
        "/nodes/pve/lxc/{vmid}/firewall/ipset/ipfilter-net0"
    ))["data"]
        .clone();
    assert_eq!(set[0]["cidr"], format!("10.249.{n}.2"), "{set}");
    assert!(config_of(&env, vmid)["net0"]
        .as_str()
        .unwrap()
        .contains("firewall=1"));
    // The datacenter firewall: the admin's switch.
    env.emu()
        .request("PUT", "/cluster/firewall/options", &[("enable", "1")], None);
    let in_a = |args: &[&str]| {
        let mut v = vec!["exec", "fw-a"];
        v.extend_from_slice(args);
        env.cmd(&v).status.success()
    };
    let peer = format!("10.249.{n}.3");
    let ping = || in_a(&["ping", "-c", "1", "-W", "2", &peer]);
    assert!(ping(), "the lease's address gets through");
    let (mine, forged) = (format!("10.249.{n}.2/24"), format!("10.249.{n}.77/24"));
    assert!(in_a(&["ip", "addr", "del", &mine, "dev", "eth0"]));
    assert!(in_a(&["ip", "addr", "add", &forged, "dev", "eth0"]));
    assert!(!ping(), "a forged address must not get through");
    assert!(in_a(&["ip", "addr", "del", &forged, "dev", "eth0"]));
    assert!(in_a(&["ip", "addr", "add", &mine, "dev", "eth0"]));
    assert!(ping(), "back on its lease");
    let mac = env.ok(&["exec", "fw-a", "cat", "/sys/class/net/eth0/address"]);
    assert!(in_a(&[
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        "02:00:00:00:ee:02"
    ]));
    assert!(!ping(), "a forged MAC must not get through");
    assert!(in_a(&["ip", "link", "set", "eth0", "address", mac.trim()]));
    assert!(ping(), "back on its MAC");
    for id in ["fw-a", "fw-b"] {
        env.ok(&["delete", "--force", id]);
    }
    assert!(!env
        .emu()
        .data_dir()
        .join(format!("firewall/{vmid}.fw"))
        .exists());
    assert_node_empty(&env);
}

/// `sdn_vnet`: addresses come from Proxmox SDN's IPAM, shared by the
/// cluster. Two runtimes with separate local lease files (two nodes) never
/// hand out one address twice, an address another node registered is
/// skipped, and delete unregisters.
#[test]
fn sdn_ipam_is_one_address_space_for_the_cluster() {
    let mut env = Env::with_pve();
    let n = std::process::id() % 200 + 20;
    let emu = env.emu();
    for (path, form) in [
        (
            "/cluster/sdn/zones",
            vec![("zone", "lxcz"), ("type", "simple")],
        ),
        (
            "/cluster/sdn/vnets",
            vec![("vnet", "lxcv"), ("zone", "lxcz")],
        ),
    ] {
        emu.request("POST", path, &form, None);
    }
    let subnet = format!("10.250.{n}.0/24");
    let gw = format!("10.250.{n}.1");
    emu.request(
        "POST",
        "/cluster/sdn/vnets/lxcv/subnets",
        &[("subnet", &subnet), ("type", "subnet"), ("gateway", &gw)],
        None,
    );
    // Another node's guest holds .2.
    let other = format!("10.250.{n}.2");
    emu.request(
        "POST",
        "/cluster/sdn/vnets/lxcv/ips",
        &[("ip", &other), ("zone", "lxcz")],
        None,
    );
    let node_cfg = |name: &str| {
        let cfg = env.tmp.path().join(format!("{name}.toml"));
        env.emu().write_config_with(
            &cfg,
            "pve-lxc",
            "local",
            &format!(
                "[network.sdn]\nbridge = \"{}\"\nsubnet = \"{subnet}\"\ngateway = \"{gw}\"\n\
                 sdn_vnet = \"lxcv\"\nport_security = false\n",
                env.emu().bridge().unwrap()
            ),
        );
        // Each "node" keeps its own lease file (ipam_dir is top level).
        let text = std::fs::read_to_string(&cfg).unwrap();
        let dir = env.tmp.path().join(format!("ipam-{name}"));
        std::fs::write(&cfg, format!("ipam_dir = \"{}\"\n{text}", dir.display())).unwrap();
        cfg
    };
    let (node1, node2) = (node_cfg("node1"), node_cfg("node2"));
    let b = env.bundle("b", &["sleep", "1000"], |s| {
        s["annotations"] = json!({"io.proxmox-lxcri.network": "sdn"});
    });
    env.config = Some(node1);
    env.must_create("sdn-1", &b);
    env.config = Some(node2.clone());
    env.must_create("sdn-2", &b);
    let ip_of = |env: &Env, id: &str| {
        let net0 = config_of(env, env.vmid(id))["net0"]
            .as_str()
            .unwrap()
            .to_string();
        net0.split(',')
            .find_map(|p| p.strip_prefix("ip="))
            .unwrap()
            .to_string()
    };
    assert_eq!(ip_of(&env, "sdn-1"), format!("10.250.{n}.3/24"));
    assert_eq!(ip_of(&env, "sdn-2"), format!("10.250.{n}.4/24"));
    let registered = |env: &Env| -> Vec<String> {
        let v = env.emu().get("/cluster/sdn/ipams/pve/status")["data"].clone();
        let mut ips: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["vnet"] == "lxcv" && e.get("gateway").is_none())
            .map(|e| e["ip"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    assert_eq!(
        registered(&env),
        vec![
            other.clone(),
            format!("10.250.{n}.3"),
            format!("10.250.{n}.4")
        ]
    );
    env.ok(&["delete", "--force", "sdn-2"]);
    assert_eq!(
        registered(&env),
        vec![other.clone(), format!("10.250.{n}.3")]
    );
    env.config = Some(env.tmp.path().join("node1.toml"));
    env.ok(&["delete", "--force", "sdn-1"]);
    assert_eq!(registered(&env), vec![other]);
    assert_node_empty(&env);
}
