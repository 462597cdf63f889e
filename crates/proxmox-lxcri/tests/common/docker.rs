//! A private `dockerd` for end-to-end tests.
//!
//! [`Dockerd::start`] runs Debian's `dockerd` (docker.io 20.10) on a
//! daemon.json of its own: data root, exec root (so its own containerd),
//! pid file, trust key and API socket all in a fresh directory under /tmp;
//! no iptables, no bridge, no IP forwarding, the vfs storage driver, its own
//! cgroup parent. Nothing of the host's Docker (if any) is touched. The
//! runtime under test is registered in `runtimes` as [`RUNTIME_NAME`]; the
//! test image is loaded from a docker-archive made by skopeo.
//!
//! On drop it removes every container, stops dockerd (which stops its
//! containerd), kills shims that outlived it, unmounts and removes its dir.
#![allow(dead_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::clients::{explain, image_archives, require_tools, stop_child, unmount_all_under};
use super::containerd::{run_in_pty, run_with_timeout, Containerd, IMAGE};

/// The name the runtime under test is registered as in daemon.json.
pub const RUNTIME_NAME: &str = "lxcri-test";
/// Timeout of one `docker` call.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(90);

/// The docker CLI that matches Debian's dockerd (a newer client elsewhere in
/// PATH may speak an API version 20.10 does not).
fn docker_cli() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    testkit::which("docker").expect("docker CLI not found (apt-get install docker.io)")
}

pub struct Dockerd {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    sock: PathBuf,
    /// Docker's `cgroup-parent`: removed (when empty) at the end.
    cgroup_parent: String,
    /// The runtime binary registered as [`RUNTIME_NAME`].
    pub runtime: String,
}

impl Dockerd {
    /// Starts dockerd with `runtime` registered and the test image loaded.
    pub fn start(runtime: &str) -> Dockerd {
        require_tools(
            "the Docker end-to-end tests",
            &[
                "dockerd",
                "docker",
                "containerd",
                "containerd-shim-runc-v2",
                "skopeo",
            ],
        );
        let dir = tempfile::Builder::new()
            .prefix("lxcri-dk.")
            .tempdir_in("/tmp")
            .expect("temp dir in /tmp");
        let d = dir.path().to_path_buf();
        let sock = d.join("d.sock");
        let cgroup_parent = format!(
            "/lxcri-dk-{}",
            d.file_name().unwrap().to_string_lossy().replace('.', "-")
        );
        let config = serde_json::json!({
            "data-root": d.join("data"),
            "exec-root": d.join("x"),
            "pidfile": d.join("docker.pid"),
            "deprecated-key-path": d.join("key.json"),
            "hosts": [format!("unix://{}", sock.display())],
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "ip-masq": false,
            "bridge": "none",
            "userland-proxy": false,
            "storage-driver": "vfs",
            "cgroup-parent": &cgroup_parent,
            "runtimes": {RUNTIME_NAME: {"path": runtime}},
        });
        fs::write(d.join("daemon.json"), config.to_string()).expect("daemon.json");
        let log = fs::File::create(d.join("dockerd.log")).expect("dockerd.log");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // dockerd must not outlive the test process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn dockerd");
        let mut dk = Dockerd {
            dir: Some(dir),
            child: Some(child),
            sock,
            cgroup_parent,
            runtime: runtime.to_string(),
        };
        dk.wait_ready();
        let (_, archive) = image_archives(&d);
        let o = dk.docker(&["load", "-i", archive.to_str().unwrap()]);
        assert!(o.status.success(), "docker load:\n{}", dk.explain(&o));
        dk
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited early ({st}); log:\n{}", self.log_tail(40));
            }
            if self.sock.exists() {
                let mut cmd = self.command();
                cmd.arg("version");
                if run_with_timeout(cmd, Duration::from_secs(20))
                    .status
                    .success()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up on {} within 60s; log:\n{}",
                self.sock.display(),
                self.log_tail(40)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The last `n` lines of dockerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `o` explained, with the tail of dockerd's log.
    pub fn explain(&self, o: &Output) -> String {
        format!("{}\n--- dockerd.log:\n{}", explain(o), self.log_tail(15))
    }

    /// The runtime roots dockerd's shims pass as `--root`
    /// (`<exec-root>/runtime-*/moby`).
    pub fn runtime_roots(&self) -> Vec<PathBuf> {
        fs::read_dir(self.dir().join("x"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
            .map(|e| e.path().join("moby"))
            .collect()
    }

    /// A `docker -H <sock>` command (client config in our dir).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(docker_cli());
        cmd.env("DOCKER_CONFIG", self.dir().join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()));
        cmd
    }

    /// `docker <args>`.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run_with_timeout(cmd, DOCKER_TIMEOUT)
    }

    /// `docker run --runtime <ours> --network none <opts> IMAGE <args>`.
    pub fn run(&self, opts: &[&str], args: &[&str]) -> Output {
        let mut v = vec!["run", "--runtime", RUNTIME_NAME, "--network", "none"];
        v.extend_from_slice(opts);
        v.push(IMAGE);
        v.extend_from_slice(args);
        self.docker(&v)
    }

    /// `docker run -d ...`; returns the container's full id once running.
    pub fn run_detached(&self, opts: &[&str], args: &[&str]) -> String {
        let mut o = vec!["-d"];
        o.extend_from_slice(opts);
        let out = self.run(&o, args);
        assert!(
            out.status.success(),
            "docker run -d:\n{}",
            self.explain(&out)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            id.len(),
            64,
            "docker run -d printed no id:\n{}",
            self.explain(&out)
        );
        assert_eq!(
            self.inspect(&id, "{{.State.Status}}"),
            "running",
            "{}",
            self.log_tail(20)
        );
        id
    }

    /// `docker inspect -f <format> <id>`, trimmed.
    pub fn inspect(&self, id: &str, format: &str) -> String {
        let o = self.docker(&["inspect", "-f", format, id]);
        assert!(o.status.success(), "docker inspect:\n{}", self.explain(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The container's host pid (the runtime's --pid-file pid).
    pub fn pid(&self, id: &str) -> u32 {
        self.inspect(id, "{{.State.Pid}}")
            .parse()
            .expect("State.Pid is a number")
    }

    /// `docker <args>` with a pseudo-terminal as the client's stdio; the
    /// exit status and the terminal output.
    pub fn in_pty(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut cmd = self.command();
        cmd.args(args);
        run_in_pty(cmd, DOCKER_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cleanup(&mut self) {
        if self.child.is_some() {
            let mut cmd = self.command();
            cmd.args(["ps", "-aq"]);
            let ids = cmd
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let mut cmd = self.command();
                cmd.args(["rm", "-f", id]);
                let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(15));
        }
        if let Some(dir) = &self.dir {
            let d = dir.path().to_string_lossy().into_owned();
            for (pid, cmdline) in Containerd::processes_mentioning(&d) {
                if cmdline.contains("containerd") {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            unmount_all_under(dir.path());
        }
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

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}
