//! The lxc engine's building blocks: OCI spec -> LXC config translation
//! ([`config`]), the data handed to the in-container init ([`init_config`]),
//! and that init itself ([`init`]).
pub mod apparmor;
pub mod attach;
pub mod config;
pub mod init;
pub mod pty;
// The contract between the runtime and our init (and the pod agent) lives
// with the agents' protocol; re-exported under their old paths.
pub use proxmox_lxcri_agent_proto::{init_config, pod};
