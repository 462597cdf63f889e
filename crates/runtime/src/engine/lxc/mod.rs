//! The lxc engine: runs a bundle with `lxc-start -F` on this host, under a
//! monitor process of ours; with `[storage]`, on a volume of its own.
//!
//! ```text
//! create ──fork──> monitor (pid in --pid-file; setsid)
//!                     └─ lxc-start -F -q -P <dir> -n <id>
//!                           └─ container init (/dev/.lxcri-init, pid 1 inside)
//!                                 └─ user process (after `start`)
//! ```
//! The monitor ends exactly when the container ends and exits with its
//! status (read from the `exit` file the init writes, since lxc-start does
//! not pass it on), so containerd's shim, which reaps the pid-file pid,
//! sees the container's exit status.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Spec;
use proxmox_lxcri_lxc::config::{translate, TranslateContext, Translation};
use serde::{Deserialize, Serialize};

use super::{Cx, Engine, EngineRecord, Request};
use crate::error::{Context, Result};
use crate::exchange::{self, Paths};
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::{write_atomic, ContainerState};

mod volume;

pub use volume::{id_shift, OrphanVolumes};

/// What the lxc engine records: the rootfs volume from `[storage]`, before
/// it is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LxcRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<storage::Volume>,
}

#[derive(Default)]
pub struct LxcEngine {
    /// The `[storage]` volume create will make (None: the bundle's rootfs
    /// in place, as runc).
    volume: Option<storage::VolumePlan>,
}

impl Engine for LxcEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        self.volume = volume::plan(rt, &req.id, &req.annotations, &req.spec)?;
        Ok(())
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::Lxc(LxcRecord::default())
    }

    fn provision(&mut self, cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        match &self.volume {
            Some(plan) => volume::make(cx, plan, &req.rootfs),
            None => Ok(req.rootfs.clone()),
        }
    }

    fn mapped_root(&self, spec: &Spec) -> Option<(u32, u32)> {
        id_shift(spec).and_then(|s| Some((s.uid(0)?, s.gid(0)?)))
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        Ok(translate(spec, ctx)?)
    }

    fn configure(&mut self, cx: &mut Cx, _req: &Request, tr: &Translation) -> Result<()> {
        let cfg = cx.paths.config_file();
        let dir = cfg.parent().expect("config has a parent");
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        write_atomic(&cfg, tr.lxc.render().as_bytes())
    }

    fn start(&mut self, cx: &mut Cx, stdio: Option<&OwnedFd>) -> Result<Pid> {
        spawn_monitor(&cx.paths, &cx.rt.config.lxc.lxc_start, stdio)
    }

    fn find_init(
        &self,
        _rt: &Runtime,
        _paths: &Paths,
        monitor: Pid,
        _early: bool,
    ) -> Option<ProcRef> {
        find_init(monitor)
    }

    fn monitor_grace(&self, _paths: &Paths) -> Duration {
        // The monitor ends once lxc-start has torn the container down.
        Duration::from_secs(10)
    }

    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        volume::destroy(rt, st)
    }
}

/// Start the monitor. Returns its pid; it is our child.
///
/// `stdio`: fds to become the container's 0, 1, 2 (a pty slave), or None to
/// pass ours through.
fn spawn_monitor(paths: &Paths, lxc_start: &Path, stdio: Option<&OwnedFd>) -> Result<Pid> {
    let args = [
        lxc_start.as_os_str().to_owned(),
        "-F".into(),
        "-q".into(),
        "-P".into(),
        paths.lxcpath.as_os_str().to_owned(),
        "-n".into(),
        paths.name.clone().into(),
    ];
    let exchange = paths.exchange.clone();
    let slave = stdio.map(|f| f.as_raw_fd());
    // SAFETY: the CLI is single-threaded when it forks the monitor, so the
    // child may use the allocator and std::process.
    match unsafe { fork() }.ctx(|| "forking the monitor".to_string())? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = monitor_main(&args, &exchange, slave);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Body of the monitor process.
fn monitor_main(args: &[std::ffi::OsString], exchange: &Path, slave: Option<i32>) -> i32 {
    exchange::detach_monitor(slave, None);
    let status = std::process::Command::new(&args[0])
        .args(&args[1..])
        .status();
    if status.is_err() {
        return 255;
    }
    exchange::exit_code(exchange).unwrap_or(255)
}

/// Find the container init: the child of lxc-start, the child of the monitor.
fn find_init(monitor: Pid) -> Option<ProcRef> {
    for _ in 0..50 {
        let parents = proc::all_parents();
        if let Some(lxc_start) = proc::children_of(&parents, monitor.as_raw()).first() {
            if let Some(init) = proc::children_of(&parents, *lxc_start).first() {
                if let Some(r) = proc::proc_ref(*init) {
                    return Some(r);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}
