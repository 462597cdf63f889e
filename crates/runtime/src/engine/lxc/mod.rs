//! The lxc engine: runs a bundle with `lxc-start -F` on this host; with
//! `[storage]`, on a volume of its own.
//!
//! ```text
//! create ──fork──> monitor (setsid) ──exec──> lxc-start -F -q -P <dir> -n <id>
//!                                               └─ container init (/dev/.lxcri-init, pid 1)
//! create, once the init is ready:  SIGKILL lxc-start
//!   -> the init is re-parented to the nearest subreaper (containerd's shim; `run`)
//! start:  the init execs the OCI process in place: pid 1, and the --pid-file pid
//! ```
//! As with runc, the pid in `--pid-file` is the container's own process, so
//! the shim reaps its exact exit status and containerd finds the
//! container's namespaces under `/proc/<pid>/ns`. `lxc.monitor.signal.pdeath
//! = 0` lets the container outlive lxc-start; what lxc-start would have done
//! after the container's end (removing its cgroups) is done by `delete`.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Spec;
use proxmox_lxcri_lxc::config::{translate, TranslateContext, Translation};
use serde::{Deserialize, Serialize};

use super::{Cx, Engine, EngineRecord, Request};
use crate::error::{Context, Error, Result};
use crate::exchange::{self, Paths};
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::{write_replace, ContainerState};

mod copyup;
mod net;
mod volume;

pub use volume::{id_shift, OrphanVolumes};

/// What the lxc engine records: the rootfs volume from `[storage]`, before
/// it is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LxcRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<storage::Volume>,
    /// The container's and LXC's monitor cgroups (paths under each
    /// hierarchy's root), recorded before lxc-start makes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<String>,
    /// The tag of its port-security rules (nftables), before they are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<String>,
}

#[derive(Default)]
pub struct LxcEngine {
    /// The `[storage]` volume create will make (None: the bundle's rootfs
    /// in place, as runc).
    volume: Option<storage::VolumePlan>,
    /// Configured networks, one NIC each, when the container has a new
    /// network namespace of its own.
    networks: Vec<(String, proxmox_lxcri_network::Network)>,
    /// `io.proxmox-lxcri.net.ip`: the first NIC's fixed address.
    fixed_ip: Option<std::net::IpAddr>,
    /// The rootfs LXC runs on (what tmpfs copy-ups copy from).
    rootfs: Option<PathBuf>,
}

impl Engine for LxcEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        self.volume = volume::plan(rt, &req.id, &req.annotations, &req.spec)?;
        // Networks need a new network namespace; one the caller made (CNI,
        // a path) is the caller's: default_network does not apply there,
        // and naming a network is an error.
        let chosen = crate::network::chosen(rt, &req.annotations)?;
        if chosen.is_empty() {
            return Ok(());
        }
        if !net::own_netns(&req.spec) {
            if let Some(v) = req.annotations.get(crate::network::NETWORK_ANNOTATION) {
                return Err(Error::Spec(format!(
                    "annotation {}={v:?}: a container on a configured network needs a new \
                     network namespace (linux.namespaces: network without a path)",
                    crate::network::NETWORK_ANNOTATION
                )));
            }
            return Ok(());
        }
        if let Some(v) = req.annotations.get("io.proxmox-lxcri.net.ip") {
            self.fixed_ip = Some(v.split('/').next().unwrap_or_default().parse().map_err(|_| {
                Error::Spec(format!(
                    "annotation io.proxmox-lxcri.net.ip={v:?}: an address inside the network's subnet"
                ))
            })?);
        }
        self.networks = chosen;
        Ok(())
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::Lxc(LxcRecord::default())
    }

    fn provision(&mut self, cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        let rootfs = match &self.volume {
            Some(plan) => volume::make(cx, plan, &req.rootfs)?,
            None => req.rootfs.clone(),
        };
        self.rootfs = Some(rootfs.clone());
        Ok(rootfs)
    }

    fn mapped_root(&self, spec: &Spec) -> Option<(u32, u32)> {
        id_shift(spec).and_then(|s| Some((s.uid(0)?, s.gid(0)?)))
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        let mut tr = translate(spec, ctx)?;
        // The container outlives lxc-start (see hand_over), and the init
        // becomes the OCI process.
        tr.lxc.push("lxc.monitor.signal.pdeath", "0")?;
        tr.init.exec_in_place = true;
        Ok(tr)
    }

    fn configure(&mut self, cx: &mut Cx, req: &Request, tr: &Translation) -> Result<()> {
        let cgroups: Vec<String> = ["lxc.cgroup.dir.container", "lxc.cgroup.dir.monitor"]
            .iter()
            .flat_map(|k| tr.lxc.get(k))
            .map(str::to_string)
            .collect();
        // Before they are recorded: destroy must never touch a cgroup that
        // was someone else's.
        for cg in &cgroups {
            proxmox_lxcri_cgroups::tree::claim(cg)?;
        }
        if let EngineRecord::Lxc(rec) = &mut cx.state.engine {
            rec.cgroups = cgroups;
        }
        cx.save()?;
        let cfg = cx.paths.config_file();
        let dir = cfg.parent().expect("config has a parent");
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let lxc = if self.networks.is_empty() {
            tr.lxc.clone()
        } else {
            self.attach_networks(cx, req, tr, dir)?
        };
        write_replace(&cfg, lxc.render().as_bytes())?;
        if !tr.copyups.is_empty() {
            let rootfs = self.rootfs.as_deref().unwrap_or(&cx.state.rootfs);
            copyup::prepare(rootfs, &cx.paths.lxcpath.join("copyup"), &tr.copyups)?;
        }
        Ok(())
    }

    fn start(&mut self, cx: &mut Cx, stdio: Option<&OwnedFd>) -> Result<Pid> {
        let (pid, gate) = spawn_monitor(&cx.paths, &cx.rt.config.lxc.lxc_start, stdio)?;
        if let Err(e) = cx.record_monitor(pid) {
            drop(gate); // lxc-start never runs
            let _ = waitpid(pid, None);
            return Err(e);
        }
        gate.open()?;
        Ok(pid)
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

    fn passes_fds(&self) -> bool {
        true
    }

    fn hand_over(&mut self, cx: &mut Cx, init: ProcRef) -> Result<ProcRef> {
        // lxc-start must not stay the container's parent: the init goes to
        // the nearest subreaper, which reaps it as it reaps runc's.
        if let Some(m) = cx.monitor.take() {
            let _ = nix::sys::signal::kill(m, Signal::SIGKILL);
            let _ = waitpid(m, None);
        }
        // Saved with "created", right after (a create that dies in between
        // is undone as one whose monitor died: the init is recorded).
        cx.state.monitor = None;
        // The container's mounts are made: our side of the copy-ups goes.
        copyup::release(&cx.paths.lxcpath.join("copyup"));
        Ok(init)
    }

    fn monitor_grace(&self, _paths: &Paths) -> Duration {
        // The monitor ends once lxc-start has torn the container down.
        Duration::from_secs(10)
    }

    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        copyup::release(&rt.store.dir(&st.id).join("copyup"));
        if let EngineRecord::Lxc(rec) = &st.engine {
            for cg in &rec.cgroups {
                proxmox_lxcri_cgroups::tree::kill_and_remove(cg, Duration::from_secs(10))?;
            }
            if let Some(tag) = &rec.port_security {
                proxmox_lxcri_network::port_security::remove(tag)?;
            }
        }
        volume::destroy(rt, st)
    }
}

