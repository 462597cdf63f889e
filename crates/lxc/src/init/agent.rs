//! The pod agent: the sandbox init's server side of [`crate::pod`], served
//! from its supervise loop (one request per connection, answered at once;
//! the member's own progress then goes through its exchange files).
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::unistd::{fork, ForkResult};

use proxmox_lxcri_agent_proto::{read_frame, write_frame, Body, Frame};

use crate::init_config::EXCHANGE_DIR;
use crate::pod::{valid_member_id, MemberSpec, MEMBER_EXCHANGE, SOCKET_AGENT};

pub struct Agent {
    listener: UnixListener,
}

impl Agent {
    /// Listen on the agent socket (before `ready`: the runtime may send a
    /// member as soon as the sandbox is created).
    pub fn bind() -> Result<Agent, String> {
        let p = Path::new(EXCHANGE_DIR).join(SOCKET_AGENT);
        let _ = std::fs::remove_file(&p);
        let listener =
            UnixListener::bind(&p).map_err(|e| format!("binding {}: {e}", p.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("agent socket: {e}"))?;
        Ok(Agent { listener })
    }

    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Answer every pending connection.
    pub fn serve(&self) {
        while let Ok((conn, _)) = self.listener.accept() {
            let _ = conn.set_nonblocking(false);
            handle(conn);
        }
    }
}

fn handle(mut conn: UnixStream) {
    // A stuck client must not stall the pod's pid 1.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let answer = match read_frame(&mut conn) {
        Err(e) => Err(format!("reading the request: {e}")),
        Ok(None) => return,
        Ok(Some(Frame {
            body: Body::Member { member },
            ..
        })) => run_member(&member),
        Ok(Some(other)) => Err(format!("a pod agent takes members only, not {other:?}")),
    };
    let body = match answer {
        Ok(()) => Body::Ready,
        Err(message) => Body::Error { message },
    };
    let _ = write_frame(&mut conn, &Frame::main(body));
}

fn run_member(spec: &MemberSpec) -> Result<(), String> {
    if !valid_member_id(&spec.id) {
        return Err(format!("invalid member id {:?}", spec.id));
    }
    let dir = super::member::member_dir(&spec.id);
    if !dir.join(MEMBER_EXCHANGE).is_dir() {
        return Err(format!(
            "{} is missing",
            dir.join(MEMBER_EXCHANGE).display()
        ));
    }
    // SAFETY: the init is single-threaded.
    match unsafe { fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => super::member::run(spec),
        // The member's init is our child (or grandchild, adopted): the
        // supervise loop reaps it; its status goes through its exit file.
        Ok(ForkResult::Parent { .. }) => Ok(()),
    }
}

/// In the sandbox's own process (forked by the agent), before its exec:
/// a mount namespace of its own without the exchange dir and our binary.
pub fn hide_from_process() -> Result<(), String> {
    use nix::mount::{umount2, MntFlags};
    super::member::own_mount_namespace()?;
    for p in [EXCHANGE_DIR, crate::init_config::INIT_PATH] {
        umount2(p, MntFlags::MNT_DETACH).map_err(|e| format!("unmounting {p}: {e}"))?;
    }
    Ok(())
}
