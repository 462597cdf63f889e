//! The API's behaviour without running guests: auth, errors, tasks, nextid,
//! restart, faults.

mod common;
use common::*;

#[test]
fn auth_tickets_csrf_and_tokens() {
    let d = tempfile::tempdir().unwrap();
    let emu = start(d.path(), &[]);
    // The fingerprint file matches what was printed, in AA:BB form.
    let fp = std::fs::read_to_string(d.path().join("fingerprint")).unwrap();
    assert_eq!(fp.trim(), emu.fingerprint());
    assert!(regex::Regex::new("^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
        .unwrap()
        .is_match(emu.fingerprint()));

    let (c, _) = emu.curl("GET", &emu.api_url("/version"), &[]);
    assert_eq!(c, 401);
    let t0 = std::time::Instant::now();
    let (c, _) = emu.curl(
        "GET",
        &emu.api_url("/version"),
        &["-H", "Authorization: PVEAPIToken=root@pam!tok=wrong"],
    );
    assert_eq!(c, 401);
    assert!(
        t0.elapsed().as_millis() >= 200,
        "401 comes after the configured delay"
    );
    let (c, _) = emu.call(
        "POST",
        "/access/ticket",
        &["-d", "username=root@pam", "-d", "password=nope"],
    );
    assert_eq!(c, 401);

    let (c, v) = emu.call(
        "POST",
        "/access/ticket",
        &["-d", "username=root@pam", "-d", "password=pw"],
    );
    assert_eq!(c, 200, "{v}");
    let ticket = v["data"]["ticket"].as_str().unwrap().to_string();
    let csrf = v["data"]["CSRFPreventionToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ticket.starts_with("PVE:root@pam:"));
    let cookie = format!("Cookie: PVEAuthCookie={ticket}");
    let (c, v) = emu.curl("GET", &emu.api_url("/nodes"), &["-H", &cookie]);
    assert_eq!(c, 200);
    assert_eq!(v["data"][0]["node"], "pve");
    // Writes with a ticket need the CSRF token.
    let (c, _) = emu.curl(
        "PUT",
        &emu.api_url("/nodes/pve/lxc/999/config"),
        &["-H", &cookie, "-d", "memory=256"],
    );
    assert_eq!(c, 403);
    let csrf_h = format!("CSRFPreventionToken: {csrf}");
    let (c, v) = emu.curl(
        "PUT",
        &emu.api_url("/nodes/pve/lxc/999/config"),
        &["-H", &cookie, "-H", &csrf_h, "-d", "memory=256"],
    );
    assert_eq!(c, 500);
    assert_eq!(
        v["message"],
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist\n"
    );
    // Renewal: the ticket as password. JSON bodies work too.
    let body = serde_json::json!({"username": "root@pam", "password": ticket}).to_string();
    let (c, v) = emu.call(
        "POST",
        "/access/ticket",
        &["-H", "Content-Type: application/json", "-d", &body],
    );
    assert_eq!(c, 200, "{v}");
}

#[test]
fn proxmox_errors() {
    let d = tempfile::tempdir().unwrap();
    let emu = start(d.path(), &[]);
    let (c, v) = emu.call("GET", "/x", &[]);
    assert_eq!(c, 501);
    assert_eq!(v["message"], "Method 'GET /x' not implemented\n");
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            "vmid=abc",
            "-d",
            "unprivileged=true",
            "-d",
            "ostemplate=local:vztmpl/x.tar",
        ],
    );
    assert_eq!(c, 400);
    assert_eq!(v["message"], "Parameter verification failed.\n");
    assert_eq!(v["data"], serde_json::Value::Null);
    assert_eq!(
        v["errors"]["vmid"],
        "type check ('integer') failed - got 'abc'"
    );
    assert_eq!(
        v["errors"]["unprivileged"],
        "type check ('boolean') failed - got 'true'"
    );
    let (c, v) = emu.call("POST", "/nodes/pve/lxc", &["-d", "vmid=100"]);
    assert_eq!(c, 400);
    assert_eq!(
        v["errors"]["ostemplate"],
        "property is missing and it is not optional"
    );
    // Root-only options are refused for tokens (root@pam!tok is not root@pam).
    for extra in [
        "features=keyctl=1",
        "dev0=/dev/null",
        "mp0=/srv,mp=/mnt",
        "hookscript=local:snippets/x.sh",
    ] {
        let (c, v) = emu.call(
            "POST",
            "/nodes/pve/lxc",
            &[
                "-d",
                "vmid=100",
                "-d",
                "ostemplate=local:vztmpl/x.tar",
                "--data-urlencode",
                extra,
            ],
        );
        assert_eq!(c, 403, "{extra}: {v}");
    }
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/lxc/100/status/start",
        &["-d", "skiplock=1"],
    );
    assert_eq!(c, 403, "{v}");
    // Unknown task.
    let (c, v) = emu.call("GET", "/nodes/pve/tasks/UPID%3Apve%3A00000001%3A00000001%3A00000001%3Avzstart%3A100%3Aroot%40pam%3A/status", &[]);
    assert_eq!(c, 400);
    assert_eq!(v["errors"]["upid"], "no such task");
}

