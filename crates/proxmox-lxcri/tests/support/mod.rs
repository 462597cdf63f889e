//! Shared helpers for tests that run real containers: a busybox bundle with
//! runc's default spec (from the test kit), and a runner for our binary with
//! its own --root.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testkit::{Rootfs, Spec};

pub mod emulator;

use emulator::RuntimeConfig;

pub const BIN: &str = env!("CARGO_BIN_EXE_proxmox-lxcri");

/// Applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "id", "true", "false", "mkdir", "touch", "grep", "head",
    "stat", "hostname", "env", "pwd", "test", "wc", "kill", "ps", "dd", "rm", "umask", "sync",
    "ping", "ip",
];

/// The rootfs of [`Env::bundle`]: busybox with [`APPLETS`], root and nobody.
pub fn rootfs() -> Rootfs {
    Rootfs::busybox()
        .dirs(&["root", "run"])
        .applets(APPLETS)
        .users()
}

/// runc's default spec (`runc spec`), non-terminal, running `args`, with a
/// writable root, hostname `lxcri-test` and no /sys/fs/cgroup mount.
pub fn default_spec(args: &[&str]) -> Spec {
    Spec::runc()
        .terminal(false)
        .args(args)
        .readonly_root(false)
        .hostname("lxcri-test")
        .without_mount("/sys/fs/cgroup")
}

