//! runc's command line (the subset containerd and runc users rely on).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "proxmox-lxcri",
    version,
    about = "OCI runtime that runs containers as LXC containers (and Proxmox VE guests), runc-compatible"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/proxmox-lxcri")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; cgroupsPath in slice:prefix:name form is understood.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (rootless mode is not supported).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Our config file (TOML).
    #[arg(long, global = true, env = "PROXMOX_LXCRI_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the pid that ends with the container to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the console pty master (process.terminal).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (no effect: LXC pivots the root itself).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Number of extra fds to pass to the container (only 0 is supported).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility (not supported).
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container: its process is set up but not started.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal to the container's init process (default SIGTERM).
    Kill {
        /// Signal all processes of the container.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container and what it holds.
    Delete {
        /// Kill the container first if it still runs.
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it and return its exit status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Accepted for runc compatibility.
        #[arg(long)]
        keep: bool,
    },
    /// List containers.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Only print ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Write a default config.json to the bundle.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// A spec for rootless containers.
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Print what this runtime supports, as runc does (runtime-spec Features JSON).
    Features,
}
