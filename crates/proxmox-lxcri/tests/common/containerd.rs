//! A private containerd instance for end-to-end tests.
//!
//! [`Containerd::start`] launches `containerd` with its own root, state, opt dir and sockets,
//! all under a fresh directory in `/tmp` (short, so the unix socket paths stay under 108
//! bytes), imports the busybox test image (built by `scripts/build-test-image.sh` into
//! `target/test-image/busybox.tar`) and drives it with `ctr`. Each instance uses its own
//! containerd namespace `t<pid>-<n>`, so instances never share the runtime root the runc shim
//! passes to the runtime binary (`--root /run/containerd/runc/<ns>`).
//!
//! On drop it kills and deletes whatever tasks and containers are left, stops containerd and
//! any shim it started, unmounts everything under its directory and removes the runtime root
//! of its namespace.
//!
//! Everything here needs root and containerd; [`require_root`] panics (never skips) when they
//! are missing. Every `ctr` call has a timeout, so a hanging runtime fails the test instead of
//! hanging it.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The image every test runs; `scripts/build-test-image.sh` names it so.
pub const IMAGE: &str = "localhost/busybox:test";
/// Where the runc shim (containerd 1.6 `io.containerd.runc.v2`) roots the runtime binary:
/// it passes `--root <RUNC_ROOT>/<namespace>`.
pub const RUNC_ROOT: &str = "/run/containerd/runc";
/// Default timeout of a `ctr` call.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

const HANG_HINT: &str = "\n(hint: the runc shim waits forever for the runtime to send the \
     pty master over --console-socket after `create`/`exec` with a terminal, and for the \
     process in --pid-file to exit)";

static INSTANCES: AtomicUsize = AtomicUsize::new(0);
static TEST_IMAGE: OnceLock<PathBuf> = OnceLock::new();

/// Panics with a clear message unless we run as root and containerd, ctr and the runc v2
/// shim are installed. Tests call it first: they must fail loudly, never pass silently.
pub fn require_root() {
    testkit::require_root("the containerd end-to-end tests");
    for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        assert!(
            testkit::which(tool).is_some(),
            "`{tool}` not found in PATH: the containerd end-to-end tests need containerd \
             (Debian: apt-get install containerd)"
        );
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Builds (if missing or stale; the script is a no-op when up to date) and returns the test
/// image tarball, `$CARGO_TARGET_DIR/test-image/busybox.tar`.
pub fn test_image() -> &'static Path {
    TEST_IMAGE.get_or_init(|| {
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let out = target.join("test-image/busybox.tar");
        let script = root.join("scripts/build-test-image.sh");
        let mut cmd = Command::new(&script);
        cmd.arg(&out);
        let o = run_with_timeout(cmd, Duration::from_secs(120));
        assert!(
            o.status.success() && out.is_file(),
            "building the test image with {} failed ({}):\n{}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// stdout of `o` as a String (lossy).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of `o` as a String (lossy).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cmd` with stdin from /dev/null, collecting stdout and stderr; kills it and panics if
/// it takes longer than `timeout`.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    try_run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`run_with_timeout`], but a timeout is an `Err` describing the command and what it
/// printed so far.
pub fn try_run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let out = read_all(child.stdout.take().unwrap());
    let err = read_all(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, timeout);
    let collect = |h: thread::JoinHandle<Vec<u8>>| {
        // After a kill, a grandchild may still hold the pipe open: don't wait for it then.
        if status.is_some() || h.is_finished() {
            h.join().unwrap()
        } else {
            Vec::new()
        }
    };
    let (stdout, stderr) = (collect(out), collect(err));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "timed out after {timeout:?}: {desc}\n--- stdout:\n{}\n--- stderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => v.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EIO on a pty master: every slave fd is closed
            }
        }
        v
    })
}

/// A command on a fresh 80x24 pty, as `ctr run -t` / `ctr task exec -t` need
/// (one implementation, in testkit).
pub use testkit::run_in_pty;

/// Waits for `child` at most `timeout`; on timeout kills it and returns None.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running private containerd.
pub struct Containerd {
    /// With LXCRI_TEST_ENGINE=pve-lxc: the Proxmox node the runtime uses
    /// (through PROXMOX_LXCRI_CONFIG in containerd's, so the shim's,
    /// environment). Dropped after the tasks are cleaned up, before `dir`.
    pub pve: Option<super::emulator::Emulator>,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// The containerd namespace every `ctr` call of this instance uses.
    pub namespace: String,
    /// The grpc socket.
    pub address: PathBuf,
    /// The runtime's config (pve-lxc), in containerd's environment.
    rt_config: Option<PathBuf>,
}

/// containerd on the config in `d`, logging to `d/containerd.log`.
fn spawn_containerd(d: &Path, rt_config: Option<&Path>) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("containerd.log"))
        .expect("containerd.log");
    let mut cmd = Command::new("containerd");
    if let Some(c) = rt_config {
        cmd.env("PROXMOX_LXCRI_CONFIG", c);
    }
    cmd.arg("--config")
        .arg(d.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // containerd must not outlive the test process (if the test binary is killed).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn containerd")
}

