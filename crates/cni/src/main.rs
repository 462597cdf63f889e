//! `proxmox-lxcri-cni`: containerd's CRI, nerdctl or Podman call it as a
//! CNI plugin (spec 1.0: ADD, DEL, CHECK, VERSION; results and errors as
//! the spec's JSON on stdout). It attaches the namespace to a network of
//! the proxmox-lxcri config with an address from the same IPAM the runtime
//! uses, so both share one address pool.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "blue", "type": "proxmox-lxcri-cni",
//!  "network": "blue", "configFile": "/etc/proxmox-lxcri/config.toml"}
//! ```
//! `network` defaults to `name`; `configFile` to the runtime's default
//! (`$PROXMOX_LXCRI_CONFIG`, else /etc/proxmox-lxcri/config.toml). Leases
//! go to the config's `ipam_dir` (required: the plugin has no runtime root).
mod attach;

use std::path::PathBuf;

use cni_plugin::config::NetworkConfig;
use cni_plugin::reply::{reply, ErrorReply};
use cni_plugin::Cni;

fn main() {
    let cni = Cni::load();
    let version = match &cni {
        Cni::Add { config, .. } | Cni::Del { config, .. } | Cni::Check { config, .. } => {
            config.cni_version.clone()
        }
        Cni::Version(v) => v.clone(),
    };
    let result = match cni {
        Cni::Add {
            container_id,
            ifname,
            netns,
            config,
            ..
        } => setup(&config)
            .and_then(|s| attach::add(&s, &container_id, &ifname, &netns, version.clone())),
        Cni::Del {
            container_id,
            ifname,
            netns,
            config,
            ..
        } => setup(&config).and_then(|s| attach::del(&s, &container_id, &ifname, netns.as_deref())),
        Cni::Check {
            container_id,
            ifname,
            netns,
            config,
            ..
        } => setup(&config).and_then(|s| attach::check(&s, &container_id, &ifname, &netns)),
        Cni::Version(_) => unreachable!("answered by Cni::load"),
    };
    match result {
        Ok(Some(success)) => reply(success),
        Ok(None) => std::process::exit(0),
        Err(e) => reply(ErrorReply {
            cni_version: version,
            code: e.code,
            msg: &e.msg,
            details: e.details,
        }),
    }
}

/// A CNI error: code (spec: 4 invalid config, 7 invalid env, 11 try again
/// later; 100+ ours), short message, details.
pub struct Failure {
    pub code: i32,
    pub msg: String,
    pub details: String,
}

impl Failure {
    pub fn new(code: i32, msg: &str, details: impl ToString) -> Failure {
        Failure {
            code,
            msg: msg.into(),
            details: details.to_string(),
        }
    }
}

/// The network and the IPAM from the plugin's config.
pub struct Setup {
    pub name: String,
    pub net: proxmox_lxcri_network::Network,
    pub ipam: proxmox_lxcri_network::Ipam,
}

fn setup(config: &NetworkConfig) -> Result<Setup, Failure> {
    let name = match config.specific.get("network") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| {
                Failure::new(4, "invalid network config", "\"network\" must be a string")
            })?
            .to_string(),
        None => config.name.clone(),
    };
    let file = match config.specific.get("configFile") {
        Some(v) => Some(PathBuf::from(v.as_str().ok_or_else(|| {
            Failure::new(
                4,
                "invalid network config",
                "\"configFile\" must be a string",
            )
        })?)),
        None => None,
    };
    let cfg = proxmox_lxcri_runtime::config::Config::load(file.as_deref())
        .map_err(|e| Failure::new(4, "invalid proxmox-lxcri config", e))?;
    let net = cfg.network.get(&name).cloned().ok_or_else(|| {
        Failure::new(
            4,
            "unknown network",
            format!(
                "network {name:?} is not configured ([network.{name}] in the proxmox-lxcri config)"
            ),
        )
    })?;
    let dir = cfg.ipam_dir.clone().ok_or_else(|| {
        Failure::new(
            4,
            "invalid proxmox-lxcri config",
            "the CNI plugin needs ipam_dir in the config (shared with the runtime)",
        )
    })?;
    Ok(Setup {
        name,
        net,
        ipam: proxmox_lxcri_network::Ipam::new(dir),
    })
}
