//! OCI runtime spec -> LXC config translation.
//!
//! [`translate`] turns an OCI [`Spec`] into
//! * an [`LxcConfig`]: ordered `lxc.*` key/value lines for `lxc-start -F`, and
//! * an [`InitConfig`]: what our in-container init (`lxc.init.cmd =
//!   /dev/.lxcri-init`) does itself: user, groups, umask, cwd, env, args,
//!   capabilities, noNewPrivileges, seccomp, masked and read-only paths,
//!   linux.devices, domainname, terminal, startContainer hooks.
//!
//! It is pure apart from a few `stat`s (bind-mount sources, namespace paths).
//!
//! Every value copied from config.json passes [`LxcConfig::push`], which
//! rejects `\n`, `\r` and `\0` in values and anything but `[A-Za-z0-9._-]`
//! in keys: no spec value can start a second config line. Mount entry fields
//! are further restricted (no whitespace, no `\`, no leading `#`), because
//! LXC parses `lxc.mount.entry` like an fstab line.
//!
//! # Facts about LXC 5.0.2 this module relies on (verified with `lxc-start -F`)
//! * `lxc.rootfs.options = ro` gives a read-only rootfs, but then
//!   `create=dir` for mount points missing from the image fails (EROFS); so
//!   root.readonly is done by our init after the mounts.
//! * `lxc.autodev.tmpfs.size` takes bytes.
//! * `lxc.namespace.clone` and `lxc.namespace.keep` are mutually exclusive;
//!   with `clone` set, namespaces not listed are the host's. Namespace names
//!   are the `/proc/PID/ns` names (`mnt`, `net`, ...). `time` is supported,
//!   with `lxc.time.offset.{boot,monotonic}` (one unit per value).
//! * `lxc.namespace.share.<ns> = /abs/path` opens an nsfs file (e.g.
//!   `/run/netns/x`, `/proc/<pid>/ns/uts`).
//! * `lxc.cgroup.dir.container` / `.monitor` place the container at exactly
//!   that path, relative to the root of every hierarchy (v1 and unified).
//! * On a hybrid host LXC *ignores* every `lxc.cgroup2.*` limit ("Ignoring
//!   cgroup2 limits on legacy cgroup system"): v2 keys only work on a pure
//!   cgroup v2 host. So controllers that are only on the unified hierarchy
//!   of a hybrid host cannot be limited: that is an error here, never a
//!   silent drop.
//! * `lxc.mount.auto = cgroup:ro` is ignored when a cgroup namespace is
//!   created; `cgroup:ro:force` / `cgroup:rw:force` always mount. Auto mounts
//!   happen before `lxc.mount.entry`s, so a spec sysfs entry at /sys would
//!   hide them: when the spec mounts cgroups, its /sys sysfs mount becomes
//!   `sys:ro` / `sys:rw` too.
//! * Propagation flags (`rslave`, `rprivate`, ...) are accepted in
//!   `lxc.mount.entry`; they are not honoured in `lxc.rootfs.options`.
//!   `linux.rootfsPropagation` may be private or slave (LXC makes the
//!   container's mounts slaves of the host's), never shared.
//! * LXC mounts its own devpts at /dev/pts (from `lxc.pty.max`), so the
//!   spec's devpts mount at /dev/pts is not emitted.
//!
//! # Fields handled elsewhere (not silently dropped)
//! `ociVersion`, `annotations`, `root.path` (resolved by the runtime into
//! [`TranslateContext::rootfs`]), `process.consoleSize` (the runtime owns the
//! console), hooks other than `startContainer` (run by the runtime).
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use proxmox_lxcri_cgroups::CgroupLayout;

use crate::init_config::InitConfig;

mod cgroups;
mod mounts;
mod namespaces;
mod process;
#[cfg(test)]
mod tests;

pub use cgroups::resource_settings;

