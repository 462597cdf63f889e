//! Docker end to end: a private `dockerd` (Debian's docker.io 20.10, its own
//! containerd and `io.containerd.runc.v2` shims) with the runtime under test
//! registered in daemon.json's `runtimes` (see `common/docker.rs`).
//!
//! Against runc, to compare:
//!
//! ```sh
//! LXCRI_TEST_RUNTIME=/usr/sbin/runc cargo test -p proxmox-lxcri --test docker
//! ```
//!
//! Needs root, dockerd, docker, containerd and skopeo: the tests fail (never
//! skip) without them; scripts/install-deps.sh installs them.

mod common;

use common::clients::{
    assert_no_leftovers, cgroup_value, is_runc, runtime, status_field, STATUS_LINES, TERMINABLE,
};
use common::docker::Dockerd;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Removes container `id` with `docker rm` and checks that neither the
/// runtime's root nor LXC nor a process keeps anything of it.
fn rm_and_check(dk: &Dockerd, id: &str) {
    let o = dk.docker(&["rm", "-f", id]);
    assert!(o.status.success(), "docker rm:\n{}", dk.explain(&o));
    for root in dk.runtime_roots() {
        assert_no_leftovers(&dk.runtime, &root, id);
    }
}

#[test]
fn run_output_exit_code_and_pid1() {
    let dk = Dockerd::start(&runtime());
    let o = dk.run(&["--name", "hello"], &["echo", "hello"]);
    assert!(o.status.success(), "{}", dk.explain(&o));
    assert_eq!(out(&o), "hello\n", "{}", dk.explain(&o));
    // stdout and stderr apart; the process is pid 1.
    let o = dk.run(&["--rm"], &["sh", "-c", "echo $$; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", dk.explain(&o));
    assert_eq!(out(&o), "1\n", "{}", dk.explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("err\n"),
        "{}",
        dk.explain(&o)
    );
    // run -t: the process gets a terminal (the runtime's console socket,
    // under a --root deep enough to overflow a unix socket path).
    let (st, text) = dk.in_pty(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "--runtime",
        common::docker::RUNTIME_NAME,
        "localhost/busybox:test",
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    assert_eq!(st.code(), Some(4), "run -t: {st}\n{text}");
    assert!(text.contains("/dev/pts/0"), "run -t has no tty:\n{text}");
    let id = dk.inspect("hello", "{{.Id}}");
    assert_eq!(dk.inspect(&id, "{{.State.ExitCode}}"), "0");
    rm_and_check(&dk, &id);
    // `--rm` containers are gone from the runtime's root too (runc keeps one
    // dir per container there; proxmox-lxcri one under containers/, next to
    // its events log).
    let left: Vec<_> = dk
        .runtime_roots()
        .iter()
        .map(|r| {
            if is_runc(&dk.runtime) {
                r.clone()
            } else {
                r.join("containers")
            }
        })
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
}

#[test]
fn detached_exec_stop_and_kill() {
    let dk = Dockerd::start(&runtime());
    let id = dk.run_detached(&[], &["sh", "-c", TERMINABLE]);
    // exec: output and exit code, in the container's pid namespace.
    let o = dk.docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", dk.explain(&o));
    assert!(out(&o).starts_with("sh -c trap"), "{}", dk.explain(&o));
    // exec -t: the process has a terminal.
    let (st, text) = dk.in_pty(&["exec", "-t", &id, "sh", "-c", "tty; stty size"]);
    assert!(st.success(), "docker exec -t: {st}\n{text}");
    assert!(text.contains("/dev/pts/"), "exec -t has no tty:\n{text}");
    // stop sends SIGTERM: the trap exits 143.
    let o = dk.docker(&["stop", "-t", "20", &id]);
    assert!(o.status.success(), "docker stop:\n{}", dk.explain(&o));
    assert_eq!(dk.inspect(&id, "{{.State.ExitCode}}"), "143");
    rm_and_check(&dk, &id);

    // kill: SIGKILL by default (137); other signals reach the process.
    let id = dk.run_detached(&[], &["sh", "-c", "trap 'exit 42' USR1; sleep 1000 & wait"]);
    let o = dk.docker(&["kill", "-s", "USR1", &id]);
    assert!(
        o.status.success(),
        "docker kill -s USR1:\n{}",
        dk.explain(&o)
    );
    let o = dk.docker(&["wait", &id]);
    assert_eq!(out(&o).trim(), "42", "{}", dk.explain(&o));
    rm_and_check(&dk, &id);
    let id = dk.run_detached(&[], &["sleep", "1000"]);
    let o = dk.docker(&["kill", &id]);
    assert!(o.status.success(), "docker kill:\n{}", dk.explain(&o));
    let o = dk.docker(&["wait", &id]);
    assert_eq!(out(&o).trim(), "137", "{}", dk.explain(&o));
    rm_and_check(&dk, &id);
}

#[test]
fn resource_limits_in_the_cgroup() {
    let dk = Dockerd::start(&runtime());
    let id = dk.run_detached(
        &["--memory", "64m", "--pids-limit", "42", "--cpus", "0.5"],
        &["sleep", "1000"],
    );
    let pid = dk.pid(&id);
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (64 << 20).to_string()
    );
    assert_eq!(cgroup_value(pid, "pids", "pids.max", "pids.max"), "42");
    let quota = cgroup_value(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let period = cgroup_value(pid, "cpu", "cpu.cfs_period_us", "cpu.max");
    // v1: quota 50000, period 100000; v2: "50000 100000" in both reads.
    assert!(
        quota.starts_with("50000") && period.ends_with("100000"),
        "--cpus 0.5: quota {quota:?}, period {period:?}"
    );
    rm_and_check(&dk, &id);
}

#[test]
fn security_options() {
    let dk = Dockerd::start(&runtime());
    // --read-only: the rootfs refuses writes.
    let o = dk.run(&["--rm", "--read-only"], &["sh", "-c", "touch /x"]);
    assert_ne!(o.status.code(), Some(0), "{}", dk.explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        dk.explain(&o)
    );
    let o = dk.run(&["--rm"], &["sh", "-c", "touch /x"]);
    assert!(o.status.success(), "a writable rootfs: {}", dk.explain(&o));
    // --user.
    let o = dk.run(
        &["--rm", "--user", "65534:65534"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out(&o), "65534\n65534\n", "{}", dk.explain(&o));
    // Docker's default capabilities, and --cap-drop / --cap-add.
    let o = dk.run(&["--rm"], &["sh", "-c", STATUS_LINES]);
    let text = out(&o);
    assert_eq!(status_field(&text, "CapEff"), "00000000a80425fb", "{text}");
    assert_eq!(status_field(&text, "CapBnd"), "00000000a80425fb", "{text}");
    assert_eq!(status_field(&text, "NoNewPrivs"), "0", "{text}");
    // Docker's default seccomp profile is in force (mode 2: filter).
    assert_eq!(status_field(&text, "Seccomp"), "2", "{text}");
    let o = dk.run(
        &[
            "--rm",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--cap-add",
            "KILL",
        ],
        &["sh", "-c", STATUS_LINES],
    );
    let text = out(&o);
    assert_eq!(status_field(&text, "CapEff"), "0000000000000021", "{text}");
    assert_eq!(status_field(&text, "CapBnd"), "0000000000000021", "{text}");
    let o = dk.run(
        &["--rm", "--cap-drop", "NET_RAW"],
        &["sh", "-c", STATUS_LINES],
    );
    assert_eq!(status_field(&out(&o), "CapEff"), "00000000a80405fb");
    // --security-opt no-new-privileges.
    let o = dk.run(
        &["--rm", "--security-opt", "no-new-privileges"],
        &["sh", "-c", STATUS_LINES],
    );
    assert_eq!(
        status_field(&out(&o), "NoNewPrivs"),
        "1",
        "{}",
        dk.explain(&o)
    );
}

#[test]
fn default_seccomp_profile_blocks_syscalls() {
    let dk = Dockerd::start(&runtime());
    // unshare(CLONE_NEWUSER) needs no capability; Docker's profile refuses it.
    let o = dk.run(&["--rm"], &["unshare", "-U", "true"]);
    assert_ne!(o.status.code(), Some(0), "{}", dk.explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{}",
        dk.explain(&o)
    );
    // Without the profile the same call works: it was the filter.
    let o = dk.run(
        &["--rm", "--security-opt", "seccomp=unconfined"],
        &[
            "sh",
            "-c",
            "unshare -U true && grep Seccomp: /proc/self/status",
        ],
    );
    assert!(o.status.success(), "{}", dk.explain(&o));
    assert!(out(&o).contains("Seccomp:\t0"), "{}", dk.explain(&o));
}
