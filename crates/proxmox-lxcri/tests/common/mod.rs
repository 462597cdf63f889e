pub mod clients;
pub mod containerd;
pub mod docker;
#[path = "../support/emulator.rs"]
pub mod emulator;
pub mod podman;
