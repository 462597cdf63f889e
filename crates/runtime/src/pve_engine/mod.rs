//! The pve-lxc engine: each OCI container is a Proxmox VE CT.
//!
//! ```text
//! create: nextid -> POST /nodes/N/lxc (base template, rootfs volume, limits, net0, tags)
//!         -> the bundle's rootfs into the CT's volume (the runtime runs on the node)
//!         -> raw lxc.* keys (our init, exchange dir, seccomp/caps via init, hooks)
//!            appended to the CT's config file on the node
//!         -> POST status/start: LXC starts our init, which waits for `start`
//!            exactly as on the lxc engine
//! ```
//! The CT is not our child, so the pid-file pid is a monitor of ours that
//! hands the init our stdio over a socket in the exchange dir, learns the
//! init's host pid from that connection (SO_PEERCRED), and exits with the
//! container's status when that pid ends (also when Proxmox stops the CT).
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Spec;
use pve_client::props::{Features, MountPoint, NetConfig};
use pve_client::{Auth, Client, ClientConfig, Params, Secret, Tls, Upid};
use serde::{Deserialize, Serialize};

use crate::config::PveSection;
use crate::error::{Context, Error, Result};
use crate::proc;
use crate::state::{write_atomic, ProcRef};

/// Every CT we make carries this tag (and one derived from the id).
pub const TAG: &str = "proxmox-lxcri";
/// `true`/`1`: a privileged CT (`unprivileged=0`).
pub const PRIVILEGED_ANNOTATION: &str = "io.proxmox-lxcri.privileged";
/// `nesting=1,fuse=1,keyctl=1`: the CT's `features`.
pub const FEATURES_ANNOTATION: &str = "io.proxmox-lxcri.features";
/// Prefix of the net0 annotations: bridge, vlan, ip, gw, ip6, gw6, hwaddr,
/// mtu, firewall, nameserver, searchdomain.
pub const NET_ANNOTATION_PREFIX: &str = "io.proxmox-lxcri.net.";
/// Rootfs size (`512M`, `8G`): the volume's size (refquota on ZFS).
pub use storage::QUOTA_ANNOTATION;
/// Host uid/gid of root in an unprivileged CT (Proxmox's fixed idmap).
pub const ID_SHIFT: u32 = 100_000;
/// The empty template every CT is created from (its rootfs is ours).
const BASE_TEMPLATE: &str = "proxmox-lxcri-base.tar";
/// Written by the monitor: the init's host pid and start time.
pub const FILE_INIT_PID: &str = "init-pid";

/// What the state file records of the CT, before each step that makes
/// something, so that a crash can be cleaned up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PveRecord {
    pub node: String,
    /// Reserved (and maybe created) VMID.
    #[serde(default)]
    pub vmid: Option<u32>,
    /// POST create succeeded for `vmid`: the CT is certainly ours.
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub unprivileged: bool,
}

/// A client for `[pve]`. Secrets come from files that must not be
/// readable by group or others.
pub fn connect(cfg: &PveSection) -> Result<Client> {
    let auth = match (&cfg.token_id, &cfg.token_secret_file) {
        (Some(id), Some(file)) => Auth::Token {
            id: id.clone(),
            secret: Secret::from_file(file)
                .map_err(|e| Error::Config(format!("pve.token_secret_file: {e}")))?,
        },
        _ => Auth::Password {
            username: cfg.username.clone().unwrap_or_default(),
            password: Secret::from_file(cfg.password_file.as_deref().unwrap_or(Path::new("")))
                .map_err(|e| Error::Config(format!("pve.password_file: {e}")))?,
        },
    };
    let tls = if cfg.insecure {
        Tls::Insecure
    } else if let Some(fp) = &cfg.fingerprint {
        Tls::Fingerprint(fp.clone())
    } else {
        Tls::Verify {
            ca_file: cfg.ca_file.clone(),
        }
    };
    let mut cc = ClientConfig::new(cfg.url.clone(), auth, tls);
    cc.timeout = Duration::from_secs(cfg.timeout_secs);
    cc.retries = cfg.retries;
    Client::new(cc).map_err(|e| Error::Config(format!("pve: {e}")))
}

pub fn api(what: &str) -> impl Fn(pve_client::Error) -> Error + '_ {
    move |e| Error::Pve(format!("Proxmox API: {what}: {e}"))
}

/// How the CT's network is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace: net0 through the API.
    Api,
    /// The host's, or a given namespace path: LXC's own keys, raw.
    Raw,
}

mod lifecycle;
mod monitor;
mod node;
mod plan;

pub(crate) use lifecycle::task_error;

pub use monitor::*;
pub use node::*;
pub use plan::*;
