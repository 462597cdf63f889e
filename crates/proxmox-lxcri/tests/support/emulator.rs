//! A pve-emulator for one test, and a runtime config file pointing at it
//! (real HTTPS, an API token, the certificate fingerprint pinned).
//!
//! Tests run on the pve-lxc engine when `LXCRI_TEST_ENGINE=pve-lxc`.
#![allow(dead_code)]
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const TOKEN_ID: &str = "root@pam!lxcri";
pub const TOKEN_SECRET: &str = "5f0c3a52-9a42-4c36-9d2b-1e6a2b7d8c11";

/// The engine the runtime tests run on.
pub fn engine() -> String {
    std::env::var("LXCRI_TEST_ENGINE").unwrap_or_else(|_| "lxc".into())
}

pub fn on_pve() -> bool {
    engine() == "pve-lxc"
}

/// The pve-emulator binary: beside ours in the target dir, or $PVE_EMULATOR_BIN.
pub fn emulator_bin(ours: &str) -> PathBuf {
    if let Ok(p) = std::env::var("PVE_EMULATOR_BIN") {
        return p.into();
    }
    let p = Path::new(ours).with_file_name("pve-emulator");
    assert!(
        p.exists(),
        "{} not found: build it first (`cargo build --workspace --bins`; scripts/test.sh does)",
        p.display()
    );
    p
}

pub struct Emulator {
    child: Option<Child>,
    pub data: PathBuf,
    pub url: String,
    pub fingerprint: String,
    pub bridge: String,
    pub node: String,
    /// How it was started, for [`Emulator::restart`].
    argv: Vec<std::ffi::OsString>,
    log: PathBuf,
}

static N: AtomicU32 = AtomicU32::new(0);

impl Emulator {
    /// Start one under `dir` (made traversable: unprivileged CTs run as
    /// host uid 100000 and must reach their rootfs and our exchange dir).
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Emulator {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let bridge = format!("lxt{}x{n}", std::process::id() % 100000);
        // Disjoint VMIDs for emulators side by side: veths are named after them.
        let lower = ((std::process::id() % 10000) * 64 + n % 64) * 100 + 1000;
        let data = dir.join("pve");
        std::fs::create_dir_all(data.join("storage")).unwrap();
        open_up(dir);
        let mut argv: Vec<std::ffi::OsString> = vec![
            bin.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.clone().into(),
            "--node".into(),
            "pve".into(),
            "--token".into(),
            format!("{TOKEN_ID}={TOKEN_SECRET}").into(),
            "--storage".into(),
            format!("local=dir:{}", data.join("storage").display()).into(),
            "--bridge".into(),
            bridge.clone().into(),
            "--next-id-lower".into(),
            lower.to_string().into(),
        ];
        argv.extend(extra.iter().map(|a| a.into()));
        let mut emu = Emulator {
            child: None,
            data,
            url: String::new(),
            fingerprint: String::new(),
            bridge,
            node: "pve".into(),
            argv,
            log: dir.join("emulator.log"),
        };
        emu.spawn();
        emu
    }

    /// Run the emulator process; read its fingerprint and address.
    fn spawn(&mut self) {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", self.argv[0]));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        self.url.clear();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(f) = line.strip_prefix("fingerprint ") {
                self.fingerprint = f.trim().to_string();
            } else if let Some(a) = line.strip_prefix("listening ") {
                self.url = format!("https://{}", a.trim());
                break;
            }
        }
        assert!(
            !self.url.is_empty() && !self.fingerprint.is_empty(),
            "pve-emulator did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// Stop the emulator (SIGTERM; its CTs run on) and start it again on the
    /// same data dir. It listens on a new port: rewrite the config after.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// A runtime config file for this emulator; `default_backend` as given.
    pub fn write_config(&self, path: &Path, default_backend: &str) {
        self.write_config_with(path, default_backend, "local", "");
    }

    /// A config that logs in as root@pam with a password (a ticket), not a
    /// token: what Proxmox requires for bind mount points. Start the
    /// emulator with `--root-password PASSWORD`.
    pub fn write_config_root_pam(&self, path: &Path, password: &str) {
        self.write_config(path, "pve-lxc");
        let pw = path.with_file_name("root-password");
        std::fs::write(&pw, password).unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("token_"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replacen(
                "[pve]\n",
                &format!(
                    "[pve]\nusername = \"root@pam\"\npassword_file = \"{}\"\n",
                    pw.display()
                ),
                1,
            );
        std::fs::write(path, text).unwrap();
    }

    /// The same with the CTs' storage and more TOML (e.g. a `[storage]`).
    pub fn write_config_with(
        &self,
        path: &Path,
        default_backend: &str,
        storage: &str,
        extra: &str,
    ) {
        let secret = path.with_file_name("token-secret");
        std::fs::write(&secret, TOKEN_SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            r#"default_backend = "{default_backend}"
[pve]
url = "{url}"
node = "{node}"
token_id = "{TOKEN_ID}"
token_secret_file = "{secret}"
fingerprint = "{fp}"
storage = "{storage}"
bridge = "{bridge}"
config_dir = "{conf}"
task_timeout_secs = 60
{extra}
"#,
            url = self.url,
            node = self.node,
            secret = secret.display(),
            fp = self.fingerprint,
            bridge = self.bridge,
            conf = self
                .data
                .join("nodes")
                .join(&self.node)
                .join("lxc")
                .display(),
        );
        std::fs::write(path, text).unwrap();
    }

    /// VMIDs of the CTs the emulator has (from its config files).
    pub fn ct_ids(&self) -> Vec<u32> {
        let dir = self.data.join("nodes").join(&self.node).join("lxc");
        let mut v: Vec<u32> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conf")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Volumes left on the dir storage.
    pub fn volumes(&self) -> Vec<PathBuf> {
        let images = self.data.join("storage").join("images");
        let mut out = vec![];
        for e in std::fs::read_dir(images).into_iter().flatten().flatten() {
            for v in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                out.push(v.path());
            }
        }
        out
    }

    /// A request through curl with the token (what a user would type), on
    /// the API (`/api2/json` + `path`) or, with `path` starting at `/_`,
    /// on the emulator's own control endpoints. Form fields or a JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut c = Command::new("curl");
        c.args(["-sS", "-X", method, "--cacert"])
            .arg(self.data.join("pve-root-ca.pem"))
            .arg("-H")
            .arg(format!(
                "Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"
            ));
        for (k, v) in form {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        if let Some(j) = json {
            c.args(["-H", "Content-Type: application/json", "--data"])
                .arg(j.to_string());
        }
        let prefix = if path.starts_with("/_") {
            ""
        } else {
            "/api2/json"
        };
        // The certificate names localhost, not 127.0.0.1.
        let url = format!(
            "{}{prefix}{path}",
            self.url.replace("127.0.0.1", "localhost")
        );
        let o = c.arg(url).output().expect("curl");
        assert!(
            o.status.success(),
            "{method} {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}: {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        self.request("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        self.request("POST", path, form, None)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // CTs a failed test left running: stop them, then the emulator.
        let lxcpath = self.data.join("run").join("lxc");
        for id in self.ct_ids() {
            let _ = Command::new("lxc-stop")
                .args(["-k", "-P"])
                .arg(&lxcpath)
                .args(["-n", &id.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.stop();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// Let other users traverse `dir` and its parents up to /tmp's children.
fn open_up(dir: &Path) {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p == Path::new("/") || p == Path::new("/tmp") {
            break;
        }
        if let Ok(md) = std::fs::metadata(p) {
            let mode = md.permissions().mode() | 0o711;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
        d = p.parent();
    }
}
