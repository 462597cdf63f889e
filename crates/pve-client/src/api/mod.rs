//! Typed endpoint methods, one file per API area.

pub(crate) mod access;
mod cluster;
pub(crate) mod firewall;
mod lxc;
mod qemu;
mod sdn;
pub(crate) mod storage;
mod tasks;
