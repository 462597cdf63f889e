//! Container lifecycle shared by every engine: the state store and its
//! locks, the events log, OCI hooks, process liveness, and the lxc engine.
//!
//! The binary (`proxmox-lxcri`) is a thin CLI over [`Runtime`].
pub mod config;
pub mod error;
pub mod events;
pub mod gc;
pub mod hooks;
pub mod id;
pub mod lxc_engine;
pub mod proc;
pub mod pve_engine;
pub mod running;
pub mod runtime;
pub mod signal;
pub mod state;
pub mod stdio;
pub mod storage_glue;

pub use error::{Error, Result};
pub use running::ExecOptions;
pub use runtime::{CreateOptions, Runtime};
pub use state::{ContainerState, Status};
