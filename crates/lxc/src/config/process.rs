//! process, hostname/domainname, security labels, sysctl, rlimits and the
//! remaining linux.* fields -> InitConfig and LXC keys.
use oci_spec::runtime::{LinuxDeviceType, LinuxPersonalityDomain, PosixRlimitType, Spec};

use super::namespaces::{Namespaces, NsMode};
use super::{check_abs_path, LxcConfig, TranslateContext, TranslateError};
use crate::init_config::{Capabilities, InitConfig};

fn no_nul(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.contains('\0') {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "contains a NUL byte",
            "remove it",
        ));
    }
    Ok(())
}

/// Hostname / domainname: what sethostname accepts and a config value can
/// carry: 1..=64 bytes, no whitespace or control characters.
fn check_uts_name(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "must be 1 to 64 bytes without whitespace or control characters",
            "use a valid host name",
        ));
    }
    Ok(())
}

fn cap_names(set: &Option<oci_spec::runtime::Capabilities>) -> Vec<String> {
    let mut v: Vec<String> = set
        .iter()
        .flatten()
        .map(|c| match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("CAP_{c}"),
        })
        .collect();
    v.sort();
    v
}

fn rlimit_name(t: PosixRlimitType) -> &'static str {
    match t {
        PosixRlimitType::RlimitCpu => "cpu",
        PosixRlimitType::RlimitFsize => "fsize",
        PosixRlimitType::RlimitData => "data",
        PosixRlimitType::RlimitStack => "stack",
        PosixRlimitType::RlimitCore => "core",
        PosixRlimitType::RlimitRss => "rss",
        PosixRlimitType::RlimitNproc => "nproc",
        PosixRlimitType::RlimitNofile => "nofile",
        PosixRlimitType::RlimitMemlock => "memlock",
        PosixRlimitType::RlimitAs => "as",
        PosixRlimitType::RlimitLocks => "locks",
        PosixRlimitType::RlimitSigpending => "sigpending",
        PosixRlimitType::RlimitMsgqueue => "msgqueue",
        PosixRlimitType::RlimitNice => "nice",
        PosixRlimitType::RlimitRtprio => "rtprio",
        PosixRlimitType::RlimitRttime => "rttime",
    }
}

fn rlimit_value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

/// Which namespace a sysctl belongs to (as runc's validation): None means
/// "not namespaced", which runc refuses as it would change the host.
fn sysctl_namespace(key: &str) -> Option<&'static str> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if key.starts_with("net.") {
        Some("net")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some("uts")
    } else {
        None
    }
}

