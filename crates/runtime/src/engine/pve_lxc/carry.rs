//! A Proxmox node keeps only a fixed list of raw `lxc.*` keys in a CT's
//! config (pve-container drops the rest with a warning; see
//! `proxmox_lxcri_pve_raw_keys`). The runtime writes only kept keys and
//! carries what the dropped ones did another way that works on a real
//! node, or refuses with the field and the reason.
//!
//! | dropped key                 | carried by                                       |
//! |-----------------------------|--------------------------------------------------|
//! | `lxc.proc.oom_score_adj`    | the runtime writes `/proc/<init>/oom_score_adj`  |
//! | `lxc.sysctl.net.*`          | the runtime, from a thread in the init's netns   |
//! | `lxc.no_new_privs`          | our init (sets it before exec on every engine)   |
//! | `lxc.autodev.tmpfs.size`    | not carried: /dev is Proxmox's autodev tmpfs     |
//! | `lxc.apparmor.profile` = `unconfined` by default | dropped: the node's generated profile applies |
//! | `lxc.time.offset.*`         | refused (linux.timeOffsets)                      |
//! | `lxc.namespace.share.*`     | refused (namespace paths: the lxc engine)        |
use std::fs::{self, File};
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use proxmox_lxcri_pve_raw_keys::{verdict, Verdict};

use crate::error::{Error, Result};

/// What the runtime applies itself, once the CT's init runs and before the
/// OCI process starts (the init waits for `start`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    pub oom_score_adj: Option<String>,
    /// Network sysctls, dotted names (validated by the translation).
    pub net_sysctls: Vec<(String, String)>,
}

/// Split the translated raw entries into what goes into the CT's config
/// (every key kept by a node) and what the runtime carries.
/// `named_apparmor`: the spec names a profile (then it is written as named).
pub fn split(
    entries: &[(String, String)],
    named_apparmor: bool,
) -> Result<(Vec<(String, String)>, Carried)> {
    let mut raw = vec![];
    let mut carried = Carried::default();
    for (k, v) in entries {
        if k == "lxc.apparmor.profile" && !named_apparmor {
            // Confinement never below a hand-made CT's: no unconfined.
            continue;
        }
        match verdict(k) {
            Verdict::Keep => {
                raw.push((k.clone(), v.clone()));
                continue;
            }
            Verdict::Rename(new) => {
                raw.push((new.to_string(), v.clone()));
                continue;
            }
            Verdict::Refuse(_) | Verdict::Drop => {}
        }
        if k == "lxc.proc.oom_score_adj" {
            carried.oom_score_adj = Some(v.clone());
        } else if let Some(name) = k.strip_prefix("lxc.sysctl.net.") {
            carried.net_sysctls.push((format!("net.{name}"), v.clone()));
        } else if k == "lxc.no_new_privs" || k == "lxc.autodev.tmpfs.size" {
            // The init sets no_new_privs; /dev's size is Proxmox's.
        } else if k.starts_with("lxc.time.offset.") {
            return Err(Error::Spec(
                "linux.timeOffsets: not supported by the pve-lxc engine: a Proxmox node \
                 drops lxc.time.offset.* from a CT's config; remove linux.timeOffsets or \
                 use the lxc engine"
                    .into(),
            ));
        } else if let Some(ns) = k.strip_prefix("lxc.namespace.share.") {
            return Err(Error::Spec(format!(
                "linux.namespaces: the {ns} namespace has a path, which the pve-lxc engine \
                 cannot join: a Proxmox node drops lxc.namespace.share.* from a CT's config \
                 and a CT has its own namespaces; remove the path or use the lxc engine"
            )));
        } else {
            return Err(Error::Spec(format!(
                "{k}: a Proxmox node drops this LXC key from a CT's config and the pve-lxc \
                 engine has no other way to apply it; use the lxc engine"
            )));
        }
    }
    Ok((raw, carried))
}

impl Carried {
    /// Apply to the CT's init (host pid `init`), which has not started the
    /// OCI process yet; both are inherited by it.
    pub fn apply(&self, init: i32) -> Result<()> {
        if let Some(adj) = &self.oom_score_adj {
            let path = format!("/proc/{init}/oom_score_adj");
            fs::write(&path, adj).map_err(|e| {
                Error::Guest(format!("process.oomScoreAdj: writing {adj} to {path}: {e}"))
            })?;
        }
        if !self.net_sysctls.is_empty() {
            let ns = File::open(format!("/proc/{init}/ns/net"))
                .map_err(|e| Error::Guest(format!("the CT's network namespace: {e}")))?;
            let sysctls = self.net_sysctls.clone();
            // setns(CLONE_NEWNET) changes only the calling thread, and
            // /proc/sys/net shows the netns of the thread that opens it.
            std::thread::spawn(move || -> Result<()> {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::Guest(format!("joining the CT's network namespace: {e}"))
                })?;
                for (name, value) in &sysctls {
                    let path: PathBuf = ["/proc/sys", &name.replace('.', "/")].iter().collect();
                    fs::write(&path, value).map_err(|e| {
                        Error::Guest(format!("linux.sysctl.{name}: writing {value:?}: {e}"))
                    })?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| Error::Guest("applying the CT's sysctls: the thread panicked".into()))??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn only_kept_keys_are_written_and_the_rest_carried() {
        let (raw, c) = split(
            &[
                e("lxc.apparmor.profile", "unconfined"),
                e("lxc.init.cmd", "/.lxcri/init"),
                e("lxc.proc.oom_score_adj", "123"),
                e("lxc.sysctl.net.ipv4.ip_forward", "1"),
                e("lxc.sysctl.kernel.msgmax", "4096"),
                e("lxc.no_new_privs", "1"),
                e("lxc.autodev.tmpfs.size", "65536"),
                e("lxc.prlimit.nofile", "1024:4096"),
            ],
            false,
        )
        .unwrap();
        assert!(raw.iter().all(|(k, _)| proxmox_lxcri_pve_raw_keys::kept(k)));
        assert_eq!(
            raw,
            vec![
                e("lxc.init.cmd", "/.lxcri/init"),
                e("lxc.sysctl.kernel.msgmax", "4096"),
                e("lxc.prlimit.nofile", "1024:4096"),
            ]
        );
        assert_eq!(c.oom_score_adj.as_deref(), Some("123"));
        assert_eq!(c.net_sysctls, vec![e("net.ipv4.ip_forward", "1")]);
    }

    #[test]
    fn a_named_profile_is_kept() {
        let (raw, _) = split(&[e("lxc.apparmor.profile", "my-profile")], true).unwrap();
        assert_eq!(raw, vec![e("lxc.apparmor.profile", "my-profile")]);
    }

    #[test]
    fn what_cannot_be_carried_is_refused_naming_the_field() {
        for (k, field) in [
            ("lxc.time.offset.boot", "linux.timeOffsets"),
            ("lxc.namespace.share.net", "linux.namespaces"),
            ("lxc.keyring.session", "lxc.keyring.session"),
        ] {
            let err = split(&[e(k, "x")], false).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