#[test]
fn create_lock_exists_restart_and_nextid() {
    let d = tempfile::tempdir().unwrap();
    let tpl = busybox_template(d.path(), "bb.tar.xz");
    let ost = install_template(d.path(), &tpl);
    let id = vmid();
    let mut emu = start(d.path(), &["--node", "pve", "--node", "pve2"]);
    let fp = emu.fingerprint().to_string();
    // A slow create (latency fault on nothing; the lock shows while the task runs).
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
            "-d",
            "hostname=ct1",
        ],
    );
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().unwrap().to_string();
    assert!(
        regex::Regex::new(
            r"^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:vzcreate:\d+:root@pam!tok:$"
        )
        .unwrap()
        .is_match(&upid),
        "{upid}"
    );
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve2/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
        ],
    );
    assert_eq!(c, 500);
    assert_eq!(
        v["message"],
        format!("CT {id} already exists on node 'pve'\n")
    );
    let st = emu.wait_task(&upid);
    assert_eq!(st["exitstatus"], "OK");
    let log = emu.task_log(&upid);
    assert_eq!(
        log["data"].as_array().unwrap().last().unwrap()["t"],
        "TASK OK"
    );
    assert!(log["total"].as_u64().unwrap() >= 1);

    // Lock: a conf with lock refuses start.
    let conf = d.path().join(format!("nodes/pve/lxc/{id}.conf"));
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("unprivileged: 1"));
    std::fs::write(
        &conf,
        format!("{text}lock: create\nlxc.init.cmd: /bin/sleep 5\n"),
    )
    .unwrap();
    let (c, v) = emu.call("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    assert_eq!(c, 500);
    assert_eq!(v["message"], "CT is locked (create)\n");
    // Raw lxc.* lines come back as `lxc`.
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    assert_eq!(v["data"]["lxc"][0][0], "lxc.init.cmd");
    assert_eq!(v["data"]["memory"], 512);
    std::fs::write(&conf, text).unwrap();
    // PUT keeps raw lines and validates.
    let (c, _) = emu.call(
        "PUT",
        &format!("/nodes/pve/lxc/{id}/config"),
        &["-d", "memory=256", "-d", "delete=hostname"],
    );
    assert_eq!(c, 200);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    assert_eq!(v["data"]["memory"], 256);
    assert!(v["data"].get("hostname").is_none());

    // nextid over both nodes; the id comes back as a string.
    let (_, v) = emu.call("GET", &format!("/cluster/nextid?vmid={id}"), &[]);
    assert_eq!(v["errors"]["vmid"], format!("VM {id} already exists"));
    let (c, v) = emu.call("GET", "/cluster/nextid?vmid=150", &[]);
    assert_eq!((c, v["data"].clone()), (200, serde_json::json!("150")));
    assert!(v["data"].is_string());

    // Restart keeps config, tasks and fingerprint.
    emu.restart();
    assert_eq!(emu.fingerprint(), fp);
    let (c, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    assert_eq!(c, 200);
    assert_eq!(v["data"]["memory"], 256);
    assert_eq!(emu.wait_task(&upid)["exitstatus"], "OK");
    let (_, v) = emu.call("GET", "/cluster/resources?type=vm", &[]);
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["vmid"] == id && g["type"] == "lxc"));
    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{id}"), &[]);
    assert!(!conf.exists());
    assert!(std::fs::read_dir(d.path().join("storage/local/images"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn fault_rules() {
    let d = tempfile::tempdir().unwrap();
    let emu = start(
        d.path(),
        &[
            "--fault",
            r#"{"method":"GET","path":"^/nodes$","action":"error","status":503,"message":"boom","count":1}"#,
        ],
    );
    let (c, v) = emu.call("GET", "/nodes", &[]);
    assert_eq!((c, v["message"].as_str()), (503, Some("boom\n")));
    let (c, _) = emu.call("GET", "/nodes", &[]);
    assert_eq!(c, 200);
    let ctl = format!("https://127.0.0.1:{}/_emulator/faults", emu.port());
    let auth = [
        "-H".to_string(),
        format!("Authorization: PVEAPIToken={TOKEN}"),
    ];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let rules = r#"{"rules":[{"path":"^/version$","action":"drop"},{"method":"GET","path":"^/cluster/nextid$","action":"latency","ms":300},{"method":"POST","path":"/status/start$","action":"lock"},{"method":"POST","path":"^/nodes/[^/]+/qemu$","action":"fail_task","message":"disk on fire"}]}"#;
    let (c, _) = emu.curl(
        "POST",
        &ctl,
        &[
            &auth[..],
            &["-H", "Content-Type: application/json", "-d", rules],
        ]
        .concat(),
    );
    assert_eq!(c, 200);
    let (c, _) = emu.call("GET", "/version", &[]);
    assert_eq!(c, 0, "connection dropped without an answer");
    let t0 = std::time::Instant::now();
    emu.call("GET", "/cluster/nextid", &[]);
    assert!(t0.elapsed().as_millis() >= 300);
    let (c, v) = emu.call("POST", "/nodes/pve/lxc/100/status/start", &[]);
    assert_eq!(
        (c, v["message"].as_str()),
        (500, Some("CT is locked (backup)\n"))
    );
    let (c, v) = emu.call(
        "POST",
        "/nodes/pve/qemu",
        &["-d", "vmid=100", "-d", "name=vm1"],
    );
    assert_eq!(c, 200, "{v}");
    let st = emu.wait_task(v["data"].as_str().unwrap());
    assert_eq!(st["exitstatus"], "disk on fire");
    let (_, v) = emu.curl("GET", &ctl, &auth);
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["hits"].as_u64().unwrap() >= 1));
    emu.curl("DELETE", &ctl, &auth);
    let (c, _) = emu.call("GET", "/version", &[]);
    assert_eq!(c, 200);
    // QEMU guests run (real QEMU) with their disks.
    emu.task_ok(
        "POST",
        "/nodes/pve/qemu",
        &[
            "-d",
            "vmid=101",
            "-d",
            "name=vm1",
            "-d",
            "memory=1024",
            "--data-urlencode",
            "scsi0=local:8",
        ],
    );
    emu.task_ok("POST", "/nodes/pve/qemu/101/status/start", &[]);
    let (_, v) = emu.call("GET", "/nodes/pve/qemu/101/status/current", &[]);
    assert_eq!(v["data"]["status"], "running");
    let (_, v) = emu.call("GET", "/nodes/pve/qemu/101/config", &[]);
    // A real raw file on the dir storage, named as Proxmox names it.
    assert_eq!(v["data"]["scsi0"], "local:101/vm-101-disk-0.raw,size=8G");
    emu.task_ok("POST", "/nodes/pve/qemu/101/status/stop", &[]);
    emu.task_ok("DELETE", "/nodes/pve/qemu/101", &[]);
}

#[test]
fn clone_snapshot_rollback() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &busybox_template(d.path(), "bb.tar.gz"));
    let emu = start(d.path(), &[]);
    let (id, newid) = (vmid(), vmid());
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={ost}"),
            "-d",
            "hostname=orig",
            "--data-urlencode",
            "net0=name=eth0,bridge=vmbr0,ip=dhcp",
        ],
    );
    let root = |vmid: u32| {
        d.path()
            .join(format!("storage/local/images/{vmid}/subvol-{vmid}-disk-0"))
    };
    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/snapshot"),
        &["-d", "snapname=s1", "-d", "description=first"],
    );
    std::fs::write(root(id).join("etc/motd"), "changed\n").unwrap();
    let (c, v) = emu.call(
        "POST",
        &format!("/nodes/pve/lxc/{id}/snapshot"),
        &["-d", "snapname=s1"],
    );
    assert_eq!(
        (c, v["message"].as_str()),
        (500, Some("snapshot name 's1' already used\n"))
    );
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/snapshot"), &[]);
    assert_eq!(v["data"][0]["name"], "s1");
    assert_eq!(v["data"][0]["description"], "first");
    assert_eq!(v["data"][1]["name"], "current");
    assert_eq!(v["data"][1]["parent"], "s1");
    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/snapshot/s1/rollback"),
        &[],
    );
    assert!(
        !root(id).join("etc/motd").exists(),
        "rollback restored the files"
    );

    emu.task_ok(
        "POST",
        &format!("/nodes/pve/lxc/{id}/clone"),
        &["-d", &format!("newid={newid}"), "-d", "hostname=copy"],
    );
    let (_, a) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/config"), &[]);
    let (_, b) = emu.call("GET", &format!("/nodes/pve/lxc/{newid}/config"), &[]);
    assert_eq!(b["data"]["hostname"], "copy");
    assert_eq!(
        b["data"]["rootfs"],
        format!("local:subvol-{newid}-disk-0,size=4G")
    );
    assert_ne!(
        a["data"]["net0"], b["data"]["net0"],
        "a clone gets a new MAC"
    );
    assert!(root(newid).join("bin/busybox").exists());

    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{id}/snapshot/s1"), &[]);
    let (_, v) = emu.call("GET", &format!("/nodes/pve/lxc/{id}/snapshot"), &[]);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{id}"), &[]);
    emu.task_ok("DELETE", &format!("/nodes/pve/lxc/{newid}"), &[]);
    assert!(std::fs::read_dir(d.path().join("storage/local/images"))
        .unwrap()
        .next()
        .is_none());
    let (_, v) = emu.call("GET", "/nodes/pve/storage/local/content", &[]);
    assert_eq!(
        v["data"].as_array().unwrap().len(),
        1,
        "only the template is left: {v}"
    );
}

