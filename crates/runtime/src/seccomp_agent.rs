//! seccomp user notification: the container's notify fd to the agent at
//! `linux.seccomp.listenerPath`, as runc hands it over.
//!
//! ```text
//! start:  bind <exchange>/seccomp.sock, release the init
//! init:   connect (before hiding the exchange dir), load the filter with
//!         NEW_LISTENER, send the notify fd, exec the process
//! start:  take the fd, connect to listenerPath, send runc's
//!         containerProcessState JSON with the fd (SCM_RIGHTS)
//! ```
//! A process added with `exec` sends its fd to the `exec` command, which
//! connected to the agent before it entered the container.
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proxmox_lxcri_lxc::init_config::SOCKET_SECCOMP;
use serde_json::json;

use crate::error::{Context, Error, Result};
use crate::exchange::Paths;
use crate::runtime::Runtime;
use crate::state::ContainerState;

pub(crate) struct Handover {
    listener: UnixListener,
    socket: PathBuf,
    listener_path: PathBuf,
    metadata: String,
}

impl Handover {
    /// Listen for the init's notify fd, when the profile has a listener
    /// and SCMP_ACT_NOTIFY rules.
    pub(crate) fn prepare(rt: &Runtime, id: &str, paths: &Paths) -> Result<Option<Handover>> {
        let Ok(cfg) = rt.container_process(id) else {
            return Ok(None);
        };
        let Some(s) = cfg.seccomp else {
            return Ok(None);
        };
        let Some(listener_path) = s.listener_path().clone() else {
            return Ok(None);
        };
        let notify = proxmox_lxcri_lxc::init::seccomp::compile(&s)
            .map(|f| f.notify)
            .unwrap_or(false);
        if !notify {
            return Ok(None);
        }
        let socket = paths.exchange.join(SOCKET_SECCOMP);
        let _ = std::fs::remove_file(&socket);
        let listener =
            crate::sockpath::bind(&socket).ctx(|| format!("binding {}", socket.display()))?;
        listener
            .set_nonblocking(true)
            .ctx(|| "seccomp socket".into())?;
        Ok(Some(Handover {
            listener,
            socket,
            listener_path,
            metadata: s.listener_metadata().clone().unwrap_or_default(),
        }))
    }

    /// After a successful start: the fd from the init to the agent.
    pub(crate) fn hand_over(self, st: &ContainerState, pid: i32, timeout: Duration) -> Result<()> {
        let fail = |reason: String| Error::Start {
            id: st.id.clone(),
            reason: format!("linux.seccomp.listenerPath: {reason}"),
        };
        let deadline = Instant::now() + timeout;
        let conn = loop {
            match self.listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(fail("the container init sent no seccomp notify fd".into()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(fail(format!("accepting the init's connection: {e}"))),
            }
        };
        let _ = std::fs::remove_file(&self.socket);
        conn.set_nonblocking(false)
            .and_then(|_| conn.set_read_timeout(Some(timeout)))
            .map_err(|e| fail(e.to_string()))?;
        let fd = proxmox_lxcri_lxc::pty::recv_fd(&conn)
            .map_err(|e| fail(format!("the seccomp notify fd from the init: {e}")))?;
        let agent = Agent::connect(&self.listener_path, &self.metadata).map_err(fail)?;
        let mut state = st.oci_json();
        state["status"] = "running".into();
        state["pid"] = pid.into();
        agent.send(&state, pid, &fd).map_err(fail)?;
        Ok(())
    }
}

/// A connection to the seccomp agent at listenerPath.
pub(crate) struct Agent {
    stream: std::os::unix::net::UnixStream,
    path: PathBuf,
    metadata: String,
}

impl Agent {
    /// For a process whose profile is `s`: a connection when it has a
    /// listener and SCMP_ACT_NOTIFY rules (made before the caller leaves
    /// the host's mount namespace).
    pub(crate) fn for_profile(
        s: Option<&oci_spec::runtime::LinuxSeccomp>,
    ) -> std::result::Result<Option<Agent>, String> {
        let Some(s) = s else { return Ok(None) };
        let Some(path) = s.listener_path() else {
            return Ok(None);
        };
        let notify = proxmox_lxcri_lxc::init::seccomp::compile(s)
            .map(|f| f.notify)
            .unwrap_or(false);
        if !notify {
            return Ok(None);
        }
        Agent::connect(path, s.listener_metadata().as_deref().unwrap_or_default()).map(Some)
    }

    fn connect(path: &std::path::Path, metadata: &str) -> std::result::Result<Agent, String> {
        let stream = crate::sockpath::connect(path).map_err(|e| {
            format!(
                "cannot connect to the seccomp agent at {}: {e}",
                path.display()
            )
        })?;
        Ok(Agent {
            stream,
            path: path.to_path_buf(),
            metadata: metadata.to_string(),
        })
    }

    /// runc's containerProcessState with the notify fd.
    pub(crate) fn send(
        &self,
        state: &serde_json::Value,
        pid: i32,
        fd: &std::os::fd::OwnedFd,
    ) -> std::result::Result<(), String> {
        let msg = json!({
            "ociVersion": crate::state::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": self.metadata,
            "state": state,
        });
        let bytes = serde_json::to_vec(&msg).expect("serializes");
        nix::sys::socket::sendmsg::<()>(
            self.stream.as_raw_fd(),
            &[std::io::IoSlice::new(&bytes)],
            &[nix::sys::socket::ControlMessage::ScmRights(&[
                fd.as_raw_fd()
            ])],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("sending the notify fd to {}: {e}", self.path.display()))
    }
}
