//! The container init (pid 1 inside the container). See `init_config` for the protocol.

/// Entry point when the binary runs as the container init. Never returns.
pub fn run() -> ! {
    unimplemented!("container init")
}
