//! Guest configs as Proxmox keeps them: `DIR/nodes/<node>/{lxc,qemu-server}/<vmid>.conf`,
//! `key: value` lines, snapshots as `[name]` sections, raw `lxc.*` lines kept.
//! The files are the only state: every request reads them anew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Lxc,
    Qemu,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Lxc => "lxc",
            Kind::Qemu => "qemu-server",
        }
    }
    /// "CT" / "VM" as in Proxmox's messages.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Lxc => "CT",
            Kind::Qemu => "VM",
        }
    }
}

/// One section of a config: the guest's current settings or a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// Description lines (stored as `#` comments).
    pub description: Option<String>,
    pub keys: BTreeMap<String, String>,
    /// Raw `lxc.*` entries in file order.
    pub lxc: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conf {
    pub main: Section,
    pub snapshots: Vec<(String, Section)>,
}

impl Section {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.keys.get(k).map(String::as_str)
    }
}

// `env` is NUL-separated; NUL cannot live in a line, so it is stored as `\0`.
fn encode_value(k: &str, v: &str) -> String {
    if k == "env" {
        v.replace('\\', "\\\\").replace('\0', "\\0")
    } else {
        v.to_string()
    }
}
fn decode_value(k: &str, v: &str) -> String {
    if k != "env" {
        return v.to_string();
    }
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Conf {
    pub fn parse(text: &str) -> Conf {
        let mut conf = Conf::default();
        let mut cur = Section::default();
        let mut cur_name: Option<String> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                match cur_name.take() {
                    None => conf.main = std::mem::take(&mut cur),
                    Some(n) => conf.snapshots.push((n, std::mem::take(&mut cur))),
                }
                cur_name = Some(name.to_string());
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                let d = cur.description.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(c);
                continue;
            }
            let (k, v) = match line.split_once(':') {
                Some((k, v)) if !k.contains('=') => (k.trim(), v.trim()),
                _ => match line.split_once('=') {
                    Some((k, v)) if k.trim().starts_with("lxc.") => (k.trim(), v.trim()),
                    _ => continue,
                },
            };
            if k.starts_with("lxc.") {
                cur.lxc.push((k.to_string(), v.to_string()));
            } else if !k.is_empty() {
                cur.keys.insert(k.to_string(), decode_value(k, v));
            }
        }
        match cur_name {
            None => conf.main = cur,
            Some(n) => conf.snapshots.push((n, cur)),
        }
        conf
    }

    /// The file text. Refuses a key, value or snapshot name that could end
    /// its line: a stray newline would become a raw `lxc.*` line (run as root).
    /// The description needs no check: each of its lines becomes a comment.
    pub fn render(&self) -> Result<String, String> {
        fn line_safe(what: &str, k: &str, v: &str) -> Result<(), String> {
            let key_ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !key_ok {
                return Err(format!("invalid config key '{}'", k.escape_debug()));
            }
            if v.contains(['\n', '\r', '\0']) {
                return Err(format!(
                    "{what} '{k}' contains a line break or NUL character"
                ));
            }
            Ok(())
        }
        for (name, s) in std::iter::once(("", &self.main))
            .chain(self.snapshots.iter().map(|(n, s)| (n.as_str(), s)))
        {
            if name.contains(['\n', '\r', '\0', ']']) {
                return Err(format!("invalid snapshot name '{}'", name.escape_debug()));
            }
            for (k, v) in &s.keys {
                line_safe("value of", k, &encode_value(k, v))?;
            }
            for (k, v) in &s.lxc {
                line_safe("value of", k, v)?;
            }
        }
        fn section(out: &mut String, s: &Section) {
            if let Some(d) = &s.description {
                for l in d.split('\n') {
                    out.push('#');
                    out.push_str(l);
                    out.push('\n');
                }
            }
            for (k, v) in &s.keys {
                out.push_str(&format!("{k}: {}\n", encode_value(k, v)));
            }
            for (k, v) in &s.lxc {
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        let mut out = String::new();
        section(&mut out, &self.main);
        for (name, s) in &self.snapshots {
            out.push_str(&format!("\n[{name}]\n"));
            section(&mut out, s);
        }
        Ok(out)
    }
}

pub struct Store {
    pub root: PathBuf,
    pub nodes: Vec<String>,
}

pub fn conf_rel(node: &str, kind: Kind, vmid: u32) -> String {
    format!("nodes/{node}/{}/{vmid}.conf", kind.dir())
}

impl Store {
    pub fn new(root: &Path, nodes: Vec<String>) -> std::io::Result<Self> {
        for n in &nodes {
            for k in [Kind::Lxc, Kind::Qemu] {
                std::fs::create_dir_all(root.join("nodes").join(n).join(k.dir()))?;
            }
        }
        std::fs::create_dir_all(root.join("lock"))?;
        Ok(Self {
            root: root.to_path_buf(),
            nodes,
        })
    }

    pub fn path(&self, node: &str, kind: Kind, vmid: u32) -> PathBuf {
        self.root.join(conf_rel(node, kind, vmid))
    }

    /// Where a VMID is in use in the cluster: (node, kind).
    pub fn locate(&self, vmid: u32) -> Option<(String, Kind)> {
        for n in &self.nodes {
            for k in [Kind::Lxc, Kind::Qemu] {
                if self.path(n, k, vmid).exists() {
                    return Some((n.clone(), k));
                }
            }
        }
        None
    }

    /// All guests: (node, kind, vmid).
    pub fn list(&self) -> Vec<(String, Kind, u32)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            for k in [Kind::Lxc, Kind::Qemu] {
                let Ok(rd) = std::fs::read_dir(self.root.join("nodes").join(n).join(k.dir()))
                else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if let Some(id) = name.strip_suffix(".conf").and_then(|s| s.parse().ok()) {
                        out.push((n.clone(), k, id));
                    }
                }
            }
        }
        out.sort_by_key(|x| x.2);
        out
    }

    pub fn read(&self, node: &str, kind: Kind, vmid: u32) -> Result<(Conf, String), ApiError> {
        let p = self.path(node, kind, vmid);
        match std::fs::read_to_string(&p) {
            Ok(text) => Ok((Conf::parse(&text), digest(&text))),
            Err(_) => Err(ApiError::internal(format!(
                "Configuration file '{}' does not exist",
                conf_rel(node, kind, vmid)
            ))),
        }
    }

    /// Atomic write (temp file + rename).
    pub fn write(&self, node: &str, kind: Kind, vmid: u32, conf: &Conf) -> Result<(), ApiError> {
        let p = self.path(node, kind, vmid);
        let tmp = p.with_extension("conf.tmp");
        let text = conf
            .render()
            .map_err(|e| ApiError::internal(format!("refusing to write {}: {e}", p.display())))?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", p.display())))
    }

    /// Creates a new config only if the VMID is free anywhere in the cluster.
    pub fn create_new(
        &self,
        node: &str,
        kind: Kind,
        vmid: u32,
        conf: &Conf,
    ) -> Result<(), ApiError> {
        if let Some((n, k)) = self.locate(vmid) {
            return Err(ApiError::internal(format!(
                "{} {vmid} already exists on node '{n}'",
                k.label()
            )));
        }
        let p = self.path(node, kind, vmid);
        let text = conf
            .render()
            .map_err(|e| ApiError::internal(format!("refusing to write {}: {e}", p.display())))?;
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|_| {
                ApiError::internal(format!(
                    "{} {vmid} already exists on node '{node}'",
                    kind.label()
                ))
            })?;
        f.write_all(text.as_bytes())
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", p.display())))
    }

    pub fn remove(&self, node: &str, kind: Kind, vmid: u32) {
        let _ = std::fs::remove_file(self.path(node, kind, vmid));
    }

    /// The per-guest config lock (flock), waited for up to 10 s as Proxmox does.
    pub fn lock(&self, vmid: u32) -> Result<GuestLock, ApiError> {
        let p = self
            .root
            .join("lock")
            .join(format!("pve-config-{vmid}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| {
                ApiError::internal(format!("can't open lock file '{}': {e}", p.display()))
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            use std::os::fd::AsRawFd;
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(GuestLock { _f: f });
            }
            if Instant::now() > deadline {
                return Err(ApiError::internal(format!(
                    "can't lock file '{}' - got timeout",
                    p.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Held while a config is read-modified-written; released on drop.
pub struct GuestLock {
    _f: std::fs::File,
}

/// SHA-1 of the file, as the `digest` Proxmox returns.
pub fn digest(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_lxc_lines_and_snapshots() {
        let text = "#hello\narch: amd64\nenv: A=1\\0B=2\nhostname: ct1\nlxc.apparmor.profile: unconfined\nlxc.init.cmd = /bin/sh\n\n[snap1]\nhostname: old\n";
        let c = Conf::parse(text);
        assert_eq!(c.main.description.as_deref(), Some("hello"));
        assert_eq!(c.main.get("env"), Some("A=1\0B=2"));
        assert_eq!(c.main.lxc.len(), 2);
        assert_eq!(c.snapshots[0].0, "snap1");
        let again = Conf::parse(&c.render().unwrap());
        assert_eq!(again, c);
    }

    #[test]
    fn render_refuses_line_injection() {
        let evil = "x\nlxc.hook.pre-start: touch /pwned #";
        for (k, v) in [
            ("entrypoint", evil),
            ("hostname", "a\rb"),
            ("memory", "1\0"),
        ] {
            let mut c = Conf::default();
            c.main.keys.insert(k.into(), v.into());
            assert!(c.render().is_err(), "{k}={v:?} was written");
        }
        let mut c = Conf::default();
        c.main.lxc.push(("lxc.init.cwd".into(), evil.into()));
        assert!(c.render().is_err());
        let mut c = Conf::default();
        c.main.keys.insert("a\nlxc.x".into(), "1".into());
        assert!(c.render().is_err());
        // env's NULs are encoded as `\0`, so they stay allowed.
        let mut c = Conf::default();
        c.main.keys.insert("env".into(), "A=1\0B=2".into());
        assert_eq!(c.render().unwrap(), "env: A=1\\0B=2\n");
    }
}
