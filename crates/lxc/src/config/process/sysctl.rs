//! linux.sysctl -> `lxc.sysctl.*`, namespaced sysctls only.
use oci_spec::runtime::Linux;

use crate::config::namespaces::Namespaces;
use crate::config::{LxcConfig, TranslateError};

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

pub(super) fn translate(
    linux: &Linux,
    ns: &Namespaces,
    lxc: &mut LxcConfig,
) -> Result<(), TranslateError> {
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
    Ok(())
}
