//! The `zfs` command: argument vectors only (no shell), parsable output.
//! Kept to what zfs-fuse 0.7 understands too (no `list -p`, no `clones`).
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Zfs {
    pub bin: PathBuf,
}

impl Zfs {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Zfs { bin: bin.into() }
    }

    /// Run `zfs args...`; stdout on success, the command and stderr on failure.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cmd = format!(
            "{} {}",
            self.bin.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        tracing::debug!("{cmd}");
        let out = Command::new(&self.bin)
            .args(&args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| Error::Zfs {
                cmd: cmd.clone(),
                stderr: format!("cannot run it: {e} (install zfsutils-linux or zfs-fuse)"),
            })?;
        if !out.status.success() {
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.is_empty() {
                stderr = format!("exit status {}", out.status);
            }
            return Err(Error::Zfs { cmd, stderr });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.run(["list", "-H", "-o", "name", name]).is_ok()
    }

    /// One property, parsable (`-p`), `None` for `-`.
    pub fn get(&self, name: &str, prop: &str) -> Result<Option<String>> {
        let v = self.run(["get", "-H", "-p", "-o", "value", prop, name])?;
        let v = v.trim_end_matches('\n').to_string();
        Ok(if v == "-" { None } else { Some(v) })
    }

    pub fn get_u64(&self, name: &str, prop: &str) -> Result<u64> {
        let v = self.get(name, prop)?.unwrap_or_default();
        v.parse().map_err(|_| Error::Zfs {
            cmd: format!("zfs get {prop} {name}"),
            stderr: format!("not a number: {v:?}"),
        })
    }

    /// Properties set locally on a dataset (`zfs get -s local all`).
    pub fn local_properties(&self, name: &str) -> Result<Vec<(String, String)>> {
        let out = self.run([
            "get",
            "-H",
            "-p",
            "-o",
            "property,value",
            "-s",
            "local",
            "all",
            name,
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Where a dataset is mounted; an error if it is not.
    pub fn mountpoint(&self, name: &str) -> Result<PathBuf> {
        let out = self.run(["get", "-H", "-p", "-o", "value", "mounted,mountpoint", name])?;
        let mut lines = out.lines();
        let mounted = lines.next().unwrap_or_default().to_string();
        let mp = lines.next().unwrap_or_default().to_string();
        if mounted != "yes" || !mp.starts_with('/') {
            return Err(Error::Refused(format!(
                "dataset {name} is not mounted (mountpoint={mp}, mounted={mounted}); a container rootfs needs a mounted filesystem"
            )));
        }
        Ok(PathBuf::from(mp))
    }

    /// `zfs create` with `-o k=v` for each property.
    pub fn create(&self, name: &str, props: &[(String, String)], parents: bool) -> Result<()> {
        let mut args: Vec<String> = vec!["create".into()];
        if parents {
            args.push("-p".into());
        }
        push_props(&mut args, props);
        args.push(name.into());
        self.run(args).map(|_| ())
    }

    pub fn clone_snapshot(&self, snap: &str, name: &str, props: &[(String, String)]) -> Result<()> {
        let mut args: Vec<String> = vec!["clone".into()];
        push_props(&mut args, props);
        args.push(snap.into());
        args.push(name.into());
        self.run(args).map(|_| ())
    }

    pub fn snapshot(&self, snap: &str) -> Result<()> {
        self.run(["snapshot", snap]).map(|_| ())
    }

    pub fn set(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        let kv = format!("{prop}={value}");
        self.run_patient(&["set", &kv, name]).map(|_| ())
    }

    /// `zfs destroy -r`: the dataset and its snapshots; fine if already gone.
    /// Never `-R` (that would take clones of other datasets with it).
    pub fn destroy_recursive(&self, name: &str) -> Result<()> {
        self.destroy_with(&["destroy", "-r", name], name)
    }

    /// Run a destroy of `name`; fine if it is gone. See [`Zfs::run_patient`].
    pub fn destroy_with(&self, args: &[&str], name: &str) -> Result<()> {
        if !self.exists(name) {
            return Ok(());
        }
        match self.run_patient(args) {
            Ok(_) => Ok(()),
            Err(_) if !self.exists(name) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Run a command that may meet a short "dataset is busy" and retry it
    /// for a while. zfs-fuse reports a filesystem busy for a moment after
    /// its last file was closed or it was mounted (FUSE works
    /// asynchronously); kernel ZFS reports only a filesystem really in use,
    /// which stays busy and fails after the wait. Nothing is forced.
    pub fn run_patient(&self, args: &[&str]) -> Result<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.run(args) {
                Ok(out) => return Ok(out),
                Err(e) => {
                    let busy = matches!(&e, Error::Zfs { stderr, .. } if stderr.contains("busy"));
                    if !busy || std::time::Instant::now() > deadline {
                        return Err(e);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Direct children of a dataset (names), or empty if it does not exist.
    pub fn children(&self, name: &str) -> Result<Vec<String>> {
        if !self.exists(name) {
            return Ok(vec![]);
        }
        let out = self.run([
            "list",
            "-H",
            "-o",
            "name",
            "-t",
            "filesystem",
            "-r",
            "-d",
            "1",
            name,
        ])?;
        Ok(out
            .lines()
            .filter(|l| *l != name && !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Snapshots of a dataset: (short name, creation unix time, used bytes).
    pub fn snapshots(&self, name: &str) -> Result<Vec<(String, u64, u64)>> {
        let out = self.run([
            "list", "-H", "-o", "name", "-t", "snapshot", "-r", "-d", "1", name,
        ])?;
        let full: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('@'))
            .collect();
        let mut res = vec![];
        for f in full {
            let creation = self.get_u64(f, "creation").unwrap_or(0);
            let used = self.get_u64(f, "used").unwrap_or(0);
            res.push((f[name.len() + 1..].to_string(), creation, used));
        }
        res.sort_by_key(|s| s.1);
        Ok(res)
    }

    /// Every filesystem in `pool` whose origin is a snapshot of `dataset`.
    pub fn clones_of(&self, dataset: &str) -> Result<Vec<String>> {
        let pool = dataset.split('/').next().unwrap_or(dataset);
        let out = self.run([
            "list",
            "-H",
            "-o",
            "name,origin",
            "-t",
            "filesystem",
            "-r",
            pool,
        ])?;
        let prefix = format!("{dataset}@");
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(_, origin)| origin.starts_with(&prefix))
            .map(|(n, _)| n.to_string())
            .collect())
    }
}

fn push_props(args: &mut Vec<String>, props: &[(String, String)]) {
    for (k, v) in props {
        args.push("-o".into());
        args.push(format!("{k}={v}"));
    }
}

/// Is `path` (a directory) empty?
pub(crate) fn dir_is_empty(path: &Path) -> Result<bool> {
    let mut rd = std::fs::read_dir(path).map_err(|e| Error::Io {
        context: format!("reading {}", path.display()),
        source: e,
    })?;
    Ok(rd.next().is_none())
}
