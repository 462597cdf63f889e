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

pub use config::{valid_domain, valid_ifname, validate_all, Network, NetworkError};

/// FNV-1a of `s`, folded to 32 bits: stable short names derived from ids
/// (host interface names, rule tags) that fit where the id does not.
pub fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    }) as u32
}
pub use ipam::{pool_size, Ipam, Lease, Owner};

/// The owner of a lease our CNI plugin took: `cni` + `<container id>/<ifname>`
/// (the runtime's gc leaves them alone: their root is not a runtime root).
pub fn cni_owner(container_id: &str, ifname: &str) -> Owner {
    Owner {
        root: "cni".into(),
        id: format!("{container_id}/{ifname}"),
    }
}

/// The host end of our CNI plugin's veth pair for an attachment: stable,
/// at most 15 bytes.
pub fn cni_host_ifname(container_id: &str, ifname: &str) -> String {
    format!(
        "lxcri{:08x}",
        short_hash(&format!("{container_id}/{ifname}"))
    )
}