/// Fork `lxc-start -F` in its own session, held at a gate until recorded.
/// Returns its pid (our child until create hands the container over).
///
/// `stdio`: fds to become the container's 0, 1, 2 (a pty's /dev/null), or
/// None to pass ours through.
fn spawn_monitor(
    paths: &Paths,
    lxc_start: &Path,
    stdio: Option<&OwnedFd>,
) -> Result<(Pid, exchange::Gate)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<CString> = [
        lxc_start.as_os_str(),
        "-F".as_ref(),
        "-q".as_ref(),
        "-P".as_ref(),
        paths.lxcpath.as_os_str(),
        "-n".as_ref(),
        paths.name.as_ref(),
    ]
    .iter()
    .map(|a| CString::new(a.as_bytes()))
    .collect::<std::result::Result<_, _>>()
    .map_err(|_| crate::error::Error::Config("a NUL byte in the lxc-start command".into()))?;
    let slave = stdio.map(|f| f.as_raw_fd());
    let gate = exchange::Gate::new()?;
    // SAFETY: the CLI is single-threaded when it forks; the child only
    // juggles fds and execs.
    match unsafe { fork() }.ctx(|| "forking lxc-start".to_string())? {
        ForkResult::Parent { child } => Ok((child, gate)),
        ForkResult::Child => {
            if !gate.pass() {
                // SAFETY: as below.
                unsafe { libc::_exit(255) }
            }
            exchange::detach_monitor(slave, None);
            let _ = nix::unistd::execvp(&args[0], &args);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(255) }
        }
    }
}

/// Find the container init: the child of lxc-start.
fn find_init(lxc_start: Pid) -> Option<ProcRef> {
    for _ in 0..50 {
        if let Some(init) = proc::children(lxc_start.as_raw()).first() {
            if let Some(r) = proc::proc_ref(*init) {
                return Some(r);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

impl LxcEngine {
    /// Leases, bridges, isolation and port-security rules for the
    /// configured networks; the LXC config with their NICs.
    fn attach_networks(
        &self,
        cx: &mut Cx,
        req: &Request,
        tr: &Translation,
        dir: &Path,
    ) -> Result<proxmox_lxcri_lxc::config::LxcConfig> {
        // Leases before the NICs (a failed create releases them).
        let nics = crate::network::lease_all(cx.rt, &cx.state.id, &self.networks, self.fixed_ip)?;
        for (n, _) in &nics {
            proxmox_lxcri_network::bridge::ensure(n).map_err(|e| Error::Config(e.to_string()))?;
        }
        proxmox_lxcri_network::isolation::apply(&cx.rt.config.network)?;
        let mut lxc = net::with_nics(&tr.lxc, &nics)?;
        // Port security: the host ends get names of ours, and rules that
        // let through only the lease's MAC and addresses (recorded first).
        let secured: Vec<(String, proxmox_lxcri_network::Lease)> = nics
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n.port_security)
            .map(|(i, (_, l))| (net::host_ifname(&cx.state.id, i), l.clone()))
            .collect();
        if !secured.is_empty() {
            for (i, (n, _)) in nics.iter().enumerate() {
                if n.port_security {
                    lxc.push(
                        &format!("lxc.net.{i}.veth.pair"),
                        net::host_ifname(&cx.state.id, i),
                    )?;
                }
            }
            let tag = crate::network::rule_tag(cx.rt, &cx.state.id);
            if let EngineRecord::Lxc(rec) = &mut cx.state.engine {
                rec.port_security = Some(tag.clone());
            }
            cx.save()?;
            proxmox_lxcri_network::port_security::apply(&tag, &secured)?;
        }
        let own_resolv = req
            .spec
            .mounts()
            .iter()
            .flatten()
            .any(|m| m.destination() == Path::new("/etc/resolv.conf"));
        if let (false, Some(text)) = (own_resolv, net::resolv_conf(&nics)) {
            let (k, v) = net::resolv_mount(dir, &text)?;
            lxc.push(&k, v)?;
        }
        Ok(lxc)
    }
}
