//! The OCI lifecycle on the lxc engine, with real containers.
mod support;

use serde_json::json;
use support::Env;

#[test]
fn full_lifecycle_create_start_exit_delete() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &["sh", "-c", "echo out-$(hostname); echo err >&2; exit 3"],
        |_| {},
    );
    env.must_create("c1", &b);

    let st = env.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "c1");
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["bundle"], b.canonicalize().unwrap().to_str().unwrap());
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The process has not run yet.
    assert_eq!(env.stdout_of("c1"), "");

    // pid file: digits only, no newline.
    let pidfile = std::fs::read_to_string(env.tmp.path().join("c1.pid")).unwrap();
    assert!(pidfile.bytes().all(|b| b.is_ascii_digit()), "{pidfile:?}");

    env.ok(&["start", "c1"]);
    // Exits on its own; `state` notices without another command.
    env.wait_status("c1", "stopped");
    assert_eq!(env.state("c1")["pid"], 0);
    assert_eq!(env.stdout_of("c1"), "out-lxcri-test\n");
    assert_eq!(env.stderr_of("c1"), "err\n");
    // ps of a stopped container: no processes, as runc prints them.
    assert_eq!(env.ok(&["ps", "--format", "json", "c1"]), "null\n");
    assert!(env.ok(&["ps", "c1"]).starts_with("UID"));

    let list = env.ok(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], "c1");
    assert_eq!(list[0]["status"], "stopped");
    assert_eq!(env.ok(&["list", "-q"]), "c1\n");
    assert!(env.ok(&["list"]).contains("stopped"));

    env.ok(&["delete", "c1"]);
    env.assert_gone("c1");
    assert!(env.fails(&["state", "c1"]).contains("does not exist"));

    // The events log has one line per operation.
    let events = std::fs::read_to_string(env.root.join("runtime/events.log")).unwrap();
    let ops: Vec<String> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["id"] == "c1")
        .map(|v| {
            format!(
                "{}:{}",
                v["operation"].as_str().unwrap(),
                v["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(ops, ["create:ok", "start:ok", "delete:ok"]);
}

#[test]
fn forbidden_transitions_fail_and_change_nothing() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("t1", &b);
    // Created: delete without force is allowed by runc (it kills), but not
    // kill of a stopped one etc. Check each rule of the spec:
    env.ok(&["start", "t1"]);
    assert_eq!(env.status("t1"), "running");
    let e = env.fails(&["start", "t1"]);
    assert!(e.contains("running") && e.contains("created"), "{e}");
    let e = env.fails(&["delete", "t1"]);
    assert!(e.contains("running"), "{e}");
    assert_eq!(
        env.status("t1"),
        "running",
        "failed delete must leave it running"
    );
    assert!(env
        .fails(&["create", "--bundle", b.to_str().unwrap(), "t1"])
        .contains("already exists"));
    assert!(env
        .fails(&["kill", "t1", "NOSUCHSIG"])
        .contains("invalid signal"));
    // Signal 0, as scripts probe with `runc kill [-a] ID 0`: alive.
    env.ok(&["kill", "t1", "0"]);
    env.ok(&["kill", "-a", "t1", "0"]);
    assert_eq!(env.status("t1"), "running");

    env.ok(&["kill", "t1", "KILL"]);
    env.wait_status("t1", "stopped");
    let e = env.fails(&["kill", "t1", "TERM"]);
    assert!(e.contains("container not running"), "{e}");
    let e = env.fails(&["kill", "t1", "0"]);
    assert!(e.contains("container not running"), "{e}");
    let e = env.fails(&["start", "t1"]);
    assert!(e.contains("stopped"), "{e}");
    env.ok(&["delete", "t1"]);
    env.assert_gone("t1");

    // delete --force of a running container.
    env.must_create("t2", &b);
    env.ok(&["start", "t2"]);
    env.ok(&["delete", "--force", "t2"]);
    env.assert_gone("t2");

    // delete of a created (never started) container kills it, as runc does.
    env.must_create("t3", &b);
    env.ok(&["delete", "t3"]);
    env.assert_gone("t3");

    for cmd in ["start", "state", "kill", "delete"] {
        assert!(
            env.fails(&[cmd, "nope"]).contains("does not exist"),
            "{cmd}"
        );
    }
}

#[test]
fn sigterm_reaches_the_process_and_exit_is_recorded() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; while true; do sleep 0.05; done",
        ],
        |_| {},
    );
    // As containerd's shim: a child subreaper reaps the pid-file process,
    // which is handed over to it when create returns.
    // SAFETY: plain prctl (affects this test process only).
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    env.must_create("s1", &b);
    let pid: i32 = std::fs::read_to_string(env.tmp.path().join("s1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    env.ok(&["start", "s1"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    env.ok(&["kill", "s1", "15"]);
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 42)
    );
    env.wait_status("s1", "stopped");
    assert_eq!(env.stdout_of("s1"), "got-term\n");
    env.ok(&["delete", "s1"]);
}