pub struct Env {
    /// The Proxmox node of this test (LXCRI_TEST_ENGINE=pve-lxc); dropped
    /// before `tmp`, which holds its data.
    pub pve: Option<emulator::Emulator>,
    /// The runtime's config file, when there is one.
    pub config: Option<PathBuf>,
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Env {
    /// On the engine `LXCRI_TEST_ENGINE` names (default lxc).
    pub fn new() -> Env {
        // Fail loudly (never skip silently) when the machine cannot run containers.
        testkit::require_root_and_lxc("the runtime tests (they run real LXC containers)");
        let tmp = tempfile::Builder::new()
            .prefix("lxcri-test")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("root");
        let mut env = Env {
            pve: None,
            config: None,
            tmp,
            root,
        };
        if emulator::on_pve() {
            env.start_pve();
        }
        env
    }

    /// On the pve-lxc engine whatever LXCRI_TEST_ENGINE says.
    pub fn with_pve() -> Env {
        let mut env = Env::new();
        if env.pve.is_none() {
            env.start_pve();
        }
        env
    }

    /// An emulator for this env, and a config file that makes pve-lxc the default.
    fn start_pve(&mut self) {
        let emu = emulator::start(self.tmp.path());
        let cfg = self.tmp.path().join("config.toml");
        emu.write_config(&cfg, "pve-lxc");
        self.config = Some(cfg);
        self.pve = Some(emu);
    }

    pub fn emu(&self) -> &emulator::Emulator {
        self.pve.as_ref().expect("a pve-lxc test env")
    }

    /// The VMID the state of `id` records.
    pub fn vmid(&self, id: &str) -> u64 {
        let st: Value = serde_json::from_slice(
            &std::fs::read(self.root.join("containers").join(id).join("state.json")).unwrap(),
        )
        .unwrap();
        st["pve"]["vmid"].as_u64().expect("a vmid in the state")
    }

    /// Our binary with this env's --root (and --config).
    pub fn base(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    /// The runtime under test with this env's --root: `$LXCRI_TEST_RUNTIME`
    /// (a path, e.g. /usr/sbin/runc, to see what runc does with the same
    /// bundle), by default ours (as [`Env::base`]).
    pub fn rt(&self) -> Command {
        match std::env::var("LXCRI_TEST_RUNTIME") {
            Ok(r) if !r.is_empty() => {
                let mut c = Command::new(r);
                c.arg("--root").arg(&self.root);
                c
            }
            _ => self.base(),
        }
    }

    /// [`Env::rt`] with `args`, stdin from /dev/null.
    pub fn rt_cmd(&self, args: &[&str]) -> Output {
        self.rt().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// [`Env::rt`] with `args` for a command that leaves a container
    /// running with its stdio (`run -d`, `create`): stdio to files, so
    /// that nothing waits for the container to close a pipe. Panics if it
    /// fails.
    pub fn rt_detached(&self, args: &[&str]) {
        let id = args.last().expect("an id");
        let err = self.tmp.path().join(format!("{id}.rt-err"));
        let st = self
            .rt()
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.tmp.path().join(format!("{id}.rt-out"))).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "{args:?}: {st}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }

    /// The `state` of `id` by [`Env::rt`].
    pub fn rt_state(&self, id: &str) -> Value {
        let o = self.rt_cmd(&["state", id]);
        assert!(o.status.success(), "state {id}: {o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// A bundle dir with a busybox rootfs and the default spec edited by `f`.
    pub fn bundle(&self, name: &str, args: &[&str], f: impl FnOnce(&mut Value)) -> PathBuf {
        testkit::bundle(
            &self.tmp.path().join(name),
            &rootfs(),
            &default_spec(args).edit(f),
        )
    }

    /// Run our binary with this env's --root.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.base()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `create` with stdout/stderr of the container going to files.
    pub fn create(&self, id: &str, bundle: &Path) -> Output {
        let out = std::fs::File::create(self.tmp.path().join(format!("{id}.out"))).unwrap();
        let err = std::fs::File::create(self.tmp.path().join(format!("{id}.err"))).unwrap();
        let pid_file = self.tmp.path().join(format!("{id}.pid"));
        // The container inherits these as its stdio; our own messages go
        // through --log.
        self.base()
            .arg("--log")
            .arg(self.tmp.path().join(format!("{id}.log")))
            .args(["create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn must_create(&self, id: &str, bundle: &Path) {
        let o = self.create(id, bundle);
        assert!(
            o.status.success(),
            "create {id} failed: {} {}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(self.tmp.path().join(format!("{id}.log"))).unwrap_or_default()
        );
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Wait until `state` reports `want` (containers end on their own).
    pub fn wait_status(&self, id: &str, want: &str) {
        let t = std::time::Instant::now();
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(t.elapsed().as_secs() < 20, "{id} still {s}, wanted {want}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn stdout_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{id}.out"))).unwrap_or_default()
    }

    pub fn stderr_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{id}.err"))).unwrap_or_default()
    }

    pub fn log_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    /// No state dir and no process of `id` in this root (its cgroups may
    /// be another root's).
    pub fn assert_gone_state(&self, id: &str) {
        assert!(
            !self.root.join("containers").join(id).exists(),
            "{id}: state dir left behind"
        );
        let needle = self.root.join("containers").join(id);
        let needle = needle.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                assert!(!cmd.contains(&needle), "{id}: process left behind: {cmd}");
            }
        }
    }

    /// Nothing of `id` is left: no state dir and no process of it.
    pub fn assert_gone(&self, id: &str) {
        assert!(
            !self.root.join("containers").join(id).exists(),
            "{id}: state dir left behind"
        );
        let lxcpath = self.root.join("containers").join(id);
        let needle = lxcpath.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                assert!(!cmd.contains(&needle), "{id}: process left behind: {cmd}");
            }
        }
        if self.pve.is_none() {
            // No cgroup of it (lxc-start does not stay to remove them).
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            for l in mountinfo.lines().filter(|l| l.contains(" - cgroup")) {
                let mnt = l.split_whitespace().nth(4).unwrap();
                for c in [id.to_string(), format!("{id}.monitor")] {
                    let d = std::path::Path::new(mnt).join("proxmox-lxcri").join(&c);
                    assert!(!d.exists(), "{id}: cgroup {} left behind", d.display());
                }
            }
        }
        if let Some(emu) = &self.pve {
            // No CT of it on the node, and no volume without a CT.
            let confs = emu.data_dir().join("nodes").join(emu.node()).join("lxc");
            let cts = emu.ct_ids();
            for vmid in &cts {
                let conf =
                    std::fs::read_to_string(confs.join(format!("{vmid}.conf"))).unwrap_or_default();
                assert!(
                    !conf.contains(&format!("proxmox-lxcri container {id} ")),
                    "{id}: CT {vmid} left on the node"
                );
            }
            for v in emu.volumes() {
                let name = v.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    cts.iter()
                        .any(|vmid| name.starts_with(&format!("subvol-{vmid}-"))),
                    "{id}: volume {} left on the storage",
                    v.display()
                );
            }
        }
    }
}
