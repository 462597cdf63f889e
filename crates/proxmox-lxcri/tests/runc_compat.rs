//! runc 1.1's acceptance rules: bundles that runc runs, we run.
//!
//! - a bundle exactly as the real `runc spec` writes it (a terminal, `sh`, a
//!   read-only root, ambient capabilities that are not inheritable, no new
//!   privileges), on a console socket as containerd would give one;
//! - `run` in the foreground of a process with a terminal and no
//!   `--console-socket`: the caller's terminal, as runc;
//! - Docker's zero values ("unset"), unknown capability names and kernel
//!   memory limits: accepted, with a warning in `--log` where runc warns.
//! - the `rt_` tests: runc's CLI and the spec's MUSTs, driven through the
//!   CLI only, so that they also run against runc
//!   (`LXCRI_TEST_RUNTIME=/usr/sbin/runc ... -- rt_`).
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

// What follows runs against runc too, with the same bundle:
// LXCRI_TEST_RUNTIME=/usr/sbin/runc cargo test -p proxmox-lxcri --test runc_compat -- rt_

/// `cmd` with `files` on fds 3, 4, ... of the child (as a caller passes
/// them with `--preserve-fds`).
fn with_fds(mut cmd: Command, files: &[&std::fs::File]) -> Command {
    use std::os::unix::process::CommandExt;
    let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first: a source may sit on a target number.
            let high: Vec<i32> = raw
                .iter()
                .map(|&fd| libc::fcntl(fd, libc::F_DUPFD, 100))
                .collect();
            for (i, fd) in high.into_iter().enumerate() {
                if fd < 0 || libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

use std::os::fd::AsRawFd;

#[test]
fn rt_preserve_fds_reach_the_process() {
    let env = Env::new();
    let dir = env.tmp.path();
    std::fs::write(dir.join("in3"), "from fd 3\n").unwrap();
    let script = "cat <&3; echo to-fd-4 >&4; test -e /proc/self/fd/5 && echo fd5-leaked; exit 0";
    let b = env.bundle("b", &["sh", "-c", script], |_| {});
    let open = |n: &str| std::fs::File::open(dir.join(n)).unwrap();
    let create = |n: &str| std::fs::File::create(dir.join(n)).unwrap();

    // run: fds 3 and 4 pass, 5 (not asked for) does not.
    let (f3, f4, f5) = (open("in3"), create("out4"), open("in3"));
    let mut cmd = env.rt();
    cmd.args([
        "run",
        "--preserve-fds",
        "2",
        "--bundle",
        b.to_str().unwrap(),
        "pf1",
    ]);
    let o = with_fds(cmd, &[&f3, &f4, &f5])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "run --preserve-fds: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, "from fd 3\n", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("out4")).unwrap(),
        "to-fd-4\n"
    );

    // create (the caller's fds are taken then) + start.
    let (f3, f4) = (open("in3"), create("out4b"));
    let mut cmd = env.rt();
    cmd.args([
        "create",
        "--preserve-fds",
        "2",
        "--bundle",
        b.to_str().unwrap(),
        "pf2",
    ]);
    let st = with_fds(cmd, &[&f3, &f4])
        .stdin(Stdio::null())
        .stdout(create("pf2.out"))
        .stderr(create("pf2.err"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "create --preserve-fds: {}",
        std::fs::read_to_string(dir.join("pf2.err")).unwrap()
    );
    drop((f3, f4));
    let o = env.rt_cmd(&["start", "pf2"]);
    assert!(o.status.success(), "start: {o:?}");
    let t = Instant::now();
    while env.rt_state("pf2")["status"] != "stopped" {
        assert!(t.elapsed() < Duration::from_secs(20), "pf2 did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("pf2.out")).unwrap(),
        "from fd 3\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out4b")).unwrap(),
        "to-fd-4\n"
    );
    assert!(env.rt_cmd(&["delete", "pf2"]).status.success());

    // exec --preserve-fds.
    let b = env.bundle("b2", &["sleep", "1000"], |_| {});
    env.rt_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "pf3"]);
    let f3 = open("in3");
    let mut cmd = env.rt();
    cmd.args(["exec", "--preserve-fds", "1", "pf3", "sh", "-c", "cat <&3"]);
    let o = with_fds(cmd, &[&f3]).stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "exec --preserve-fds: {o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from fd 3\n");
    assert!(env.rt_cmd(&["delete", "-f", "pf3"]).status.success());
}

