//! Test helpers: start the emulator binary, talk HTTPS to it with curl,
//! build a busybox vztmpl. Everything is unique per process and counter.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const TOKEN: &str = "root@pam!tok=s3cret";
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A VMID no other test (or parallel test process) uses.
pub fn vmid() -> u32 {
    100_000 + (std::process::id() % 20_000) * 40 + unique()
}

pub struct Emu {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub fingerprint: String,
}

impl Emu {
    pub fn start(dir: &Path, extra: &[&str]) -> Emu {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pve-emulator"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &dir.to_string_lossy(),
                "--root-password",
                "pw",
                "--token",
                TOKEN,
                "--auth-fail-delay-ms",
                "200",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pve-emulator");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let fp = lines.next().expect("fingerprint line").unwrap();
        let fingerprint = fp
            .strip_prefix("fingerprint ")
            .expect("fingerprint line")
            .to_string();
        let l = lines.next().expect("listening line").unwrap();
        let port = l.rsplit(':').next().unwrap().parse().unwrap();
        Emu {
            child,
            dir: dir.to_path_buf(),
            port,
            fingerprint,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/api2/json{path}", self.port)
    }

    /// (status, body) of a request with the API token; `args` go to curl.
    pub fn call(&self, method: &str, path: &str, args: &[&str]) -> (u16, Value) {
        self.raw(
            method,
            &self.url(path),
            &["-H", &format!("Authorization: PVEAPIToken={TOKEN}")],
            args,
        )
    }

    pub fn raw(&self, method: &str, url: &str, auth: &[&str], args: &[&str]) -> (u16, Value) {
        let ca = self.dir.join("pve-root-ca.pem");
        let out = Command::new("curl")
            .args([
                "-s",
                "--cacert",
                &ca.to_string_lossy(),
                "-w",
                "\n%{http_code}",
                "-X",
                method,
            ])
            .args(auth)
            .args(args)
            .arg(url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// Waits for a task and returns its status object.
    pub fn wait(&self, upid: &str) -> Value {
        let enc: String = upid
            .replace(':', "%3A")
            .replace('!', "%21")
            .replace('@', "%40");
        for _ in 0..600 {
            let (code, v) = self.call(
                "GET",
                &format!(
                    "/nodes/{}/tasks/{enc}/status",
                    upid.split(':').nth(1).unwrap()
                ),
                &[],
            );
            assert_eq!(code, 200, "task status: {v}");
            if v["data"]["status"] == "stopped" {
                return v["data"].clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("task {upid} did not finish");
    }

    pub fn task_log(&self, upid: &str) -> Value {
        let enc: String = upid
            .replace(':', "%3A")
            .replace('!', "%21")
            .replace('@', "%40");
        self.call(
            "GET",
            &format!("/nodes/{}/tasks/{enc}/log", upid.split(':').nth(1).unwrap()),
            &[],
        )
        .1
    }

    /// Runs a task-returning call and asserts it ends OK.
    pub fn task_ok(&self, method: &str, path: &str, args: &[&str]) {
        let (code, v) = self.call(method, path, args);
        assert_eq!(code, 200, "{method} {path}: {v}");
        let upid = v["data"].as_str().unwrap().to_string();
        let st = self.wait(&upid);
        assert_eq!(
            st["exitstatus"],
            "OK",
            "{method} {path}: {st} log {}",
            self.task_log(&upid)
        );
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A busybox rootfs packed as `name` (tar, tar.gz, tar.xz, tar.zst) in `dir`.
pub fn busybox_template(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(format!("rootfs-{}", unique()));
    for d in ["bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "cat", "ls", "ps", "ip"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .unwrap();
    let out = dir.join(name);
    let st = Command::new("tar")
        .args([
            "-acf",
            &out.to_string_lossy(),
            "-C",
            &root.to_string_lossy(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Puts a template into the storage's cache directly.
pub fn install_template(data_dir: &Path, file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let cache = data_dir.join("storage/local/template/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(file, cache.join(&name)).unwrap();
    format!("local:vztmpl/{name}")
}

/// A bridge that is deleted on drop.
pub struct Bridge(pub String);
impl Bridge {
    pub fn name() -> Bridge {
        Bridge(format!("bre{}x{}", std::process::id() % 100000, unique()))
    }
}
impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}
