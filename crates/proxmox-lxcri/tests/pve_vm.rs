//! The pve-vm engine against pve-emulator: each container a real QEMU VM
//! made through the API, booting Debian's cloud kernel with our initramfs,
//! our binary as the guest's init. TCG only: nested KVM hangs on the
//! machines these tests run on (the emulator uses KVM only with
//! PVE_EMULATOR_QEMU_KVM=1), so each boot takes a few seconds.
// Both test helper trees (the runtime's `support`, containerd's `common`)
// include the emulator helper; one copy each is harmless.
#![allow(clippy::duplicate_mod)]
mod common;
mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use support::emulator::RuntimeConfig;
use support::Env;

/// An env whose runtime makes VMs: the emulator with a root password (a
/// VM's `args` are root@pam's only, as on a node) and pve-vm as default.
fn vm_env() -> Env {
    testkit::require_root("the pve-vm tests (QEMU guests, bridges)");
    assert!(
        testkit::which("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 is missing: run scripts/install-deps.sh"
    );
    assert!(
        std::fs::read_dir("/boot")
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("cloud-amd64")),
        "no /boot/vmlinuz-*-cloud-amd64: run scripts/install-deps.sh (linux-image-cloud-amd64)"
    );
    let tmp = tempfile::Builder::new()
        .prefix("lxcri-vm-test")
        .tempdir()
        .unwrap();
    let emu = support::emulator::builder(tmp.path())
        .root_password("vm-secret")
        .start();
    let cfg = tmp.path().join("config.toml");
    emu.write_config_root_pam(&cfg);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "default_backend = \"pve-lxc\"",
            "default_backend = \"pve-vm\"",
        )
        .replacen(
            "[pve]\n",
            &format!(
                "[pve]\nqemu_run_dir = \"{}\"\nvm_boot_timeout_secs = 120\n",
                emu.data_dir().join("run").join("qemu-server").display()
            ),
            1,
        );
    std::fs::write(&cfg, text).unwrap();
    let root = tmp.path().join("root");
    Env {
        pve: Some(emu),
        config: Some(cfg),
        tmp,
        root,
    }
}

