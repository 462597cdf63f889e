//! linux.resources.devices: always default-deny plus runc's defaults, as
//! runc does.
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{target, Emitter, F};
use crate::config::TranslateError;

fn dev_num(n: Option<i64>) -> String {
    match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    }
}

fn device_rule(field: &str, d: &LinuxDeviceCgroup) -> Result<String, TranslateError> {
    let raw = d.access().clone().unwrap_or_else(|| "rwm".to_string());
    let bad = |why: &str| {
        TranslateError::invalid(
            format!("{field}.access"),
            raw.escape_debug(),
            why.to_string(),
            "use a combination of r, w and m, e.g. \"rwm\"",
        )
    };
    if raw.chars().any(|c| c.is_control()) {
        return Err(bad("contains control characters"));
    }
    // runc's meaning: r, w and m in any order, anything else ignored
    // ("rwa" is "rw"); nothing left is an error.
    let access: String = ['r', 'w', 'm']
        .into_iter()
        .filter(|c| raw.contains(*c))
        .collect();
    if access.is_empty() {
        return Err(bad(if raw.is_empty() {
            "cannot be empty"
        } else {
            "names none of r, w and m"
        }));
    }
    let typ = d.typ().unwrap_or(LinuxDeviceType::A);
    if matches!(typ, LinuxDeviceType::U | LinuxDeviceType::P) {
        return Err(TranslateError::invalid(
            format!("{field}.type"),
            typ.as_str(),
            "device cgroup rules take a (all), c or b",
            "use \"c\" for character devices",
        ));
    }
    if typ == LinuxDeviceType::A {
        // "a" covers every device; major/minor/access are irrelevant to the kernel.
        return Ok(format!("a *:* {access}"));
    }
    Ok(format!(
        "{} {}:{} {access}",
        typ.as_str(),
        dev_num(d.major()),
        dev_num(d.minor())
    ))
}

/// runc's default allowed devices (libcontainer/specconv AllowedDevices),
/// appended after the spec's own rules.
const DEFAULT_ALLOWED_DEVICES: [&str; 10] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",   // /dev/null
    "c 1:8 rwm",   // /dev/random
    "c 1:7 rwm",   // /dev/full
    "c 5:0 rwm",   // /dev/tty
    "c 1:5 rwm",   // /dev/zero
    "c 1:9 rwm",   // /dev/urandom
    "c 136:* rwm", // /dev/pts/*
    "c 5:2 rwm",   // /dev/ptmx
];

pub(super) fn translate(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
    let field = format!("{F}.devices");
    let rules = r.devices().clone().unwrap_or_default();
    let mut lines: Vec<(bool, String)> = vec![(false, "a".to_string())];
    for (i, d) in rules.iter().enumerate() {
        lines.push((d.allow(), device_rule(&format!("{field}[{i}]"), d)?));
    }
    for d in DEFAULT_ALLOWED_DEVICES {
        lines.push((true, d.to_string()));
    }
    match target(layout, "devices", &field, "[...]") {
        Ok(t) => {
            for (allow, rule) in lines {
                let file = if allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                em.put(t, file, rule)?;
            }
        }
        // No device controller and no rules asked for: nothing to enforce.
        Err(_) if rules.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
