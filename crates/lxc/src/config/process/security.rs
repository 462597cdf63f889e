//! AppArmor and SELinux labels, capabilities, noNewPrivileges and the
//! seccomp fields our init cannot honour.
use oci_spec::runtime::{Linux, Process};

use crate::config::{LxcConfig, TranslateContext, TranslateError};
use crate::init_config::Capabilities;

/// process.apparmorProfile, process.selinuxLabel, linux.mountLabel.
pub(super) fn labels(
    process: &Process,
    linux: &Linux,
    ctx: &TranslateContext,
    lxc: &mut LxcConfig,
) -> Result<(), TranslateError> {
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
    Ok(())
}

/// process.noNewPrivileges: `lxc.no_new_privs`, and our init sets it too.
pub(super) fn no_new_privs(process: &Process, lxc: &mut LxcConfig) -> Result<bool, TranslateError> {
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if no_new_privileges {
        lxc.push("lxc.no_new_privs", "1")?;
    }
    Ok(no_new_privileges)
}

/// linux.seccomp: the profile goes to our init as is (compiled by the
/// runtime); a `listenerPath` must be absolute (the runtime hands the
/// notify fd to it at start, as runc).
pub(super) fn seccomp(linux: &Linux) -> Result<(), TranslateError> {
    if let Some(lp) = linux
        .seccomp()
        .as_ref()
        .and_then(|s| s.listener_path().as_ref())
    {
        if !lp.is_absolute() {
            return Err(TranslateError::invalid(
                "linux.seccomp.listenerPath",
                lp.display(),
                "must be an absolute path",
                "give the seccomp agent's socket as an absolute host path",
            ));
        }
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

/// process.capabilities, for our init (sorted names, `CAP_` prefixed).
pub(super) fn capabilities(process: &Process) -> Option<Capabilities> {
    process.capabilities().as_ref().map(|c| Capabilities {
        bounding: cap_names(c.bounding()),
        effective: cap_names(c.effective()),
        inheritable: cap_names(c.inheritable()),
        permitted: cap_names(c.permitted()),
        ambient: cap_names(c.ambient()),
    })
}
