//! End-to-end tests of the container init (`proxmox_lxcri_lxc::init`), driven
//! through the real exchange-dir protocol with a real `lxc-start -F` and a
//! busybox rootfs. Needs root and LXC: fails (never silently passes) without.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proxmox_lxcri_lxc::init_config::{Capabilities, ExitStatus, InitConfig};

const TIMEOUT: Duration = Duration::from_secs(30);
static COUNTER: AtomicUsize = AtomicUsize::new(0);

const APPLETS: &[&str] = &[
    "sh", "echo", "id", "cat", "grep", "mkdir", "sleep", "touch", "ls", "true", "wc", "umask",
    "pwd", "env", "tr", "test", "kill", "head",
];

/// Fails (never silently passes) without root, LXC and busybox.
fn require_env() {
    testkit::require_root_and_lxc("the init_helper tests (they start real LXC containers)");
    testkit::busybox();
}

struct Ct {
    _tmp: tempfile::TempDir,
    name: String,
    lxcpath: PathBuf,
    exch: PathBuf,
    rootfs: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

fn base_config(args: &[&str]) -> InitConfig {
    InitConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "FOO=bar".into()],
        cwd: "/".into(),
        capabilities: Some(caps(
            &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            &[],
            &[],
        )),
        ..Default::default()
    }
}

