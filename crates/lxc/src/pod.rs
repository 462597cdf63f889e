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
//! The runtime sends one [`Request`] per connection, a JSON line, and reads
//! one [`Reply`] line. For [`Request::Run`] the agent forks a child that
//! makes the member's mount namespace (its rootfs, the spec's mounts in the
//! spec's order, devices), a pid namespace of its own unless the pod shares
//! one, and execs our init inside it with the member's exchange dir at the
//! usual place: from there on the member speaks the exchange protocol of
//! every container (ready / start / started / exit), and its monitor on the
//! node gets its stdio and exit status as for a CT.
//!
//! The messages carry no file descriptors and no host paths: a VM's agent
//! (over a serial line) can take the same requests once its transport
//! carries the files.
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Is the agent there?
    Ping,
    /// Set up a member and start its init (which waits for `start`).
    Run(MemberSpec),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

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
    fn requests_are_one_json_line() {
        let r = Request::Run(MemberSpec {
            id: "a".into(),
            mounts: vec![GuestMount {
                destination: "/proc".into(),
                typ: "proc".into(),
                source: "proc".into(),
                options: vec![],
            }],
            own_pid_ns: true,
            rlimits: vec![("RLIMIT_NOFILE".into(), 10, 20)],
        });
        let s = serde_json::to_string(&r).unwrap();
        assert!(!s.contains('\n'));
        assert!(s.starts_with(r#"{"op":"run","id":"a""#), "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        assert_eq!(
            serde_json::to_string(&Request::Ping).unwrap(),
            r#"{"op":"ping"}"#
        );
    }

    #[test]
    fn member_ids() {
        assert!(valid_member_id("abc-1.2_x"));
        for bad in ["", ".", "..", "a/b", "a\nb", "a b"] {
            assert!(!valid_member_id(bad), "{bad:?}");
        }
    }
}
