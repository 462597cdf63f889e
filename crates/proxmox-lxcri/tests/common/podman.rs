//! Podman (Debian's 4.3, through conmon) on private directories, for
//! end-to-end tests.
//!
//! Every `podman` call gets its own `--root`, `--runroot`, `--tmpdir`, the
//! vfs storage driver and `--runtime <runtime under test>` (which keeps
//! its default `--root`: Podman passes none), plus a
//! containers.conf of ours (`CONTAINERS_CONF`): cgroupfs, file events, and
//! rlimits the runtime can really set (Podman asks for 1048576 open files
//! as root, more than some hosts' hard limit). Runs use `--network none`
//! and a cgroup parent of this instance.
//!
//! On drop: `podman rm -af`, leftover conmons killed, mounts and the dir
//! removed.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::clients::{explain, image_archives, require_tools, unmount_all_under};
use super::containerd::{run_in_pty, run_with_timeout, Containerd, IMAGE};

pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Podman {
    dir: Option<tempfile::TempDir>,
    pub cgroup_parent: String,
    /// The runtime binary under test.
    pub runtime: String,
}

impl Podman {
    /// Private podman state with the test image loaded.
    pub fn start(runtime: &str) -> Podman {
        require_tools(
            "the Podman end-to-end tests",
            &["podman", "conmon", "skopeo"],
        );
        let dir = tempfile::Builder::new()
            .prefix("lxcri-pm.")
            .tempdir_in("/tmp")
            .expect("temp dir in /tmp");
        let d = dir.path().to_path_buf();
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{}\"\n",
            d.join("events.log").display()
        );
        fs::write(d.join("containers.conf"), conf).expect("containers.conf");
        let cgroup_parent = format!(
            "/lxcri-pm-{}",
            d.file_name().unwrap().to_string_lossy().replace('.', "-")
        );
        let pm = Podman {
            dir: Some(dir),
            cgroup_parent,
            runtime: runtime.to_string(),
        };
        let (oci, _) = image_archives(&d);
        let o = pm.podman(&["load", "-i", oci.to_str().unwrap()]);
        assert!(o.status.success(), "podman load:\n{}", explain(&o));
        pm
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The runtime's root: its default, as Podman passes no `--root` (and
    /// its clean-up process would not pass a `--runtime-flag root=...`).
    /// Container ids are random, so tests side by side never share one.
    pub fn runtime_root(&self) -> PathBuf {
        if super::clients::is_runc(&self.runtime) {
            PathBuf::from("/run/runc")
        } else {
            PathBuf::from("/run/proxmox-lxcri/containers")
        }
    }

    /// A `podman` command on our private state.
    pub fn command(&self) -> Command {
        let d = self.dir();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--runtime")
            .arg(&self.runtime);
        cmd
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run_with_timeout(cmd, PODMAN_TIMEOUT)
    }

    /// `podman run --network none --cgroup-parent <ours> <opts> IMAGE <args>`.
    pub fn run(&self, opts: &[&str], args: &[&str]) -> Output {
        let mut v = vec![
            "run",
            "--network",
            "none",
            "--cgroup-parent",
            &self.cgroup_parent,
        ];
        v.extend_from_slice(opts);
        v.push(IMAGE);
        v.extend_from_slice(args);
        self.podman(&v)
    }

    /// `podman run -d ...`; the container's id once it runs.
    pub fn run_detached(&self, opts: &[&str], args: &[&str]) -> String {
        let mut o = vec!["-d"];
        o.extend_from_slice(opts);
        let out = self.run(&o, args);
        assert!(out.status.success(), "podman run -d:\n{}", explain(&out));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            id.len(),
            64,
            "podman run -d printed no id:\n{}",
            explain(&out)
        );
        assert_eq!(self.inspect(&id, "{{.State.Status}}"), "running");
        id
    }

    pub fn inspect(&self, id: &str, format: &str) -> String {
        let o = self.podman(&["inspect", "-f", format, id]);
        assert!(o.status.success(), "podman inspect:\n{}", explain(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The container's host pid.
    pub fn pid(&self, id: &str) -> u32 {
        self.inspect(id, "{{.State.Pid}}")
            .parse()
            .expect("State.Pid is a number")
    }

    pub fn in_pty(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut cmd = self.command();
        cmd.args(args);
        run_in_pty(cmd, PODMAN_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let mut cmd = self.command();
        cmd.args(["rm", "-af", "-t", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        let d = self.dir().to_string_lossy().into_owned();
        for (pid, cmdline) in Containerd::processes_mentioning(&d) {
            if cmdline.contains("conmon") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        unmount_all_under(self.dir());
        super::clients::remove_cgroup(&self.cgroup_parent);
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("LXCRI_TEST_KEEP").is_some() {
                eprintln!("keeping {}", dir.keep().display());
            } else {
                let _ = dir.close();
            }
        }
    }
}
