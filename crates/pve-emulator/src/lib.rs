//! pve-emulator: a Proxmox VE node in a box. See docs/pve-emulator.md.

pub mod api;
pub mod auth;
pub mod error;
pub mod faults;
pub mod http;
pub mod propstr;
pub mod runner;
pub mod schema;
pub mod server;
pub mod storage;
pub mod store;
pub mod tasks;
pub mod template;
pub mod tls;