/// Creates a CT from `ost` on `emu` and returns its VMID.
fn make_ct(emu: &Emulator, ost: &str) -> u32 {
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
    id
}

#[test]
fn delete_frees_only_owned_volumes_and_locks() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &busybox_template(d.path(), "bb.tar"));
    let emu = start(d.path(), &[]);
    let (a, b) = (make_ct(&emu, &ost), make_ct(&emu, &ost));
    let vol_b = d
        .path()
        .join(format!("storage/local/images/{b}/subvol-{b}-disk-0"));
    assert!(vol_b.is_dir());
    // A's config names B's volume (as unused0 and mp0): purging A must keep it.
    let conf_a = d.path().join(format!("nodes/pve/lxc/{a}.conf"));
    let text = std::fs::read_to_string(&conf_a).unwrap();
    std::fs::write(
        &conf_a,
        format!("{text}unused0: local:subvol-{b}-disk-0\nmp0: local:subvol-{b}-disk-0,mp=/mnt\n"),
    )
    .unwrap();
    let (c, v) = emu.call("DELETE", &format!("/nodes/pve/lxc/{a}"), &["-d", "purge=1"]);
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().unwrap().to_string();
    assert_eq!(emu.wait_task(&upid)["exitstatus"], "OK");
    assert!(vol_b.join("bin/busybox").exists(), "B's volume survived");
    let log = emu.task_log(&upid).to_string();
    assert!(log.contains(&format!("CT {a} isn't the owner")), "{log}");

    // While a delete is under way the CT is `lock: destroyed`; a delete that
    // fails half-way (a busy mount point in the volume) leaves it so, as in PVE.
    let busy = vol_b.join("tmp");
    sh("mount", &["-t", "tmpfs", "none", &busy.to_string_lossy()]);
    let (c, v) = emu.call("DELETE", &format!("/nodes/pve/lxc/{b}"), &[]);
    assert_eq!(c, 200, "{v}");
    let st = emu.wait_task(v["data"].as_str().unwrap());
    sh("umount", &[&busy.to_string_lossy()]);
    assert_ne!(st["exitstatus"], "OK");
    let (c, v) = emu.call("DELETE", &format!("/nodes/pve/lxc/{b}"), &[]);
    assert_eq!(
        (c, v["message"].as_str()),
        (500, Some("CT is locked (destroyed)\n"))
    );
}