#[test]
fn rt_delete_of_a_live_container_fails_and_changes_nothing() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    let bundle = b.to_str().unwrap();
    // Created: delete (without --force) removes it, as runc.
    env.rt_detached(&["create", "--bundle", bundle, "d1"]);
    let o = env.rt_cmd(&["delete", "d1"]);
    assert!(o.status.success(), "delete of a created container: {o:?}");
    assert!(!env.rt_cmd(&["state", "d1"]).status.success());

    env.rt_detached(&["run", "-d", "--bundle", bundle, "d2"]);
    let pid = env.rt_state("d2")["pid"].as_i64().unwrap() as i32;
    for status in ["running", "paused"] {
        if status == "paused" {
            assert!(env.rt_cmd(&["pause", "d2"]).status.success());
        }
        let o = env.rt_cmd(&["delete", "d2"]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "cannot delete container d2 that is not stopped: {status}"
            )),
            "{err}"
        );
        let st = env.rt_state("d2");
        assert_eq!(st["status"], status, "a failed delete changed it");
        assert_eq!(st["pid"].as_i64(), Some(pid as i64));
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    }
    assert!(env.rt_cmd(&["resume", "d2"]).status.success());
    assert_eq!(env.rt_state("d2")["status"], "running");
    assert!(env.rt_cmd(&["delete", "--force", "d2"]).status.success());
    assert!(!env.rt_cmd(&["state", "d2"]).status.success());
}

/// The container's cgroup directories on the host, per hierarchy
/// (`(controllers, dir)`), from /proc/<pid>/cgroup.
fn host_cgroup_dirs(pid: i64) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for l in std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
    {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next(), p.next().unwrap(), p.next().unwrap());
        let mnt = if ctrls.is_empty() {
            if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
                "/sys/fs/cgroup/unified".to_string()
            } else {
                "/sys/fs/cgroup".to_string()
            }
        } else {
            format!("/sys/fs/cgroup/{}", ctrls.trim_start_matches("name="))
        };
        out.push((
            ctrls.to_string(),
            std::path::PathBuf::from(format!("{mnt}{path}")),
        ));
    }
    out
}

#[test]
fn rt_device_access_letters_in_any_order() {
    let env = Env::new();
    // runc: r, w and m in any order; other letters ignored ("rwa" is rw).
    let b = env.bundle("b", &["sleep", "1000"], |v| {
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwa"},
            {"allow": true, "type": "c", "major": 1, "minor": 12, "access": "mwr"},
            {"allow": true, "type": "c", "major": 1, "minor": 14, "access": "wr"}
        ]);
    });
    env.rt_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "dv1"]);
    let pid = env.rt_state("dv1")["pid"].as_i64().unwrap();
    // cgroup v1: the kernel's list says what was allowed.
    if let Some((_, dir)) = host_cgroup_dirs(pid)
        .into_iter()
        .find(|(c, _)| c.split(',').any(|c| c == "devices"))
    {
        let list = std::fs::read_to_string(dir.join("devices.list")).unwrap();
        for want in ["c 1:11 rw\n", "c 1:12 rwm\n", "c 1:14 rw\n"] {
            assert!(list.contains(want), "{want:?} not in {list}");
        }
    }
    assert!(env.rt_cmd(&["delete", "-f", "dv1"]).status.success());
    // Nothing of r, w, m: refused (runc too).
    let b = env.bundle("b2", &["true"], |v| {
        v["linux"]["resources"]["devices"] =
            json!([{"allow": true, "type": "c", "major": 1, "minor": 11, "access": ""}]);
    });
    let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), "dv2"]);
    assert!(!o.status.success(), "{o:?}");
    let _ = env.rt_cmd(&["delete", "-f", "dv2"]);
}

