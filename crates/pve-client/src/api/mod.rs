//! Typed endpoint methods, one file per API area.

mod cluster;
mod lxc;
mod qemu;
pub(crate) mod storage;
mod tasks;
