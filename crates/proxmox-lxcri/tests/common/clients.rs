//! What the Docker and Podman end-to-end tests share: the runtime under test,
//! the test image in the formats the clients load, host-side cgroup reads,
//! and leftover checks.
//!
//! The runtime is `$LXCRI_TEST_RUNTIME` (a path, e.g. `/usr/sbin/runc`), by
//! default this crate's `proxmox-lxcri`, so every check can be run against
//! runc to see a difference.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use super::containerd::{run_with_timeout, test_image, Containerd};

/// The runtime binary under test, as an absolute path.
pub fn runtime() -> String {
    let rt = std::env::var("LXCRI_TEST_RUNTIME")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_proxmox-lxcri").to_string());
    let p = Path::new(&rt)
        .canonicalize()
        .unwrap_or_else(|e| panic!("runtime binary {rt} (LXCRI_TEST_RUNTIME): {e}"));
    p.to_string_lossy().into_owned()
}

/// Whether the runtime under test is runc.
pub fn is_runc(rt: &str) -> bool {
    let name = Path::new(rt).file_name().unwrap().to_string_lossy();
    name.contains("runc") && !name.contains("lxcri")
}

/// Panics (never skips) unless every tool in `tools` is in PATH.
pub fn require_tools(tests: &str, tools: &[&str]) {
    testkit::require_root(tests);
    for t in tools {
        assert!(
            testkit::which(t).is_some(),
            "`{t}` not found in PATH: {tests} need it (scripts/install-deps.sh installs \
             docker.io, podman, conmon and skopeo on Debian 12)"
        );
    }
}

/// The test image as an OCI archive (what `ctr import` and `podman load`
/// take) and as a docker-archive made from it by skopeo, in `dir`.
pub fn image_archives(dir: &Path) -> (PathBuf, PathBuf) {
    let oci = test_image().to_path_buf();
    let docker = dir.join("busybox-docker.tar");
    let mut cmd = Command::new("skopeo");
    cmd.arg("copy")
        .arg("--quiet")
        .arg(format!("oci-archive:{}:test", oci.display()))
        .arg(format!(
            "docker-archive:{}:{}",
            docker.display(),
            super::containerd::IMAGE
        ));
    let o = run_with_timeout(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "skopeo copy oci-archive -> docker-archive failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (oci, docker)
}

/// `o`'s status, stdout and stderr, for assertion messages.
pub fn explain(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The value of a cgroup file of `pid`'s cgroup, read on the host: the v1
/// `controller` hierarchy's `v1_file`, or `v2_file` on a pure cgroup v2 host.
pub fn cgroup_value(pid: u32, controller: &str, v1_file: &str, v2_file: &str) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    let mut v1 = None;
    let mut v2 = None;
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctrls), Some(path)) = (ctrls, path) else {
            continue;
        };
        if ctrls.split(',').any(|c| c == controller) {
            v1 = Some(path.to_string());
        } else if ctrls.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let file = match (v1, v2) {
        (Some(p), _) => format!("/sys/fs/cgroup/{controller}{p}/{v1_file}"),
        (None, Some(p)) => format!("/sys/fs/cgroup{p}/{v2_file}"),
        _ => panic!("pid {pid} has no {controller} cgroup:\n{cg}"),
    };
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}

/// Files at most 3 levels below `dir` whose name contains `id`.
pub fn paths_naming(dir: &Path, id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().contains(id) {
                found.push(e.path());
            } else if depth > 1 && e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), id, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, id, 3, &mut found);
    found
}

/// Nothing of container `id` in the runtime's `root`, in LXC's dirs, or in
/// a process's command line (shims and monitors end asynchronously: they get
/// a few seconds).
pub fn assert_no_leftovers(rt: &str, root: &Path, id: &str) {
    let left = paths_naming(root, id);
    assert!(
        left.is_empty(),
        "{rt} left state for {id} in its --root {}: {left:?}",
        root.display()
    );
    if !is_runc(rt) {
        let lxc: Vec<PathBuf> = ["/var/lib/lxc", "/run/lxc"]
            .iter()
            .flat_map(|d| paths_naming(Path::new(d), id))
            .collect();
        assert!(lxc.is_empty(), "LXC leftovers of {id}: {lxc:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = Containerd::processes_mentioning(id);
        if procs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of {id} left behind: {procs:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A shell command that ends with status 143 on SIGTERM under any runtime
/// (pid 1 has no default signal dispositions, so a bare `sleep` ignores it).
pub const TERMINABLE: &str = "trap 'exit 143' TERM; sleep 1000 & wait";

/// CapEff / CapBnd / NoNewPrivs / Seccomp of the process reading it.
pub const STATUS_LINES: &str = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";

/// The value of `key:` in /proc/<pid>/status-like text.
pub fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
        .to_string()
}

/// Mount points at or below `dir` (deepest first), from our mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(super::containerd::unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v
}

/// Unmounts everything under `dir` (lazily: teardown must not fail).
pub fn unmount_all_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// SIGTERM to `child`, SIGKILL after `grace`; reaps it.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Removes the cgroup `path` and its children from every hierarchy, where
/// they hold no task.
pub fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") {
        return;
    }
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(rel)];
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        dirs.push(e.path().join(rel));
    }
    for d in dirs {
        remove_empty_tree(&d);
    }
}

/// rmdir of `dir` and its subdirectories, deepest first (Podman leaves a
/// `conmon` cgroup under the parent); a cgroup with tasks stays.
fn remove_empty_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