/// What the runtime knows about the container and the host, beyond the spec.
#[derive(Debug, Clone)]
pub struct TranslateContext {
    /// Container id, already validated.
    pub id: String,
    /// Absolute host path of the rootfs (already resolved against the bundle).
    pub rootfs: PathBuf,
    /// Absolute bundle dir (relative mount sources resolve against it).
    pub bundle: PathBuf,
    /// Host dir bind-mounted rw at [`crate::init_config::EXCHANGE_DIR`].
    pub exchange_dir: PathBuf,
    /// Host path of our static binary, bind-mounted ro at [`crate::init_config::INIT_PATH`].
    pub init_binary: PathBuf,
    /// `lxc.log.file`.
    pub log_file: PathBuf,
    /// Where tmpfs copy-ups are staged on the host (see [`Copyup`]).
    pub copyup_dir: PathBuf,
    /// `lxc.log.level` (e.g. "ERROR", "DEBUG").
    pub log_level: String,
    /// The host's cgroup layout (which controllers are on v1, which on v2).
    pub cgroups: CgroupLayout,
    /// The host has AppArmor; else a profile in the spec is an error (as runc).
    pub apparmor_enabled: bool,
    /// The host has SELinux; else `selinuxLabel` / `mountLabel` are errors.
    pub selinux_enabled: bool,
}

/// The result of [`translate`].
#[derive(Debug, Clone)]
pub struct Translation {
    pub lxc: LxcConfig,
    pub init: InitConfig,
    /// tmpfs mounts with `tmpcopyup`, for the engine to prepare before
    /// the container starts (LXC cannot copy a directory up into a tmpfs).
    pub copyups: Vec<Copyup>,
}

/// A tmpfs mount with runc's `tmpcopyup` option (Podman sets it): the
/// engine mounts a tmpfs at `staging` on the host with `data`, copies the
/// image's `destination` into it, and LXC bind-mounts it in the spec's
/// order; the engine drops its host mount once the container holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copyup {
    /// The mount point, relative to the rootfs (checked: no `..`).
    pub destination: String,
    /// Where the engine mounts the tmpfs on the host.
    pub staging: PathBuf,
    /// tmpfs data options (`size=`, `mode=` ...), checked like every mount
    /// field.
    pub data: Vec<String>,
    /// `nosuid`, `nodev`, `noexec` for the tmpfs itself (the bind repeats
    /// them).
    pub flags: Vec<String>,
}

/// Why a spec cannot be run. Every variant names the OCI field (as a JSON
/// path like `linux.resources.memory.swap` or `mounts[3].destination`), the
/// offending value, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A required field is absent or empty.
    #[error("{field}: required; {hint}")]
    Missing { field: String, hint: String },
    /// The value is malformed or unsafe.
    #[error("{field}: invalid value {value:?}: {problem}; {hint}")]
    Invalid {
        field: String,
        value: String,
        problem: String,
        hint: String,
    },
    /// Well-formed, but neither LXC 5.0 nor our init can honour it.
    #[error("{field}: not supported by the lxc engine (value {value:?}): {reason}; {hint}")]
    Unsupported {
        field: String,
        value: String,
        reason: String,
        hint: String,
    },
}

