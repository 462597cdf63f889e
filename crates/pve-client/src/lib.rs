//! A blocking, typed client for the Proxmox VE API, covering what
//! proxmox-lxcri needs: tickets and API tokens, TLS verified against a CA
//! file or a pinned certificate fingerprint, tasks, LXC, QEMU and storage.
//!
//! ```no_run
//! use pve_client::{Auth, Client, ClientConfig, Params, Tls};
//! use std::time::Duration;
//!
//! let client = Client::new(ClientConfig::new(
//!     "https://pve.example:8006",
//!     Auth::token("root@pam!runtime", "c0ffee-..."),
//!     Tls::Fingerprint("AA:BB:...".into()),
//! ))?;
//! let vmid = client.next_id(None)?;
//! let upid = client.lxc_create(
//!     "pve",
//!     &Params::new().int("vmid", vmid).set("ostemplate", "local:vztmpl/alpine.tar.zst"),
//! )?;
//! client.wait_task(&upid, Duration::from_secs(120))?;
//! # Ok::<(), pve_client::Error>(())
//! ```

mod api;
pub use api::access::Permissions;
pub use api::firewall::GuestType;
mod client;
mod config;
mod de;
mod error;
mod multipart;
mod observe;
mod params;
pub mod props;
mod secret;
mod tls;
mod types;
mod upid;

pub use client::{Client, Method, TicketStats};
pub use config::{Auth, ClientConfig, Tls};
pub use error::{Error, Result};
pub use observe::{endpoint_template, ApiRequest, Observer};
pub use params::Params;
pub use secret::Secret;
pub use tls::fingerprint_of;
pub use types::*;
pub use upid::Upid;
