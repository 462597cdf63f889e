//! OCI -> LXC config translation.
