//! The config file (TOML): `--config`, else `$PROXMOX_LXCRI_CONFIG`, else
//! `/etc/proxmox-lxcri/config.toml`; an absent file means built-in defaults.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/proxmox-lxcri/config.toml";
pub const ENV_VAR: &str = "PROXMOX_LXCRI_CONFIG";
/// Annotation that picks the engine for one container.
pub const BACKEND_ANNOTATION: &str = "io.proxmox-lxcri.backend";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Backend {
    #[serde(rename = "lxc")]
    Lxc,
    #[serde(rename = "pve-lxc")]
    PveLxc,
    #[serde(rename = "pve-vm")]
    PveVm,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lxc" => Some(Backend::Lxc),
            "pve-lxc" => Some(Backend::PveLxc),
            "pve-vm" => Some(Backend::PveVm),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Lxc => "lxc",
            Backend::PveLxc => "pve-lxc",
            Backend::PveVm => "pve-vm",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_backend")]
    pub default_backend: Backend,
    /// Regex on the container id -> engine; the first match wins.
    #[serde(default)]
    pub routing: Vec<Route>,
    #[serde(default)]
    pub lxc: LxcSection,
    /// `[storage]`: where container rootfs live. Absent: the lxc engine
    /// runs the bundle's rootfs in place, as runc does.
    #[serde(default)]
    pub storage: Option<storage::StorageConfig>,
    /// The Proxmox VE node the pve-* engines talk to.
    #[serde(default)]
    pub pve: Option<PveSection>,
    /// `[events]`: rotation of `<root>/runtime/events.log`.
    #[serde(default)]
    pub events: crate::events::EventsConfig,
    /// `[network.<name>]`: networks containers are attached to, with
    /// addresses from the runtime's IPAM.
    #[serde(default)]
    pub network: std::collections::BTreeMap<String, proxmox_lxcri_network::Network>,
    /// The network of a container without `io.proxmox-lxcri.network`.
    #[serde(default)]
    pub default_network: Option<String>,
    /// Where leases are kept (default `<root>/ipam`); a directory shared by
    /// the runtimes of one address space.
    #[serde(default)]
    pub ipam_dir: Option<PathBuf>,
}

/// `[pve]`: where the Proxmox API is and how the CTs are made. The runtime
/// runs on that node (it writes raw `lxc.*` keys to the CT's config file
/// and waits for the CT's init locally).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PveSection {
    /// `https://HOST:8006` (the `/api2/json` prefix is added).
    pub url: String,
    /// This node's name in the cluster.
    pub node: String,
    /// API token `USER@REALM!ID`, with its secret in `token_secret_file`.
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub token_secret_file: Option<PathBuf>,
    /// Or a ticket login: `user@realm` and a password file.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Pinned SHA-256 fingerprint of the node certificate (`AA:BB:...`).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Or a CA file (Proxmox's `/etc/pve/pve-root-ca.pem`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Turn TLS verification off (logged at every connection).
    #[serde(default)]
    pub insecure: bool,
    /// Storage for the CT's rootfs volume.
    #[serde(default = "default_pve_storage")]
    pub storage: String,
    /// Storage holding the base template (content `vztmpl`).
    #[serde(default = "default_pve_storage")]
    pub template_storage: String,
    /// Bridge of net0 (annotation `io.proxmox-lxcri.net.bridge` overrides).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Directory of this node's CT config files (`/etc/pve/lxc` on Proxmox;
    /// `DATA/nodes/NODE/lxc` for pve-emulator).
    #[serde(default = "default_pve_config_dir")]
    pub config_dir: PathBuf,
    /// Rootfs size in GiB when no `io.proxmox-lxcri.storage.quota` is given.
    #[serde(default = "default_rootfs_gb")]
    pub rootfs_size_gb: u32,
    /// Per-request timeout.
    #[serde(default = "default_pve_timeout")]
    pub timeout_secs: u64,
    /// How long a task (create, start, destroy) may take.
    #[serde(default = "default_task_timeout")]
    pub task_timeout_secs: u64,
    /// Retries of safe requests (GETs; connections that failed before sending).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// DNS for the CTs (else the node's).
    #[serde(default)]
    pub nameserver: Option<String>,
    #[serde(default)]
    pub searchdomain: Option<String>,
    /// pve-vm: the guest kernel on this node (default: the newest
    /// `/boot/vmlinuz-*cloud-amd64`, Debian's linux-image-cloud-amd64).
    #[serde(default)]
    pub vm_kernel: Option<PathBuf>,
    /// pve-vm: where the node's QEMU puts a VM's sockets
    /// (`<dir>/<vmid>.serial0`); `DATA/run/qemu-server` for pve-emulator.
    #[serde(default = "default_qemu_run_dir")]
    pub qemu_run_dir: PathBuf,
    /// pve-vm: the VM's memory when the spec sets no memory limit.
    #[serde(default = "default_vm_memory_mb")]
    pub vm_memory_mb: u64,
    /// pve-vm: how long create waits for the guest's agent (boot included;
    /// TCG boots take seconds).
    #[serde(default = "default_vm_boot_timeout")]
    pub vm_boot_timeout_secs: u64,
}

