fn main() {
    // The same binary is bind-mounted into every container as its init
    // (see proxmox_lxcri_lxc::init_config); recognise that before any CLI parsing.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == proxmox_lxcri_lxc::init_config::INIT_ARGV0_NAME {
        proxmox_lxcri_lxc::init::run();
    }
}
