//! Engines: what runs a container. The lifecycle drives every engine
//! through [`Engine`] and names none of them; an engine is one folder here.
//!
//! ```text
//! create:  plan -> (claim, record) -> provision -> translate -> configure
//!          -> (exchange files) -> start -> find_init ... -> started
//!          -> hand_over (the pid-file process)
//! delete:  (kill the init) -> stop_without_init -> destroy
//! update:  (cgroups) -> update_limits
//! gc:      leftover_sources
//! ```
//! Everything an engine makes is recorded in its [`EngineRecord`] (inside
//! state.json) before it is made, so [`Engine::destroy`] can undo a create
//! that failed or crashed at any step.
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Spec};
use proxmox_lxcri_lxc::config::{TranslateContext, Translation};
use serde::{Deserialize, Serialize};

use crate::config::Backend;
use crate::error::Result;
use crate::exchange::Paths;
use crate::gc::LeftoverSource;
use crate::proc::ProcRef;
use crate::runtime::Runtime;
use crate::state::ContainerState;

pub mod lxc;
pub mod pod_member;
pub mod pve_lxc;
pub mod pve_vm;
pub mod vm_member;

/// What an engine keeps in state.json (flattened: `"engine": "<name>"`
/// plus the engine's own fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "engine")]
pub enum EngineRecord {
    #[serde(rename = "lxc")]
    Lxc(lxc::LxcRecord),
    #[serde(rename = "pve-lxc")]
    PveLxc(pve_lxc::PveLxcRecord),
    #[serde(rename = "pve-vm")]
    PveVm(pve_vm::PveVmRecord),
    /// A container inside a pod's CT (pve-lxc).
    #[serde(rename = "pve-lxc-pod-member")]
    PodMember(pod_member::PodMemberRecord),
    /// A container inside a pod's VM (pve-vm), on a disk of its own.
    #[serde(rename = "pve-vm-pod-member")]
    VmMember(vm_member::VmMemberRecord),
}

impl EngineRecord {
    /// Whether the record names something that outlives a reboot (a
    /// rootfs volume, a Proxmox CT): only then must the state survive a
    /// power loss, so only then is it fsynced.
    pub fn outlives_reboot(&self) -> bool {
        match self {
            EngineRecord::Lxc(r) => r.volume.is_some(),
            // A VM member's disk is a Proxmox volume.
            EngineRecord::PveLxc(_) | EngineRecord::PveVm(_) | EngineRecord::VmMember(_) => true,
            // Its mounts and cgroup go with a reboot; its directory with
            // the sandbox's.
            EngineRecord::PodMember(_) => false,
        }
    }

    /// The container's processes run in a VM's guest: on the host there
    /// is only our monitor, in the caller's cgroup.
    pub fn in_vm(&self) -> bool {
        matches!(self, EngineRecord::PveVm(_) | EngineRecord::VmMember(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            EngineRecord::Lxc(_) => Backend::Lxc.name(),
            EngineRecord::PveLxc(_) | EngineRecord::PodMember(_) => Backend::PveLxc.name(),
            EngineRecord::PveVm(_) | EngineRecord::VmMember(_) => Backend::PveVm.name(),
        }
    }
}

/// A checked bundle: what `create` was asked to run.
#[derive(Debug)]
pub struct Request {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: Spec,
    /// The bundle's rootfs, canonical.
    pub rootfs: PathBuf,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// What an engine may touch while a create runs: the runtime, the state
/// being recorded, and the container's files.
pub struct Cx<'a> {
    pub rt: &'a Runtime,
    pub state: ContainerState,
    pub paths: Paths,
    /// Our monitor, once started (the pid-file pid).
    pub monitor: Option<Pid>,
    /// The container's init, once known.
    pub init: Option<ProcRef>,
}

impl Cx<'_> {
    /// Write the state as it is now (record before act).
    pub fn save(&self) -> Result<()> {
        self.rt.store.save(&self.state)
    }

    /// Record the monitor before anything that may take long, so that a
    /// create killed meanwhile leaves a monitor `delete` can find.
    pub fn record_monitor(&mut self, monitor: Pid) -> Result<()> {
        self.monitor = Some(monitor);
        self.state.monitor = crate::proc::proc_ref(monitor.as_raw());
        self.save()
    }
}

/// One engine. A value is made per command ([`for_backend`] for create,
/// [`for_record`] for the rest) and may keep what a create plans between
/// its steps.
pub trait Engine {
    /// Check everything this engine needs (config, secrets, spec,
    /// annotations) before anything is made. Nothing is made here.
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()>;

    /// The engine's record before anything is made.
    fn record(&self) -> EngineRecord;

    /// Make what the rootfs lives on, recorded in `cx.state` first; returns
    /// the rootfs path the container gets.
    fn provision(&mut self, cx: &mut Cx, req: &Request) -> Result<PathBuf>;

    /// Host uid and gid of the container's root, when it is mapped (a user
    /// namespace): its exchange files must be its.
    fn mapped_root(&self, spec: &Spec) -> Option<(u32, u32)>;

    /// Make the directory the exchange files live in (`cx.paths.exchange`,
    /// or a place it links to), recorded first.
    fn exchange_dir(&mut self, cx: &mut Cx, mapped_root: Option<(u32, u32)>) -> Result<PathBuf> {
        exchange_dir(cx.rt, &cx.state.id, &cx.paths, mapped_root)
    }

    /// The spec in the engine's terms: LXC keys (only those the engine
    /// writes) and the init's part.
    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation>;

