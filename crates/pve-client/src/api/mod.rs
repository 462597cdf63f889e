//! Typed endpoint methods, one file per API area.

pub(crate) mod access;
mod cluster;
mod lxc;
mod qemu;
pub(crate) mod storage;
mod tasks;