fn default_pve_storage() -> String {
    "local".into()
}
fn default_bridge() -> String {
    "vmbr0".into()
}
fn default_pve_config_dir() -> PathBuf {
    "/etc/pve/lxc".into()
}
fn default_exchange_dir() -> PathBuf {
    "/run/proxmox-lxcri/exchange".into()
}
fn default_rootfs_gb() -> u32 {
    8
}
fn default_pve_timeout() -> u64 {
    30
}
fn default_task_timeout() -> u64 {
    120
}
fn default_retries() -> u32 {
    3
}
fn default_qemu_run_dir() -> PathBuf {
    "/var/run/qemu-server".into()
}
fn default_vm_memory_mb() -> u64 {
    256
}
fn default_vm_boot_timeout() -> u64 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub pattern: String,
    pub backend: Backend,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxcSection {
    /// lxc.log.level for every container (LXC's names: TRACE .. FATAL).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// How long `create` waits for the container init to report ready.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: u64,
    /// The lxc-start binary.
    #[serde(default = "default_lxc_start")]
    pub lxc_start: PathBuf,
    /// Where the exchange directories (FIFOs and files shared with our init)
    /// of containers whose init runs as a mapped root live: unprivileged
    /// Proxmox CTs and user-namespace containers. Traversable by those roots.
    #[serde(default = "default_exchange_dir")]
    pub exchange_dir: PathBuf,
}

impl Default for LxcSection {
    fn default() -> Self {
        LxcSection {
            log_level: default_log_level(),
            start_timeout_secs: default_start_timeout(),
            lxc_start: default_lxc_start(),
            exchange_dir: default_exchange_dir(),
        }
    }
}

fn default_backend() -> Backend {
    Backend::Lxc
}
fn default_log_level() -> String {
    "ERROR".into()
}
fn default_start_timeout() -> u64 {
    30
}
fn default_lxc_start() -> PathBuf {
    "lxc-start".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_backend: default_backend(),
            routing: vec![],
            lxc: LxcSection::default(),
            pve: None,
            storage: None,
            events: Default::default(),
            network: Default::default(),
            default_network: None,
            ipam_dir: None,
        }
    }
}