impl Containerd {
    /// Starts a fresh containerd and imports the test image into its namespace.
    pub fn start() -> Containerd {
        Self::start_with(None)
    }

    /// [`Containerd::start`] with the runtime on a config file of the
    /// caller's (PROXMOX_LXCRI_CONFIG in the shim's environment), e.g. one
    /// for a Proxmox node the caller runs.
    pub fn start_with(runtime_config: Option<&Path>) -> Containerd {
        require_root();
        let image = test_image();
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let namespace = format!("t{}-{}", std::process::id(), n);
        let dir = tempfile::Builder::new()
            .prefix("lxcri-ctd.")
            .tempdir_in("/tmp")
            .expect("temp dir in /tmp");
        let d = dir.path().to_path_buf();
        let address = d.join("c.sock");
        let ttrpc = d.join("c.sock.ttrpc");
        let debug = d.join("d.sock");
        for sock in [&address, &ttrpc, &debug] {
            assert!(
                sock.as_os_str().len() < 108,
                "unix socket path too long: {}",
                sock.display()
            );
        }
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = "{debug}"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = d.display(),
            address = address.display(),
            ttrpc = ttrpc.display(),
            debug = debug.display(),
        );
        let config_path = d.join("config.toml");
        fs::write(&config_path, config).expect("write containerd config");
        let mut pve = None;
        let mut rt_config = runtime_config.map(Path::to_path_buf);
        if rt_config.is_none() && super::emulator::on_pve() {
            use super::emulator::RuntimeConfig;
            let emu = super::emulator::start(&d);
            let path = d.join("lxcri.toml");
            emu.write_config(&path, "pve-lxc");
            rt_config = Some(path);
            pve = Some(emu);
        }
        let child = spawn_containerd(&d, rt_config.as_deref());
        let mut ctd = Containerd {
            pve,
            dir: Some(dir),
            child: Some(child),
            namespace,
            address,
            rt_config,
        };
        ctd.wait_ready();
        let o = ctd.ctr(&["images", "import", image.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "ctr images import {} failed:\n{}",
            image.display(),
            ctd.explain(&o)
        );
        let o = ctd.ctr(&["images", "ls", "-q"]);
        assert!(
            stdout(&o).lines().any(|l| l == IMAGE),
            "image {IMAGE} missing after import:\n{}",
            ctd.explain(&o)
        );
        ctd
    }

