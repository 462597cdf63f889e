//! A container of the pod inside the pod's VM (the runtime's `Member`
//! frame on a stream of its own):
//!
//! 1. its disk, hot-plugged by the runtime through the Proxmox API
//!    (`virtio<n>` with `serial=`), found by that serial in
//!    `/sys/block/vd*/serial` and mounted at `VM_POD_DIR/<id>`: `rootfs/`
//!    and `binds/<n>` (copies of its bind mounts' sources);
//! 2. a forked child: a pid namespace of its own unless the pod shares
//!    the guest's, a mount namespace of its own with the rootfs, the spec's
//!    mounts and runc's default devices (the lxc crate's member code, as a
//!    CT's pod agent does it), pivot_root, masked and read-only paths,
//!    rlimits; the process prepared
//!    (executable and cwd checked: the lxc init's own code), then `Ready`;
//! 3. on `Start` the child execs it (user, caps, seccomp, env: the lxc
//!    init's exec_user); stdio through pipes, as the VM's own process.
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};
use proxmox_lxcri_agent_proto::pod::{
    valid_disk_serial, valid_member_id, MemberSpec, VM_DISK_ROOTFS, VM_POD_DIR,
};
use proxmox_lxcri_lxc::init::{self, member, prepare, process};

use super::Proc;

/// How long a hot-plugged disk may take to show up in the guest.
const DISK_TIMEOUT: Duration = Duration::from_secs(30);