impl TranslateError {
    /// The OCI field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing { field, .. }
            | Self::Invalid { field, .. }
            | Self::Unsupported { field, .. } => field,
        }
    }

    pub(crate) fn missing(field: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Missing {
            field: field.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.to_string(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn unsupported(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::Unsupported {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
            hint: hint.into(),
        }
    }
}

/// Ordered `lxc.*` config entries. Keys may repeat (`lxc.mount.entry`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcConfig {
    entries: Vec<(String, String)>,
    /// Keys the host writes itself (see [`translate_excluding`]): checked,
    /// never kept. A pattern ending in `.` is a prefix.
    host_keys: Vec<String>,
}

impl LxcConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// A config that never holds `host_keys` (patterns; `x.` is a prefix).
    pub fn excluding(host_keys: &[String]) -> Self {
        LxcConfig {
            entries: vec![],
            host_keys: host_keys.to_vec(),
        }
    }

    fn host_owns(&self, key: &str) -> bool {
        self.host_keys.iter().any(|p| match p.strip_suffix('.') {
            Some(prefix) => key.starts_with(p.as_str()) || key == prefix,
            None => key == p,
        })
    }

    /// Appends `key = value`. The key must match `[A-Za-z0-9._-]+` and start
    /// with `lxc.`; the value must not contain `\n`, `\r` or `\0`.
    /// (Upper case and `-` are needed for keys such as
    /// `lxc.cgroup.hugetlb.2MB.limit_in_bytes` and sysctl names.)
    pub fn push(&mut self, key: &str, value: impl Into<String>) -> Result<(), TranslateError> {
        let value = value.into();
        Self::check(key, &value)?;
        if !self.host_owns(key) {
            self.entries.push((key.to_string(), value));
        }
        Ok(())
    }

    /// [`Self::push`] for a value copied from the OCI field `field`: a
    /// rejected value is reported against that field.
    pub(crate) fn push_field(
        &mut self,
        field: &str,
        key: &str,
        value: impl Into<String>,
    ) -> Result<(), TranslateError> {
        self.push(key, value).map_err(|e| match e {
            TranslateError::Invalid {
                value,
                problem,
                hint,
                ..
            } => TranslateError::Invalid {
                field: field.to_string(),
                value,
                problem,
                hint,
            },
            e => e,
        })
    }

    /// Replaces every entry of `key` by a single `key = value` (at the place
    /// of the first one, or at the end if there was none).
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> Result<(), TranslateError> {
        let value = value.into();
        Self::check(key, &value)?;
        if self.host_owns(key) {
            return Ok(());
        }
        match self.entries.iter().position(|(k, _)| k == key) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut i = 0;
                self.entries.retain(|(k, _)| {
                    let keep = k != key || i == first;
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((key.to_string(), value)),
        }
        Ok(())
    }

    /// Inserts `key = value` just before the first existing entry of `key`
    /// (at the end if there is none). For `lxc.hook.mount`: LXC runs hooks
    /// in order, and hooks that must see a writable rootfs (runc runs
    /// createContainer before making the rootfs read-only) have to come
    /// before any other mount hook.
    pub fn insert_before_first(
        &mut self,
        key: &str,
        value: impl Into<String>,
    ) -> Result<(), TranslateError> {
        let value = value.into();
        Self::check(key, &value)?;
        if self.host_owns(key) {
            return Ok(());
        }
        let at = self
            .entries
            .iter()
            .position(|(k, _)| k == key)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, (key.to_string(), value));
        Ok(())
    }

    /// Removes every entry of `key`; returns how many there were.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        before - self.entries.len()
    }

    /// All values of `key`, in order.
    pub fn get(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The config file text: one `key = value` line per entry.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    fn check(key: &str, value: &str) -> Result<(), TranslateError> {
        let key_ok = key.starts_with("lxc.")
            && key.len() < 256
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !key.ends_with('.')
            && !key.contains("..");
        if !key_ok {
            return Err(TranslateError::invalid(
                "(lxc config key)",
                key,
                "an LXC config key must be `lxc.` followed by [A-Za-z0-9._-]",
                "fix the OCI field this key is derived from",
            ));
        }
        if let Some(c) = value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
            return Err(TranslateError::invalid(
                key,
                value.escape_debug(),
                format!("contains {:?}, which could inject LXC config lines", c),
                "remove control characters from the OCI field",
            ));
        }
        Ok(())
    }
}

/// Translates `spec` for the lxc engine. See the module docs.
pub fn translate(spec: &Spec, ctx: &TranslateContext) -> Result<Translation, TranslateError> {
    translate_into(spec, ctx, LxcConfig::new())
}

/// Translates `spec` for a host that writes part of the LXC config itself
/// (a Proxmox node writes rootfs, hostname, net, idmap ... from its own CT
/// options): keys matching `host_keys` are checked but never emitted, so
/// the result is what goes raw into the host's config.
pub fn translate_excluding(
    spec: &Spec,
    ctx: &TranslateContext,
    host_keys: &[String],
) -> Result<Translation, TranslateError> {
    translate_into(spec, ctx, LxcConfig::excluding(host_keys))
}

