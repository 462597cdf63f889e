//! Networks (`[network.<name>]` in the config file) and IPAM: which address
//! each container holds on which network.
//!
//! Leases live in one JSON file per network under a directory (the runtime
//! root's `ipam/`, or a shared directory), changed only under an exclusive
//! flock and replaced atomically (write, fsync, rename), so parallel creates
//! never hand out one address twice and a crash never leaves half a file.
pub mod bridge;
mod config;
mod ipam;
pub mod isolation;
pub mod port_security;

pub use config::{valid_ifname, validate_all, Network, NetworkError};
pub use ipam::{pool_size, Ipam, Lease, Owner};
