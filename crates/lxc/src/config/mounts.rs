//! mounts -> lxc.mount.entry / lxc.mount.auto, /dev handling, the two
//! mounts our init needs.
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::namespaces::Namespaces;
use super::{Copyup, LxcConfig, TranslateContext, TranslateError};

/// Options LXC interprets itself in `lxc.mount.entry`; a spec must not be
/// able to smuggle them in (`optional` would turn a failed mount into a
/// silently missing one).
const LXC_SPECIAL_OPTIONS: [&str; 4] = ["create=", "optional", "relative", "idmap="];

/// runc-only options LXC cannot apply: tmpfs copy-up on anything but a
/// tmpfs (the engine does it for a tmpfs), idmapped mounts.
const RUNC_ONLY_OPTIONS: [&str; 4] = ["tmpcopyup", "idmap", "ridmap", "copy-symlink"];

/// runc 1.1's recursive mount attributes: (option, clear?, MOUNT_ATTR_*
/// flag). Our init applies them with mount_setattr(AT_RECURSIVE) once the
/// mounts are made (see [`crate::init_config::MountAttr`]).
const RECURSIVE_ATTRS: [(&str, bool, u64); 18] = [
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, 0x2),
    ("rsuid", true, 0x2),
    ("rnodev", false, 0x4),
    ("rdev", true, 0x4),
    ("rnoexec", false, 0x8),
    ("rexec", true, 0x8),
    ("rnodiratime", false, 0x80),
    ("rdiratime", true, 0x80),
    ("rrelatime", false, 0),
    ("rnorelatime", true, 0),
    ("rnoatime", false, 0x10),
    ("ratime", true, 0x10),
    ("rstrictatime", false, 0x20),
    ("rnostrictatime", true, 0x20),
    ("rnosymfollow", false, 0x0020_0000),
    ("rsymfollow", true, 0x0020_0000),
];
const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// The access-time bits: setting one of them needs the mask in attr_clr.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;

/// The recursive attributes of a mount's options, as runc computes them.
fn recursive_attr(options: &[String]) -> Option<(u64, u64)> {
    let mut found = false;
    let (mut set, mut clr) = (0u64, 0u64);
    for o in options {
        if let Some(&(_, clear, flag)) = RECURSIVE_ATTRS.iter().find(|(n, _, _)| n == o) {
            found = true;
            if clear {
                clr |= flag;
            } else {
                set |= flag;
                if flag & MOUNT_ATTR_ATIME_MASK == flag {
                    clr |= MOUNT_ATTR_ATIME_MASK;
                }
            }
        }
    }
    found.then_some((set, clr))
}

/// A field of an fstab-like `lxc.mount.entry` line: no whitespace (it
/// separates fields), no `\` (getmntent decodes `\040` escapes), no control
/// characters, not empty, not starting with `#` (a comment).
pub(crate) fn check_mount_field(field: &str, s: &str) -> Result<(), TranslateError> {
    let problem = if s.is_empty() {
        Some("is empty")
    } else if s.starts_with('#') {
        Some("starts with '#'")
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or control characters")
    } else if s.contains('\\') {
        Some("contains a backslash")
    } else {
        None
    };
    match problem {
        Some(p) => Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            format!("{p}, which an LXC mount entry cannot carry"),
            "use a path/option without whitespace, backslashes, control characters or a leading '#'",
        )),
        None => Ok(()),
    }
}

/// Absolute container path -> path relative to the rootfs, normalized.
fn relative_destination(field: &str, dest: &Path) -> Result<String, TranslateError> {
    let s = dest.to_string_lossy();
    check_mount_field(field, &s)?;
    if !dest.is_absolute() {
        return Err(TranslateError::invalid(
            field,
            &s,
            "must be an absolute path",
            "start the destination with /",
        ));
    }
    let mut parts = Vec::new();
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            Component::ParentDir => {
                return Err(TranslateError::invalid(
                    field,
                    &s,
                    "must not contain `..` components",
                    "use a normalized absolute path",
                ))
            }
            Component::Prefix(_) => unreachable!("no path prefixes on Linux"),
        }
    }
    if parts.is_empty() {
        return Err(TranslateError::invalid(
            field,
            &s,
            "cannot mount over the container's root",
            "use root.path for the rootfs",
        ));
    }
    Ok(parts.join("/"))
}

