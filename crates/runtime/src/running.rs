//! Operations on a live container: exec, ps, pause/resume, update and
//! stats, all through the container init's cgroups and namespaces.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxResources, Process};
use proxmox_lxcri_cgroups::{Cgroup, CgroupLayout};
use proxmox_lxcri_lxc::attach::{self, Spawned};
use proxmox_lxcri_lxc::config::resource_settings;
use proxmox_lxcri_lxc::init_config::{InitConfig, FILE_INIT_CONFIG};
use serde_json::json;

use crate::error::{Context, Error, Result};
use crate::proc;
use crate::runtime::{absolute, Runtime};
use crate::state::{write_atomic, ContainerState, Status};

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    /// runc's `--ignore-paused`: exec into a paused container (the process
    /// stays frozen with it until `resume`).
    pub ignore_paused: bool,
    /// `--preserve-fds N`: the caller's fds 3..3+N go to the process.
    pub preserve_fds: u32,
    /// `--cgroup [ctrl:]path`: sub-cgroups of the container's to run in.
    pub cgroups: Vec<String>,
}

impl Runtime {
    /// The live container, or an error saying why it is not.
    fn live(&self, id: &str, action: &'static str, allowed: &[Status]) -> Result<ContainerState> {
        crate::id::validate(id)?;
        let st = self.refresh(self.store.load(id)?);
        if !allowed.contains(&st.status) {
            return Err(Error::BadState {
                id: id.into(),
                status: st.status.to_string(),
                action,
                needs: if allowed.contains(&Status::Paused) {
                    "running or paused"
                } else {
                    "running"
                },
            });
        }
        Ok(st)
    }

