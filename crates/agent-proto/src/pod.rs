//! The pod agent's protocol: how the runtime adds a container to a running
//! pod whose guest is a Proxmox CT, without an API request.
//!
//! The sandbox's init runs as the pod agent ([`crate::init_config::InitConfig::agent`]):
//! besides supervising the sandbox's own process it listens on
//! [`SOCKET_AGENT`] in its exchange dir. Everything a member needs lives
//! under the sandbox's exchange dir, which the CT sees at
//! [`crate::init_config::EXCHANGE_DIR`]:
//!
//! ```text
//! <sandbox exchange>/            (a shared mount on the node: mounts made
//!   agent.sock                    below it appear inside the CT)
//!   pod/<member id>/rootfs       the member's rootfs, bind-mounted by the runtime
//!   pod/<member id>/src/<n>      each bind mount's source, bind-mounted by the runtime
//!   pod/<member id>/exchange/    the member's own exchange files (init.json, ready,
//!                                start, started, exit, stdio.sock), as on every engine
//! ```
//!
//! The runtime sends one [`crate::Body::Member`] frame per connection and
//! reads one frame back (`Ready` or `Error`). For it the agent forks a child that
//! makes the member's mount namespace (its rootfs, the spec's mounts in the
//! spec's order, devices), a pid namespace of its own unless the pod shares
//! one, and execs our init inside it with the member's exchange dir at the
//! usual place: from there on the member speaks the exchange protocol of
//! every container (ready / start / started / exit), and its monitor on the
//! node gets its stdio and exit status as for a CT.
//!
//! The messages carry no file descriptors and no host paths, so a VM's
//! agent takes the same request on a stream of its serial line: there the
//! member's files come on a disk hot-plugged by the runtime (`disk`, its
//! serial: `rootfs/` and `binds/<n>`, mounted at [`VM_POD_DIR`]`/<id>`),
//! its process in the frame (`process`), and its progress on the stream
//! (Ready, Start, Started, stdio, Exit).
use serde::{Deserialize, Serialize};

/// The agent's socket, in the sandbox's exchange dir.
pub const SOCKET_AGENT: &str = "agent.sock";
/// The members' directory, in the sandbox's exchange dir.
pub const POD_DIR: &str = "pod";
/// In a member's directory: its rootfs mount point.
pub const MEMBER_ROOTFS: &str = "rootfs";
/// In a member's directory: where its bind mounts' sources are mounted.
pub const MEMBER_SOURCES: &str = "src";
/// In a member's directory: its exchange dir.
pub const MEMBER_EXCHANGE: &str = "exchange";

/// One member of the pod, in guest terms.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberSpec {
    /// The container id (checked by [`valid_member_id`]).
    pub id: String,
    /// The spec's mounts in the spec's order; bind sources are guest paths
    /// under the member's [`MEMBER_SOURCES`].
    pub mounts: Vec<GuestMount>,
    /// A pid namespace of its own (else the pod's, the CT's).
    pub own_pid_ns: bool,
    /// process.rlimits: (resource name, soft, hard).
    #[serde(default)]
    pub rlimits: Vec<(String, u64, u64)>,
    /// In a VM: the serial of the disk the runtime hot-plugged with the
    /// member's files ([`VM_DISK_ROOTFS`], [`VM_DISK_BINDS`]); checked by
    /// [`valid_disk_serial`]. None in a CT (its files are under the pod dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// In a VM: the member's process (a CT's member init reads it from its
    /// exchange dir instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<crate::InitConfig>>,
}

/// In a VM's guest: where the agent mounts each member's disk
/// (`<dir>/<member id>`), on the guest's devtmpfs (never in an image).
pub const VM_POD_DIR: &str = "/dev/.lxcri-pod";
/// On a member's disk (VM): its rootfs.
pub const VM_DISK_ROOTFS: &str = "rootfs";
/// On a member's disk (VM): copies of its bind mounts' sources, `binds/<n>`.
pub const VM_DISK_BINDS: &str = "binds";

/// A disk serial as QEMU's virtio-blk keeps it (20 bytes) and Proxmox's
/// `serial=` takes it.
pub fn valid_disk_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One OCI mount as the agent makes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GuestMount {
    pub destination: String,
    #[serde(rename = "type")]
    pub typ: String,
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// A member id is a path component under the pod dir: what container ids
/// allow, never `.`/`..`.
pub fn valid_member_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_one_frame() {
        let m = MemberSpec {
            id: "a".into(),
            mounts: vec![GuestMount {
                destination: "/proc".into(),
                typ: "proc".into(),
                source: "proc".into(),
                options: vec![],
            }],
            own_pid_ns: true,
            rlimits: vec![("RLIMIT_NOFILE".into(), 10, 20)],
            ..Default::default()
        };
        let f = crate::Frame::main(crate::Body::Member {
            member: Box::new(m),
        });
        let mut wire = vec![];
        crate::write_frame(&mut wire, &f).unwrap();
        let json = String::from_utf8_lossy(&wire[4..]).into_owned();
        assert!(json.contains(r#""type":"member""#), "{json}");
        assert_eq!(crate::read_frame(&mut &wire[..]).unwrap(), Some(f));
    }

    #[test]
    fn member_ids() {
        assert!(valid_member_id("abc-1.2_x"));
        for bad in ["", ".", "..", "a/b", "a\nb", "a b"] {
            assert!(!valid_member_id(bad), "{bad:?}");
        }
    }
}
