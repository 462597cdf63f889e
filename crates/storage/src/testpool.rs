//! Throw-away ZFS pools for tests and benchmarks: a pool on a sparse file
//! in a temp dir, served by zfs-fuse (started when no ZFS answers), and
//! destroyed on drop (also when a test panics).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pool `lxcri-test-<pid>-<n>` mounted under its temp dir.
pub struct TestPool {
    pub name: String,
    pub dir: tempfile::TempDir,
    /// zfs-fuse 0.7 has hung (all FUSE requests blocked) with several pools
    /// being set up at once, so test pools exist one at a time, host-wide.
    _serial: crate::lock::Lock,
}

fn zpool_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Make sure a ZFS daemon answers: start zfs-fuse (it daemonizes when run
/// as root) if needed and wait until `zpool list` works.
pub fn ensure_zfs() -> Result<(), String> {
    if zpool_answers() {
        return Ok(());
    }
    // One starter at a time (tests run in parallel).
    let _l = crate::lock::lock(Path::new("/run/lock"), "proxmox-lxcri-zfs-fuse-start")
        .map_err(|e| e.to_string())?;
    if zpool_answers() {
        return Ok(());
    }
    let bin = ["/usr/sbin/zfs-fuse", "/usr/bin/zfs-fuse"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("zfs-fuse not found: install the Debian package zfs-fuse (scripts/install-deps.sh does)")?;
    let st = Command::new(bin)
        .status()
        .map_err(|e| format!("starting {bin}: {e}"))?;
    if !st.success() {
        return Err(format!("{bin} exited with {st}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if zpool_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("zfs-fuse started but `zpool list` does not answer".into())
}

impl TestPool {
    /// A pool of `size` bytes (sparse, so only what is written costs disk).
    pub fn new(size: u64) -> Result<TestPool, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("ZFS tests need root (CI runs them as root)".into());
        }
        ensure_zfs()?;
        let serial = crate::lock::lock(Path::new("/run/lock"), "proxmox-lxcri-test-pool")
            .map_err(|e| e.to_string())?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("lxcri-test-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("lxcri-zpool")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let img = dir.path().join("pool.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("{}: {e}", img.display()))?;
        let mnt = dir.path().join("mnt");
        // cachefile=none: a restarted daemon must not try to import it.
        run(
            "zpool",
            &[
                "create",
                "-o",
                "cachefile=none",
                "-m",
                &mnt.to_string_lossy(),
                &name,
                &img.to_string_lossy(),
            ],
        )?;
        Ok(TestPool {
            name,
            dir,
            _serial: serial,
        })
    }

    /// Where the pool's root dataset is mounted.
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Every dataset and snapshot in the pool, sorted.
    pub fn all(&self) -> Vec<String> {
        let out = run(
            "zfs",
            &["list", "-H", "-o", "name", "-t", "all", "-r", &self.name],
        )
        .unwrap_or_default();
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        // zfs-fuse: "busy" for a moment after the last file was closed.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match run("zpool", &["destroy", "-f", &self.name]) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline || !e.contains("busy") => {
                    eprintln!("warning: destroying test pool {}: {e}", self.name);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// Run a command (no shell); stdout, or the command and its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
