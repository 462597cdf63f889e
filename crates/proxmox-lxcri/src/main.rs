//! proxmox-lxcri: runc's command line over the proxmox-lxcri runtime.
mod cli;
mod commands;
mod logging;
mod network_cmds;
mod obs_cmds;
mod storage_cmds;

use clap::Parser;

fn main() {
    // The same binary is bind-mounted into every container as its init
    // (see proxmox_lxcri_lxc::init_config); recognise that before any CLI parsing.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // pid 1 of a pve-vm guest: the kernel runs us as the initramfs's /init.
    if proxmox_lxcri_vm_guest::is_guest_init() {
        proxmox_lxcri_vm_guest::run();
    }
    if name == proxmox_lxcri_lxc::init_config::INIT_ARGV0_NAME {
        proxmox_lxcri_lxc::init::run();
    }

    // LXC runs us as its mount hook for create-phase OCI hooks.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() > 2 && args[1] == proxmox_lxcri_runtime::exchange::MOUNT_HOOK_ARG {
        let exchange = std::path::Path::new(&args[2]);
        std::process::exit(proxmox_lxcri_runtime::exchange::mount_hook_main(exchange));
    }

    let cli = cli::Cli::parse();
    // runc: `exec` exits with the process's status, so its own failures
    // exit 255 (scripts tell the two apart).
    let fail_code = if matches!(cli.command, cli::Command::Exec(_)) {
        255
    } else {
        1
    };
    let log = match logging::init(&cli.global) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxmox-lxcri: cannot open log: {e:#}");
            std::process::exit(1);
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            log.error(&msg);
            std::process::exit(fail_code);
        }
    }
}
