//! The OCI lifecycle: create, start, state, kill, delete, run, list.
//!
//! creating -> created -> running -> stopped, as the runtime spec says;
//! `refresh` reconciles a recorded status with the processes, so a container
//! whose process exited reads as stopped without another command.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use proxmox_lxcri_cgroups::Cgroup;

use crate::config::Config;
use crate::engine;
use crate::error::{Error, Result};
use crate::events;
use crate::exchange::{self, Paths};
use crate::hooks::{self, Place};
use crate::id;
use crate::proc;
use crate::state::{ContainerState, Status, Store};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

pub struct Runtime {
    pub store: Store,
    pub config: Config,
    /// The Proxmox API client, made on first use by the pve-* engines.
    pub(crate) pve_client: std::sync::OnceLock<pve_client::Client>,
    /// `[storage]`, made on first use.
    pub(crate) storage: std::sync::OnceLock<storage::Storage>,
    /// API exchanges of the current operation, filled by the client's
    /// observer and drained into the events log.
    pub(crate) api_log: std::sync::Arc<std::sync::Mutex<Vec<pve_client::ApiRequest>>>,
    /// The engine `create` chose (known before there is a state to read it from).
    pub(crate) chosen_engine: std::sync::Mutex<Option<&'static str>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, config: Config) -> Self {
        // One spelling per root: it goes into CT descriptions and volume
        // owners, which cleanup compares.
        let root = normalize(&absolute(&root.into()));
        Runtime {
            store: Store::new(root),
            config,
            pve_client: std::sync::OnceLock::new(),
            storage: std::sync::OnceLock::new(),
            api_log: Default::default(),
            chosen_engine: Default::default(),
        }
    }

    /// The API requests made since the last call (or the last logged
    /// operation). A long-lived user of a Runtime that makes API calls
    /// outside operations (the exporter's /healthz runs gc --dry-run) drains
    /// them here, so they do not pile up.
    pub fn take_api_requests(&self) -> Vec<pve_client::ApiRequest> {
        std::mem::take(&mut *lock(&self.api_log))
    }

    fn image_cache_stats(&self) -> (u64, u64) {
        self.storage
            .get()
            .map(|s| s.image_cache_stats())
            .unwrap_or((0, 0))
    }

    /// Run `op`, then append its outcome (engine, error kind, API requests,
    /// image cache lookups) to the events log.
    fn logged<T>(&self, id: &str, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        lock(&self.api_log).clear();
        *lock(&self.chosen_engine) = None;
        // Only a valid id names a state file (the op itself reports a bad one).
        let engine_before = id::validate(id)
            .ok()
            .and_then(|_| self.store.load(id).ok())
            .map(|s| s.engine.name());
        let cache_before = self.image_cache_stats();
        let r = f();
        let took = t.elapsed();
        let (result, error_kind) = match &r {
            Ok(_) => ("ok".to_string(), None),
            Err(e) => (e.to_string(), Some(e.kind())),
        };
        let cache_after = self.image_cache_stats();
        let api = lock(&self.api_log)
            .drain(..)
            .map(|r| events::ApiCall::from(&r))
            .collect();
        events::record(
            &self.store,
            &self.config.events,
            events::Outcome {
                id,
                operation: op,
                result: &result,
                error_kind,
                took,
                engine: engine_before.or(*lock(&self.chosen_engine)),
                api,
                image_cache: (
                    (cache_after.0 - cache_before.0) as u32,
                    (cache_after.1 - cache_before.1) as u32,
                ),
            },
        );
        r
    }

    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<()> {
        self.logged(id, "create", || self.create_inner(id, opts).map(|_| ()))
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.logged(id, "start", || {
            id::validate(id)?;
            let _lock = self.store.lock(id)?;
            let mut st = self.refresh(self.store.load(id)?);
            if st.status != Status::Created {
                return Err(bad_state(&st, "start", "created"));
            }
            let init = st.init.expect("created containers have an init");
            let paths = Paths::new(&self.store.dir(id), id);
            let timeout = Duration::from_secs(self.config.lxc.start_timeout_secs);
            let agent = crate::seccomp_agent::Handover::prepare(self, id, &paths)?;
            let res = exchange::release(&paths, &init, timeout).and_then(|_| match agent {
                Some(a) => a.hand_over(&st, init.pid, timeout),
                None => Ok(()),
            });
            if let Err(e) = res {
                // A failed start (startContainer hook, exec, the seccomp
                // agent) ends the container.
                let _ = exchange::signal_init(&paths, &init, Signal::SIGKILL);
                return Err(e);
            }
            st.status = Status::Running;
            self.store.save(&st)?;
            let spec = self.stored_spec(id)?;
            if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone()) {
                let json = serde_json::to_vec(&st.oci_json()).expect("state serializes");
                // runtime-spec 1.2: a poststart failure is a warning.
                if let Err(e) = hooks::run_all(
                    "poststart",
                    &h,
                    &json,
                    Place::Runtime,
                    &self.store.dir(id).join("hooks"),
                ) {
                    tracing::warn!("{e}");
                }
            }
            Ok(())
        })
    }

    /// The container's state, reconciled with its processes.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        id::validate(id)?;
        Ok(self.refresh(self.store.load(id)?))
    }

    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let mut out = vec![];
        for id in self.store.list()? {
            if let Ok(st) = self.store.load(&id) {
                out.push(self.refresh(st));
            }
        }
        Ok(out)
    }

    /// Reconcile a recorded status with reality (no lock, no write).
    pub fn refresh(&self, mut st: ContainerState) -> ContainerState {
        let paths = Paths::new(&self.store.dir(&st.id), &st.id);
        match st.status {
            Status::Created | Status::Running | Status::Paused => {
                // The pid-file process, where it is not the init itself,
                // ends once the container has (its reaper has been told).
                let ended = st.monitor.as_ref().is_some_and(|m| !proc::is_alive(m));
                if ended || !st.init.as_ref().is_some_and(proc::is_alive) {
                    st.status = Status::Stopped;
                }
            }
            Status::Creating => {
                // A create that died half-way: stopped once nothing runs.
                let live = st.init.as_ref().is_some_and(proc::is_alive)
                    || st.monitor.as_ref().is_some_and(proc::is_alive);
                if !live {
                    st.status = Status::Stopped;
                }
            }
            Status::Stopped => {}
        }
        if st.status == Status::Running {
            let paused = match st.engine {
                // Suspended by `pause` (the VM, not a cgroup).
                engine::EngineRecord::PveVm(_) => {
                    paths.exchange.join(engine::pve_vm::FILE_PAUSED).exists()
                }
                _ => st.init.is_some_and(|i| Cgroup::of_pid(i.pid).is_frozen()),
            };
            if paused {
                st.status = Status::Paused;
            }
        }
        if st.status == Status::Stopped && st.exit_status.is_none() {
            st.exit_status = exchange::exit_code(&paths.exchange);
        }
        st
    }

    /// Sends `sig` to the container's init (with `all`, to every process of
    /// its cgroup first). `None` is signal 0: only whether it is alive.
    pub fn kill(&self, id: &str, sig: Option<Signal>, all: bool) -> Result<()> {
        self.logged(id, "kill", || {
            id::validate(id)?;
            let _lock = self.store.lock(id)?;
            let st = self.refresh(self.store.load(id)?);
            if !matches!(
                st.status,
                Status::Created | Status::Running | Status::Paused
            ) {
                return Err(Error::NotRunning(id.into()));
            }
            // Signal 0: the status check above is the answer (refresh
            // reconciled it with the processes), as kill(2) with 0 is.
            let Some(sig) = sig else { return Ok(()) };
            let init = st.init.expect("live containers have an init");
            let paths = Paths::new(&self.store.dir(id), id);
            // A VM's processes are in the guest; our monitor's cgroup is
            // the caller's (containerd's), never to be signalled whole.
            let in_guest = st.engine.in_vm();
            if all && !in_guest {
                for pid in Cgroup::of_pid(init.pid).pids() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
                }
            }
            exchange::signal_init(&paths, &init, sig)?;
            if sig == Signal::SIGKILL {
                engine::for_record(&st.engine).killed(self, &st)?;
            }
            // A frozen task dies of SIGKILL only once thawed.
            if st.status == Status::Paused && sig == Signal::SIGKILL && !in_guest {
                let _ = Cgroup::of_pid(init.pid).thaw();
            }
            Ok(())
        })
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.delete_if(id, force, |_| true)
    }

    /// `delete`, but only if the recorded state, read under the lock, still
    /// passes `still`: `gc` must not remove a container that was deleted and
    /// created anew under the same id after it looked.
    pub(crate) fn delete_if(
        &self,
        id: &str,
        force: bool,
        still: impl FnOnce(&ContainerState) -> bool,
    ) -> Result<()> {
        self.logged(id, "delete", || {
            id::validate(id)?;
            let lock = match self.store.lock(id) {
                // runc: deleting what is not there is fine with --force
                // (containerd's shim always calls delete --force).
                Err(Error::NotFound(_)) if force => {
                    crate::network::release_all(self, id);
                    exchange::remove_exchange(&self.store.dir(id));
                    let _ = self.store.remove(id);
                    return Ok(());
                }
                other => other?,
            };
            let recorded = match self.store.load(id) {
                // Torn by a power loss: only a state naming nothing that
                // outlives a reboot is written without fsync (Store::save),
                // so there is nothing left to destroy but the directory.
                Err(Error::CorruptState { path, reason }) if force => {
                    tracing::warn!(
                        "{}: {reason}; removing the container's directory",
                        path.display()
                    );
                    exchange::remove_exchange(&self.store.dir(id));
                    self.store.remove(id)?;
                    drop(lock);
                    return Ok(());
                }
                other => other?,
            };
            if !still(&recorded) {
                return Ok(());
            }
            let st = self.refresh(recorded);
            let paths = Paths::new(&self.store.dir(id), id);
            match st.status {
                Status::Stopped => {}
                // runc deletes a created container by killing it.
                Status::Created | Status::Creating => {}
                Status::Running | Status::Paused if force => {}
                // runc: fails, changes nothing.
                _ => {
                    return Err(Error::NotStopped {
                        id: st.id.clone(),
                        status: st.status.to_string(),
                    })
                }
            }
            let engine = engine::for_record(&st.engine);
            if let Some(init) = st.init {
                exchange::signal_init(&paths, &init, Signal::SIGKILL)?;
                // (A VM's monitor is in the caller's cgroup, never frozen.)
                if st.status == Status::Paused && !st.engine.in_vm() {
                    let _ = Cgroup::of_pid(init.pid).thaw();
                }
            } else {
                // A create that died before the init was known.
                engine.stop_without_init(&st);
            }
            wait_gone(&st, Duration::from_secs(10));
            if let Ok(spec) = self.stored_spec(id) {
                if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
                    let mut s = st.clone();
                    s.status = Status::Stopped;
                    let json = serde_json::to_vec(&s.oci_json()).expect("state serializes");
                    // A poststop failure is a warning (runtime-spec).
                    if let Err(e) = hooks::run_all(
                        "poststop",
                        &h,
                        &json,
                        Place::Runtime,
                        &self.store.dir(id).join("hooks"),
                    ) {
                        tracing::warn!("{e}");
                    }
                }
            }
            // What the engine made first: if it cannot go, the state stays
            // for a retry.
            engine.destroy(self, &st)?;
            crate::network::release_all(self, id);
            exchange::remove_exchange(&self.store.dir(id));
            self.store.remove(id)?;
            drop(lock);
            Ok(())
        })
    }

    /// create + start, then (unless detached) wait for the container's end,
    /// delete it and return its exit status.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        if !detach {
            // The container's process comes to us when create hands it over
            // (as to containerd's shim): we reap it and learn its status.
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        // runc: in the foreground, a process that wants a terminal and got
        // no --console-socket gets the caller's.
        let own_console = if !detach && opts.console_socket.is_none() && wants_terminal(opts) {
            crate::id::validate(id)?;
            let dir = self.store.root.join("runtime");
            Some(crate::terminal::ConsoleListener::bind(
                &dir,
                &format!("console-{id}-{}.sock", std::process::id()),
            )?)
        } else {
            None
        };
        let with_console;
        let opts = match &own_console {
            Some(l) => {
                with_console = CreateOptions {
                    console_socket: Some(l.path().to_path_buf()),
                    ..opts.clone()
                };
                &with_console
            }
            None => opts,
        };
        let monitor = self.logged(id, "create", || self.create_inner(id, opts))?;
        let relay = match own_console.map(|l| l.relay()).transpose() {
            Ok(r) => r,
            Err(e) => {
                let _ = self.delete(id, true);
                return Err(e);
            }
        };
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        let code = wait_monitor_forwarding_signals(self, id, monitor);
        let _ = self.delete(id, true);
        // The container's last output, and the caller's terminal back.
        drop(relay);
        Ok(code)
    }

    pub(crate) fn stored_spec(&self, id: &str) -> Result<Spec> {
        let p = self.store.dir(id).join("config.json");
        Spec::load(&p).map_err(|e| Error::Spec(format!("{}: {e}", p.display())))
    }
}

