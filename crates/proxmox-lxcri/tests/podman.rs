//! Podman end to end: Debian's podman 4.3 driving the runtime under test
//! through conmon (`podman --runtime <path>`), on private storage (see
//! `common/podman.rs`).
//!
//! Against runc, to compare:
//!
//! ```sh
//! LXCRI_TEST_RUNTIME=/usr/sbin/runc cargo test -p proxmox-lxcri --test podman
//! ```
//!
//! Needs root, podman, conmon and skopeo: the tests fail (never skip)
//! without them; scripts/install-deps.sh installs them.

mod common;

use common::clients::{
    assert_no_leftovers, cgroup_value, explain, runtime, status_field, STATUS_LINES, TERMINABLE,
};
use common::podman::Podman;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn rm_and_check(pm: &Podman, id: &str) {
    let o = pm.podman(&["rm", "-f", id]);
    assert!(o.status.success(), "podman rm:\n{}", explain(&o));
    assert_no_leftovers(&pm.runtime, &pm.runtime_root(), id);
}

fn cap_mask(text: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_field(text, key), 16).expect("hex capability mask")
}

#[test]
fn run_output_exit_code_and_pid1() {
    let pm = Podman::start(&runtime());
    let o = pm.run(&["--name", "hello"], &["echo", "hello"]);
    assert!(o.status.success(), "{}", explain(&o));
    assert_eq!(out(&o), "hello\n", "{}", explain(&o));
    let o = pm.run(&["--rm"], &["sh", "-c", "echo $$; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", explain(&o));
    assert_eq!(out(&o), "1\n", "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("err\n"),
        "{}",
        explain(&o)
    );
    // run -t: the process gets a terminal (the runtime's console socket,
    // under a --root deep enough to overflow a unix socket path).
    let (st, text) = pm.in_pty(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "--cgroup-parent",
        &pm.cgroup_parent,
        "localhost/busybox:test",
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    assert_eq!(st.code(), Some(4), "run -t: {st}\n{text}");
    assert!(text.contains("/dev/pts/0"), "run -t has no tty:\n{text}");
    let id = pm.inspect("hello", "{{.Id}}");
    assert_eq!(pm.inspect(&id, "{{.State.ExitCode}}"), "0");
    rm_and_check(&pm, &id);
}

#[test]
fn detached_exec_stop_and_kill() {
    let pm = Podman::start(&runtime());
    let id = pm.run_detached(&[], &["sh", "-c", TERMINABLE]);
    let o = pm.podman(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", explain(&o));
    assert!(out(&o).starts_with("sh -c trap"), "{}", explain(&o));
    let (st, text) = pm.in_pty(&["exec", "-t", &id, "sh", "-c", "tty; stty size"]);
    assert!(st.success(), "podman exec -t: {st}\n{text}");
    assert!(text.contains("/dev/pts/"), "exec -t has no tty:\n{text}");
    let o = pm.podman(&["stop", "-t", "20", &id]);
    assert!(o.status.success(), "podman stop:\n{}", explain(&o));
    assert_eq!(pm.inspect(&id, "{{.State.ExitCode}}"), "143");
    rm_and_check(&pm, &id);

    let id = pm.run_detached(&[], &["sh", "-c", "trap 'exit 42' USR1; sleep 1000 & wait"]);
    let o = pm.podman(&["kill", "-s", "USR1", &id]);
    assert!(o.status.success(), "podman kill -s USR1:\n{}", explain(&o));
    let o = pm.podman(&["wait", &id]);
    assert_eq!(out(&o).trim(), "42", "{}", explain(&o));
    rm_and_check(&pm, &id);
    let id = pm.run_detached(&[], &["sleep", "1000"]);
    let o = pm.podman(&["kill", &id]);
    assert!(o.status.success(), "podman kill:\n{}", explain(&o));
    let o = pm.podman(&["wait", &id]);
    assert_eq!(out(&o).trim(), "137", "{}", explain(&o));
    rm_and_check(&pm, &id);
}

#[test]
fn resource_limits_in_the_cgroup() {
    let pm = Podman::start(&runtime());
    let id = pm.run_detached(
        &["--memory", "64m", "--pids-limit", "42", "--cpus", "0.5"],
        &["sleep", "1000"],
    );
    let pid = pm.pid(&id);
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (64 << 20).to_string()
    );
    assert_eq!(cgroup_value(pid, "pids", "pids.max", "pids.max"), "42");
    let quota = cgroup_value(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let period = cgroup_value(pid, "cpu", "cpu.cfs_period_us", "cpu.max");
    assert!(
        quota.starts_with("50000") && period.ends_with("100000"),
        "--cpus 0.5: quota {quota:?}, period {period:?}"
    );
    rm_and_check(&pm, &id);
}

#[test]
fn read_only_with_tmpfs_copy_up() {
    let pm = Podman::start(&runtime());
    // --read-only: the rootfs refuses writes; Podman puts tmpfs with its
    // `tmpcopyup` option on /tmp, /run, /var/tmp, and --tmpfs on /etc copies
    // the image's /etc up into the tmpfs.
    let o = pm.run(
        &["--rm", "--read-only", "--tmpfs", "/etc"],
        &[
            "sh",
            "-c",
            "touch /x; head -1 /etc/passwd; touch /etc/y /tmp/y /run/y /var/tmp/y && echo tmpfs-ok; \
             grep -E ' /(etc|tmp) ' /proc/self/mounts | cut -d' ' -f3",
        ],
    );
    assert!(o.status.success(), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        explain(&o)
    );
    assert_eq!(
        out(&o),
        "root:x:0:0:root:/root:/bin/sh\ntmpfs-ok\ntmpfs\ntmpfs\n",
        "{}",
        explain(&o)
    );
}

#[test]
fn security_options() {
    let pm = Podman::start(&runtime());
    let o = pm.run(
        &["--rm", "--user", "65534:65534"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out(&o), "65534\n65534\n", "{}", explain(&o));
    let o = pm.run(&["--rm"], &["sh", "-c", STATUS_LINES]);
    let text = out(&o);
    let default = cap_mask(&text, "CapEff");
    assert_ne!(default, 0, "{text}");
    assert_eq!(cap_mask(&text, "CapBnd"), default, "{text}");
    assert_eq!(status_field(&text, "NoNewPrivs"), "0", "{text}");
    assert_eq!(status_field(&text, "Seccomp"), "2", "{text}");
    // --cap-add SYS_PTRACE (19) and --cap-drop CHOWN (0).
    let o = pm.run(
        &["--rm", "--cap-add", "SYS_PTRACE", "--cap-drop", "CHOWN"],
        &["sh", "-c", STATUS_LINES],
    );
    let text = out(&o);
    assert_eq!(
        cap_mask(&text, "CapEff"),
        (default | 1 << 19) & !1,
        "{text}"
    );
    let o = pm.run(
        &["--rm", "--cap-drop", "ALL", "--cap-add", "KILL"],
        &["sh", "-c", STATUS_LINES],
    );
    assert_eq!(cap_mask(&out(&o), "CapEff"), 1 << 5, "{}", explain(&o));
    let o = pm.run(
        &["--rm", "--security-opt", "no-new-privileges"],
        &["sh", "-c", STATUS_LINES],
    );
    assert_eq!(status_field(&out(&o), "NoNewPrivs"), "1", "{}", explain(&o));
    // Podman's default seccomp profile allows personality(2) only with a
    // few arguments: ADDR_NO_RANDOMIZE (`linux64 -R`) fails with ENOSYS,
    // the profile's errno; unconfined, the same call works.
    let o = pm.run(&["--rm"], &["linux64", "-R", "true"]);
    assert_ne!(o.status.code(), Some(0), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Function not implemented"),
        "{}",
        explain(&o)
    );
    let o = pm.run(
        &["--rm", "--security-opt", "seccomp=unconfined"],
        &["sh", "-c", &format!("linux64 -R true && {STATUS_LINES}")],
    );
    assert!(o.status.success(), "{}", explain(&o));
    assert_eq!(status_field(&out(&o), "Seccomp"), "0", "{}", explain(&o));
}
