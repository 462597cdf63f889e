//! The pod agent: the sandbox init's server side of [`crate::pod`], served
//! from its supervise loop (one request per connection, answered at once;
//! the member's own progress then goes through its exchange files).
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::unistd::{fork, ForkResult};

use crate::init_config::EXCHANGE_DIR;
use crate::pod::{valid_member_id, Reply, Request, MEMBER_EXCHANGE, SOCKET_AGENT};

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
    let mut line = String::new();
    let read = BufReader::new((&conn).take(1 << 20)).read_line(&mut line);
    let reply = match read {
        Err(e) => Reply {
            error: Some(format!("reading the request: {e}")),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply {
                error: Some(format!("bad request: {e}")),
            },
            Ok(Request::Ping) => Reply::default(),
            Ok(Request::Run(spec)) => run_member(&spec),
        },
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    let _ = conn.write_all(out.as_bytes());
}

fn run_member(spec: &crate::pod::MemberSpec) -> Reply {
    let fail = |m: String| Reply { error: Some(m) };
    if !valid_member_id(&spec.id) {
        return fail(format!("invalid member id {:?}", spec.id));
    }
    let dir = super::member::member_dir(&spec.id);
    if !dir.join(MEMBER_EXCHANGE).is_dir() {
        return fail(format!(
            "{} is missing",
            dir.join(MEMBER_EXCHANGE).display()
        ));
    }
    // SAFETY: the init is single-threaded.
    match unsafe { fork() } {
        Err(e) => fail(format!("fork: {e}")),
        Ok(ForkResult::Child) => super::member::run(spec),
        // The member's init is our child (or grandchild, adopted): the
        // supervise loop reaps it; its status goes through its exit file.
        Ok(ForkResult::Parent { .. }) => Reply::default(),
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
