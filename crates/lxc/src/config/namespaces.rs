//! linux.namespaces, id mappings, time offsets, network mode.
use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{check_abs_path, LxcConfig, TranslateError};

/// What happens to one namespace type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NsMode {
    /// Not listed: the host's (LXC: not in lxc.namespace.clone).
    Host,
    /// Listed without path: a new one.
    New,
    /// Listed with a path: joined.
    Path(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Namespaces {
    modes: BTreeMap<&'static str, NsMode>,
}

impl Namespaces {
    pub(crate) fn mode(&self, lxc_name: &str) -> &NsMode {
        self.modes.get(lxc_name).unwrap_or(&NsMode::Host)
    }
    /// Not the host's (new or joined).
    pub(crate) fn private(&self, lxc_name: &str) -> bool {
        *self.mode(lxc_name) != NsMode::Host
    }
}

/// LXC's name for a namespace type (the /proc/PID/ns name).
pub(crate) fn lxc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The path must be a namespace file of the listed type (runtime-spec:
/// "a runtime MUST generate an error" otherwise). `NS_GET_NSTYPE` answers
/// the `CLONE_NEW*` flag of an nsfs file, and fails on any other file.
fn check_ns_type(field: &str, path: &str, typ: LinuxNamespaceType) -> Result<(), TranslateError> {
    use std::os::fd::AsRawFd;
    let want = match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    };
    let f = std::fs::File::open(path).map_err(|e| {
        TranslateError::invalid(
            field,
            path,
            format!("cannot open: {e}"),
            "give a namespace file",
        )
    })?;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                 // SAFETY: an ioctl without arguments on an fd we own.
    let got = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
    if got < 0 {
        return Err(TranslateError::invalid(
            field,
            path,
            "not a namespace file",
            "give a namespace file (e.g. /proc/<pid>/ns/net or /run/netns/<name>)",
        ));
    }
    if got != want {
        return Err(TranslateError::invalid(
            field,
            path,
            format!("a namespace of another type than {}", lxc_name(typ)),
            format!(
                "give a {} namespace file (/proc/<pid>/ns/{})",
                lxc_name(typ),
                lxc_name(typ)
            ),
        ));
    }
    Ok(())
}

const ORDER: [&str; 8] = ["mnt", "pid", "uts", "ipc", "net", "user", "cgroup", "time"];

pub(crate) fn translate(spec: &Spec, lxc: &mut LxcConfig) -> Result<Namespaces, TranslateError> {
    let linux = spec.linux().as_ref().ok_or_else(|| {
        TranslateError::missing("linux", "a Linux container needs the \"linux\" object (at least linux.namespaces with a mount namespace)")
    })?;
    let mut modes: BTreeMap<&'static str, NsMode> = BTreeMap::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let name = lxc_name(ns.typ());
        let field = format!("linux.namespaces[{i}]");
        let mode = match ns.path() {
            None => NsMode::New,
            Some(p) => {
                let s = p.to_string_lossy().to_string();
                check_abs_path(&format!("{field}.path"), &s)?;
                if !p.exists() {
                    return Err(TranslateError::invalid(
                        format!("{field}.path"),
                        &s,
                        "does not exist",
                        "give the path of an existing namespace file (e.g. /proc/<pid>/ns/net or /run/netns/<name>)",
                    ));
                }
                check_ns_type(&format!("{field}.path"), &s, ns.typ())?;
                NsMode::Path(s)
            }
        };
        if modes.insert(name, mode).is_some() {
            return Err(TranslateError::invalid(
                format!("{field}.type"),
                name,
                "namespace type listed twice",
                "list each namespace type once",
            ));
        }
    }
    let ns = Namespaces { modes };

    if *ns.mode("mnt") != NsMode::New {
        let (value, why) = match ns.mode("mnt") {
            NsMode::Path(p) => (p.clone(), "joining an existing mount namespace"),
            _ => (
                "(not listed)".to_string(),
                "running in the host's mount namespace",
            ),
        };
        return Err(TranslateError::unsupported(
            "linux.namespaces",
            value,
            format!("{why} is not possible: the container needs its own mount namespace (runc requires it too)"),
            "add {\"type\": \"mount\"} without a path",
        ));
    }

    let clone: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|n| *ns.mode(n) == NsMode::New)
        .collect();
    lxc.push("lxc.namespace.clone", clone.join(" "))?;
    for n in ORDER {
        if let NsMode::Path(p) = ns.mode(n) {
            lxc.push_field(
                "linux.namespaces",
                &format!("lxc.namespace.share.{n}"),
                p.clone(),
            )?;
        }
    }

    // Network: a new netns gets loopback only; LXC never sets up interfaces.
    match ns.mode("net") {
        NsMode::New => lxc.push("lxc.net.0.type", "empty")?,
        NsMode::Path(_) => {}
        NsMode::Host => lxc.push("lxc.net.0.type", "none")?,
    }

    // User namespace and id mappings.
    let uid_maps = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid_maps = linux.gid_mappings().as_deref().unwrap_or_default();
    match ns.mode("user") {
        NsMode::New => {
            if uid_maps.is_empty() || gid_maps.is_empty() {
                return Err(TranslateError::missing(
                    "linux.uidMappings/linux.gidMappings",
                    "a new user namespace needs both uid and gid mappings",
                ));
            }
        }
        _ => {
            if !uid_maps.is_empty() || !gid_maps.is_empty() {
                let field = if uid_maps.is_empty() {
                    "linux.gidMappings"
                } else {
                    "linux.uidMappings"
                };
                return Err(TranslateError::invalid(
                    field,
                    "[...]",
                    "id mappings need a new user namespace",
                    "add {\"type\": \"user\"} (without path) to linux.namespaces, or remove the mappings",
                ));
            }
        }
    }
    for (kind, maps, field) in [
        ("u", uid_maps, "linux.uidMappings"),
        ("g", gid_maps, "linux.gidMappings"),
    ] {
        for (i, m) in maps.iter().enumerate() {
            if m.size() == 0 {
                return Err(TranslateError::invalid(
                    format!("{field}[{i}].size"),
                    0,
                    "a mapping of size 0 maps nothing",
                    "use a size of at least 1",
                ));
            }
            lxc.push(
                "lxc.idmap",
                format!("{kind} {} {} {}", m.container_id(), m.host_id(), m.size()),
            )?;
        }
    }

    // Time namespace offsets.
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty() && *ns.mode("time") != NsMode::New {
            return Err(TranslateError::invalid(
                "linux.timeOffsets",
                "{...}",
                "time offsets need a new time namespace",
                "add {\"type\": \"time\"} (without path) to linux.namespaces",
            ));
        }
        let mut keys: Vec<&String> = offsets.keys().collect();
        keys.sort();
        for clock in keys {
            let off = &offsets[clock];
            let field = format!("linux.timeOffsets.{clock}");
            let key = match clock.as_str() {
                "boottime" => "lxc.time.offset.boot",
                "monotonic" => "lxc.time.offset.monotonic",
                _ => {
                    return Err(TranslateError::invalid(
                        field,
                        clock,
                        "unknown clock",
                        "use \"boottime\" or \"monotonic\"",
                    ))
                }
            };
            let secs = off.secs().unwrap_or(0);
            let nanos = off.nanosecs().unwrap_or(0);
            // LXC takes one value with one unit, and writes nanoseconds as the
            // (bounded) nsec part of /proc/self/timens_offsets.
            let value = match (secs, nanos) {
                (s, 0) => format!("{s}s"),
                (0, n) if n < 1_000_000_000 => format!("{n}ns"),
                _ => {
                    return Err(TranslateError::unsupported(
                        field,
                        format!("secs={secs}, nanosecs={nanos}"),
                        "LXC 5.0 takes either a seconds or a nanoseconds offset, not both",
                        "use whole seconds (nanosecs 0) or only nanosecs (< 1e9)",
                    ))
                }
            };
            lxc.push(key, value)?;
        }
    }
    Ok(ns)
}