#[test]
fn rt_rro_is_recursive() {
    let env = Env::new();
    let host = env.tmp.path().join("host");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &host.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(host.join("sub"));
    let script = "touch /r/x; echo top=$?; touch /r/sub/x; echo sub=$?; \
                  touch /n/sub/x; echo plain=$?; grep -cE ' /r(/sub)? ro,nosuid' /proc/self/mountinfo";
    let src = host.to_str().unwrap().to_string();
    let b = env.bundle("b", &["sh", "-c", script], |v| {
        let m = v["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/r", "type": "bind", "source": src,
                      "options": ["rbind", "rro", "rnosuid"]}));
        m.push(json!({"destination": "/n", "type": "bind", "source": src,
                      "options": ["rbind", "ro"]}));
    });
    let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), "ro1"]);
    assert!(o.status.success(), "run with rro: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    // rro reaches the submount; plain ro does not (as runc).
    assert_eq!(out, "top=1\nsub=1\nplain=0\n2\n", "{o:?}");
}

#[test]
fn rt_masked_and_readonly_paths_of_every_kind() {
    let env = Env::new();
    let script = "head -c 4 /dev/zero | wc -c; echo x > /dev/full; echo full=$?; \
                  ls /mdir | wc -l; echo z > /mfile; echo mfile=$?; cat /mfile; \
                  echo q > /dev/urandom; echo urandom=$?; echo q > /rodir/f; echo rodir=$?; \
                  cat /mdev; echo mdev=$?";
    let b = env.bundle("b", &["sh", "-c", script], |v| {
        v["linux"]["maskedPaths"] =
            json!(["/dev/zero", "/mdir", "/dev/full", "/mdev", "/nonexistent"]);
        v["linux"]["readonlyPaths"] = json!(["/mfile", "/dev/urandom", "/rodir", "/nope"]);
    });
    let root = b.join("rootfs");
    std::fs::create_dir_all(root.join("mdir")).unwrap();
    std::fs::write(root.join("mdir/secret"), "s").unwrap();
    std::fs::create_dir_all(root.join("rodir")).unwrap();
    std::fs::write(root.join("rodir/f"), "f").unwrap();
    std::fs::write(root.join("mfile"), "content\n").unwrap();
    std::fs::write(root.join("mdev"), "device-like file\n").unwrap();
    let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), "mk1"]);
    assert!(o.status.success(), "run: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    // Masked char devices become /dev/null (reads end at once, writes
    // vanish); a masked dir is an empty read-only tmpfs; a read-only char
    // device still writes (its fs is read-only, not the device).
    assert_eq!(
        out, "0\nfull=0\n0\nmfile=1\ncontent\nurandom=0\nrodir=1\nmdev=0\n",
        "{o:?}"
    );
}