#[test]
fn unprivileged_is_read_only() {
    let d = tempfile::tempdir().unwrap();
    let ost = install_template(d.path(), &busybox_template(d.path(), "bb.tar"));
    let emu = start(d.path(), &[]);
    let id = make_ct(&emu, &ost);
    let path = format!("/nodes/pve/lxc/{id}/config");
    let (c, v) = emu.call("PUT", &path, &["-d", "unprivileged=0"]);
    assert_eq!(c, 500);
    assert_eq!(
        v["message"],
        "unable to modify read-only option: 'unprivileged'\n"
    );
    let (c, v) = emu.call("PUT", &path, &["-d", "delete=unprivileged"]);
    assert_eq!(c, 500);
    assert_eq!(
        v["message"],
        "unable to delete read-only option: 'unprivileged'\n"
    );
    let (_, v) = emu.call("GET", &path, &[]);
    assert_eq!(v["data"]["unprivileged"], 1);
}

#[test]
fn task_paths_cannot_traverse() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secretlog"), "secret\n").unwrap();
    let emu = start(d.path(), &["--node", "pve", "--node", "pve2"]);
    let (_, v) = emu.call("GET", "/version", &[]);
    assert!(v["data"].is_object());
    for upid in [
        // DATA_DIR/tasks/../secretlog (the log file is "<upid>log").
        "..%2Fsecret",
        "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd%00",
        // A well-formed UPID of another node.
        "UPID%3Apve2%3A00000001%3A00000001%3A00000001%3Avzcreate%3A100%3Aroot%40pam%3A",
    ] {
        for (m, p) in [
            ("GET", format!("/nodes/pve/tasks/{upid}/log")),
            ("GET", format!("/nodes/pve/tasks/{upid}/status")),
            ("DELETE", format!("/nodes/pve/tasks/{upid}")),
        ] {
            let (c, v) = emu.call(m, &p, &[]);
            assert_eq!(c, 400, "{m} {p}: {v}");
            assert!(v["errors"]["upid"].is_string(), "{m} {p}: {v}");
            assert!(!v.to_string().contains("secret"), "{m} {p}: {v}");
        }
    }
}