    /// The container's own process settings (seccomp, caps, env ...).
    pub fn container_process(&self, id: &str) -> Result<InitConfig> {
        let p = self.store.dir(id).join("exchange").join(FILE_INIT_CONFIG);
        let data = fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptState {
            path: p,
            reason: e.to_string(),
        })
    }

    /// Run `process` in the container; returns its exit status, or 0 once
    /// started with `detach` (its pid then goes to the pid file).
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        let allowed: &[Status] = if opts.ignore_paused {
            &[Status::Created, Status::Running, Status::Paused]
        } else {
            &[Status::Created, Status::Running]
        };
        let st = self.live(id, "exec", allowed)?;
        let init = st.init.expect("live containers have an init");
        let container = self.container_process(id)?;
        let mut cfg =
            attach::init_config_for(process, &container).map_err(|e| Error::Spec(e.to_string()))?;
        let sub_cgroups = attach::SubCgroups::parse(&opts.cgroups).map_err(Error::Spec)?;
        for fd in 3..3 + opts.preserve_fds as i32 {
            // SAFETY: F_GETFD on a number.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(Error::Spec(format!(
                    "--preserve-fds {}: fd {fd} is not open",
                    opts.preserve_fds
                )));
            }
        }
        cfg.preserve_fds = opts.preserve_fds;
        if st.engine.in_vm() {
            if opts.preserve_fds > 0 || !sub_cgroups.is_empty() {
                return Err(Error::Unsupported(
                    "exec --preserve-fds and --cgroup are not supported by the pve-vm engine \
                     (the process runs in the guest, through its agent)"
                        .into(),
                ));
            }
            // The process runs in the guest, through its agent (a pod
            // member's: through the pod sandbox's monitor, in the member).
            let (paths, member) = match &st.engine {
                crate::engine::EngineRecord::VmMember(r) => (
                    crate::exchange::Paths::new(&self.store.dir(&r.sandbox), &r.sandbox),
                    Some(id.to_string()),
                ),
                _ => (crate::exchange::Paths::new(&self.store.dir(id), id), None),
            };
            let pid_file = opts.pid_file.as_ref().map(|p| absolute(p));
            return crate::engine::pve_vm::exec::exec(&paths, &st, cfg, opts, member, |pid| {
                match &pid_file {
                    Some(p) => crate::state::write_replace(p, pid.to_string().as_bytes()),
                    None => Ok(()),
                }
            });
        }
        let mut relay = None;
        let console = match (cfg.terminal, &opts.console_socket) {
            (true, Some(sock)) => Some(crate::sockpath::connect(sock).map_err(|e| {
                Error::Spec(format!(
                    "--console-socket {}: cannot connect: {e}",
                    sock.display()
                ))
            })?),
            (true, None) if opts.detach => {
                return Err(Error::Spec(
                    "exec with a terminal and --detach needs --console-socket".into(),
                ))
            }
            // A terminal in the foreground: a pty of the container's,
            // relayed to the caller's terminal (as runc; making the
            // caller's own terminal the process's controlling one fails).
            (true, None) => {
                let mut l = crate::terminal::ConsoleListener::bind(
                    &self.store.root.join("runtime"),
                    &format!("console-exec-{id}-{}.sock", std::process::id()),
                )?;
                let s = crate::sockpath::connect(l.path())
                    .ctx(|| "connecting to our console socket".into())?;
                l.unlink();
                relay = Some(l.relay_in_child()?);
                Some(s)
            }
            (false, _) => None,
        };
        // The pid file is written after we joined the container's mount
        // namespace: hold its directory from here.
        let pid_dir = match &opts.pid_file {
            Some(pf) => {
                let pf = absolute(pf);
                let dir = pf.parent().unwrap_or(Path::new("/")).to_path_buf();
                let d = fs::File::open(&dir)
                    .ctx(|| format!("--pid-file directory {}", dir.display()))?;
                Some((
                    d,
                    pf.file_name().map(|n| n.to_os_string()).unwrap_or_default(),
                ))
            }
            None => None,
        };
        // The pid file, in the foreground too (runc writes it before it
        // waits), once the process runs.
        tracing::debug!(
            "exec in {id} (init pid {}): args {:?}, terminal {}, detach {}",
            init.pid,
            cfg.args,
            cfg.terminal,
            opts.detach
        );
        // The seccomp agent, connected while we still see the host's paths.
        let agent = crate::seccomp_agent::Agent::for_profile(container.seccomp.as_ref())
            .map_err(|e| Error::Spec(format!("linux.seccomp.listenerPath: {e}")))?;
        let state = st.oci_json();
        let started = |pid: i32, notify: Option<std::os::fd::OwnedFd>| {
            tracing::debug!("exec in {id}: process started, host pid {pid}");
            if let (Some(a), Some(fd)) = (&agent, &notify) {
                a.send(&state, pid, fd).map_err(|e| {
                    std::io::Error::other(format!("linux.seccomp.listenerPath: {e}"))
                })?;
            }
            match &pid_dir {
                Some((dir, name)) => write_at(dir, name, pid.to_string().as_bytes())
                    .map_err(|e| std::io::Error::other(format!("writing the pid file: {e}"))),
                None => Ok(()),
            }
        };
        let spawned = attach::exec(init.pid, cfg, console, opts.detach, &sub_cgroups, started)
            .map_err(|e| Error::Start {
                id: id.into(),
                reason: e.to_string(),
            })?;
        // The process's last output, and the caller's terminal back.
        drop(relay);
        if let Spawned::Exited(code) = &spawned {
            tracing::debug!("exec in {id}: exited with {code}");
        }
        match spawned {
            Spawned::Detached(_) => Ok(0),
            Spawned::Exited(code) => Ok(code),
        }
    }

    /// Host pids of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        // A stopped container has no processes (runc prints an empty list).
        let st = self.live(
            id,
            "ps",
            &[
                Status::Created,
                Status::Running,
                Status::Paused,
                Status::Stopped,
            ],
        )?;
        if st.status == Status::Stopped {
            return Ok(vec![]);
        }
        // The shim knows the container by the pid-file pid (our monitor),
        // so it is listed first, as runc lists the container's init.
        let mut pids: Vec<i32> = st
            .monitor
            .filter(proc::is_alive)
            .map(|m| m.pid)
            .into_iter()
            .collect();
        // A VM's processes are in the guest; on the host there is only
        // our monitor (its cgroup is the caller's, not the container's).
        if st.engine.in_vm() {
            return Ok(pids);
        }
        pids.extend(Cgroup::of_pid(st.init.expect("live").pid).pids());
        Ok(pids)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.live(id, "pause", &[Status::Running])?;
        if let crate::engine::EngineRecord::VmMember(_) = st.engine {
            return Err(Error::Unsupported(
                "pause of one container of a pod in a VM (pve-vm): the VM is paused as a whole, \
                 through the pod's sandbox"
                    .into(),
            ));
        }
        if let crate::engine::EngineRecord::PveVm(_) = st.engine {
            let paths = crate::exchange::Paths::new(&self.store.dir(id), id);
            return crate::engine::pve_vm::pause(self, &st, &paths, true);
        }
        Ok(Cgroup::of_pid(st.init.expect("live").pid).freeze()?)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.live(id, "resume", &[Status::Paused])?;
        if let crate::engine::EngineRecord::VmMember(_) = st.engine {
            return Err(Error::Unsupported(
                "resume of one container of a pod in a VM (pve-vm): the VM is paused as a whole, \
                 through the pod's sandbox"
                    .into(),
            ));
        }
        if let crate::engine::EngineRecord::PveVm(_) = st.engine {
            let paths = crate::exchange::Paths::new(&self.store.dir(id), id);
            return crate::engine::pve_vm::pause(self, &st, &paths, false);
        }
        Ok(Cgroup::of_pid(st.init.expect("live").pid).thaw()?)
    }

    /// Change the resources of a live container in place.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.live(
            id,
            "update",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        // A VM's limits are its options (update_limits below); its
        // monitor's cgroup is the caller's.
        let in_vm = st.engine.in_vm();
        let cg = Cgroup::of_pid(st.init.expect("live").pid);
        let layout = CgroupLayout::detect()?;
        let settings = if in_vm {
            vec![]
        } else {
            resource_settings(resources, &layout)?
        };
        // Some writes depend on others (memory.limit before memsw when
        // raising, the reverse when lowering): retry what failed once.
        let mut failed = vec![];
        for (key, value) in &settings {
            if let Err(e) = cg.set(key, value) {
                failed.push((key, value, e));
            }
        }
        for (key, value, _) in std::mem::take(&mut failed) {
            if let Err(e) = cg.set(key, value) {
                failed.push((key, value, e));
            }
        }
        if let Some((key, value, e)) = failed.into_iter().next() {
            return Err(Error::Update(format!("update {key}={value}: {e}")));
        }
        // Keep the stored spec in step, for a later look at config.json.
        let p = self.store.dir(id).join("config.json");
        let mut merged = None;
        if let Ok(mut spec) = oci_spec::runtime::Spec::load(&p) {
            if let Some(linux) = spec.linux_mut() {
                let mut m = linux.resources().clone().unwrap_or_default();
                merge_resources(&mut m, resources);
                linux.set_resources(Some(m.clone()));
                let _ = write_atomic(&p, &serde_json::to_vec_pretty(&spec).unwrap_or_default());
                merged = Some(m);
            }
        }
        // The engine's view follows (a Proxmox CT's options).
        if let Some(m) = merged {
            crate::engine::for_record(&st.engine).update_limits(self, &st, &m)?;
        }
        Ok(())
    }

    /// runc's `events --stats` object for the container.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let st = self.live(
            id,
            "events",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        // A VM's cgroups are the guest's: the host has none of its own to
        // report (the monitor's is the caller's).
        if st.engine.in_vm() {
            return Ok(json!({"type": "stats", "id": id, "data": {}}));
        }
        let pid = st.init.expect("live").pid;
        Ok(json!({"type": "stats", "id": id, "data": Cgroup::of_pid(pid).stats()}))
    }

    /// Poll until the container stops or is deleted, calling `emit` with
    /// its stats every `interval` and with `{"type": "oom"}` whenever the
    /// OOM killer killed in its memory cgroup since the last look (as runc).
    pub fn watch(
        &self,
        id: &str,
        interval: Duration,
        mut emit: impl FnMut(serde_json::Value),
    ) -> Result<()> {
        // The cgroup is found while the container lives and kept: an OOM
        // kill of its init must still be seen after it is gone.
        let st = self.live(
            id,
            "events",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        // Not a VM's: its monitor's cgroup is the caller's.
        let mem = st
            .init
            .filter(|_| !st.engine.in_vm())
            .and_then(|i| Cgroup::of_pid(i.pid).memory_dir());
        let oom_kills = || mem.as_deref().and_then(Cgroup::oom_kills).unwrap_or(0);
        let mut seen = oom_kills();
        loop {
            let now = oom_kills();
            if now > seen {
                emit(json!({"type": "oom", "id": id}));
                seen = now;
            }
            match self.stats(id) {
                Ok(v) => emit(v),
                Err(Error::BadState { .. } | Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
            std::thread::sleep(interval);
        }
    }
}

/// Overlay the fields `update` was given onto the stored resources.
fn merge_resources(base: &mut LinuxResources, new: &LinuxResources) {
    // Field by field: `update --cpu-quota` keeps the period, shares, cpus.
    if let Some(n) = new.memory() {
        let mut m = base.memory().unwrap_or_default();
        if n.limit().is_some() {
            m.set_limit(n.limit());
        }
        if n.swap().is_some() {
            m.set_swap(n.swap());
        }
        if n.reservation().is_some() {
            m.set_reservation(n.reservation());
        }
        base.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c = base.cpu().clone().unwrap_or_default();
        if n.shares().is_some() {
            c.set_shares(n.shares());
        }
        if n.quota().is_some() {
            c.set_quota(n.quota());
        }
        if n.period().is_some() {
            c.set_period(n.period());
        }
        if n.cpus().is_some() {
            c.set_cpus(n.cpus().clone());
        }
        if n.mems().is_some() {
            c.set_mems(n.mems().clone());
        }
        base.set_cpu(Some(c));
    }
    if new.pids().is_some() {
        base.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        base.set_block_io(new.block_io().clone());
    }
}

/// Write `name` in the directory `dir` atomically (temp + rename), by fd.
fn write_at(dir: &fs::File, name: &std::ffi::OsStr, data: &[u8]) -> std::io::Result<()> {
    use nix::fcntl::{openat, renameat, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsRawFd, FromRawFd};
    let tmp = format!(".{}.tmp", name.to_string_lossy());
    let fd = openat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    // SAFETY: openat returned a new fd we own.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    std::io::Write::write_all(&mut f, data)?;
    f.sync_all()?;
    renameat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        Some(dir.as_raw_fd()),
        name,
    )?;
    Ok(())
}
