//! runc's command line (the subset containerd and runc users rely on).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "proxmox-lxcri",
    version,
    // runc's `-v` (clap's default is `-V`).
    disable_version_flag = true,
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
    /// Print the version.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
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
    /// Pass the caller's fds 3..3+N to the container's process (as runc).
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
    /// Print an AppArmor profile for a bundle's container (LXC's confined
    /// container rules plus the spec's masked and read-only paths), to load
    /// on the node with `apparmor_parser -r` and name in
    /// process.apparmorProfile.
    ApparmorProfile {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Profile name (default: lxcri-<id>).
        #[arg(long)]
        name: Option<String>,
        id: String,
    },
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        /// Options passed to ps(1) for the table format.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Suspend all processes of a container (freezer).
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// Change the resource limits of a live container.
    Update(UpdateArgs),
    /// Print container stats (runc's JSON events).
    Events {
        /// Print stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events, e.g. 5s.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Snapshots of a container's rootfs volume ([storage] kind = "zfs").
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// The image cache of [storage] (one dataset per rootfs content).
    #[command(subcommand)]
    Image(ImageCmd),
    /// Configured networks ([network.<name>]) and their address leases.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Remove what crashed commands left behind: interrupted creates (with
    /// their Proxmox CT, volume and VMID), storage volumes no container
    /// records, and Proxmox CTs of this root whose container has no state.
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Prometheus/OpenMetrics exporter (see docs/observability.md).
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// Check that this host can run containers: runtime root, liblxc,
    /// cgroups, ZFS pool, Proxmox API (TLS, token, privileges), bridges,
    /// leftovers. Exits 1 when a check fails.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit 1 on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Write man pages or shell completions generated from this CLI (used
    /// to build the Debian package).
    #[command(subcommand, hide = true)]
    Generate(GenerateCmd),
}

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Serve /metrics (OpenMetrics) and /healthz until stopped.
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateCmd {
    /// Man pages (proxmox-lxcri.1 and one per subcommand) into DIR.
    Man { dir: PathBuf },
    /// Completions for bash, zsh and fish into DIR.
    Completions { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of the container's rootfs.
    Create { id: String, name: String },
    /// List the container's snapshots.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
    },
    /// Roll the rootfs back to a snapshot (later snapshots are destroyed);
    /// the container must not be running.
    Rollback { id: String, name: String },
    /// Destroy a snapshot.
    Delete { id: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// The configured networks: bridge, subnets, VLAN, leases in use.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// The leases of one network (or of every network).
    Leases {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        network: Option<String>,
    },
    /// Give back a container's lease on a network (a container that still
    /// exists is refused: delete it instead).
    Release { network: String, id: String },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List cached images and the datasets cloned from them.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Remove cached images that no container needs.
    Gc,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// process.json (OCI Process) describing what to run.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Return once the process has started.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment, KEY=VALUE.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_X).
    #[arg(long)]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    /// Accepted for runc compatibility (AppArmor/SELinux labels are taken from the container).
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long)]
    pub process_label: Option<String>,
    /// Pass the caller's fds 3..3+N to the process (as runc).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    /// Run the process in an existing sub-cgroup of the container's:
    /// `path`, or `controller[,controller]:path` (repeatable), as runc 1.1.
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Exec even into a paused container (the process waits frozen).
    #[arg(long)]
    pub ignore_paused: bool,
    pub id: String,
    /// Command and arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or - for stdin.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit: bytes, or with a suffix (50M, 1g ...); -1 unlimited.
    #[arg(long, value_parser = parse_size, allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// Memory+swap limit (as --memory).
    #[arg(long, value_parser = parse_size, allow_negative_numbers = true)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit (as --memory).
    #[arg(long, value_parser = parse_size, allow_negative_numbers = true)]
    pub memory_reservation: Option<i64>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU quota in microseconds per period; -1 unlimited.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

/// A size as runc's `update` takes it (Docker's RAMInBytes): a number of
/// bytes, optionally with a binary unit suffix (k, m, g, t, p; `b`/`ib`
/// after it allowed, any case), or -1 for unlimited.
pub fn parse_size(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit (use k, m, g, t, p)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
    let bytes = n * (1u64 << shift) as f64;
    if !(0.0..9.2e18).contains(&bytes) {
        return Err(format!("invalid size {s:?}: out of range"));
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_as_runc_takes_them() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("50M"), Ok(50 << 20));
        assert_eq!(parse_size("50m"), Ok(50 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("-1"), Ok(-1));
        for bad in ["", "M", "12x", "-2", "1e3", "9999999p"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