#[test]
fn rt_exec_cgroup_runs_in_a_sub_cgroup() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.rt_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "cg1"]);
    let pid = env.rt_state("cg1")["pid"].as_i64().unwrap();
    let dirs = host_cgroup_dirs(pid);
    for (_, d) in &dirs {
        let _ = std::fs::create_dir(d.join("sub1"));
    }
    let in_sub = |ctrl: &str, out: &str| {
        out.lines().any(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next(), p.next().unwrap_or(""), p.next().unwrap_or(""));
            c.split(',').any(|c| c == ctrl) && path.ends_with("/sub1")
        })
    };
    // controller:path (runc 1.1's form), two controllers at once.
    let o = env.rt_cmd(&[
        "exec",
        "--cgroup",
        "memory,pids:sub1",
        "cg1",
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(o.status.success(), "exec --cgroup memory,pids:sub1: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(in_sub("memory", &out) && in_sub("pids", &out), "{out}");
    assert!(!in_sub("devices", &out), "{out}");
    // A sub-cgroup that does not exist, and bad arguments: errors.
    let o = env.rt_cmd(&["exec", "--cgroup", "memory:nosuch", "cg1", "true"]);
    assert_eq!(o.status.code(), Some(255), "{o:?}");
    let o = env.rt_cmd(&["exec", "--cgroup", "a", "--cgroup", "b", "cg1", "true"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid --cgroup argument"));
    assert!(env.rt_cmd(&["delete", "-f", "cg1"]).status.success());
    for (_, d) in &dirs {
        let _ = std::fs::remove_dir(d.join("sub1"));
    }
}

/// runc's containerProcessState and the notify fd, from one connection
/// to a seccomp agent's socket.
fn agent_receive(l: &UnixListener) -> (serde_json::Value, OwnedFd) {
    let (s, _) = l.accept().expect("accept on the listener socket");
    let mut buf = vec![0u8; 65536];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .expect("recvmsg on the listener socket");
    let n = msg.bytes;
    let mut fd = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just handed us this fd.
            fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let state: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("state JSON");
    (state, fd.expect("the notify fd"))
}

/// Answers the first syscall notified on `fd` with EPERM; returns its number.
fn agent_answer_one(fd: &OwnedFd) -> i32 {
    // struct seccomp_notif (80 bytes) / seccomp_notif_resp (24 bytes).
    let mut notif = [0u8; 80];
    const RECV: libc::c_ulong = 0xc050_2100;
    const SEND: libc::c_ulong = 0xc018_2101;
    // SAFETY: ioctls with buffers of the kernel's struct sizes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), RECV, notif.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "SECCOMP_IOCTL_NOTIF_RECV: {}",
        std::io::Error::last_os_error()
    );
    let id = u64::from_ne_bytes(notif[0..8].try_into().unwrap());
    let nr = i32::from_ne_bytes(notif[16..20].try_into().unwrap());
    let mut resp = [0u8; 24];
    resp[0..8].copy_from_slice(&id.to_ne_bytes());
    resp[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SEND, resp.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "SECCOMP_IOCTL_NOTIF_SEND: {}",
        std::io::Error::last_os_error()
    );
    nr
}

fn notify_profile(sock: &std::path::Path) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock.to_str().unwrap(),
        "listenerMetadata": "meta-1",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

#[test]
fn rt_seccomp_listener_path_gets_the_notify_fd() {
    let env = Env::new();
    let sock = env.tmp.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (state, fd) = agent_receive(&listener);
        (state, agent_answer_one(&fd))
    });
    let profile = notify_profile(&sock);
    let script = "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo not-made";
    let b = env.bundle("b", &["sh", "-c", script], |v| {
        v["linux"]["seccomp"] = profile
    });
    let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), "lp1"]);
    let out = String::from_utf8_lossy(&o.stdout);
    // The agent's answer (EPERM) is what mkdir got.
    assert_eq!(out, "rc=1\nnot-made\n", "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{o:?}"
    );
    let (state, nr) = agent.join().unwrap();
    assert_eq!(nr as libc::c_long, libc::SYS_mkdir, "{state}");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "meta-1", "{state}");
    assert_eq!(state["state"]["id"], "lp1", "{state}");
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");

    // A process added with exec hands its fd over too.
    let sock = env.tmp.path().join("agent2.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (_, container_fd) = agent_receive(&listener);
        let (state, fd) = agent_receive(&listener);
        let nr = agent_answer_one(&fd);
        drop(container_fd);
        (state, nr)
    });
    let profile = notify_profile(&sock);
    let b = env.bundle("b2", &["sleep", "1000"], |v| {
        v["linux"]["seccomp"] = profile
    });
    env.rt_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "lp2"]);
    let o = env.rt_cmd(&["exec", "lp2", "sh", "-c", "mkdir /tmp/y; echo rc=$?"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "rc=1\n", "{o:?}");
    let (state, nr) = agent.join().unwrap();
    assert_eq!(nr as libc::c_long, libc::SYS_mkdir, "{state}");
    assert_eq!(state["state"]["id"], "lp2", "{state}");
    assert!(env.rt_cmd(&["delete", "-f", "lp2"]).status.success());
}