    /// Write the engine's configuration (and, for a guest, make it), after
    /// the exchange files exist and before anything runs.
    fn configure(&mut self, cx: &mut Cx, req: &Request, tr: &Translation) -> Result<()>;

    /// Start the container with its init waiting for `start`; returns our
    /// monitor (a child of ours). The monitor is recorded
    /// ([`Cx::record_monitor`]) before it does anything (an
    /// [`crate::exchange::Gate`]), so a crash of ours never leaves a process
    /// that no record names. `stdio`: what becomes the container's 0-2 (a
    /// pty's /dev/null), None for ours.
    fn start(&mut self, cx: &mut Cx, stdio: Option<&std::os::fd::OwnedFd>) -> Result<Pid>;

    /// How long create waits for the init's `ready` (a VM boots first).
    fn ready_timeout(&self, rt: &Runtime) -> Duration {
        Duration::from_secs(rt.config.lxc.start_timeout_secs)
    }

    /// `kill` sent SIGKILL to the init: stop what the signal cannot reach.
    fn killed(&self, _rt: &Runtime, _st: &ContainerState) -> Result<()> {
        Ok(())
    }

    /// Asked while create waits for the init: why the start failed, when
    /// the engine knows before the init can say.
    fn start_failed(&mut self, _rt: &Runtime, _paths: &Paths) -> Option<String> {
        None
    }

    /// Asked while create waits for the init: is what `start` began still
    /// on its way (`monitor`: what `start` returned)?
    fn still_starting(&self, _paths: &Paths, monitor: Pid) -> bool {
        crate::exchange::child_running(monitor)
    }

    /// The container's init. `early`: asked by the mount hook, before the
    /// init has reported ready.
    fn find_init(&self, rt: &Runtime, paths: &Paths, monitor: Pid, early: bool) -> Option<ProcRef>;

    /// The init reported ready: finish what the start began.
    fn started(&mut self, _rt: &Runtime) -> Result<()> {
        Ok(())
    }

    /// Whether `create --preserve-fds` can reach the container's process:
    /// the init, started by this command, takes them over the exchange dir.
    fn passes_fds(&self) -> bool {
        false
    }

    /// The container is created: hand it over to whoever reaps the pid-file
    /// process (containerd's shim, `run`), and return that process: the
    /// container's own process where the engine can make it so (as runc),
    /// else a monitor that ends with it.
    fn hand_over(&mut self, cx: &mut Cx, init: ProcRef) -> Result<ProcRef>;

    /// How long an undone create waits for the monitor to end by itself.
    fn monitor_grace(&self, paths: &Paths) -> Duration;

    /// The init was never known (a create that died early): stop whatever
    /// of the container may still wait for it. Every engine's monitor
    /// (lxc-start, ours) is killed; destroy then removes the rest.
    fn stop_without_init(&self, st: &ContainerState) {
        if let Some(m) = st.monitor.filter(crate::proc::is_alive) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(m.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Remove everything the record holds (guest, volume). Undoes a failed
    /// create and ends `delete`; an error keeps the state for a retry.
    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()>;

    /// `update` changed the cgroups: make the engine's own view follow.
    fn update_limits(
        &self,
        _rt: &Runtime,
        _st: &ContainerState,
        _merged: &LinuxResources,
    ) -> Result<()> {
        Ok(())
    }
}

/// The engine for a new container.
pub fn for_backend(backend: Backend) -> Result<Box<dyn Engine>> {
    match backend {
        Backend::Lxc => Ok(Box::new(lxc::LxcEngine::default())),
        Backend::PveLxc => Ok(Box::new(pve_lxc::PveLxcEngine::default())),
        Backend::PveVm => Ok(Box::new(pve_vm::PveVmEngine::default())),
    }
}

/// The engine of an existing container.
pub fn for_record(rec: &EngineRecord) -> Box<dyn Engine> {
    match rec {
        EngineRecord::Lxc(_) => Box::new(lxc::LxcEngine::default()),
        EngineRecord::PveLxc(_) => Box::new(pve_lxc::PveLxcEngine::default()),
        EngineRecord::PveVm(_) => Box::new(pve_vm::PveVmEngine::default()),
        EngineRecord::PodMember(_) => Box::new(pod_member::PodMemberEngine::default()),
        EngineRecord::VmMember(_) => Box::new(vm_member::VmMemberEngine::default()),
    }
}

/// What each engine may leave behind after a crash, for `gc`.
pub fn leftover_sources() -> Vec<Box<dyn LeftoverSource>> {
    vec![
        Box::new(lxc::OrphanVolumes),
        Box::new(pve_lxc::OrphanCts),
        Box::new(pve_vm::OrphanVms),
    ]
}

/// The container's LXC log (both engines run LXC): its last ERROR lines,
/// for error messages.
pub fn log_errors(paths: &Paths) -> String {
    let text = std::fs::read_to_string(&paths.log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(|l| l.split(" - ").last().unwrap_or(l))
        .collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

/// The directory a new container's exchange files live in: its own, or for
/// a mapped root one under `[lxc] exchange_dir` it can traverse.
pub(crate) fn exchange_dir(
    rt: &Runtime,
    id: &str,
    paths: &Paths,
    mapped_root: Option<(u32, u32)>,
) -> Result<PathBuf> {
    match mapped_root {
        None => Ok(paths.exchange.clone()),
        Some(_) => crate::exchange::make_exchange(
            &rt.config.lxc.exchange_dir,
            &rt.store.root,
            id,
            &paths.exchange,
        ),
    }
}
