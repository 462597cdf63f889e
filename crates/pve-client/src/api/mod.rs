//! Typed endpoint methods, one file per API area.

mod cluster;
mod firewall;
mod lxc;
mod qemu;
mod sdn;
pub(crate) mod storage;
mod tasks;
