//! Runs a real pve-emulator (HTTPS, its own CA and node certificate) for the
//! client's integration tests. The binary comes from `PVE_EMULATOR_BIN`, or
//! is built from this workspace's `crates/pve-emulator`; when neither is
//! there the tests fail, never skip.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use pve_client::{Auth, Client, ClientConfig, Tls};
use serde_json::{json, Value};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A value unique to this process and call (names, vmids, secrets).
pub fn unique() -> u32 {
    (std::process::id() % 40_000) * 100 + COUNTER.fetch_add(1, Ordering::SeqCst) % 100
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulator binary: `PVE_EMULATOR_BIN`, else `cargo build -p pve-emulator`.
pub fn emulator_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("PVE_EMULATOR_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "PVE_EMULATOR_BIN={} does not exist",
                p.display()
            );
            return p;
        }
        let ws = workspace();
        assert!(
            ws.join("crates/pve-emulator/Cargo.toml").is_file(),
            "pve-emulator not found: set PVE_EMULATOR_BIN=/path/to/pve-emulator \
             or build in a workspace that has crates/pve-emulator"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "pve-emulator",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(&ws)
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build -p pve-emulator");
        assert!(out.status.success(), "cargo build -p pve-emulator failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "pve-emulator")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo build -p pve-emulator reported no executable")
    })
    .clone()
}

/// A running emulator in its own data directory, killed on drop.
pub struct Emulator {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub fingerprint: String,
    pub token: String,
    pub token_id: String,
    pub token_secret: String,
    pub password: String,
    pub node: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        Emulator::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Emulator {
        let dir = tempfile::Builder::new()
            .prefix("pve-client-test-")
            .tempdir()
            .unwrap();
        let u = unique();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token_id = "root@pam!citest".to_string();
        let token_secret = format!("5ec7e7a0-{u:08x}-{nanos:08x}");
        let token = format!("{token_id}={token_secret}");
        let password = format!("pw-{u}-{nanos:x}-Zq");
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let mut child = Command::new(emulator_bin())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--token", &token, "--root-password", &password])
            .args(["--auth-fail-delay-ms", "10"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting pve-emulator");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the emulator never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut fingerprint = None;
        let mut addr = None;
        while addr.is_none() {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(f) = line.strip_prefix("fingerprint ") {
                        fingerprint = Some(f.trim().to_string());
                    } else if let Some(a) = line.strip_prefix("listening ") {
                        addr = Some(a.trim().to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("emulator.log"))
                        .unwrap_or_default();
                    panic!(
                        "pve-emulator did not print `listening ADDR` within 60 s; its log:\n{log}"
                    );
                }
            }
        }
        let fingerprint = fingerprint.expect("emulator printed no `fingerprint` line first");
        Emulator {
            child,
            dir,
            addr: addr.unwrap(),
            fingerprint,
            token,
            token_id,
            token_secret,
            password,
            node: "pve".to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("pve-root-ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    pub fn config(&self, auth: Auth, tls: Tls) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.url(), auth, tls);
        cfg.timeout = Duration::from_secs(20);
        cfg.retries = 3;
        cfg
    }

    pub fn token_auth(&self) -> Auth {
        Auth::token(self.token_id.clone(), self.token_secret.clone())
    }

    pub fn password_auth(&self) -> Auth {
        Auth::password("root@pam", self.password.clone())
    }

    /// A client with token auth that trusts the emulator's CA.
    pub fn token_client(&self) -> Client {
        let mut c = Client::new(self.config(
            self.token_auth(),
            Tls::Verify {
                ca_file: Some(self.ca_file()),
            },
        ))
        .unwrap();
        c.set_retry_backoff(Duration::from_millis(10));
        c
    }

    /// A client with password (ticket) auth pinned to the node certificate.
    pub fn password_client(&self) -> Client {
        let mut c = Client::new(self.config(
            self.password_auth(),
            Tls::Fingerprint(self.fingerprint.clone()),
        ))
        .unwrap();
        c.set_retry_backoff(Duration::from_millis(10));
        c
    }

    /// A plain HTTPS agent (no client code involved) that trusts the CA.
    pub fn raw_agent(&self) -> ureq::Agent {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(self.ca_file()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new()
            .tls_config(Arc::new(cfg))
            .timeout(Duration::from_secs(20))
            .build()
    }

    fn faults_url(&self) -> String {
        format!("{}/_emulator/faults", self.url())
    }

    fn token_header(&self) -> String {
        format!("PVEAPIToken={}", self.token)
    }

    /// Appends fault rules (see the contract's RULE).
    pub fn add_faults(&self, rules: Value) {
        self.raw_agent()
            .post(&self.faults_url())
            .set("Authorization", &self.token_header())
            .set("Content-Type", "application/json")
            .send_string(&json!({ "rules": rules }).to_string())
            .expect("adding fault rules");
    }

    /// The rules with their `hits`.
    pub fn faults(&self) -> Vec<Value> {
        let resp = self
            .raw_agent()
            .get(&self.faults_url())
            .set("Authorization", &self.token_header())
            .call()
            .expect("listing fault rules");
        let v: Value = serde_json::from_reader(resp.into_reader()).unwrap();
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// Hits of the rule at `index`.
    pub fn hits(&self, index: usize) -> u64 {
        self.faults()[index]["hits"]
            .as_u64()
            .expect("rule has hits")
    }

    pub fn clear_faults(&self) {
        self.raw_agent()
            .delete(&self.faults_url())
            .set("Authorization", &self.token_header())
            .call()
            .expect("clearing fault rules");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- pve-emulator log ---\n{}", self.log());
        }
    }
}

/// A busybox CT template (`.tar.gz`) in `dir`: /bin/busybox (static, from
/// the host) with /sbin/init a script that sleeps, so a started CT stays up.
pub fn busybox_template(dir: &Path, name: &str) -> PathBuf {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static is needed (scripts/install-deps.sh installs it)");
    let root = dir.join(format!("rootfs-{}", unique()));
    for d in ["bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for app in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    std::fs::write(
        root.join("sbin/init"),
        "#!/bin/sh\ntrap 'exit 0' TERM PWR INT\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("sbin/init"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("etc/hostname"), "ct\n").unwrap();
    let out = dir.join(name);
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(status.success(), "tar failed");
    out
}