/// Whether the bundle's process asks for a terminal (false when the bundle
/// cannot be read: create reports that properly).
fn wants_terminal(opts: &CreateOptions) -> bool {
    std::fs::read(opts.bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

fn bad_state(st: &ContainerState, action: &'static str, needs: &'static str) -> Error {
    Error::BadState {
        id: st.id.clone(),
        status: st.status.to_string(),
        action,
        needs,
    }
}

/// `a/./b/../c/` -> `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Wait until the container's init and our monitor have ended (a zombie
/// waiting for the shim's reaping counts as ended).
fn wait_gone(st: &ContainerState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // A zombie init waits for its reaper (the shim): it has ended.
        let init_live = st.init.as_ref().is_some_and(proc::is_alive);
        let mon_live = st.monitor.as_ref().is_some_and(proc::is_alive);
        if !init_live && !mon_live {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `run` in the foreground: forward the usual termination signals to the
/// container, and return its exit status when the pid-file process ends.
fn wait_monitor_forwarding_signals(rt: &Runtime, id: &str, monitor: Pid) -> i32 {
    proxmox_lxcri_lxc::attach::wait_forwarding(monitor, |s| {
        let _ = rt.kill(id, Some(s), false);
    })
    .or_else(|| rt.state(id).ok().and_then(|s| s.exit_status))
    .unwrap_or(255)
}
