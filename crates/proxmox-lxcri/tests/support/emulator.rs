//! The Proxmox node of a runtime test: a kit [`Emulator`] set up as the
//! pve-lxc engine needs it, and runtime config files pointing at it (real
//! HTTPS, an API token, the certificate fingerprint pinned).
//!
//! Tests run on the pve-lxc engine when `LXCRI_TEST_ENGINE=pve-lxc`.
#![allow(dead_code)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use testkit::{Emulator, EmulatorBuilder};

/// The engine the runtime tests run on.
pub fn engine() -> String {
    std::env::var("LXCRI_TEST_ENGINE").unwrap_or_else(|_| "lxc".into())
}

pub fn on_pve() -> bool {
    engine() == "pve-lxc"
}

/// An emulator for a test under `dir`: data in `dir/pve`, its `local`
/// storage in `dir/pve/storage`, node `pve`, a bridge and VMIDs of its own,
/// and `dir` traversable (unprivileged CTs run as host uid 100000 and must
/// reach their rootfs and our exchange dir). More options before `start()`.
pub fn builder(dir: &Path) -> EmulatorBuilder {
    let data = dir.join("pve");
    std::fs::create_dir_all(data.join("storage")).unwrap();
    testkit::make_traversable(dir);
    Emulator::builder()
        .data_dir(&data)
        .node("pve")
        .args(&[
            "--storage".to_string(),
            format!("local=dir:{}", data.join("storage").display()),
        ])
        .own_bridge()
        .next_id_lower(testkit::vmid_block())
}

/// [`builder`] started as it is.
pub fn start(dir: &Path) -> Emulator {
    builder(dir).start()
}

/// The runtime's view of an emulator: config files, and its dir storage.
pub trait RuntimeConfig {
    /// A runtime config file for this emulator; `default_backend` as given.
    fn write_config(&self, path: &Path, default_backend: &str);
    /// The same with the CTs' storage and more TOML (e.g. a `[storage]`).
    fn write_config_with(&self, path: &Path, default_backend: &str, storage: &str, extra: &str);
    /// A config that logs in as root@pam with the emulator's root password
    /// (a ticket), not a token: what Proxmox requires for bind mount points.
    fn write_config_root_pam(&self, path: &Path);
    /// Volumes left on the `local` dir storage.
    fn volumes(&self) -> Vec<PathBuf>;
}

impl RuntimeConfig for Emulator {
    fn write_config(&self, path: &Path, default_backend: &str) {
        self.write_config_with(path, default_backend, "local", "");
    }

    fn write_config_with(&self, path: &Path, default_backend: &str, storage: &str, extra: &str) {
        let secret = path.with_file_name("token-secret");
        std::fs::write(&secret, self.token_secret()).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            r#"default_backend = "{default_backend}"
[pve]
url = "{url}"
node = "{node}"
token_id = "{token_id}"
token_secret_file = "{secret}"
fingerprint = "{fp}"
storage = "{storage}"
bridge = "{bridge}"
config_dir = "{conf}"
task_timeout_secs = 60
{extra}
"#,
            url = self.url(),
            node = self.node(),
            token_id = self.token_id(),
            secret = secret.display(),
            fp = self.fingerprint(),
            bridge = self.bridge().expect("an emulator with a bridge"),
            conf = self
                .data_dir()
                .join("nodes")
                .join(self.node())
                .join("lxc")
                .display(),
        );
        std::fs::write(path, text).unwrap();
    }

    fn write_config_root_pam(&self, path: &Path) {
        let password = self
            .root_password()
            .expect("an emulator started with a root password");
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

    fn volumes(&self) -> Vec<PathBuf> {
        let images = self.data_dir().join("storage").join("images");
        let mut out = vec![];
        for e in std::fs::read_dir(images).into_iter().flatten().flatten() {
            for v in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                out.push(v.path());
            }
        }
        out
    }
}