/// The block device whose virtio serial is `serial`.
fn find_disk(serial: &str) -> Result<PathBuf, String> {
    let deadline = Instant::now() + DISK_TIMEOUT;
    loop {
        if let Ok(rd) = fs::read_dir("/sys/block") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with("vd") {
                    continue;
                }
                let s = fs::read_to_string(e.path().join("serial")).unwrap_or_default();
                if s.trim() == serial {
                    let dev = Path::new("/dev").join(&name);
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the container's disk (serial {serial}) did not appear in the VM within {}s",
                DISK_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmount a member's disk (its namespace may still hold it until its
/// last process is gone: detached).
pub fn unmount(m: &Path) {
    let _ = umount2(m, MntFlags::MNT_DETACH);
    let _ = fs::remove_dir(m);
}

/// Steps 1 and 2: the member set up in a child waiting for Start.
pub fn prepare(spec: &MemberSpec) -> Result<Proc, String> {
    if !valid_member_id(&spec.id) {
        return Err(format!("member id {:?}: not a container id", spec.id));
    }
    let serial = spec
        .disk
        .as_deref()
        .filter(|s| valid_disk_serial(s))
        .ok_or_else(|| format!("member {}: no valid disk serial", spec.id))?;
    let process = spec
        .process
        .clone()
        .ok_or_else(|| format!("member {}: no process", spec.id))?;
    if process.terminal {
        return Err("process.terminal: a container of a pod in a VM has no terminal yet".into());
    }
    let dev = find_disk(serial)?;
    let mnt = Path::new(VM_POD_DIR).join(&spec.id);
    fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
    if let Err(e) = mount(
        Some(&dev),
        &mnt,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    ) {
        let _ = fs::remove_dir(&mnt);
        return Err(format!("mounting {} (ext4): {e}", dev.display()));
    }
    // A root of its own: nothing of ours shared with the member's mounts.
    let _ = mount(
        None::<&str>,
        &mnt,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    match fork_member(spec, &mnt, *process) {
        Ok(mut p) => {
            p.mount = Some(mnt);
            Ok(p)
        }
        Err(e) => {
            unmount(&mnt);
            Err(e)
        }
    }
}

fn fork_member(
    spec: &MemberSpec,
    mnt: &Path,
    process: proxmox_lxcri_agent_proto::InitConfig,
) -> Result<Proc, String> {
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let p = |e: nix::Error| format!("pipe: {e}");
    let (in_r, in_w) = pipe2(cloexec).map_err(p)?;
    let (out_r, out_w) = pipe2(cloexec).map_err(p)?;
    let (err_r, err_w) = pipe2(cloexec).map_err(p)?;
    let (x_r, x_w) = pipe2(cloexec).map_err(p)?;
    let (go_r, go_w) = pipe2(cloexec).map_err(p)?;
    // Its own pid namespace: our next child is its pid 1; ours stays ours
    // (the namespace for our later children is set back right after).
    let own_ns = if spec.own_pid_ns {
        let ours =
            File::open("/proc/self/ns/pid").map_err(|e| format!("/proc/self/ns/pid: {e}"))?;
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(pid): {e}"))?;
        Some(ours)
    } else {
        None
    };
    // SAFETY: the agent is single-threaded.
    let forked = unsafe { fork() };
    // (In the parent only: the child is in the new namespace already.)
    if let (Some(ours), Ok(ForkResult::Parent { .. }) | Err(_)) = (&own_ns, &forked) {
        setns(ours, CloneFlags::CLONE_NEWPID).map_err(|e| format!("setns(pid): {e}"))?;
    }
    let child = match forked.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(own_ns);
            drop((in_w, out_r, err_r, x_r, go_w));
            // Nothing of the agent's (other containers' pipes, the serial
            // port) stays open here while this one waits for Start.
            close_fds_but(&[
                in_r.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                x_w.as_raw_fd(),
                go_r.as_raw_fd(),
            ]);
            let mut x = File::from(x_w);
            let rootfs = mnt.join(VM_DISK_ROOTFS);
            let res = (|| -> Result<init::Prepared, String> {
                member::own_mount_namespace()?;
                member::mount_root(spec, &rootfs)?;
                member::pivot(&rootfs)?;
                // What the lxc init does before `ready`, as for the VM's own
                // container: masked and read-only paths, a read-only root.
                for (i, m) in process.masked_paths.iter().enumerate() {
                    prepare::mask_path(i, m)?;
                }
                for (i, r) in process.readonly_paths.iter().enumerate() {
                    prepare::readonly_path(i, r)?;
                }
                if process.readonly_root {
                    prepare::readonly_root()?;
                }
                for (name, soft, hard) in &spec.rlimits {
                    member::set_rlimit(name, *soft, *hard)?;
                }
                let prepared = init::prepare_process(process).map_err(|e| e.to_string())?;
                for (fd, to) in [(&in_r, 0), (&out_w, 1), (&err_w, 2)] {
                    nix::unistd::dup2(fd.as_raw_fd(), to).map_err(|e| format!("dup2: {e}"))?;
                }
                Ok(prepared)
            })();
            let prepared = match res {
                Ok(p) => p,
                Err(e) => {
                    let mut buf = vec![b'E'];
                    buf.extend_from_slice(e.as_bytes());
                    let _ = x.write_all(&buf);
                    // SAFETY: leave the forked child without destructors.
                    unsafe { libc::_exit(1) }
                }
            };
            let _ = x.write_all(b"R");
            let mut b = [0u8; 1];
            if !matches!(File::from(go_r).read(&mut b), Ok(1)) {
                // SAFETY: as above.
                unsafe { libc::_exit(1) }
            }
            let (c, msg) = process::exec_user(&prepared);
            let mut buf = vec![c];
            buf.extend_from_slice(msg.as_bytes());
            let _ = x.write_all(&buf);
            // SAFETY: as above.
            unsafe { libc::_exit(c as i32) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((in_r, out_w, err_w, x_w, go_r));
    let mut x = File::from(x_r);
    let mut first = [0u8; 1];
    let n = x.read(&mut first).unwrap_or(0);
    if n == 1 && first[0] == b'R' {
        return Ok(Proc {
            pid: child,
            stdin: Some(File::from(in_w)),
            outs: [Some(File::from(out_r)), Some(File::from(err_r))],
            status: None,
            ended_at: None,
            pty: false,
            gate: Some((File::from(go_w), x)),
            mount: None,
            member: Some((
                spec.id.clone(),
                spec.rlimits
                    .iter()
                    .map(|(kind, soft, hard)| proxmox_lxcri_agent_proto::Rlimit {
                        kind: kind.clone(),
                        soft: *soft,
                        hard: *hard,
                    })
                    .collect(),
            )),
        });
    }
    let mut rest = vec![];
    let _ = x.read_to_end(&mut rest);
    let _ = waitpid(child, None);
    Err(if n == 0 {
        "the member's setup ended without a word".into()
    } else {
        String::from_utf8_lossy(&rest).into_owned()
    })
}

/// The pid and mount namespaces of a member's process (for its execs).
pub fn enter(pid: nix::unistd::Pid) -> Result<(File, File), String> {
    let ns = |kind: &str| {
        File::open(format!("/proc/{pid}/ns/{kind}"))
            .map_err(|e| format!("the container's {kind} namespace: {e}"))
    };
    Ok((ns("pid")?, ns("mnt")?))
}

/// Close every fd above 2 but `keep` (in a forked child, which never
/// returns to the agent's loop).
fn close_fds_but(keep: &[i32]) {
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an fd number; the objects that own them in
            // this copy of the agent are never used again (exec or _exit).
            unsafe { libc::close(fd) };
        }
    }
}

/// Step 3: release a prepared member; Err: its exec failed (its child
/// exits with the code, reported as Exit).
pub fn release(p: &mut Proc) -> Result<(), String> {
    let Some((mut go, mut x)) = p.gate.take() else {
        return Ok(());
    };
    go.write_all(b"g")
        .map_err(|e| format!("starting the container's process: {e}"))?;
    drop(go);
    let mut buf = vec![];
    let _ = x.read_to_end(&mut buf);
    if buf.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&buf[1..]).into_owned())
    }
}