/// Peak resident size: a buffered body shows even once freed.
fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn bodies_need_auth_and_are_capped() {
    let d = tempfile::tempdir().unwrap();
    let emu = start(d.path(), &[]);
    let big = d.path().join("big");
    std::fs::write(&big, vec![b'a'; 64 << 20]).unwrap();
    let data = format!("@{}", big.display());
    let pid = emu.pid();
    let before = peak_rss_kib(pid);
    let t0 = std::time::Instant::now();
    for path in ["/nodes/pve/lxc", "/nodes/pve/storage/local/upload"] {
        let (c, v) = emu.curl("POST", &emu.api_url(path), &["--data-binary", &data]);
        assert_eq!(c, 401, "{path}: {v}");
    }
    let form = format!("filename=@{}", big.display());
    let (c, _) = emu.curl(
        "POST",
        &emu.api_url("/nodes/pve/storage/local/upload"),
        &["-F", "content=vztmpl", "-F", &form],
    );
    assert_eq!(c, 401);
    assert!(t0.elapsed().as_secs() < 10, "answered before the body");
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "unauthenticated bodies grew it by {grown} KiB"
    );
    // Authenticated, a non-upload body is capped.
    let (c, _) = emu.call(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(c, 413);
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(grown < 32 << 10, "the emulator grew by {grown} KiB");

    // Fault rules only see authenticated requests.
    let ctl = format!("https://127.0.0.1:{}/_emulator/faults", emu.port());
    let rule =
        r#"{"rules":[{"path":"^/version$","action":"error","status":500,"message":"boom"}]}"#;
    let (c, _) = emu.curl(
        "POST",
        &ctl,
        &[
            "-H",
            &format!("Authorization: PVEAPIToken={TOKEN}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            rule,
        ],
    );
    assert_eq!(c, 200);
    let (c, _) = emu.curl("GET", &emu.api_url("/version"), &[]);
    assert_eq!(c, 401);
    let (c, _) = emu.call("GET", "/version", &[]);
    assert_eq!(c, 500);
}

#[test]
fn secrets_from_files() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let tf = d.path().join("tokens");
    std::fs::write(&tf, "root@pam!file=fromfile\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_pve-emulator");
    let data = d.path().join("data");
    let data = data.to_string_lossy();
    // A group/world-readable file is refused before serving.
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tfs = tf.to_string_lossy();
    let out = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--token-file",
            &tfs,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by group or others"), "{err}");
    // A bad --token is refused without echoing the secret.
    let out = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir", &data])
        .args(["--token", "root@pam!x=not a secret-SHOWN"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("SHOWN"), "{err}");

    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let emu = start(d.path(), &["--token-file", &tfs]);
    let (c, _) = emu.curl(
        "GET",
        &emu.api_url("/version"),
        &["-H", "Authorization: PVEAPIToken=root@pam!file=fromfile"],
    );
    assert_eq!(c, 200);
}

/// Runs the emulator that should refuse to start; returns its stderr. It
/// is killed after 20 s if it serves instead (then the test fails).
fn refused(data: &std::path::Path, extra: &[String]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_pve-emulator"))
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN, "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "it should refuse to start: {err}"
    );
    err
}

