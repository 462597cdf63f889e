pub mod containerd;
#[path = "../support/emulator.rs"]
pub mod emulator;