/// `size=64m` -> bytes (tmpfs size syntax: k, m, g suffixes; % is refused).
fn tmpfs_size_bytes(field: &str, v: &str) -> Result<u64, TranslateError> {
    let bad = || {
        TranslateError::invalid(
            field,
            v,
            "not a tmpfs size LXC can use for lxc.autodev.tmpfs.size",
            "use bytes with an optional k/m/g suffix (e.g. size=65536k)",
        )
    };
    let (num, mult) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&v[..v.len() - 1], 1u64 << 20),
        Some('g' | 'G') => (&v[..v.len() - 1], 1u64 << 30),
        _ => (v, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// Mount options that are flags of the mount, not data of the filesystem:
/// a copied-up tmpfs keeps these on its bind mount.
const FLAG_OPTIONS: [&str; 28] = [
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "sync",
    "async",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
    "mand",
];

fn is_ro(options: &[String]) -> bool {
    options.iter().any(|o| o == "ro")
}

/// What the mounts give besides LXC config lines.
pub(crate) struct Made {
    pub copyups: Vec<Copyup>,
    /// Recursive attributes for the init to apply.
    pub attrs: Vec<crate::init_config::MountAttr>,
    /// Every mount point, in the spec's order (see InitConfig::mount_order).
    pub order: Vec<String>,
}

pub(crate) fn translate(
    spec: &Spec,
    ctx: &TranslateContext,
    _ns: &Namespaces,
    lxc: &mut LxcConfig,
) -> Result<Made, TranslateError> {
    let mounts: &[Mount] = spec.mounts().as_deref().unwrap_or_default();
    let mut copyups: Vec<Copyup> = Vec::new();
    let mut attrs = Vec::new();
    let mut order = Vec::new();

    // Cgroup mounts go through lxc.mount.auto, which LXC performs before
    // the mount entries; a sysfs entry at /sys would hide them, so /sys goes
    // through lxc.mount.auto as well in that case.
    let cgroup_mount = mounts
        .iter()
        .position(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")));
    let mut auto: Vec<String> = Vec::new();
    let mut autodev_size: Option<u64> = None;

    for (i, m) in mounts.iter().enumerate() {
        let f = |what: &str| format!("mounts[{i}].{what}");
        let dest = relative_destination(&f("destination"), m.destination())?;
        order.push(format!("/{dest}"));
        let options: Vec<String> = m.options().clone().unwrap_or_default();
        for (j, o) in options.iter().enumerate() {
            let field = format!("mounts[{i}].options[{j}]");
            check_mount_field(&field, o)?;
            if o.contains(',') {
                return Err(TranslateError::invalid(
                    field,
                    o,
                    "contains ','",
                    "give each mount option as its own list element",
                ));
            }
            if LXC_SPECIAL_OPTIONS.iter().any(|s| {
                if s.ends_with('=') {
                    o.starts_with(s)
                } else {
                    o == s
                }
            }) {
                return Err(TranslateError::unsupported(
                    field,
                    o,
                    "this option has a special meaning to LXC",
                    "remove it",
                ));
            }
            // tmpfs copy-up: done by the engine (see Copyup).
            if o == "tmpcopyup" && m.typ().as_deref() == Some("tmpfs") {
                continue;
            }
            if RUNC_ONLY_OPTIONS.contains(&o.as_str()) {
                return Err(TranslateError::unsupported(
                    field,
                    o,
                    "runc-specific mount option (tmpcopyup on a non-tmpfs, idmapped mounts) that LXC 5.0 cannot apply",
                    "remove it",
                ));
            }
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(TranslateError::unsupported(
                f("uidMappings"),
                "[...]",
                "idmapped mounts are not supported",
                "remove the mount's uidMappings/gidMappings",
            ));
        }
        // Recursive attributes: not mount(2) options; applied by our init.
        if let Some((set, clr)) = recursive_attr(&options) {
            attrs.push(crate::init_config::MountAttr {
                field: format!("mounts[{i}].options"),
                path: format!("/{dest}"),
                set,
                clr,
            });
        }
        let options: Vec<String> = options
            .into_iter()
            .filter(|o| !RECURSIVE_ATTRS.iter().any(|(n, _, _)| n == o))
            .collect();
        let typ = m.typ().clone().unwrap_or_default();
        if !typ.is_empty() {
            check_mount_field(&f("type"), &typ)?;
        }
        let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");

        // /dev: LXC's autodev tmpfs stands for the spec's /dev tmpfs.
        if dest == "dev" {
            if typ == "tmpfs" && !is_bind {
                for o in &options {
                    if let Some(v) = o.strip_prefix("size=") {
                        autodev_size = Some(tmpfs_size_bytes(&f("options"), v)?);
                    }
                }
                continue;
            }
            return Err(TranslateError::unsupported(
                f("destination"),
                "/dev",
                format!("only a tmpfs at /dev is supported (LXC's autodev provides it); got type {typ:?}"),
                "mount a tmpfs at /dev and list extra devices in linux.devices",
            ));
        }
        // /dev/pts: LXC mounts its own devpts (newinstance, ptmxmode=0666,
        // mode=0620, gid=5: the OCI defaults) from lxc.pty.max.
        if dest == "dev/pts" && typ == "devpts" {
            continue;
        }
        if matches!(typ.as_str(), "cgroup" | "cgroup2") && !is_bind {
            if dest != "sys/fs/cgroup" {
                return Err(TranslateError::unsupported(
                    f("destination"),
                    m.destination().display(),
                    "LXC can only mount cgroups at /sys/fs/cgroup",
                    "mount cgroups at /sys/fs/cgroup",
                ));
            }
            let mode = if is_ro(&options) { "ro" } else { "rw" };
            auto.push(format!("cgroup:{mode}:force"));
            continue;
        }
        if typ == "sysfs" && dest == "sys" && !is_bind && cgroup_mount.is_some_and(|c| c > i) {
            let mode = if is_ro(&options) { "ro" } else { "rw" };
            auto.push(format!("sys:{mode}"));
            continue;
        }

        let mut opts: Vec<String> = options.clone();
        let (source, fstype) = if is_bind {
            let src = m.source().as_ref().ok_or_else(|| {
                TranslateError::missing(f("source"), "a bind mount needs a source path")
            })?;
            let abs: PathBuf = if src.is_absolute() {
                src.clone()
            } else {
                ctx.bundle.join(src)
            };
            let s = abs.to_string_lossy().to_string();
            check_mount_field(&f("source"), &s)?;
            let meta = std::fs::metadata(&abs).map_err(|e| {
                TranslateError::invalid(
                    f("source"),
                    &s,
                    format!("cannot stat the bind source: {e}"),
                    "create the source on the host first (relative sources resolve against the bundle)",
                )
            })?;
            if !options.iter().any(|o| o == "bind" || o == "rbind") {
                opts.insert(0, "bind".to_string());
            }
            opts.push(
                if meta.is_dir() {
                    "create=dir"
                } else {
                    "create=file"
                }
                .to_string(),
            );
            (s, "none".to_string())
        } else {
            if typ.is_empty() {
                return Err(TranslateError::missing(
                    f("type"),
                    "a mount that is not a bind mount needs a filesystem type",
                ));
            }
            let src = match m.source() {
                Some(s) => s.to_string_lossy().to_string(),
                None => typ.clone(),
            };
            check_mount_field(&f("source"), &src)?;
            if typ == "tmpfs" && options.iter().any(|o| o == "tmpcopyup") {
                let staging = ctx.copyup_dir.join(copyups.len().to_string());
                let (flags, data): (Vec<String>, Vec<String>) = options
                    .iter()
                    .filter(|o| *o != "tmpcopyup")
                    .cloned()
                    .partition(|o| FLAG_OPTIONS.contains(&o.as_str()));
                let mut bind = vec!["bind".to_string()];
                bind.extend(flags.iter().cloned());
                bind.push("create=dir".to_string());
                lxc.push(
                    "lxc.mount.entry",
                    format!("{} {dest} none {} 0 0", staging.display(), bind.join(",")),
                )?;
                copyups.push(Copyup {
                    destination: dest,
                    staging,
                    data,
                    flags: flags
                        .into_iter()
                        .filter(|f| matches!(f.as_str(), "nosuid" | "nodev" | "noexec"))
                        .collect(),
                });
                continue;
            }
            opts.push("create=dir".to_string());
            (src, typ.clone())
        };
        lxc.push(
            "lxc.mount.entry",
            format!("{source} {dest} {fstype} {} 0 0", opts.join(",")),
        )?;
    }

    lxc.push("lxc.mount.auto", auto.join(" "))?;
    lxc.push("lxc.autodev", "1")?;
    if let Some(size) = autodev_size {
        lxc.push("lxc.autodev.tmpfs.size", size.to_string())?;
    }

    // What our init needs, after the spec's mounts.
    let exch = crate::init_config::EXCHANGE_DIR.trim_start_matches('/');
    let init = crate::init_config::INIT_PATH.trim_start_matches('/');
    lxc.push(
        "lxc.mount.entry",
        format!(
            "{} {exch} none bind,create=dir 0 0",
            ctx.exchange_dir.display()
        ),
    )?;
    lxc.push(
        "lxc.mount.entry",
        format!(
            "{} {init} none bind,create=file,ro 0 0",
            ctx.init_binary.display()
        ),
    )?;
    Ok(Made {
        copyups,
        attrs,
        order,
    })
}