fn translate_into(
    spec: &Spec,
    ctx: &TranslateContext,
    mut lxc: LxcConfig,
) -> Result<Translation, TranslateError> {
    reject_foreign_sections(spec)?;
    check_context(ctx)?;

    // Basics, the container init, console, logging.
    lxc.push("lxc.rootfs.path", format!("dir:{}", ctx.rootfs.display()))?;
    lxc.push("lxc.rootfs.managed", "0")?;
    spec.root().as_ref().ok_or_else(|| {
        TranslateError::missing("root", "the bundle's config.json needs a \"root\" object")
    })?;
    // root.readonly: not `lxc.rootfs.options = ro` (LXC would mount the
    // rootfs read-only before the mount entries, so `create=dir|file` for
    // mount points missing from the image fails); our init remounts `/`
    // read-only after all mounts, as runc does (InitConfig::readonly_root).
    lxc.push("lxc.init.cmd", crate::init_config::INIT_PATH)?;
    lxc.push("lxc.init.uid", "0")?;
    lxc.push("lxc.init.gid", "0")?;
    lxc.push("lxc.console.path", "none")?;
    lxc.push("lxc.tty.max", "0")?;
    lxc.push("lxc.pty.max", "1024")?;
    lxc.push("lxc.log.file", ctx.log_file.display().to_string())?;
    lxc.push("lxc.log.level", ctx.log_level.clone())?;

    let ns = namespaces::translate(spec, &mut lxc)?;
    let made = mounts::translate(spec, ctx, &ns, &mut lxc)?;
    let mut init = process::translate(spec, ctx, &ns, &mut lxc)?;
    init.mount_attrs = made.attrs;
    init.mount_order = made.order;
    let copyups = made.copyups;
    cgroups::translate(spec, ctx, &mut lxc)?;

    Ok(Translation { lxc, init, copyups })
}

/// vm, windows, solaris, zos sections mean a spec for another platform.
fn reject_foreign_sections(spec: &Spec) -> Result<(), TranslateError> {
    let hint = "this runtime runs Linux containers only; remove the section";
    if spec.vm().is_some() {
        return Err(TranslateError::unsupported(
            "vm",
            "{...}",
            "VM-based specs",
            hint,
        ));
    }
    if spec.windows().is_some() {
        return Err(TranslateError::unsupported(
            "windows",
            "{...}",
            "Windows specs",
            hint,
        ));
    }
    if spec.solaris().is_some() {
        return Err(TranslateError::unsupported(
            "solaris",
            "{...}",
            "Solaris specs",
            hint,
        ));
    }
    if spec.zos().is_some() {
        return Err(TranslateError::unsupported(
            "zos",
            "{...}",
            "z/OS specs",
            hint,
        ));
    }
    #[allow(deprecated)]
    if spec.uid_mappings().is_some() || spec.gid_mappings().is_some() {
        return Err(TranslateError::unsupported(
            "uidMappings/gidMappings",
            "[...]",
            "top-level id mappings are not part of the OCI spec",
            "use linux.uidMappings / linux.gidMappings",
        ));
    }
    Ok(())
}

/// The context's host paths go into config values and mount entries.
fn check_context(ctx: &TranslateContext) -> Result<(), TranslateError> {
    for (name, p) in [
        ("context.rootfs", &ctx.rootfs),
        ("context.bundle", &ctx.bundle),
        ("context.exchange_dir", &ctx.exchange_dir),
        ("context.init_binary", &ctx.init_binary),
        ("context.log_file", &ctx.log_file),
        ("context.copyup_dir", &ctx.copyup_dir),
    ] {
        if !p.is_absolute() {
            return Err(TranslateError::invalid(
                name,
                p.display(),
                "must be an absolute path",
                "this is a runtime bug: resolve the path first",
            ));
        }
        mounts::check_mount_field(name, &p.to_string_lossy())?;
    }
    if ctx.log_level.is_empty() || !ctx.log_level.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(TranslateError::invalid(
            "context.log_level",
            &ctx.log_level,
            "must be a word like ERROR or DEBUG",
            "use one of TRACE, DEBUG, INFO, NOTICE, WARN, ERROR, CRIT, ALERT, FATAL",
        ));
    }
    Ok(())
}

/// Checks that `s` has no NUL, is absolute and has no `..` component.
pub(crate) fn check_abs_path(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.contains('\0') {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "contains a NUL byte",
            "remove it",
        ));
    }
    if !s.starts_with('/') {
        return Err(TranslateError::invalid(
            field,
            s,
            "must be an absolute path",
            "start the path with /",
        ));
    }
    if Path::new(s)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(TranslateError::invalid(
            field,
            s,
            "must not contain `..` components",
            "use a normalized absolute path",
        ));
    }
    Ok(())
}