fn caps(bep: &[&str], inh: &[&str], amb: &[&str]) -> Capabilities {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Capabilities {
        bounding: v(bep),
        effective: v(bep),
        permitted: v(bep),
        inheritable: v(inh),
        ambient: v(amb),
    }
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

impl Ct {
    /// Builds the rootfs, exchange dir and LXC config, and starts `lxc-start -F`.
    fn start(cfg: &InitConfig) -> Ct {
        Ct::start_with(cfg, |_| {})
    }

    /// As [`Ct::start`], with `extra` run on the rootfs before LXC starts.
    fn start_with(cfg: &InitConfig, extra: impl FnOnce(&Path)) -> Ct {
        Ct::start_full(cfg, extra, None)
    }

    /// With `tty`, lxc-start's (and so the init's) stdio is that pty slave.
    fn start_full(
        cfg: &InitConfig,
        extra: impl FnOnce(&Path),
        tty: Option<&std::os::fd::OwnedFd>,
    ) -> Ct {
        require_env();
        let tmp = tempfile::Builder::new()
            .prefix("lxcri-init-test")
            .tempdir()
            .unwrap();
        let name = format!(
            "lxcri-it-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let rootfs = testkit::Rootfs::busybox()
            .applets(APPLETS)
            .mode("tmp", 0o1777)
            .build(&tmp.path().join("rootfs"));
        extra(&rootfs);
        let exch = tmp.path().join("exchange");
        fs::create_dir(&exch).unwrap();
        for f in ["ready", "start", "started"] {
            mkfifo(&exch.join(f));
        }
        File::create(exch.join("exit")).unwrap();
        fs::write(exch.join("init.json"), serde_json::to_vec(cfg).unwrap()).unwrap();

        let lxcpath = tmp.path().join("lxc");
        fs::create_dir_all(lxcpath.join(&name)).unwrap();
        let bin = env!("CARGO_BIN_EXE_proxmox-lxcri");
        let log = tmp.path().join("lxc.log");
        let conf = format!(
            "lxc.uts.name = {name}\n\
             lxc.rootfs.path = dir:{rootfs}\n\
             lxc.rootfs.managed = 0\n\
             lxc.autodev = 1\n\
             lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0\n\
             lxc.mount.entry = {exch} dev/.lxcri none bind,create=dir 0 0\n\
             lxc.mount.entry = {bin} dev/.lxcri-init none bind,create=file,ro 0 0\n\
             lxc.init.cmd = /dev/.lxcri-init\n\
             lxc.console.path = none\n\
             lxc.net.0.type = empty\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.namespace.clone = mnt pid uts ipc net\n\
             lxc.log.file = {log}\n\
             lxc.log.level = INFO\n",
            rootfs = rootfs.display(),
            exch = exch.display(),
            log = log.display(),
        );
        fs::write(lxcpath.join(&name).join("config"), conf).unwrap();
        let mut cmd = Command::new("lxc-start");
        cmd.arg("-F").arg("-P").arg(&lxcpath).arg("-n").arg(&name);
        match tty {
            Some(t) => {
                let s = || Stdio::from(t.try_clone().unwrap());
                cmd.stdin(s()).stdout(s()).stderr(s());
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        let child = cmd.spawn().expect("spawning lxc-start");
        Ct {
            _tmp: tmp,
            name,
            lxcpath,
            exch,
            rootfs,
            log,
            child: Some(child),
        }
    }

    fn lxc_pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn lxc_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads one line from a FIFO without ever blocking forever.
    fn read_line(&mut self, fifo: &str) -> String {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.exch.join(fifo))
            .unwrap();
        self.read_line_from(&mut f, fifo)
    }

    fn read_line_from(&mut self, f: &mut File, what: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = Vec::new();
        loop {
            let mut b = [0u8; 256];
            match f.read(&mut b) {
                Ok(n) if n > 0 => {
                    buf.extend_from_slice(&b[..n]);
                    if buf.contains(&b'\n') {
                        return String::from_utf8_lossy(&buf).trim_end().to_string();
                    }
                    continue;
                }
                _ => {}
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // One more read: the writer may have written and exited.
                if let Ok(n) = f.read(&mut b) {
                    buf.extend_from_slice(&b[..n]);
                }
                if !buf.is_empty() {
                    return String::from_utf8_lossy(&buf).trim_end().to_string();
                }
                panic!(
                    "lxc-start exited ({st}) before anything arrived on {what}; lxc log:\n{}",
                    self.lxc_log()
                );
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("timeout waiting for {what}; lxc log:\n{}", self.lxc_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `start`: open `started`, write the byte, read the answer.
    fn start_process(&mut self) -> String {
        let mut started = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.exch.join("started"))
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let mut start = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(self.exch.join("start"))
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("opening start: {e}"),
            }
        };
        start.write_all(b"s").unwrap();
        drop(start);
        self.read_line_from(&mut started, "started")
    }

    /// Waits for lxc-start to end; returns (stdout, stderr).
    fn wait(&mut self) -> (String, String) {
        let deadline = Instant::now() + TIMEOUT;
        let mut child = self.child.take().unwrap();
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                self.child = Some(child);
                self.kill();
                panic!("container did not end; lxc log:\n{}", self.lxc_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_string(&mut out).unwrap();
        }
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (out, err)
    }

    fn exit_status(&self) -> ExitStatus {
        let s = fs::read_to_string(self.exch.join("exit")).unwrap();
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("exit file {s:?}: {e}"))
    }

    /// The container's init, as seen from the host: the child of lxc-start.
    fn init_pid(&self) -> i32 {
        let parent = self.lxc_pid();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may contain spaces.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let ppid: i32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
            if ppid == parent {
                return pid;
            }
        }
        panic!("no child of lxc-start {parent} found");
    }

    fn kill(&mut self) {
        let _ = Command::new("lxc-stop")
            .args(["-k", "-n", &self.name, "-P"])
            .arg(&self.lxcpath)
            .output();
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait().ok().flatten().is_none() {
                self.kill();
            }
        }
    }
}

/// Runs a container through the whole protocol, expecting both steps to succeed.
fn run_ok(cfg: &InitConfig) -> (Ct, String, String) {
    let mut ct = Ct::start(cfg);
    let r = ct.read_line("ready");
    assert_eq!(r, "ok", "ready; lxc log:\n{}", ct.lxc_log());
    let s = ct.start_process();
    assert_eq!(s, "ok", "started; lxc log:\n{}", ct.lxc_log());
    let (out, err) = ct.wait();
    (ct, out, err)
}

fn status_line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in output:\n{out}"))
        .split_whitespace()
        .nth(1)
        .unwrap()
}

