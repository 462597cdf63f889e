//! The lxc engine's building blocks: OCI spec -> LXC config translation
//! ([`config`]), the data handed to the in-container init ([`init_config`]),
//! and that init itself ([`init`]).
pub mod apparmor;
pub mod attach;
pub mod config;
pub mod init;
pub mod init_config;
pub mod pod;
pub mod pty;
