//! linux.cgroupsPath: where the container's cgroups go.
use oci_spec::runtime::Spec;

use crate::config::TranslateError;

/// Resolves linux.cgroupsPath to a path relative to the hierarchy roots.
pub(super) fn cgroup_dir(spec: &Spec, id: &str) -> Result<String, TranslateError> {
    let field = "linux.cgroupsPath";
    let Some(raw) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    else {
        return Ok(format!("proxmox-lxcri/{id}"));
    };
    let raw = raw.to_string_lossy().to_string();
    if raw.is_empty() {
        return Ok(format!("proxmox-lxcri/{id}"));
    }
    let bad = |problem: &str| {
        TranslateError::invalid(
            field,
            raw.escape_debug(),
            problem,
            "use a path like /kubepods/pod1/ctr1 or the systemd form slice:prefix:name",
        )
    };
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(bad(
            "contains whitespace, control characters or a backslash",
        ));
    }
    // systemd form "slice:prefix:name" (runc's systemd driver); approximated
    // as the cgroupfs path systemd would use: <slice path>/<prefix>-<name>.scope.
    let path = if !raw.starts_with('/') && raw.matches(':').count() == 2 {
        let mut it = raw.splitn(3, ':');
        let (slice, prefix, name) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        if name.is_empty() || name.contains('/') || prefix.contains('/') || slice.contains('/') {
            return Err(bad("bad systemd cgroupsPath (slice:prefix:name)"));
        }
        let mut parts: Vec<String> = Vec::new();
        if !slice.is_empty() && slice != "-.slice" {
            let base = slice
                .strip_suffix(".slice")
                .ok_or_else(|| bad("the slice must end in .slice"))?;
            if base.is_empty()
                || base.starts_with('-')
                || base.ends_with('-')
                || base.contains("--")
            {
                return Err(bad("invalid slice name"));
            }
            let mut acc = String::new();
            for comp in base.split('-') {
                if !acc.is_empty() {
                    acc.push('-');
                }
                acc.push_str(comp);
                parts.push(format!("{acc}.slice"));
            }
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        parts.push(unit);
        parts.join("/")
    } else {
        raw.clone()
    };
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(bad("must not contain `..` components")),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad("names the root cgroup"));
    }
    Ok(parts.join("/"))
}