    /// SIGKILL containerd and start it again on the same state (its shims
    /// and containers stay, as after a crash of containerd).
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let d = self.dir().to_path_buf();
        self.child = Some(spawn_containerd(&d, self.rt_config.as_deref()));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited early ({status}); log:\n{}",
                    self.log_tail(60)
                );
            }
            if self.address.exists() {
                let o = self.ctr_timeout(&["version"], Duration::from_secs(10));
                if o.status.success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not come up on {} within 30s; log:\n{}",
                    self.address.display(),
                    self.log_tail(60)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// This instance's private directory (root, state, sockets, containerd.log).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The runtime root the runc shim passes to the runtime binary for this namespace.
    pub fn runtime_root(&self) -> PathBuf {
        Path::new(RUNC_ROOT).join(&self.namespace)
    }

    /// A `ctr --address <sock> -n <namespace>` command, to add arguments to.
    pub fn ctr_command(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace);
        if let Some(s) = std::env::var_os("LXCRI_TEST_SNAPSHOTTER") {
            cmd.env("CONTAINERD_SNAPSHOTTER", s);
        }
        cmd
    }

    /// `ctr <args>` against this instance (timeout [`CTR_TIMEOUT`]).
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_timeout(args, CTR_TIMEOUT)
    }

    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = self.ctr_command();
        cmd.args(args);
        try_run_with_timeout(cmd, timeout).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- containerd log (tail):\n{}{}",
                self.log_tail(20),
                HANG_HINT
            )
        })
    }

    /// `ctr <args>` with a pseudo-terminal as its stdio; returns the exit status and the
    /// terminal output.
    pub fn ctr_pty(&self, args: &[&str]) -> (ExitStatus, String) {
        let mut cmd = self.ctr_command();
        cmd.args(args);
        run_in_pty(cmd, CTR_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- containerd log (tail):\n{}{}",
                self.log_tail(20),
                HANG_HINT
            )
        })
    }

    /// The `ctr run` argument list: `run [--rm] --runc-binary <runtime> <opts> IMAGE <id>
    /// <args>`. `--rm` is added unless `opts` detaches (`-d`/`--detach`).
    pub fn run_args<'a>(
        runtime: &'a str,
        id: &'a str,
        args: &[&'a str],
        opts: &[&'a str],
    ) -> Vec<&'a str> {
        let mut v = vec!["run"];
        if !opts.iter().any(|o| *o == "-d" || *o == "--detach") {
            v.push("--rm");
        }
        v.extend(["--runc-binary", runtime]);
        v.extend_from_slice(opts);
        v.extend([IMAGE, id]);
        v.extend_from_slice(args);
        v
    }

    /// `ctr run [--rm] --runc-binary <runtime_binary> <opts> IMAGE <id> <args>`.
    pub fn run(&self, runtime_binary: &str, id: &str, args: &[&str], opts: &[&str]) -> Output {
        self.ctr(&Self::run_args(runtime_binary, id, args, opts))
    }

    /// Like [`Containerd::run`] with a pseudo-terminal as ctr's stdio (for `-t`).
    pub fn run_pty(
        &self,
        runtime_binary: &str,
        id: &str,
        args: &[&str],
        opts: &[&str],
    ) -> (ExitStatus, String) {
        self.ctr_pty(&Self::run_args(runtime_binary, id, args, opts))
    }

    /// Tasks as (id, pid, status) from `ctr task ls`.
    pub fn tasks(&self) -> Vec<(String, u32, String)> {
        let o = self.ctr(&["task", "ls"]);
        assert!(o.status.success(), "ctr task ls:\n{}", self.explain(&o));
        stdout(&o)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3).then(|| (f[0].to_string(), f[1].parse().unwrap_or(0), f[2].into()))
            })
            .collect()
    }

    /// The (pid, status) of task `id`, if containerd knows it.
    pub fn task(&self, id: &str) -> Option<(u32, String)> {
        self.tasks()
            .into_iter()
            .find(|t| t.0 == id)
            .map(|t| (t.1, t.2))
    }

    /// Waits until task `id` has `status` (RUNNING, STOPPED, PAUSED ...); panics after
    /// `timeout` with what it saw.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.task(id);
            if t.as_ref().map(|t| t.1.as_str()) == Some(status) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "task {id} did not reach {status} within {timeout:?}; last seen: {t:?}\n\
                     containerd log:\n{}",
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Container ids from `ctr c ls -q`.
    pub fn containers(&self) -> Vec<String> {
        let o = self.ctr(&["containers", "ls", "-q"]);
        assert!(o.status.success(), "ctr c ls:\n{}", self.explain(&o));
        stdout(&o).lines().map(str::to_string).collect()
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A description of a finished command for assertion messages: status, stdout, stderr
    /// and the tail of containerd's log.
    pub fn explain(&self, o: &Output) -> String {
        format!(
            "status: {}\n--- stdout:\n{}\n--- stderr:\n{}\n--- containerd log (tail):\n{}",
            o.status,
            stdout(o),
            stderr(o),
            self.log_tail(20)
        )
    }

    /// Mount points at or under this instance's directory, deepest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.dir())
    }

    /// Pids of live processes whose command line mentions `needle`, excluding ourselves.
    pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
        let me = std::process::id();
        let mut v = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(raw) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(needle) {
                v.push((pid, cmdline.trim_end().to_string()));
            }
        }
        v
    }

    fn cleanup(&mut self) {
        // Containers and tasks first, while containerd still runs, so the shims and the
        // runtime clean up after themselves.
        if self.child.is_some() && self.address.exists() {
            let short = Duration::from_secs(20);
            let ids: Vec<String> = self
                .ctr_timeout_quiet(&["task", "ls", "-q"], short)
                .map(|o| stdout(&o).lines().map(str::to_string).collect())
                .unwrap_or_default();
            for id in &ids {
                let _ = self.ctr_timeout_quiet(&["task", "kill", "-a", "-s", "SIGKILL", id], short);
            }
            for id in &ids {
                let _ = self.ctr_timeout_quiet(&["task", "rm", "-f", id], short);
            }
            let cids: Vec<String> = self
                .ctr_timeout_quiet(&["containers", "ls", "-q"], short)
                .map(|o| stdout(&o).lines().map(str::to_string).collect())
                .unwrap_or_default();
            for id in &cids {
                let _ = self.ctr_timeout_quiet(&["containers", "rm", id], short);
            }
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims this instance started (they outlive containerd by design).
        let addr = self.address.to_string_lossy().into_owned();
        for (pid, cmdline) in Self::processes_mentioning(&addr) {
            if cmdline.contains("containerd-shim") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for m in self.mounts() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(self.runtime_root());
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("LXCRI_TEST_KEEP").is_some() {
                eprintln!("keeping {}", dir.keep().display());
            } else {
                let _ = dir.close();
            }
        }
    }

    fn ctr_timeout_quiet(&self, args: &[&str], timeout: Duration) -> Option<Output> {
        // No panics during cleanup (we may already be unwinding).
        let mut cmd = self.ctr_command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().ok()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
        child.wait_with_output().ok()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v
}

/// Undoes mountinfo's octal escapes (`\040` for a space ...).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(n) = u8::from_str_radix(digits, 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