#[test]
fn root_process_output_env_caps_and_exit_code() {
    let cfg = base_config(&[
        "sh",
        "-c",
        "echo hi; id; echo FOO=$FOO container=$container; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
         ls -a /dev | grep -c lxcri; echo fds: $(ls /proc/self/fd); echo pid=$$; \
         (sleep 0.2 &); sleep 0.6; echo zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status | wc -l); exit 7",
    ]);
    let (ct, out, err) = run_ok(&cfg);
    assert!(out.contains("hi\n"), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("uid=0 gid=0"), "{out}");
    // Exactly process.env: nothing of LXC's (container=lxc) leaks.
    assert!(out.contains("FOO=bar container=\n"), "{out}");
    // CAP_CHOWN(0) | CAP_KILL(5) | CAP_NET_BIND_SERVICE(10) = 0x421.
    // For uid 0 the kernel makes permitted/effective = bounding at execve.
    assert_eq!(status_line(&out, "CapBnd:"), "0000000000000421", "{out}");
    assert_eq!(status_line(&out, "CapEff:"), "0000000000000421", "{out}");
    assert_eq!(status_line(&out, "CapPrm:"), "0000000000000421", "{out}");
    assert_eq!(status_line(&out, "CapInh:"), "0000000000000000", "{out}");
    assert_eq!(status_line(&out, "CapAmb:"), "0000000000000000", "{out}");
    assert_eq!(status_line(&out, "NoNewPrivs:"), "0", "{out}");
    // The exchange dir and the init binary are gone from /dev.
    assert!(
        out.contains("\n0\n"),
        "/dev still shows .lxcri entries:\n{out}"
    );
    // No leaked fds (LXC leaks e.g. 251 into the init): only ls's own
    // stdio and its directory fd.
    assert!(out.contains("fds: 0 1 2 3\n"), "{out}");
    // The user process is pid 2 (init is 1).
    assert!(out.contains("pid=2\n"), "{out}");
    // The orphaned `sleep` was reaped by the init.
    assert!(out.contains("zombies=0\n"), "{out}");
    assert_eq!(
        ct.exit_status(),
        ExitStatus {
            code: Some(7),
            signal: None
        }
    );
}

#[test]
fn user_switch_ambient_caps_nnp_and_seccomp_after_nnp() {
    let mut cfg = base_config(&[
        "sh",
        "-c",
        "id; umask; pwd; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; mkdir /tmp/d; echo mkdir=$?",
    ]);
    cfg.uid = 1000;
    cfg.gid = 1001;
    cfg.additional_gids = vec![10, 20];
    cfg.umask = Some(0o027);
    cfg.cwd = "/tmp".into();
    cfg.no_new_privileges = true;
    let mut c = caps(
        &["CAP_NET_BIND_SERVICE"],
        &["CAP_NET_BIND_SERVICE"],
        &["CAP_NET_BIND_SERVICE"],
    );
    c.bounding.push("CAP_CHOWN".into());
    cfg.capabilities = Some(c);
    cfg.seccomp = Some(
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }))
        .unwrap(),
    );
    let (ct, out, err) = run_ok(&cfg);
    assert!(
        out.contains("uid=1000 gid=1001 groups=10,20"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("0027\n/tmp\n"), "{out}");
    assert_eq!(status_line(&out, "CapBnd:"), "0000000000000401", "{out}");
    assert_eq!(status_line(&out, "CapAmb:"), "0000000000000400", "{out}");
    assert_eq!(status_line(&out, "CapInh:"), "0000000000000400", "{out}");
    assert_eq!(status_line(&out, "CapPrm:"), "0000000000000400", "{out}");
    assert_eq!(status_line(&out, "CapEff:"), "0000000000000400", "{out}");
    assert_eq!(status_line(&out, "NoNewPrivs:"), "1", "{out}");
    assert!(out.contains("mkdir=1"), "{out}");
    assert!(err.contains("Permission denied"), "stderr:\n{err}");
    assert_eq!(ct.exit_status().code, Some(0));
}