/// A data dir or storage under a directory the CTs' root (host uid
/// 100000) cannot pass: refused at start, naming the directory and the fix.
#[test]
fn refuses_dirs_unprivileged_cts_cannot_reach() {
    use std::os::unix::fs::PermissionsExt;
    testkit::require_root("the preflight test (data dirs as root)");
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let top = tempfile::tempdir_in("/tmp").unwrap();
    chmod(top.path(), 0o700);
    let data = top.path().join("data");
    let err = refused(&data, &[]);
    assert!(
        err.contains(&format!("chmod o+x {}", top.path().display())),
        "{err}"
    );
    assert!(
        err.contains("uid 100000") && err.contains("mode 0700"),
        "{err}"
    );

    chmod(top.path(), 0o711);
    let locked = top.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    chmod(&locked, 0o750);
    let storage = format!("st=dir:{}", locked.join("store").display());
    let err = refused(&data, &["--storage".into(), storage.clone()]);
    assert!(err.contains("storage 'st'"), "{err}");
    assert!(
        err.contains(&format!("chmod o+x {}", locked.display())),
        "{err}"
    );

    // Fixed as told: it starts.
    chmod(&locked, 0o751);
    let emu = builder(&data).args(&["--storage", &storage]).start();
    assert_eq!(
        emu.get("/nodes/pve/storage/st/status")["data"]["type"],
        "dir"
    );
}

/// With several `--node`s the emulator is a quorate cluster of them: a
/// cluster entry, then each node with its id, the first answering.
#[test]
fn cluster_status_of_several_nodes() {
    let d = tempfile::tempdir().unwrap();
    let emu = builder(d.path())
        .node("alpha")
        .args(&["--node", "beta"])
        .start();
    let st = emu.get("/cluster/status")["data"].clone();
    let rows = st.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{st}");
    assert_eq!(rows[0]["type"], "cluster");
    assert_eq!(
        (rows[0]["nodes"].as_u64(), rows[0]["quorate"].as_u64()),
        (Some(2), Some(1))
    );
    let nodes: Vec<(&str, u64, u64)> = rows[1..]
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["nodeid"].as_u64().unwrap(),
                r["local"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(nodes, [("alpha", 1, 1), ("beta", 2, 0)]);
    // Each node answers its own version and rrddata.
    for n in ["alpha", "beta"] {
        assert_eq!(
            emu.get(&format!("/nodes/{n}/version"))["data"]["release"],
            "9.1"
        );
        let r = emu.request(
            "GET",
            &format!("/nodes/{n}/rrddata"),
            &[("timeframe", "decade")],
            None,
        );
        assert_eq!(r["data"].as_array().map(Vec::len), Some(70), "{r}");
    }
    let bad = emu.get("/nodes/gamma/version");
    assert!(
        bad["errors"]["node"]
            .as_str()
            .unwrap()
            .contains("no such cluster node"),
        "{bad}"
    );
}
