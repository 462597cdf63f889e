//! Container lifecycle shared by every engine: the state store and its
//! locks, the events log, OCI hooks, process liveness, the protocol with
//! the container's init, and the engines behind one trait.
//!
//! ```text
//! runtime.rs   Runtime: start, state, kill, delete, run, list
//! create.rs    create: one pipeline for every engine, with its rollback
//! running.rs   exec, ps, pause/resume, update, events on a live container
//! engine/      the Engine trait; lxc/ (liblxc on this host), pve_lxc/ (a
//!              Proxmox CT through the API: every API request is there)
//! exchange.rs  files, FIFOs and monitor rules shared with the init
//! flags.rs     runc's exec/update flags as changes to the spec
//! compat.rs    runc's acceptance rules (zero = unset, caps) on raw JSON
//! state.rs     state.json, the store, locks      gc.rs  leftovers
//! network.rs   [network.*] chosen per container, leases held and freed
//! snapshots.rs [storage] and the snapshot/image commands
//! ```
//!
//! The binary (`proxmox-lxcri`) is a thin CLI over [`Runtime`].
pub mod compat;
pub mod config;
pub mod create;
pub mod engine;
pub mod error;
pub mod events;
pub mod exchange;
pub mod flags;
pub mod gc;
pub mod hooks;
pub mod id;
pub mod network;
pub mod proc;
pub mod running;
pub mod runtime;
mod seccomp_agent;
pub mod signal;
pub mod snapshots;
pub mod sockpath;
pub mod state;
pub mod stdio;
pub mod terminal;

pub use error::{Error, Result};
pub use flags::{ExecFlags, ResourceFlags};
pub use running::ExecOptions;
pub use runtime::{CreateOptions, Runtime};
pub use state::{ContainerState, Status};
