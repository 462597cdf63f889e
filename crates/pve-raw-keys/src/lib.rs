//! What pve-container does with the raw `lxc.*` lines of
//! `/etc/pve/lxc/<vmid>.conf` when a CT starts (`parse_pct_config`, not
//! strict, with `$valid_lxc_conf_keys`): a fixed list is kept, lxc 2.x
//! spellings are renamed with a warning, `lxc.rootfs.path`/`options` are
//! refused with a message, and every other key is dropped with
//! `vm N - unable to parse config: <line>`; LXC never sees it.
//!
//! One table for both sides: the emulator applies it as a node would, and
//! the runtime writes only what it keeps (carrying the rest another way).

/// What a node does with one raw key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// An old spelling, kept under its new name (with a warning).
    Rename(&'static str),
    /// Named and refused, with pve-container's reason (the line is dropped).
    Refuse(&'static str),
    /// Not on the list: dropped.
    Drop,
}

/// Keys kept as they are.
const KEEP: &[&str] = &[
    "lxc.apparmor.profile",
    "lxc.apparmor.allow_incomplete",
    "lxc.apparmor.allow_nesting",
    "lxc.apparmor.raw",
    "lxc.selinux.context",
    "lxc.include",
    "lxc.arch",
    "lxc.uts.name",
    "lxc.signal.halt",
    "lxc.signal.reboot",
    "lxc.signal.stop",
    "lxc.init.cmd",
    "lxc.init.cwd",
    "lxc.init.uid",
    "lxc.init.gid",
    "lxc.init.groups",
    "lxc.pty.max",
    "lxc.tty.max",
    "lxc.tty.dir",
    "lxc.console.logfile",
    "lxc.console.path",
    "lxc.console.buffer.size",
    "lxc.console.size",
    "lxc.console.rotate",
    "lxc.autodev",
    "lxc.mount.fstab",
    "lxc.mount.entry",
    "lxc.mount.auto",
    "lxc.rootfs.mount",
    "lxc.cap.drop",
    "lxc.cap.keep",
    "lxc.seccomp.profile",
    "lxc.seccomp.notify.proxy",
    "lxc.seccomp.notify.cookie",
    "lxc.idmap",
    "lxc.log.level",
    "lxc.log.file",
    "lxc.log.syslog",
    "lxc.start.auto",
    "lxc.start.delay",
    "lxc.start.order",
    "lxc.environment",
    "lxc.environment.runtime",
    "lxc.environment.hooks",
];

/// Key families kept whole (`lxc.hook.*` is a list of hook names on the
/// node; every hook type LXC has is on it).
const KEEP_PREFIXES: &[&str] = &[
    "lxc.cgroup.",
    "lxc.cgroup2.",
    "lxc.prlimit.",
    "lxc.net.",
    "lxc.hook.",
];

/// The IPC sysctls a node keeps as `lxc.sysctl.*` (`fs.mqueue.*` too).
const KEEP_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// lxc 2.x spellings and their names today.
const RENAMED: &[(&str, &str)] = &[
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.mount", "lxc.mount.fstab"),
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
];

const REFUSED: &[(&str, &str)] = &[
    (
        "lxc.rootfs.path",
        "lxc.rootfs.path is not supported, use the rootfs option",
    ),
    (
        "lxc.rootfs.options",
        "lxc.rootfs.options is not supported, use mount point options in the rootfs option",
    ),
];

/// What a node does with `key`.
pub fn verdict(key: &str) -> Verdict {
    if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == key) {
        return Verdict::Refuse(why);
    }
    if let Some((_, new)) = RENAMED.iter().find(|(k, _)| *k == key) {
        return Verdict::Rename(new);
    }
    let kept = KEEP.contains(&key)
        || KEEP_PREFIXES.iter().any(|p| key.starts_with(p))
        || key
            .strip_prefix("lxc.sysctl.")
            .is_some_and(|s| KEEP_SYSCTLS.contains(&s) || s.starts_with("fs.mqueue."));
    if kept {
        Verdict::Keep
    } else {
        Verdict::Drop
    }
}

/// Whether a node keeps `key` under that name.
pub fn kept(key: &str) -> bool {
    verdict(key) == Verdict::Keep
}

/// Apply a node's rules to raw entries: what LXC will see, and the warnings
/// pve-container prints (as in a start task's log).
pub fn parse(vmid: u32, raw: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = vec![];
    let mut warnings = vec![];
    for (k, v) in raw {
        match verdict(k) {
            Verdict::Keep => kept.push((k.clone(), v.clone())),
            Verdict::Rename(new) => {
                warnings.push(format!(
                    "vm {vmid} - deprecated lxc.conf key {k}, renamed to {new}"
                ));
                kept.push((new.to_string(), v.clone()));
            }
            Verdict::Refuse(why) => warnings.push(format!("vm {vmid} - {k}: {why}")),
            Verdict::Drop => warnings.push(format!("vm {vmid} - unable to parse config: {k}: {v}")),
        }
    }
    (kept, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_list() {
        for k in [
            "lxc.apparmor.profile",
            "lxc.init.cmd",
            "lxc.mount.entry",
            "lxc.cgroup.memory.limit_in_bytes",
            "lxc.cgroup2.memory.max",
            "lxc.cgroup.dir.container",
            "lxc.prlimit.nofile",
            "lxc.net.0.type",
            "lxc.hook.mount",
            "lxc.sysctl.kernel.shmmax",
            "lxc.sysctl.fs.mqueue.msg_max",
            "lxc.environment",
            "lxc.seccomp.profile",
        ] {
            assert_eq!(verdict(k), Verdict::Keep, "{k}");
        }
        for k in [
            "lxc.no_new_privs",
            "lxc.proc.oom_score_adj",
            "lxc.namespace.share.net",
            "lxc.namespace.keep",
            "lxc.time.offset.boot",
            "lxc.autodev.tmpfs.size",
            "lxc.sysctl.net.ipv4.ip_forward",
            "lxc.sysctl.kernel.domainname",
            "lxc.keyring.session",
            "lxc.monitor.signal.pdeath",
        ] {
            assert_eq!(verdict(k), Verdict::Drop, "{k}");
        }
        assert_eq!(
            verdict("lxc.aa_profile"),
            Verdict::Rename("lxc.apparmor.profile")
        );
        assert!(matches!(verdict("lxc.rootfs.path"), Verdict::Refuse(_)));
    }

    #[test]
    fn parse_keeps_order_renames_and_warns() {
        let raw: Vec<(String, String)> = [
            ("lxc.init.cmd", "/init"),
            ("lxc.no_new_privs", "1"),
            ("lxc.utsname", "h"),
            ("lxc.rootfs.path", "dir:/x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (kept, warnings) = parse(7, &raw);
        assert_eq!(
            kept,
            vec![
                ("lxc.init.cmd".to_string(), "/init".to_string()),
                ("lxc.uts.name".to_string(), "h".to_string())
            ]
        );
        assert_eq!(warnings.len(), 3);
        assert_eq!(
            warnings[0],
            "vm 7 - unable to parse config: lxc.no_new_privs: 1"
        );
    }
}