#[test]
fn seccomp_without_nnp_blocks_mkdir_with_eperm() {
    let mut cfg = base_config(&[
        "sh",
        "-c",
        "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch-ok; grep NoNewPrivs /proc/self/status",
    ]);
    // Non-root, no NNP: the filter must be loaded before the uid change.
    cfg.uid = 1000;
    cfg.gid = 1000;
    cfg.capabilities = None;
    cfg.seccomp = Some(
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "not_a_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"}
            ]
        }))
        .unwrap(),
    );
    let (ct, out, err) = run_ok(&cfg);
    assert!(out.contains("mkdir=1"), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("Operation not permitted"), "stderr:\n{err}");
    assert!(out.contains("touch-ok"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(!ct.rootfs.join("tmp/x").exists());
    assert_eq!(ct.exit_status().code, Some(0));
}

#[test]
fn masked_readonly_devices_domainname() {
    let mut cfg = base_config(&[
        "sh",
        "-c",
        "echo kallsyms=$(cat /proc/kallsyms | wc -c); echo acpi=$(ls /proc/acpi | wc -l); \
         echo 1 > /proc/sys/kernel/ns_last_pid; echo sysw=$?; \
         grep -E ' /proc/sys ' /proc/mounts; \
         ls -ln /dev/test/mynull /dev/test/myfifo; echo x > /dev/test/mynull && echo null-ok; \
         cat /proc/sys/kernel/domainname",
    ]);
    cfg.masked_paths = vec![
        "/proc/kallsyms".into(),
        "/proc/acpi".into(),
        "/proc/kcore_does_not_exist".into(),
    ];
    cfg.readonly_paths = vec!["/proc/sys".into(), "/no/such/path".into()];
    cfg.domainname = Some("example.org".into());
    // Root without CAP_DAC_OVERRIDE could not write to the 0620 node of uid 5.
    cfg.capabilities = Some(caps(&["CAP_DAC_OVERRIDE"], &[], &[]));
    cfg.devices = serde_json::from_value(serde_json::json!([
        {"path": "/dev/test/mynull", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o620, "uid": 5, "gid": 6},
        {"path": "/dev/test/myfifo", "type": "p", "fileMode": 0o600},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}
    ]))
    .unwrap();
    let (ct, out, err) = run_ok(&cfg);
    assert!(
        out.contains("kallsyms=0\n"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("acpi=0\n"), "{out}");
    assert!(out.contains("sysw=1\n"), "{out}");
    assert!(err.contains("Read-only file system"), "stderr:\n{err}");
    let mline = out.lines().find(|l| l.contains(" /proc/sys ")).unwrap();
    assert!(mline.contains(" ro,"), "{mline}");
    assert!(
        mline.contains("nosuid") && mline.contains("nodev") && mline.contains("noexec"),
        "flags of the mount not kept: {mline}"
    );
    let dev = out.lines().find(|l| l.ends_with("mynull")).unwrap();
    assert!(dev.starts_with("crw--w----"), "{dev}");
    assert!(
        dev.contains(" 5 ") && dev.contains(" 6 ") && dev.contains("1,   3"),
        "{dev}"
    );
    let fifo = out.lines().find(|l| l.ends_with("myfifo")).unwrap();
    assert!(fifo.starts_with("prw-------"), "{fifo}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("example.org\n"), "{out}");
    assert_eq!(ct.exit_status().code, Some(0));
}

#[test]
fn missing_executable_fails_on_ready() {
    let cfg = base_config(&["nosuchbin", "arg"]);
    let mut ct = Ct::start(&cfg);
    let r = ct.read_line("ready");
    assert_eq!(
        r,
        "error: exec: \"nosuchbin\": executable file not found in $PATH"
    );
    ct.wait();
    assert_eq!(ct.exit_status().code, Some(1));
}

#[test]
fn missing_cwd_fails_on_ready() {
    let mut cfg = base_config(&["sh", "-c", "true"]);
    cfg.cwd = "/nonexistent".into();
    let mut ct = Ct::start(&cfg);
    let r = ct.read_line("ready");
    assert!(r.starts_with("error: process.cwd \"/nonexistent\""), "{r}");
    ct.wait();
}

#[test]
fn closing_start_without_a_byte_aborts() {
    let cfg = base_config(&["sh", "-c", "echo should-not-run"]);
    let mut ct = Ct::start(&cfg);
    assert_eq!(ct.read_line("ready"), "ok");
    let f = OpenOptions::new()
        .write(true)
        .open(ct.exch.join("start"))
        .unwrap();
    drop(f);
    let (out, _) = ct.wait();
    assert!(!out.contains("should-not-run"), "{out}");
    assert_eq!(fs::read_to_string(ct.exch.join("exit")).unwrap(), "");
}

#[test]
fn start_container_hook_runs_with_state_on_stdin() {
    let mut cfg = base_config(&[
        "sh",
        "-c",
        "cat /tmp/hook; cat /tmp/state; echo; echo hook-env=$HOOKVAR",
    ]);
    cfg.hook_state =
        serde_json::json!({"ociVersion": "1.2.0", "id": "c1", "status": "created", "pid": 1});
    cfg.start_container_hooks = serde_json::from_value(serde_json::json!([
        {"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/state; echo hookran:$HOOKVAR > /tmp/hook; echo hook-to-stdout"],
         "env": ["HOOKVAR=v1"], "timeout": 5},
        {"path": "/bin/true"}
    ]))
    .unwrap();
    let (ct, out, err) = run_ok(&cfg);
    assert!(
        out.contains("hookran:v1\n"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains(r#""status":"created""#), "{out}");
    // The hook's env is its own; the process's is process.env.
    assert!(out.contains("hook-env=\n"), "{out}");
    // The hook's stdout goes to the init's stderr.
    assert!(err.contains("hook-to-stdout"), "stderr:\n{err}");
    assert!(!out.contains("hook-to-stdout"), "{out}");
    assert_eq!(ct.exit_status().code, Some(0));
}

#[test]
fn failing_and_timing_out_hooks_fail_start() {
    let mut cfg = base_config(&["sh", "-c", "echo should-not-run"]);
    cfg.start_container_hooks = serde_json::from_value(serde_json::json!([
        {"path": "/bin/sh", "args": ["sh", "-c", "sleep 10"], "timeout": 1}
    ]))
    .unwrap();
    let mut ct = Ct::start(&cfg);
    assert_eq!(ct.read_line("ready"), "ok");
    let t0 = Instant::now();
    let s = ct.start_process();
    assert_eq!(
        s,
        "error: startContainer hook /bin/sh failed: hook ran past specified timeout of 1 seconds"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let (out, _) = ct.wait();
    assert!(!out.contains("should-not-run"));
    assert_eq!(ct.exit_status().code, Some(1));

    let mut cfg = base_config(&["sh", "-c", "echo should-not-run"]);
    cfg.start_container_hooks = serde_json::from_value(serde_json::json!([
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}
    ]))
    .unwrap();
    let mut ct = Ct::start(&cfg);
    assert_eq!(ct.read_line("ready"), "ok");
    assert_eq!(
        ct.start_process(),
        "error: startContainer hook /bin/sh failed: exit status 3"
    );
    ct.wait();
}

#[test]
fn exec_failure_after_start_reports_on_started() {
    // Exists and is a regular executable file at `create`, but not a valid
    // executable format at exec time.
    let cfg = base_config(&["/bin/bogus"]);
    let mut ct = Ct::start_with(&cfg, |root| {
        fs::write(root.join("bin/bogus"), b"not an executable format").unwrap();
        fs::set_permissions(root.join("bin/bogus"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert_eq!(ct.read_line("ready"), "ok");
    let s = ct.start_process();
    assert!(s.starts_with("error: exec /bin/bogus: "), "{s}");
    ct.wait();
    assert_eq!(ct.exit_status().code, Some(126));
}

#[test]
fn sigterm_to_init_is_forwarded() {
    let cfg = base_config(&["sh", "-c", "echo started; sleep 100; echo not-reached"]);
    let mut ct = Ct::start(&cfg);
    assert_eq!(ct.read_line("ready"), "ok");
    assert_eq!(ct.start_process(), "ok");
    std::thread::sleep(Duration::from_millis(500));
    let pid = ct.init_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (out, _) = ct.wait();
    assert!(out.contains("started"), "{out}");
    assert!(!out.contains("not-reached"), "{out}");
    assert_eq!(
        ct.exit_status(),
        ExitStatus {
            code: None,
            signal: Some(15)
        }
    );
}

#[test]
fn terminal_becomes_controlling_tty() {
    use std::os::fd::AsRawFd;
    let pty = nix::pty::openpty(None, None).unwrap();
    for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let mut cfg = base_config(&[
        "sh",
        "-c",
        "test -t 0 && echo stdin-is-tty; echo stat: $(cat /proc/self/stat)",
    ]);
    cfg.terminal = true;
    let mut ct = Ct::start_full(&cfg, |_| {}, Some(&pty.slave));
    drop(pty.slave);
    assert_eq!(ct.read_line("ready"), "ok");
    assert_eq!(ct.start_process(), "ok");
    ct.wait();
    let mut master = File::from(pty.master);
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    // EIO once every slave fd is closed.
    while let Ok(n) = master.read(&mut b) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
    }
    let out = String::from_utf8_lossy(&buf);
    assert!(out.contains("stdin-is-tty"), "{out}");
    // /proc/self/stat: pid (comm) state ppid pgrp session tty_nr ...
    let stat = out.lines().find_map(|l| l.split("stat: ").nth(1)).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    assert_ne!(f[4], "0", "no controlling terminal: {stat}");
    // cat is in the session of the user process (pid 2), not of init.
    assert_eq!(f[3], "2", "{stat}");
    assert_eq!(ct.exit_status().code, Some(0));
}

#[test]
fn signal_before_start_ends_the_container() {
    let cfg = base_config(&["sh", "-c", "echo should-not-run"]);
    let mut ct = Ct::start(&cfg);
    assert_eq!(ct.read_line("ready"), "ok");
    let pid = ct.init_pid();
    // Harmless signals are ignored while waiting for `start`.
    for s in [
        nix::sys::signal::Signal::SIGWINCH,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, _) = ct.wait();
    assert!(!out.contains("should-not-run"), "{out}");
    assert_eq!(
        ct.exit_status(),
        ExitStatus {
            code: None,
            signal: Some(15)
        }
    );
}
