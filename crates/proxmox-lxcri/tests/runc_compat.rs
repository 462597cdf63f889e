//! runc 1.1's acceptance rules: bundles that runc runs, we run.
//!
//! - a bundle exactly as the real `runc spec` writes it (a terminal, `sh`, a
//!   read-only root, ambient capabilities that are not inheritable, no new
//!   privileges), on a console socket as containerd would give one;
//! - `run` in the foreground of a process with a terminal and no
//!   `--console-socket`: the caller's terminal, as runc;
//! - Docker's zero values ("unset"), unknown capability names and kernel
//!   memory limits: accepted, with a warning in `--log` where runc warns.
mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;
use support::Env;

/// Accepts one connection on `l` and returns the fd it carries (the pty
/// master, as runc's console-socket protocol sends it).
fn receive_master(l: UnixListener) -> OwnedFd {
    use std::os::fd::AsRawFd;
    let (s, _) = l.accept().expect("accept on the console socket");
    let mut buf = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .expect("recvmsg on the console socket");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just handed us this fd.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd on the console socket");
}

#[test]
fn runc_spec_bundle_runs_unchanged() {
    testkit::require_root_and_lxc("the runc-spec bundle test");
    let runc = testkit::which("runc").expect(
        "runc not found: this test makes its bundle with `runc spec` (apt-get install runc)",
    );
    let env = Env::new();
    let bundle = env.tmp.path().join("b");
    support::rootfs().build(&bundle.join("rootfs"));
    let o = Command::new(runc)
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "runc spec: {o:?}");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    // What made such bundles fail before: ambient caps that cannot be raised.
    assert_eq!(spec["process"]["terminal"], true);
    assert!(spec["process"]["capabilities"]["ambient"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(spec["process"]["capabilities"]["inheritable"].is_null());

    let sock = env.tmp.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let master = std::thread::spawn(move || receive_master(listener));
    let o = env.cmd(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "r1",
    ]);
    assert!(o.status.success(), "create of a `runc spec` bundle: {o:?}");
    let mut pty = std::fs::File::from(master.join().unwrap());
    env.ok(&["start", "r1"]);
    // The interactive sh of the spec: ask it what it is, then leave.
    pty.write_all(
        b"grep -E '^(CapEff|CapAmb|NoNewPrivs)' /proc/self/status; touch /x; echo pid=$$; exit\n",
    )
    .unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd closes: the shell has exited.
        while let Ok(n) = pty.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.status("r1") != "stopped" {
        assert!(
            Instant::now() < deadline,
            "the runc-spec shell did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = reader.join().unwrap();
    // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10); no ambient set.
    assert!(text.contains("CapEff:\t0000000020000420"), "{text}");
    assert!(text.contains("CapAmb:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("pid=1"), "{text}");
    env.ok(&["delete", "r1"]);
    env.assert_gone("r1");
}

#[test]
fn docker_zero_values_unknown_caps_and_kernel_memory_are_accepted() {
    let env = Env::new();
    let b = env.bundle(
        "b",
        &["sh", "-c", "grep -E '^(CapEff|CapAmb)' /proc/self/status"],
        |v| {
            v["linux"]["resources"] = json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"disableOOMKiller": false, "kernel": 67108864, "kernelTCP": 0},
                "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
                "pids": {"limit": 0},
                "blockIO": {"weight": 0}
            });
            let caps = json!(["CAP_KILL", "CAP_NOT_A_CAPABILITY"]);
            v["process"]["capabilities"] = json!({
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL", "CAP_CHOWN"]});
        },
    );
    let log = env.tmp.path().join("log.json");
    let o = env
        .base()
        .args(["--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(["run", "--bundle", b.to_str().unwrap(), "z1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "run: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    // KILL (5) everywhere it was asked for; it is inheritable, so ambient.
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000020"), "{out}");
    let log = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["level"] == "warning")
        .collect();
    let text = format!("{warnings:?}");
    assert!(text.contains("CAP_NOT_A_CAPABILITY"), "{log}");
    assert!(text.contains("linux.resources.memory.kernel"), "{log}");
    assert!(
        !text.contains("blockIO"),
        "zero values are not worth a warning: {log}"
    );
}

#[test]
fn foreground_run_uses_the_callers_terminal() {
    let env = Env::new();
    // runc's default spec asks for a terminal; no --console-socket given.
    let b = env.bundle("b", &["sh", "-c", "tty; exit 3"], |v| {
        v["process"]["terminal"] = json!(true);
    });
    let mut cmd = env.base();
    cmd.args(["run", "--bundle", b.to_str().unwrap(), "fg1"]);
    let (st, text) =
        testkit::run_in_pty(cmd, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.code(), Some(3), "{text}");
    assert!(
        text.contains("/dev/pts/0"),
        "no terminal in the container: {text}"
    );
    env.assert_gone("fg1");
    // Our console socket is gone with the container.
    let left: Vec<_> = std::fs::read_dir(env.root.join("runtime"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("console-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn foreground_exec_t_relays_a_container_pty() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("ex1", &b);
    env.ok(&["start", "ex1"]);
    // exec -t without --console-socket, from a terminal: runc gives the
    // process a pty of the container's and relays it.
    let mut cmd = env.base();
    cmd.args(["exec", "-t", "ex1", "sh", "-c", "tty; exit 6"]);
    let (st, text) =
        testkit::run_in_pty(cmd, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.code(), Some(6), "{text}");
    assert!(
        text.contains("/dev/pts/"),
        "no terminal for the exec: {text}"
    );
    // A background child keeps the exec's terminal open: exec still returns
    // with its process.
    let mut cmd = env.base();
    cmd.args([
        "exec",
        "-t",
        "ex1",
        "sh",
        "-c",
        "sleep 100 & echo bg; exit 2",
    ]);
    let (st, text) =
        testkit::run_in_pty(cmd, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.code(), Some(2), "{text}");
    assert!(text.contains("bg"), "{text}");
    env.ok(&["delete", "--force", "ex1"]);
    env.assert_gone("ex1");
}
