//! What the runtime hands to the container init, and the protocol between them.
//!
//! The runtime writes [`InitConfig`] as JSON to `<exchange>/init.json`. The
//! exchange directory (a per-container directory on the host) is bind-mounted
//! into the container at [`EXCHANGE_DIR`], and this very binary at
//! [`INIT_PATH`]; `lxc.init.cmd` is [`INIT_PATH`].
//!
//! Protocol, all through files in the exchange directory:
//! 1. init reads `init.json`, opens `exit` for writing (kept open), prepares
//!    the container (devices, masked and read-only paths, resolves the
//!    executable) and writes one line to the `ready` FIFO: `ok` or
//!    `error: <message>` (then exits 1).
//! 2. init opens the `start` FIFO for reading and blocks until one byte
//!    arrives (the runtime's `start`); EOF without a byte means "abort": exit.
//! 3. init opens the `started` FIFO for writing (the runtime opened its read
//!    side before writing to `start`), detaches the exchange directory and
//!    its own binary from the container's view, runs the startContainer
//!    hooks, forks the user process, and writes `ok` or `error: <message>`
//!    to `started`.
//! 4. init stays pid 1: it forwards signals to the user process, reaps
//!    zombies, and when the user process ends writes its [`ExitStatus`] as
//!    JSON to the `exit` file and exits with the same shell-style code.
use serde::{Deserialize, Serialize};

/// Where the exchange directory is mounted inside the container.
pub const EXCHANGE_DIR: &str = "/dev/.lxcri";
/// Where this binary is mounted inside the container; argv[0] of init.
pub const INIT_PATH: &str = "/dev/.lxcri-init";
/// Basename by which `main` recognises that it runs as the container init.
pub const INIT_ARGV0_NAME: &str = ".lxcri-init";

pub const FILE_INIT_CONFIG: &str = "init.json";
pub const FIFO_READY: &str = "ready";
pub const FIFO_START: &str = "start";
pub const FIFO_STARTED: &str = "started";
pub const FILE_EXIT: &str = "exit";
/// Unix socket (in the exchange dir) the runtime listens on for the pty master.
pub const SOCKET_CONSOLE: &str = "console.sock";
/// Unix socket (in the exchange dir) on which the runtime's monitor hands
/// the init the container's stdio (fds 0, 1, 2), when the init is not a
/// child of ours (the pve-lxc engine: Proxmox starts the CT). The init takes
/// it when the socket exists, before reading its config, so that the
/// monitor learns its pid even when the config is bad.
pub const SOCKET_STDIO: &str = "stdio.sock";
/// Unix socket (in the exchange dir) on which `create --preserve-fds N`
/// hands the init the caller's fds 3..3+N (SCM_RIGHTS, until EOF). The init
/// takes them first thing, when the socket exists, and keeps them at 3..3+N
/// for the user process, as runc passes them.
pub const SOCKET_PRESERVE: &str = "preserve.sock";
/// Unix socket (in the exchange dir) `start` listens on when the seccomp
/// profile has SCMP_ACT_NOTIFY rules: the init connects before it hides the
/// exchange dir and sends the notify fd once the filter is loaded; `start`
/// hands it to linux.seccomp.listenerPath, as runc.
pub const SOCKET_SECCOMP: &str = "seccomp.sock";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InitConfig {
    /// process.args; args[0] is looked up in PATH from `env` when it has no `/`.
    pub args: Vec<String>,
    /// process.env, exactly: init clears its own environment first.
    pub env: Vec<String>,
    /// process.cwd (absolute, inside the container).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub umask: Option<u32>,
    /// linux.domainname (UTS namespace), set by init; LXC has no key for it.
    #[serde(default)]
    pub domainname: Option<String>,
    /// process.terminal: stdin is a terminal the init makes the controlling
    /// terminal of the user process (setsid + TIOCSCTTY).
    #[serde(default)]
    pub terminal: bool,
    /// With `terminal`: make the pty inside the container (its devpts) and
    /// send the master to the runtime over [`SOCKET_CONSOLE`] in the
    /// exchange directory, before answering `ready`.
    #[serde(default)]
    pub console_socket: bool,
    /// process.capabilities; `None` means "drop everything".
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub no_new_privileges: bool,
    /// linux.seccomp as in the OCI spec (serde form of oci_spec's LinuxSeccomp).
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// root.readonly: the init remounts `/` read-only after its own
    /// preparation (as runc does after pivot_root), saving LXC a mount
    /// hook's three execs.
    #[serde(default)]
    pub readonly_root: bool,
    /// linux.devices: created with mknod by init under /dev.
    #[serde(default)]
    pub devices: Vec<oci_spec::runtime::LinuxDevice>,
    /// hooks.startContainer, run by init inside the container after `start`
    /// and before the user process.
    #[serde(default)]
    pub start_container_hooks: Vec<oci_spec::runtime::Hook>,
    /// The OCI state JSON (status "created") piped to startContainer hooks.
    #[serde(default)]
    pub hook_state: serde_json::Value,
    /// Become the user process (execve in place: it is pid 1 and the
    /// runtime's pid-file pid, as with runc) instead of forking it and
    /// staying its supervisor (engines whose guest's init is not ours to
    /// hand over, such as a Proxmox CT).
    #[serde(default)]
    pub exec_in_place: bool,
    /// Also serve as the pod agent (a pod's sandbox on a Proxmox engine):
    /// keep the exchange dir, listen on [`crate::pod::SOCKET_AGENT`] and
    /// start the pod's other containers on request. The sandbox's own
    /// process runs in a mount namespace of its own without our files.
    #[serde(default)]
    pub agent: bool,
    /// `--preserve-fds N`: fds 3..3+N stay open across the exec of the user
    /// process (every other fd above 2 is closed on exec).
    #[serde(default)]
    pub preserve_fds: u32,
    /// Recursive mount attributes of the spec's mounts (`rro`, `rnosuid`
    /// ...), applied by the init with mount_setattr(AT_RECURSIVE) after
    /// LXC made the mounts, before masked and read-only paths (as runc).
    #[serde(default)]
    pub mount_attrs: Vec<MountAttr>,
    /// The spec's mount points in the spec's order: the init re-attaches
    /// what LXC mounted out of that order (autodev /dev, cgroups, devpts)
    /// so that mountinfo lists them in it, as the runtime spec requires.
    #[serde(default)]
    pub mount_order: Vec<String>,
}

/// One mount's recursive attributes (MOUNT_ATTR_* bits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountAttr {
    /// The spec's field, for errors (`mounts[3].options`).
    pub field: String,
    /// The mount point, inside the container.
    pub path: String,
    pub set: u64,
    pub clr: u64,
}

/// The five capability sets, as capability names (`CAP_CHOWN`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

/// How the user process ended, written by init to the `exit` file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    /// exit code if it exited, else None.
    pub code: Option<i32>,
    /// signal number if it was killed by a signal, else None.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The shell's and containerd's number: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}