fn vm_ids(env: &Env) -> Vec<u64> {
    let v = env.emu().get("/nodes/pve/qemu")["data"].clone();
    let mut ids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["vmid"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// No VM, no disk, no QEMU left on the node.
fn assert_node_empty(env: &Env) {
    assert_node_empty_after(env, "");
}

fn assert_node_empty_after(env: &Env, what: &str) {
    assert_eq!(
        vm_ids(env),
        Vec::<u64>::new(),
        "VMs left on the node {what}"
    );
    assert_eq!(
        env.emu().volumes(),
        Vec::<std::path::PathBuf>::new(),
        "disks left {what}"
    );
    let run = env.emu().data_dir().join("run").join("qemu-server");
    for e in std::fs::read_dir(run).into_iter().flatten().flatten() {
        if let Ok(pid) = std::fs::read_to_string(e.path()).map(|s| s.trim().to_string()) {
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                assert!(!cmd.starts_with(b"qemu-system"), "QEMU {pid} left running");
            }
        }
    }
}

fn run(env: &Env, id: &str, bundle: &Path) -> std::process::Output {
    env.base()
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn run_prints_the_output_from_the_guest_and_returns_its_exit_code() {
    let env = vm_env();
    let b = env.bundle(
        "b",
        &["sh", "-c", "echo hi-$(hostname); echo err >&2; exit 7"],
        |_| {},
    );
    let t = Instant::now();
    let o = run(&env, "vm1", &b);
    eprintln!("run under TCG took {:?}", t.elapsed());
    assert_eq!(
        o.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi-lxcri-test\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_node_empty(&env);
    env.assert_gone_state("vm1");
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

fn vm_config(env: &Env, vmid: u64) -> Value {
    env.emu().get(&format!("/nodes/pve/qemu/{vmid}/config"))["data"].clone()
}

fn vm_status(env: &Env, vmid: u64) -> String {
    env.emu()
        .get(&format!("/nodes/pve/qemu/{vmid}/status/current"))["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Wait until the node reports the VM stopped (the guest powers off).
fn wait_vm_stopped(env: &Env, vmid: u64) {
    let t = Instant::now();
    while vm_status(env, vmid) != "stopped" {
        assert!(t.elapsed().as_secs() < 30, "VM {vmid} still runs");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn create_start_state_kill_delete_with_the_spec_on_the_vm() {
    let env = vm_env();
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "echo started; trap 'echo got-term; exit 3' TERM; while :; do sleep 0.1; done",
        ],
        |s| {
            s["linux"]["resources"] = json!({
                "memory": {"limit": 268435456},
                "cpu": {"quota": 150000, "period": 100000}
            });
        },
    );
    env.must_create("c1", &b);
    assert_eq!(env.status("c1"), "created");
    let vmid = env.vmid("c1");
    let conf = vm_config(&env, vmid);
    assert_eq!(
        conf["memory"].to_string().trim_matches('"'),
        "256",
        "{conf}"
    );
    assert_eq!(conf["cores"].as_u64(), Some(2), "{conf}");
    assert_eq!(
        conf["cpulimit"].to_string().trim_matches('"'),
        "1.5",
        "{conf}"
    );
    assert_eq!(conf["serial0"], "socket", "{conf}");
    let net0 = conf["net0"].as_str().unwrap();
    assert!(
        net0.starts_with("virtio=BC:24:11:")
            && net0.contains(&format!("bridge={}", env.emu().bridge().unwrap())),
        "{net0}"
    );
    assert_eq!(conf["name"], "lxcri-c1", "{conf}");
    let tags = conf["tags"].as_str().unwrap();
    assert!(
        tags.contains("proxmox-lxcri") && tags.contains("lxcri-c1"),
        "{tags}"
    );
    assert!(
        conf["description"]
            .as_str()
            .unwrap()
            .contains("container c1"),
        "{conf}"
    );
    let args = conf["args"].as_str().unwrap();
    assert!(
        args.contains("-kernel /boot/vmlinuz-") && args.contains("lxcri.agent=vm"),
        "{args}"
    );
    assert!(
        conf["virtio0"]
            .as_str()
            .unwrap()
            .contains(&format!("vm-{vmid}-disk-0")),
        "{conf}"
    );
    assert_eq!(vm_status(&env, vmid), "running");
    // The pid file names our monitor, which stands for the guest's process.
    let pid: i32 = std::fs::read_to_string(env.tmp.path().join("c1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(env.state("c1")["pid"].as_i64(), Some(pid as i64));
    // Nothing runs before start.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(env.stdout_of("c1"), "");

    env.ok(&["start", "c1"]);
    assert_eq!(env.status("c1"), "running");
    let t = Instant::now();
    while !env.stdout_of("c1").contains("started") {
        assert!(
            t.elapsed().as_secs() < 20,
            "no output: {}",
            env.stdout_of("c1")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // exec: one more process in the guest, on the same connection.
    let o = env.cmd(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo in-vm-$(hostname); echo e >&2; exit 4",
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in-vm-lxcri-test\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "e\n");
    let o = env.cmd(&["exec", "c1", "/no/such/tool"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/no/such/tool"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // On the host the container is only our monitor (the pid-file pid).
    let ps: Vec<i64> = serde_json::from_str(&env.ok(&["ps", "--format", "json", "c1"])).unwrap();
    assert_eq!(ps, vec![pid as i64]);
    // pause suspends the whole VM (Proxmox's suspend), resume goes on.
    env.ok(&["pause", "c1"]);
    assert_eq!(env.status("c1"), "paused");
    let qmp = |env: &Env| {
        env.emu()
            .get(&format!("/nodes/pve/qemu/{vmid}/status/current"))["data"]["qmpstatus"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(qmp(&env), "paused");
    env.ok(&["resume", "c1"]);
    assert_eq!(env.status("c1"), "running");
    assert_eq!(qmp(&env), "running");
    // update: the VM's options follow (no cgroup of the host's is touched).
    env.ok(&[
        "update",
        "--memory",
        "300M",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "c1",
    ]);
    let conf = vm_config(&env, vmid);
    assert_eq!(
        conf["memory"].to_string().trim_matches('"'),
        "300",
        "{conf}"
    );
    assert_eq!(
        conf["cpulimit"].to_string().trim_matches('"'),
        "0.5",
        "{conf}"
    );
    // runc's events --stats: the host has no cgroup of a VM's to report.
    let ev: Value = serde_json::from_str(env.ok(&["events", "--stats", "c1"]).trim()).unwrap();
    assert_eq!(ev["type"], "stats", "{ev}");
    // A signal travels to the guest's process. --all too: it must never
    // walk our monitor's cgroup, which is the caller's (this test's).
    env.ok(&["kill", "--all", "c1", "TERM"]);
    env.wait_status("c1", "stopped");
    assert_eq!(env.state("c1")["status"], "stopped");
    assert!(
        env.stdout_of("c1").contains("got-term"),
        "{}",
        env.stdout_of("c1")
    );
    // The guest powered the VM off.
    wait_vm_stopped(&env, vmid);
    env.ok(&["delete", "c1"]);
    env.assert_gone_state("c1");
    assert_node_empty(&env);

    // SIGKILL cannot reach the guest: the VM is stopped through the API.
    let b2 = env.bundle("b2", &["sleep", "1000"], |_| {});
    env.must_create("c2", &b2);
    env.ok(&["start", "c2"]);
    let vmid = env.vmid("c2");
    env.ok(&["kill", "c2", "KILL"]);
    env.wait_status("c2", "stopped");
    assert_eq!(vm_status(&env, vmid), "stopped");
    env.ok(&["delete", "c2"]);
    env.assert_gone_state("c2");
    assert_node_empty(&env);
}

#[test]
fn a_missing_executable_fails_create_and_leaves_nothing() {
    let env = vm_env();
    let b = env.bundle("b", &["/no/such/binary"], |_| {});
    let o = env.create("m1", &b);
    assert!(!o.status.success());
    let log = env.log_of("m1");
    assert!(log.contains("/no/such/binary"), "{log}");
    env.assert_gone_state("m1");
    assert_node_empty(&env);
}

#[test]
fn what_a_vm_cannot_do_is_refused_before_anything_is_made() {
    let env = vm_env();
    for (i, (edit, why)) in [
        (
            json!({"mounts": [{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}]}),
            "mounts[0] /data",
        ),
        (
            json!({"hooks": {"prestart": [{"path": "/bin/true"}]}}),
            "hooks.prestart",
        ),
        (
            json!({"annotations": {"io.proxmox-lxcri.storage.quota": "8 G"}}),
            "quota",
        ),
        (
            json!({"annotations": {"io.proxmox-lxcri.net.ip": "10.0.0.2/24,bridge=evil"}}),
            "net.ip",
        ),
        (
            json!({"annotations": {"io.proxmox-lxcri.net.ip": "dhcp"}}),
            "DHCP",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let b = env.bundle(&format!("b{i}"), &["true"], |s| {
            for (k, v) in edit.as_object().unwrap() {
                if k == "mounts" {
                    s["mounts"] = v.clone();
                } else {
                    s[k] = v.clone();
                }
            }
        });
        let id = format!("bad{i}");
        let o = env.create(&id, &b);
        assert!(!o.status.success(), "{edit} was accepted");
        let log = env.log_of(&id);
        assert!(log.contains(why) && log.contains("pve-vm") || log.contains(why), "{edit}: {log}");
        env.assert_gone_state(&id);
        assert_node_empty(&env);
    }
    // An API token is not root@pam: Proxmox refuses a VM's `args` to it.
    let tok = env.tmp.path().join("token.toml");
    env.emu().write_config(&tok, "pve-vm");
    let text = std::fs::read_to_string(&tok).unwrap().replacen(
        "[pve]\n",
        &format!(
            "[pve]\nqemu_run_dir = \"{}\"\n",
            env.emu().data_dir().join("run/qemu-server").display()
        ),
        1,
    );
    std::fs::write(&tok, text).unwrap();
    let b = env.bundle("t", &["true"], |_| {});
    let o = std::process::Command::new(support::BIN)
        .arg("--root")
        .arg(&env.root)
        .arg("--config")
        .arg(&tok)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg("tok1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only root can set 'args'"), "{err}");
    env.assert_gone_state("tok1");
    assert_node_empty(&env);
    // A guest kernel that is not there: said at create, nothing made.
    let nok = env.tmp.path().join("nokernel.toml");
    let text = std::fs::read_to_string(env.config.as_ref().unwrap())
        .unwrap()
        .replacen(
            "[pve]\n",
            "[pve]\nvm_kernel = \"/nonexistent/vmlinuz-9.9-cloud-amd64\"\n",
            1,
        );
    std::fs::write(&nok, text).unwrap();
    let o = std::process::Command::new(support::BIN)
        .arg("--root")
        .arg(&env.root)
        .arg("--config")
        .arg(&nok)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg("nok1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pve.vm_kernel /nonexistent/vmlinuz-9.9-cloud-amd64"),
        "{err}"
    );
    env.assert_gone_state("nok1");
    assert_node_empty(&env);
    // doctor says so beforehand, and is content with the root@pam config.
    let doctor = |cfg: &Path| -> Value {
        let o = std::process::Command::new(support::BIN)
            .arg("--root")
            .arg(&env.root)
            .arg("--config")
            .arg(cfg)
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
        rep["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "pve-vm guest")
            .cloned()
            .unwrap_or_else(|| panic!("no pve-vm check: {rep}"))
    };
    let c = doctor(&tok);
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("root@pam"), "{c}");
    let c = doctor(env.config.as_ref().unwrap());
    assert_eq!(c["status"], "ok", "{c}");
}

/// An API failure at each request of create and start: a clear error, and
/// no VM, disk, QEMU, process or state left.
#[test]
fn an_api_error_at_each_step_leaves_nothing() {
    let env = vm_env();
    let b = env.bundle("b", &["true"], |_| {});
    let steps = [
        json!({"method": "GET", "path": "^/cluster/nextid$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/qemu$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/qemu$", "action": "fail_task", "message": "disk full", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/qemu$", "action": "drop", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/tasks/.+/status$", "action": "error", "status": 500, "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/qemu/[0-9]+/config$", "action": "error", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/storage/local/content/.+", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/status/start$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "/status/start$", "action": "fail_task", "message": "start broke", "count": 1}),
    ];
    for (i, rule) in steps.iter().enumerate() {
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
        assert!(
            !env.root.join("containers").join(&id).exists(),
            "after {rule}: state left: {log}"
        );
        env.assert_gone_state(&id);
        assert_node_empty_after(&env, &format!("after {rule}: {log}"));
    }
    // With the faults gone the same bundle runs.
    let o = run(&env, "ok", &b);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_node_empty(&env);
}

/// The goal: `ctr run` through containerd's runc shim prints the
/// output of a process inside a real QEMU guest made through the API, and
/// containerd gets its exit code.
#[test]
fn ctr_run_through_containerd_runs_in_a_vm() {
    let env = vm_env();
    let ctd = common::containerd::Containerd::start_with(env.config.as_deref());
    let rt = std::fs::canonicalize(support::BIN).unwrap();
    let rt = rt.to_str().unwrap();
    let id = format!("{}-vm", ctd.namespace);
    let o = ctd.run(
        rt,
        &id,
        &[
            "sh",
            "-c",
            "echo from-the-vm; uname -r; echo to-stderr >&2; exit 5",
        ],
        &[],
    );
    let out = common::containerd::stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{}", ctd.explain(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-the-vm", "{}", ctd.explain(&o));
    // The guest's own kernel, not the host's.
    assert!(lines[1].ends_with("cloud-amd64"), "{}", ctd.explain(&o));
    assert!(
        common::containerd::stderr(&o).contains("to-stderr"),
        "{}",
        ctd.explain(&o)
    );
    assert!(ctd.containers().is_empty());
    // `ctr run -t`: the process's terminal is a pty of the guest's, relayed
    // to the console containerd gets through --console-socket.
    // ctr sizes it as its own terminal (testkit's pty: 24x80).
    let (st, out) = ctd.run_pty(
        rt,
        &id,
        &["sh", "-c", "tty; sleep 1; stty size; echo t-ok; exit 2"],
        &["-t"],
    );
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("/dev/pts/0") && out.contains("t-ok"), "{out}");
    assert!(out.contains("24 80"), "{out}");
    assert!(ctd.containers().is_empty());
    // A detached task, and `ctr task exec` into it (runc's exec --detach).
    let id2 = format!("{}-vm2", ctd.namespace);
    let o = ctd.run(
        rt,
        &id2,
        &[
            "sh",
            "-c",
            "trap 'exit 143' TERM; while :; do sleep 0.1; done",
        ],
        &["-d"],
    );
    assert!(o.status.success(), "{}", ctd.explain(&o));
    ctd.wait_status(&id2, "RUNNING", std::time::Duration::from_secs(60));
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x1",
        &id2,
        "sh",
        "-c",
        "echo exec-in-vm; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", ctd.explain(&o));
    assert_eq!(
        common::containerd::stdout(&o),
        "exec-in-vm\n",
        "{}",
        ctd.explain(&o)
    );
    // `ctr task exec -t`: a terminal of its own in the guest, sized as ctr's.
    let (st, out) = ctd.ctr_pty(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "x2",
        &id2,
        "sh",
        "-c",
        "tty; sleep 1; stty size; exit 4",
    ]);
    assert_eq!(st.code(), Some(4), "{out}");
    assert!(out.contains("/dev/pts/") && out.contains("24 80"), "{out}");
    let o = ctd.ctr(&["task", "kill", &id2]);
    assert!(o.status.success(), "{}", ctd.explain(&o));
    ctd.wait_status(&id2, "STOPPED", std::time::Duration::from_secs(60));
    let o = ctd.ctr(&["task", "rm", &id2]);
    assert!(o.status.success(), "{}", ctd.explain(&o));
    let o = ctd.ctr(&["c", "rm", &id2]);
    assert!(o.status.success(), "{}", ctd.explain(&o));
    drop(ctd);
    assert_node_empty(&env);
}

/// A VM whose container lost its state (a wiped --root) is found by its
/// tag and description and removed by `gc`, with its disk.
#[test]
fn gc_removes_a_vm_whose_state_is_gone() {
    let env = vm_env();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("g1", &b);
    let vmid = env.vmid("g1");
    let pid: i32 = std::fs::read_to_string(env.tmp.path().join("g1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::fs::remove_dir_all(env.root.join("containers").join("g1")).unwrap();
    assert_eq!(vm_status(&env, vmid), "running");
    let out = env.ok(&["gc"]);
    assert!(out.contains(&vmid.to_string()), "{out}");
    assert_node_empty(&env);
}

/// The runtime SIGKILLed at several instants of create (API requests, the
/// disk, the boot): `delete --force` of the id, as containerd's shim runs
/// it, leaves no VM, disk, QEMU, process or state (everything was recorded
/// before it was made).
#[test]
fn a_create_killed_at_any_instant_leaves_nothing_after_delete() {
    let env = vm_env();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    for (i, ms) in [20u64, 80, 200, 500, 1000, 1800].into_iter().enumerate() {
        let id = format!("k{i}");
        let mut child = env
            .base()
            .args(["create", "--bundle"])
            .arg(&b)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let o = env.cmd(&["delete", "--force", &id]);
        assert!(
            o.status.success(),
            "killed after {ms} ms: delete: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        env.assert_gone_state(&id);
        assert_node_empty_after(&env, &format!("(create killed after {ms} ms)"));
    }
}

/// net0 on the emulator's bridge with the addresses of the net annotations
/// (IPv4 and IPv6): the guest sets them on eth0 with its default routes,
/// and reaches the host over both families on the bridge (the VM's tap,
/// made by QEMU as on a node).
#[test]
fn the_guest_gets_its_address_and_reaches_the_bridge() {
    let env = vm_env();
    let br = env.emu().bridge().unwrap().to_string();
    let net = format!("10.252.{}", testkit::unique() % 250 + 1);
    testkit::sh("ip", &["addr", "add", &format!("{net}.1/24"), "dev", &br]);
    let net6 = format!("fd00:{:x}", testkit::unique() % 60000 + 1);
    testkit::sh(
        "ip",
        &["addr", "add", &format!("{net6}::1/64"), "dev", &br, "nodad"],
    );
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            &format!("ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; ip -6 addr show eth0 scope global | grep -o 'inet6 [0-9a-f:/]*'; ip route | grep -o '^default via [0-9.]*'; ip -6 route | grep -o '^default via [0-9a-f:]*'; ping -c 1 -W 5 {net}.1 >/dev/null && echo pinged; ping -6 -c 1 -W 5 {net6}::1 >/dev/null && echo pinged6"),
        ],
        |s| {
            s["annotations"] = json!({
                "io.proxmox-lxcri.net.ip": format!("{net}.2/24"),
                "io.proxmox-lxcri.net.gw": format!("{net}.1"),
                "io.proxmox-lxcri.net.ip6": format!("{net6}::2/64"),
                "io.proxmox-lxcri.net.gw6": format!("{net6}::1"),
            });
            // busybox ping needs a raw socket.
            for set in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_NET_RAW"));
            }
        },
    );
    let o = run(&env, "n1", &b);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out,
        format!(
            "inet {net}.2/24\ninet6 {net6}::2/64\ndefault via {net}.1\ndefault via {net6}::1\npinged\npinged6\n"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_node_empty(&env);
}

/// A configured network (`[network.<name>]`, the network manager's IPAM):
/// the VM's net0 on its bridge with the lease's MAC, the lease's address
/// and the network's gateway inside the guest, the lease given back when
/// the container goes. Port security is the VM's firewall (as a CT's).
#[test]
fn a_configured_network_leases_the_vms_address() {
    let env = vm_env();
    let br = env.emu().bridge().unwrap().to_string();
    let net = format!("10.253.{}", testkit::unique() % 250 + 1);
    testkit::sh("ip", &["addr", "add", &format!("{net}.1/24"), "dev", &br]);
    let cfg = env.config.as_ref().unwrap();
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(&format!(
        "\n[network.vmnet]\nbridge = \"{br}\"\nsubnet = \"{net}.0/24\"\ngateway = \"{net}.1\"\nport_security = false\n\
         \n[network.guarded]\nbridge = \"{br}\"\nsubnet = \"10.254.1.0/24\"\n"
    ));
    std::fs::write(cfg, text).unwrap();
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            &format!("ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; ping -c 1 -W 5 {net}.1 >/dev/null && echo pinged; sleep 1000"),
        ],
        |s| {
            s["annotations"] = json!({ "io.proxmox-lxcri.network": "vmnet" });
            for set in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_NET_RAW"));
            }
        },
    );
    env.must_create("w1", &b);
    let vmid = env.vmid("w1");
    let leases: Value =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "vmnet"])).unwrap();
    let lease = &leases.as_array().unwrap()[0];
    let addr = lease["addrs"][0].as_str().unwrap().to_string();
    let mac = lease["mac"].as_str().unwrap().to_ascii_uppercase();
    let net0 = vm_config(&env, vmid)["net0"].as_str().unwrap().to_string();
    assert_eq!(net0, format!("virtio={mac},bridge={br}"), "{lease}");
    env.ok(&["start", "w1"]);
    let t = Instant::now();
    while !env.stdout_of("w1").contains("pinged") {
        assert!(t.elapsed().as_secs() < 30, "{}", env.stdout_of("w1"));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(env.stdout_of("w1"), format!("inet {addr}\npinged\n"));
    env.ok(&["delete", "--force", "w1"]);
    let leases: Value =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "vmnet"])).unwrap();
    assert_eq!(leases, json!([]), "the lease went with the container");
    assert_node_empty(&env);
    // A network with port security (the default): the VM's firewall, as
    // for a CT (ipfilter and macfilter, the lease in ipfilter-net0, net0
    // with firewall=1); once the datacenter firewall is on, the guest
    // reaches the gateway from its lease and not from a forged address.
    let g = format!("10.254.{}", testkit::unique() % 250 + 1);
    testkit::sh("ip", &["addr", "add", &format!("{g}.1/24"), "dev", &br]);
    let text = std::fs::read_to_string(cfg).unwrap().replace(
        "subnet = \"10.254.1.0/24\"",
        &format!("subnet = \"{g}.0/24\"\ngateway = \"{g}.1\""),
    );
    std::fs::write(cfg, text).unwrap();
    let script = format!(
        "ping -c 1 -W 5 {g}.1 >/dev/null && echo leased-ok; \
         ip addr del {g}.2/24 dev eth0; ip addr add {g}.77/24 dev eth0; \
         ping -c 1 -W 3 {g}.1 >/dev/null && echo forged-ok || echo forged-blocked"
    );
    let b = env.bundle("g", &["sh", "-c", &script], |s| {
        s["annotations"] = json!({ "io.proxmox-lxcri.network": "guarded" });
        for set in ["bounding", "effective", "permitted"] {
            let caps = s["process"]["capabilities"][set].as_array_mut().unwrap();
            caps.push(json!("CAP_NET_RAW"));
            caps.push(json!("CAP_NET_ADMIN"));
        }
    });
    env.must_create("g1", &b);
    let vmid = env.vmid("g1");
    let fw = env
        .emu()
        .get(&format!("/nodes/pve/qemu/{vmid}/firewall/options"))["data"]
        .clone();
    assert_eq!(
        (&fw["enable"], &fw["ipfilter"], &fw["macfilter"]),
        (&json!(1), &json!(1), &json!(1)),
        "{fw}"
    );
    let set = env.emu().get(&format!(
        "/nodes/pve/qemu/{vmid}/firewall/ipset/ipfilter-net0"
    ))["data"]
        .clone();
    assert_eq!(set[0]["cidr"], format!("{g}.2"), "{set}");
    let net0 = vm_config(&env, vmid)["net0"].as_str().unwrap().to_string();
    assert!(net0.ends_with(",firewall=1"), "{net0}");
    env.emu()
        .request("PUT", "/cluster/firewall/options", &[("enable", "1")], None);
    env.ok(&["start", "g1"]);
    let t = Instant::now();
    while !env.stdout_of("g1").contains("forged-") {
        assert!(t.elapsed().as_secs() < 60, "{}", env.stdout_of("g1"));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(env.stdout_of("g1"), "leased-ok\nforged-blocked\n");
    env.ok(&["delete", "--force", "g1"]);
    assert!(!env
        .emu()
        .data_dir()
        .join(format!("firewall/{vmid}.fw"))
        .exists());
    assert_node_empty(&env);
}