#[test]
fn run_returns_the_exit_status_and_cleans_up() {
    let env = Env::new();
    let b = env.bundle("b", &["sh", "-c", "echo ran; exit 7"], |_| {});
    let o = env.cmd(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    env.assert_gone("r1");

    // Killed by a signal: 128 + 9. (The process is pid 1 of its namespace,
    // which cannot SIGKILL itself, as under runc: the signal comes from
    // outside.)
    let b = env.bundle("b2", &["sleep", "1000"], |_| {});
    let child = env
        .base()
        .args(["run", "--bundle", b.to_str().unwrap(), "r2"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !String::from_utf8_lossy(&env.cmd(&["state", "r2"]).stdout).contains("\"running\"") {
        assert!(t.elapsed().as_secs() < 20, "r2 never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.ok(&["kill", "r2", "KILL"]);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    env.assert_gone("r2");
}

#[test]
fn spec_and_features() {
    let env = Env::new();
    let dir = env.tmp.path().join("specdir");
    std::fs::create_dir_all(&dir).unwrap();
    env.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert!(env
        .fails(&["spec", "--bundle", dir.to_str().unwrap()])
        .contains("exists"));
    let f: serde_json::Value = serde_json::from_str(&env.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["hooks"].as_array().unwrap().len() == 6);
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    for cmd in [
        "create", "start", "state", "kill", "delete", "run", "list", "spec", "features",
    ] {
        let help = env.ok(&[cmd, "--help"]);
        assert!(help.contains("Usage"), "{cmd}");
    }
}

#[test]
fn run_in_the_foreground_forwards_sigterm_to_the_container() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.05; done",
        ],
        |_| {},
    );
    let mut child = env
        .base()
        .args(["run", "--bundle", b.to_str().unwrap(), "fw"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // `run` creates the container in the background: wait until it runs.
    let t = std::time::Instant::now();
    while !String::from_utf8_lossy(&env.cmd(&["state", "fw"]).stdout).contains("\"running\"") {
        assert!(t.elapsed().as_secs() < 20, "fw never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    env.assert_gone("fw");
}

/// As with runc: the pid in --pid-file is the container's own process, pid 1
/// of its pid namespace, in the container's namespaces (containerd joins a
/// pod's containers to /proc/<pid>/ns/*), and after `start` it is the OCI
/// process itself. On pve-lxc Proxmox's monitor is the CT init's parent, so
/// the pid-file process is ours, but in every namespace of the container.
#[test]
fn pid_file_pid_is_the_containers_pid_1() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("p1", &b);
    let pid: i32 = std::fs::read_to_string(env.tmp.path().join("p1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let init = env.state("p1")["pid"].as_i64().unwrap() as i32;
    if env.pve.is_some() {
        for ns in ["pid", "mnt", "uts", "ipc", "net", "user", "cgroup"] {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            let init_ns = std::fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap();
            assert_eq!(
                theirs, init_ns,
                "{ns}: the pid-file process is not in the CT's"
            );
        }
        env.ok(&["start", "p1"]);
        env.ok(&["delete", "--force", "p1"]);
        env.assert_gone("p1");
        return;
    }
    assert_eq!(init, pid);
    let nspid = |pid: i32| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .unwrap()
            .to_string()
    };
    assert!(nspid(pid).ends_with("\t1"), "{}", nspid(pid));
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            theirs, ours,
            "{ns}: the pid-file process is in the host's namespace"
        );
    }
    env.ok(&["start", "p1"]);
    let t = std::time::Instant::now();
    loop {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd == b"sleep\x001000\x00" {
            break;
        }
        assert!(
            t.elapsed().as_secs() < 10,
            "pid {pid} never became the OCI process: {cmd:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(nspid(pid).ends_with("\t1"));
    env.ok(&["delete", "--force", "p1"]);
    env.assert_gone("p1");
}

/// Cgroups are host-wide while state is per root: the same id in a second
/// root must neither kill the first container (its cgroup is refused, with
/// a clear error, and nothing is left) nor be blocked forever by an empty
/// cgroup a lost state left behind.
#[test]
fn a_cgroup_of_another_container_is_refused_and_a_stale_one_reused() {
    let a = Env::new();
    if a.pve.is_some() {
        return; // Proxmox owns a CT's cgroups.
    }
    let b = Env::new();
    let id = format!("cg{}", std::process::id());
    let bundle_a = a.bundle("b", &["sleep", "1000"], |_| {});
    let bundle_b = b.bundle("b", &["true"], |_| {});
    a.must_create(&id, &bundle_a);
    a.ok(&["start", &id]);

    let o = b.create(&id, &bundle_b);
    assert!(!o.status.success(), "a second container took a busy cgroup");
    let log = b.log_of(&id);
    assert!(log.contains("is in use"), "{log}");
    b.assert_gone_state(&id);
    assert_eq!(a.status(&id), "running", "the first container was touched");

    // The first root loses its state: its (now empty) cgroups stay.
    a.ok(&["kill", &id, "KILL"]);
    a.wait_status(&id, "stopped");
    std::fs::remove_dir_all(a.root.join("containers").join(&id)).unwrap();
    b.must_create(&id, &bundle_b);
    b.ok(&["delete", "--force", &id]);
    b.assert_gone(&id);
}
