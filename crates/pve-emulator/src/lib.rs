//! pve-emulator: a Proxmox VE node in a box. See docs/pve-emulator.md.

pub mod api;
pub mod auth;
pub mod error;
pub mod faults;
pub mod firewall;
pub mod http;
pub mod lxc_log;
pub mod preflight;
pub mod propstr;
pub mod qemu;
pub mod rrd;
pub mod runner;
pub mod sampler;
pub mod schema;
pub mod server;
pub mod stats;
pub mod storage;
pub mod store;
pub mod tasks;
pub mod template;
pub mod tls;