/// The mount points of `mounts`, in the order /proc/self/mountinfo lists
/// them (first appearance; `\040`-style escapes are not in these paths).
fn mountinfo_order(mountinfo: &str, mounts: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for l in mountinfo.lines() {
        let point = l.split(' ').nth(4).unwrap_or("").to_string();
        if mounts.contains(&point) && !seen.contains(&point) {
            seen.push(point);
        }
    }
    seen
}

/// The runtime spec: "The runtime MUST mount entries in the listed order."
/// runc's default mounts (LXC makes /dev first, cgroups after every other
/// entry, devpts last), plus what Docker adds after the cgroups (a bind, a
/// tmpfs), in a container with and without a user namespace.
#[test]
fn rt_mountinfo_lists_the_spec_mounts_in_order() {
    let env = Env::new();
    testkit::make_traversable(env.tmp.path());
    let src = env.tmp.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    let src = src.to_str().unwrap().to_string();
    for userns in [true, false] {
        let b = env.bundle(
            &format!("b{userns}"),
            &["sh", "-c", "cat /proc/self/mountinfo"],
            |v| {
                let m = v["mounts"].as_array_mut().unwrap();
                // `runc spec` ends with the cgroups (testkit's spec has none).
                if !m.iter().any(|m| m["type"] == "cgroup") {
                    m.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup",
                                  "source": "cgroup",
                                  "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
                }
                m.push(
                    json!({"destination": "/data", "type": "bind", "source": src,
                              "options": ["rbind", "rw"]}),
                );
                m.push(
                    json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev"]}),
                );
                if userns {
                    v["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                    v["linux"]["uidMappings"] = map.clone();
                    v["linux"]["gidMappings"] = map;
                }
            },
        );
        // A mapped root cannot make mount points in a root-owned image.
        std::fs::create_dir_all(b.join("rootfs/data")).unwrap();
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        let want: Vec<String> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect();
        assert!(want.len() >= 9, "runc's default mounts and ours: {want:?}");
        let id = format!("order{}", userns as u8);
        let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), &id]);
        assert!(o.status.success(), "run (userns {userns}): {o:?}");
        let info = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            mountinfo_order(&info, &want),
            want,
            "mountinfo (userns {userns}):\n{info}"
        );
        // Still a working container: the devices and the terminal devices
        // are there, the cgroup mount has the container's controllers.
        assert!(info.contains(" /dev/pts "), "{info}");
    }
}

/// cgroup v1: a parent cgroup with a CPU limit. Under the limit the
/// container runs and gets its quota; over it the kernel refuses the
/// child's quota and the run fails naming the file (runc the same).
#[test]
fn rt_cgroup_v1_parent_cpu_limit() {
    let parent = std::path::Path::new("/sys/fs/cgroup/cpu/lxcri-test-parent");
    if !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
        eprintln!("skipped: no cgroup v1 cpu hierarchy on this host");
        return;
    }
    let env = Env::new();
    let _ = std::fs::create_dir(parent);
    struct Rm(&'static std::path::Path);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0);
        }
    }
    let _rm = Rm(std::path::Path::new("/sys/fs/cgroup/cpu/lxcri-test-parent"));
    std::fs::write(parent.join("cpu.cfs_quota_us"), "50000").unwrap();
    for (quota, ok) in [(20000, true), (100000, false)] {
        let b = env.bundle(&format!("b{quota}"), &["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"], |v| {
            v["linux"]["cgroupsPath"] = json!(format!("/lxcri-test-parent/c{quota}"));
            v["linux"]["resources"]["cpu"] = json!({"quota": quota, "period": 100000});
            v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/sys/fs/cgroup",
                "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]}));
        });
        let id = format!("pq{quota}");
        let o = env.rt_cmd(&["run", "--bundle", b.to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&o.stderr);
        if ok {
            assert!(o.status.success(), "{o:?}");
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{quota}\n"));
        } else {
            assert!(!o.status.success(), "{o:?}");
            assert!(err.contains("cfs_quota_us"), "{err}");
            let _ = env.rt_cmd(&["delete", "-f", &id]);
        }
        assert!(
            !parent.join(format!("c{quota}")).exists(),
            "c{quota} left behind"
        );
    }
}