impl Config {
    /// Load from an explicit path (must exist), else the env var's path
    /// (must exist), else the default path (may be absent).
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let env = std::env::var_os(ENV_VAR).map(PathBuf::from);
        let (path, required) = match (explicit, env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (p, true),
            (None, None) => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text)
                .map_err(|e| Error::Config(format!("config file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::Config(format!(
                "config file {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &cfg.routing {
            regex::Regex::new(&r.pattern)
                .map_err(|e| format!("routing pattern {:?}: {e}", r.pattern))?;
        }
        if !matches!(
            cfg.lxc.log_level.to_ascii_uppercase().as_str(),
            "TRACE" | "DEBUG" | "INFO" | "NOTICE" | "WARN" | "ERROR" | "CRIT" | "ALERT" | "FATAL"
        ) {
            return Err(format!(
                "lxc.log_level {:?}: not an LXC log level",
                cfg.lxc.log_level
            ));
        }
        if let Some(p) = &cfg.pve {
            if !p.url.starts_with("https://") {
                return Err(format!("pve.url {:?}: must start with https://", p.url));
            }
            match (&p.token_id, &p.token_secret_file, &p.username, &p.password_file) {
                (Some(_), Some(_), None, None) | (None, None, Some(_), Some(_)) => {}
                _ => {
                    return Err("[pve]: give either token_id and token_secret_file, or username and password_file".into())
                }
            }
            if p.fingerprint.is_some() && p.ca_file.is_some() {
                return Err("[pve]: give fingerprint or ca_file, not both".into());
            }
        }
        if let Some(st) = &cfg.storage {
            st.validate().map_err(|e| format!("[storage]: {e}"))?;
        }
        proxmox_lxcri_network::validate_all(&cfg.network).map_err(|e| e.to_string())?;
        // Never a silent no-op for what would isolate or share addresses.
        for (name, n) in &cfg.network {
            if n.sdn_vnet.is_some() && cfg.pve.is_none() {
                return Err(format!(
                    "network {name:?}: sdn_vnet needs a [pve] section (Proxmox SDN's IPAM is reached through the API)"
                ));
            }
        }
        if let Some(d) = &cfg.default_network {
            if !cfg.network.contains_key(d) {
                return Err(format!("default_network {d:?}: no [network.{d}] section"));
            }
        }
        Ok(cfg)
    }

    /// The `[pve]` section, required by the pve-* engines.
    pub fn pve(&self) -> Result<&PveSection> {
        self.pve.as_ref().ok_or_else(|| {
            Error::Config(
                "the pve-lxc engine needs a [pve] section in the config file (url, node, token_id, token_secret_file, fingerprint or ca_file); see docs/config.md".into(),
            )
        })
    }

    /// The engine for a container: annotation, then routing, then default.
    pub fn backend_for(
        &self,
        id: &str,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<Backend> {
        if let Some(v) = annotations.get(BACKEND_ANNOTATION) {
            return Backend::parse(v).ok_or_else(|| {
                Error::Config(format!(
                    "annotation {BACKEND_ANNOTATION}={v:?}: unknown engine; use lxc, pve-lxc or pve-vm"
                ))
            });
        }
        for r in &self.routing {
            // Patterns were checked at load.
            if regex::Regex::new(&r.pattern)
                .map(|re| re.is_match(id))
                .unwrap_or(false)
            {
                return Ok(r.backend);
            }
        }
        Ok(self.default_backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_and_routing() {
        let cfg = Config::parse(
            r#"
default_backend = "lxc"
[[routing]]
pattern = "^vm-"
backend = "pve-vm"
[[routing]]
pattern = "^ct-"
backend = "pve-lxc"
"#,
        )
        .unwrap();
        let none = BTreeMap::new();
        assert_eq!(cfg.backend_for("vm-1", &none).unwrap(), Backend::PveVm);
        assert_eq!(cfg.backend_for("ct-1", &none).unwrap(), Backend::PveLxc);
        assert_eq!(cfg.backend_for("x", &none).unwrap(), Backend::Lxc);
        let mut ann = BTreeMap::new();
        ann.insert(BACKEND_ANNOTATION.to_string(), "lxc".to_string());
        assert_eq!(cfg.backend_for("vm-1", &ann).unwrap(), Backend::Lxc);
        ann.insert(BACKEND_ANNOTATION.to_string(), "docker".to_string());
        assert!(cfg
            .backend_for("x", &ann)
            .unwrap_err()
            .to_string()
            .contains("unknown engine"));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(Config::parse("default_backend = \"nope\"").is_err());
        assert!(Config::parse("[[routing]]\npattern = \"(\"\nbackend = \"lxc\"").is_err());
        assert!(Config::parse("typo = 1").is_err());
        assert!(Config::parse("[lxc]\nlog_level = \"LOUD\"").is_err());
        assert_eq!(Config::parse("").unwrap().lxc.log_level, "ERROR");
    }

    #[test]
    fn storage_section() {
        assert!(Config::parse("").unwrap().storage.is_none());
        let c = Config::parse("[storage]\n").unwrap();
        assert_eq!(c.storage.unwrap().kind, storage::Kind::Dir);
        let c = Config::parse(
            "[storage]\nkind = \"zfs\"\nzfs_parent = \"tank/lxcri\"\ndefault_quota = \"8G\"\nproperties = { compression = \"lz4\", atime = \"off\" }\n",
        )
        .unwrap();
        assert_eq!(c.storage.unwrap().zfs_parent.as_deref(), Some("tank/lxcri"));
        let e = Config::parse("[storage]\nkind = \"zfs\"\n").unwrap_err();
        assert!(e.contains("[storage]") && e.contains("zfs_parent"), "{e}");
        assert!(Config::parse("[storage]\nquota = \"1G\"\n").is_err());
    }

    #[test]
    fn networks_are_checked_at_load() {
        let net = "[network.blue]\nbridge = \"vmbr1\"\nsubnet = \"10.88.0.0/24\"\n";
        let cfg = Config::parse(&format!("default_network = \"blue\"\n{net}")).unwrap();
        assert_eq!(cfg.network["blue"].bridge, "vmbr1");
        for (text, want) in [
            (
                format!("default_network = \"red\"\n{net}"),
                "no [network.red]",
            ),
            (format!("{net}sdn_vnet = \"v1\"\n"), "needs a [pve] section"),
            (
                format!("{net}[network.green]\nbridge = \"vmbr2\"\nsubnet = \"10.88.0.0/16\"\n"),
                "overlap",
            ),
        ] {
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