pub(crate) fn translate(
    spec: &Spec,
    ctx: &TranslateContext,
    ns: &Namespaces,
    lxc: &mut LxcConfig,
) -> Result<InitConfig, TranslateError> {
    let linux = spec
        .linux()
        .as_ref()
        .expect("checked by namespaces::translate");
    let process = spec.process().as_ref().ok_or_else(|| {
        TranslateError::missing(
            "process",
            "config.json needs a \"process\" object with args",
        )
    })?;

    // --- hostname / domainname
    if let Some(h) = spec.hostname() {
        if !h.is_empty() {
            check_uts_name("hostname", h)?;
            if *ns.mode("uts") != NsMode::New {
                return Err(TranslateError::invalid(
                    "hostname",
                    h,
                    "setting the hostname needs a new UTS namespace",
                    "add {\"type\": \"uts\"} (without path) to linux.namespaces, or drop hostname",
                ));
            }
            lxc.push("lxc.uts.name", h.clone())?;
        }
    }
    let mut domainname = None;
    if let Some(d) = spec.domainname() {
        if !d.is_empty() {
            check_uts_name("domainname", d)?;
            if *ns.mode("uts") != NsMode::New {
                return Err(TranslateError::invalid(
                    "domainname",
                    d,
                    "setting the domainname needs a new UTS namespace",
                    "add {\"type\": \"uts\"} (without path) to linux.namespaces, or drop domainname",
                ));
            }
            domainname = Some(d.clone());
        }
    }

    // --- process
    if let Some(cl) = process.command_line() {
        return Err(TranslateError::unsupported(
            "process.commandLine",
            cl.escape_debug(),
            "commandLine is for Windows containers",
            "use process.args",
        ));
    }
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(TranslateError::missing(
            "process.args",
            "give at least the program to run as process.args[0]",
        ));
    }
    for (i, a) in args.iter().enumerate() {
        no_nul(&format!("process.args[{i}]"), a)?;
    }
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    for (i, e) in env.iter().enumerate() {
        no_nul(&format!("process.env[{i}]"), e)?;
        if !e.contains('=') || e.starts_with('=') {
            return Err(TranslateError::invalid(
                format!("process.env[{i}]"),
                e.escape_debug(),
                "must be NAME=value",
                "fix the environment entry",
            ));
        }
    }
    let cwd = process.cwd().to_string_lossy().to_string();
    check_abs_path("process.cwd", &cwd)?;
    let user = process.user();
    if let Some(name) = user.username() {
        return Err(TranslateError::unsupported(
            "process.user.username",
            name.escape_debug(),
            "username is for Windows containers",
            "use process.user.uid/gid",
        ));
    }
    if let Some(umask) = user.umask() {
        if umask > 0o777 {
            return Err(TranslateError::invalid(
                "process.user.umask",
                format!("{umask:o}"),
                "a umask has at most 9 permission bits",
                "use a value <= 0777",
            ));
        }
    }
    if process.io_priority().is_some() {
        return Err(TranslateError::unsupported(
            "process.ioPriority",
            "{...}",
            "neither LXC 5.0 nor our init sets the I/O priority",
            "remove process.ioPriority",
        ));
    }
    if process.scheduler().is_some() {
        return Err(TranslateError::unsupported(
            "process.scheduler",
            "{...}",
            "neither LXC 5.0 nor our init sets the scheduling policy",
            "remove process.scheduler",
        ));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(TranslateError::unsupported(
            "process.execCPUAffinity",
            "{...}",
            "neither LXC 5.0 nor our init sets CPU affinity",
            "remove process.execCPUAffinity (linux.resources.cpu.cpus limits the CPUs)",
        ));
    }

    // --- security labels
    match process.apparmor_profile().as_deref() {
        Some(p) if !p.is_empty() => {
            if !ctx.apparmor_enabled {
                return Err(TranslateError::unsupported(
                    "process.apparmorProfile",
                    p.escape_debug(),
                    "AppArmor is not enabled on this host",
                    "remove the profile or enable AppArmor",
                ));
            }
            if p.chars().any(|c| c.is_control()) {
                return Err(TranslateError::invalid(
                    "process.apparmorProfile",
                    p.escape_debug(),
                    "contains control characters",
                    "use a valid profile name",
                ));
            }
            lxc.push_field(
                "process.apparmorProfile",
                "lxc.apparmor.profile",
                p.to_string(),
            )?;
        }
        _ => lxc.push("lxc.apparmor.profile", "unconfined")?,
    }
    if let Some(l) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        if !ctx.selinux_enabled {
            return Err(TranslateError::unsupported(
                "process.selinuxLabel",
                l.escape_debug(),
                "SELinux is not enabled on this host",
                "remove the label or enable SELinux",
            ));
        }
        lxc.push_field("process.selinuxLabel", "lxc.selinux.context", l.to_string())?;
    }
    if let Some(l) = linux.mount_label().as_deref().filter(|l| !l.is_empty()) {
        let reason = if ctx.selinux_enabled {
            "LXC 5.0 has no per-mount SELinux context setting"
        } else {
            "SELinux is not enabled on this host"
        };
        return Err(TranslateError::unsupported(
            "linux.mountLabel",
            l.escape_debug(),
            reason,
            "remove linux.mountLabel",
        ));
    }

    // --- rlimits, oom score, no_new_privs
    let mut seen = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        let name = rlimit_name(r.typ());
        if seen.contains(&name) {
            return Err(TranslateError::invalid(
                format!("process.rlimits[{i}].type"),
                name,
                "rlimit listed twice",
                "list each rlimit once",
            ));
        }
        seen.push(name);
        if r.soft() > r.hard() {
            return Err(TranslateError::invalid(
                format!("process.rlimits[{i}]"),
                format!("soft={} hard={}", r.soft(), r.hard()),
                "soft limit above hard limit",
                "make soft <= hard",
            ));
        }
        lxc.push(
            &format!("lxc.prlimit.{name}"),
            format!("{}:{}", rlimit_value(r.soft()), rlimit_value(r.hard())),
        )?;
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(TranslateError::invalid(
                "process.oomScoreAdj",
                adj,
                "out of range",
                "use a value between -1000 and 1000",
            ));
        }
        lxc.push("lxc.proc.oom_score_adj", adj.to_string())?;
    }
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if no_new_privileges {
        lxc.push("lxc.no_new_privs", "1")?;
    }

    // --- sysctl
    if let Some(sysctl) = linux.sysctl() {
        let mut keys: Vec<&String> = sysctl.keys().collect();
        keys.sort();
        for key in keys {
            let value = &sysctl[key];
            let field = format!("linux.sysctl.{key}");
            let ok = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
                && !key.starts_with(['.', '/'])
                && !key.ends_with(['.', '/']);
            if !ok {
                return Err(TranslateError::invalid(
                    field,
                    key.escape_debug(),
                    "a sysctl name is made of [A-Za-z0-9._/-]",
                    "use a name like net.ipv4.ip_forward",
                ));
            }
            // LXC turns every '.' into '/': the slash form only works if no
            // component contains a dot (e.g. an interface name like eth0.100).
            let dotted = if key.contains('/') {
                if key.split('/').any(|c| c.contains('.') || c.is_empty()) {
                    return Err(TranslateError::unsupported(
                        field,
                        key,
                        "LXC cannot address a sysctl whose path component contains a dot",
                        "remove this sysctl",
                    ));
                }
                key.replace('/', ".")
            } else {
                if key.split('.').any(|c| c.is_empty() || c == "..") {
                    return Err(TranslateError::invalid(
                        field,
                        key,
                        "empty component",
                        "use a name like net.ipv4.ip_forward",
                    ));
                }
                key.clone()
            };
            match sysctl_namespace(&dotted) {
                Some(n) if ns.private(n) => {}
                Some(n) => {
                    return Err(TranslateError::invalid(
                        field,
                        key,
                        format!("this sysctl belongs to the {n} namespace, which the container shares with the host"),
                        format!("add a {n} namespace to linux.namespaces or remove the sysctl"),
                    ))
                }
                None => {
                    return Err(TranslateError::invalid(
                        field,
                        key,
                        "not a namespaced sysctl: setting it would change the host",
                        "remove it (runc refuses it too)",
                    ))
                }
            }
            if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
                return Err(TranslateError::invalid(
                    field,
                    key,
                    "set the host/domain name with the hostname/domainname fields",
                    "use \"hostname\" / \"domainname\"",
                ));
            }
            lxc.push_field(&field, &format!("lxc.sysctl.{dotted}"), value.clone())?;
        }
    }

    // --- linux fields that LXC and our init cannot honour
    if linux.intel_rdt().is_some() {
        return Err(TranslateError::unsupported(
            "linux.intelRdt",
            "{...}",
            "Intel RDT (resctrl) is not supported",
            "remove linux.intelRdt",
        ));
    }
    if linux.memory_policy().is_some() {
        return Err(TranslateError::unsupported(
            "linux.memoryPolicy",
            "{...}",
            "NUMA memory policy (set_mempolicy) is not supported",
            "remove linux.memoryPolicy (linux.resources.cpu.mems restricts NUMA nodes)",
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(TranslateError::unsupported(
            "linux.netDevices",
            "{...}",
            "moving host network devices into the container is not supported",
            "remove linux.netDevices",
        ));
    }
    if let Some(p) = linux.personality() {
        if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(TranslateError::unsupported(
                "linux.personality.flags",
                format!("{:?}", p.flags()),
                "personality flags are not supported",
                "remove the flags",
            ));
        }
        match p.domain() {
            LinuxPersonalityDomain::PerLinux => {}
            LinuxPersonalityDomain::PerLinux32 => {
                if cfg!(target_arch = "x86_64") {
                    lxc.push("lxc.arch", "i686")?;
                } else {
                    return Err(TranslateError::unsupported(
                        "linux.personality.domain",
                        "LINUX32",
                        "32-bit personality is only mapped (lxc.arch) on x86_64",
                        "remove linux.personality",
                    ));
                }
            }
        }
    }
    match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("private") | Some("rprivate") => {}
        Some(other) => {
            return Err(TranslateError::unsupported(
                "linux.rootfsPropagation",
                other.escape_debug(),
                "LXC 5.0 does not apply a propagation type to the rootfs; only private/rprivate (no propagation to the host) is guaranteed",
                "remove linux.rootfsPropagation or set it to rprivate",
            ));
        }
    }

    // --- paths init handles
    let masked_paths: Vec<String> = linux.masked_paths().clone().unwrap_or_default();
    for (i, p) in masked_paths.iter().enumerate() {
        check_abs_path(&format!("linux.maskedPaths[{i}]"), p)?;
    }
    let readonly_paths: Vec<String> = linux.readonly_paths().clone().unwrap_or_default();
    for (i, p) in readonly_paths.iter().enumerate() {
        check_abs_path(&format!("linux.readonlyPaths[{i}]"), p)?;
    }
    let devices = linux.devices().clone().unwrap_or_default();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let p = d.path().to_string_lossy().to_string();
        check_abs_path(&format!("{field}.path"), &p)?;
        if !p.starts_with("/dev/") || p.len() <= "/dev/".len() {
            return Err(TranslateError::invalid(
                format!("{field}.path"),
                &p,
                "devices must be created under /dev",
                "use a path like /dev/fuse",
            ));
        }
        if p == crate::init_config::EXCHANGE_DIR
            || p.starts_with(&format!("{}/", crate::init_config::EXCHANGE_DIR))
            || p == crate::init_config::INIT_PATH
        {
            return Err(TranslateError::invalid(
                format!("{field}.path"),
                &p,
                "reserved for the runtime",
                "use another path",
            ));
        }
        match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U | LinuxDeviceType::P => {}
            LinuxDeviceType::A => {
                return Err(TranslateError::invalid(
                    format!("{field}.type"),
                    "a",
                    "a device node must be c, b, u or p",
                    "fix the device type",
                ))
            }
        }
        if d.major() < 0 || d.minor() < 0 {
            return Err(TranslateError::invalid(
                format!("{field}.major/minor"),
                format!("{}:{}", d.major(), d.minor()),
                "negative device number",
                "use the real major:minor",
            ));
        }
    }
    if let Some(sc) = linux.seccomp() {
        if let Some(lp) = sc.listener_path() {
            return Err(TranslateError::unsupported(
                "linux.seccomp.listenerPath",
                lp.display(),
                "seccomp user notification is not supported",
                "remove listenerPath and SCMP_ACT_NOTIFY rules",
            ));
        }
    }

    let capabilities = process.capabilities().as_ref().map(|c| Capabilities {
        bounding: cap_names(c.bounding()),
        effective: cap_names(c.effective()),
        inheritable: cap_names(c.inheritable()),
        permitted: cap_names(c.permitted()),
        ambient: cap_names(c.ambient()),
    });

    let start_container_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    for (i, h) in start_container_hooks.iter().enumerate() {
        let field = format!("hooks.startContainer[{i}]");
        check_abs_path(&format!("{field}.path"), &h.path().to_string_lossy())?;
        for (j, a) in h.args().iter().flatten().enumerate() {
            no_nul(&format!("{field}.args[{j}]"), a)?;
        }
        for (j, e) in h.env().iter().flatten().enumerate() {
            no_nul(&format!("{field}.env[{j}]"), e)?;
        }
    }

    Ok(InitConfig {
        args,
        env,
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        domainname,
        terminal: process.terminal().unwrap_or(false),
        console_socket: false,
        capabilities,
        no_new_privileges,
        seccomp: linux.seccomp().clone(),
        masked_paths,
        readonly_paths,
        devices,
        start_container_hooks,
        hook_state: serde_json::Value::Null,
    })
}
