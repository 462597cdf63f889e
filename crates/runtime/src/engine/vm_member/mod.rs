//! Containers of a pod whose sandbox is a Proxmox VE VM (pve-vm): they run
//! *inside* that VM, as Kata Containers runs a pod's containers in one VM.
//! A VM shares no directory with the node here (the guest kernel has no
//! 9p, and virtiofs needs a directory mapping and a virtiofsd), so each
//! container's files reach the guest as a disk of its own, hot-plugged
//! through the Proxmox API, as an admin would add one in the UI:
//!
//! ```text
//! plan:      the sandbox's state (a running pve-vm sandbox whose monitor
//!            takes requests); the spec's mounts in guest terms (bind
//!            sources become copies on the container's disk)
//! configure: POST /nodes/N/storage/S/content   a raw volume vm-<vmid>-lxcri-<hash of the id>
//!            GET  .../content/VOLUME            its path on the node
//!            --   mkfs.ext4 -d: rootfs/ = the bundle's rootfs, binds/<n> =
//!                 each bind source (a copy)
//!            GET  /nodes/N/qemu/VMID/config     a free virtio<n>, the digest
//!            PUT  /nodes/N/qemu/VMID/config     virtio<n>: VOLUME,serial=lxcri-virtio<n>
//!                                               (hot-plugged into the running VM)
//! start:     our monitor (the pid-file process) reaches the guest's agent
//!            through the sandbox monitor's exec socket, on a stream of its
//!            own: Member (the agent finds the disk by its serial, mounts
//!            it, makes the container's mount and pid namespaces, prepares
//!            the process) -> Ready; `start`: Start -> Started; stdio and
//!            the exit status as for the VM's own container
//! destroy:   PUT .../config delete=virtio<n>    (unplugged; the volume becomes unused<m>)
//!            PUT .../config delete=unused<m>    (the volume freed)
//! ```
//! Every step is recorded before it is made (the volume's name before the
//! allocation, its id after, the disk key before the PUT), so a failed or
//! crashed create is undone by `destroy` from the record alone.
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use proxmox_lxcri_agent_proto::pod::{
    GuestMount, MemberSpec, VM_DISK_BINDS, VM_DISK_ROOTFS, VM_POD_DIR,
};
use proxmox_lxcri_lxc::config::{translate_excluding, TranslateContext, Translation};
use pve_client::Params;
use serde::{Deserialize, Serialize};

use super::pve_lxc::{api, client, wait};
use super::{Cx, Engine, EngineRecord, Request};
use crate::error::{Error, Result};
use crate::exchange::Paths;
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::ContainerState;

/// File systems a member's spec may mount in the guest (besides binds).
const GUEST_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];
/// virtio0 is the sandbox's root; qemu-server numbers virtio disks 0-15.
const MAX_VIRTIO: u32 = 15;

/// What state.json records of a member of a VM pod, before each step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VmMemberRecord {
    /// The sandbox's container id.
    pub sandbox: String,
    pub node: String,
    /// The pod's VM.
    pub vmid: u32,
    /// The storage the container's disk is allocated on.
    pub storage: String,
    /// `vm-<vmid>-lxcri-<hash>`: recorded before the allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The allocated volume's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// `virtio<n>`: recorded before the disk is added to the VM's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_key: Option<String>,
}

fn record_of(st: &ContainerState) -> Option<&VmMemberRecord> {
    match &st.engine {
        EngineRecord::VmMember(r) => Some(r),
        _ => None,
    }
}

fn set_record(cx: &mut Cx, rec: &VmMemberRecord) -> Result<()> {
    cx.state.engine = EngineRecord::VmMember(rec.clone());
    cx.save()
}

/// Does a container of this sandbox run inside it (a pve-vm pod sandbox)?
pub fn runs_inside(sandbox: &ContainerState) -> bool {
    matches!(&sandbox.engine, EngineRecord::PveVm(r) if r.pve.as_ref().is_some_and(|p| p.vmid.is_some()))
        && super::pve_lxc::pod::is_sandbox(&sandbox.annotations)
}

/// The name of the container's volume: `vm-<vmid>-lxcri-<16 hex digits
/// of the container id's FNV-1a hash>` (Proxmox takes any `vm-<vmid>-`
/// name; a container id may be longer than a volume name should be).
fn volume_name(vmid: u32, id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vm-{vmid}-lxcri-{h:016x}")
}

/// The serial the container's disk carries (unique among the VM's disks:
/// one disk per key).
fn serial_for(key: &str) -> String {
    format!("lxcri-{key}")
}

#[derive(Default)]
pub struct VmMemberEngine {
    sandbox: Option<ContainerState>,
    rec: VmMemberRecord,
    /// The sandbox monitor's exec socket.
    socket: PathBuf,
    own_pid_ns: bool,
    mounts: Vec<GuestMount>,
    /// (n, host source) of each bind, copied to binds/<n> on the disk.
    binds: Vec<(usize, PathBuf)>,
    rlimits: Vec<(String, u64, u64)>,
    disk_bytes: u64,
    member: Option<MemberSpec>,
    boot_timeout: Duration,
}

impl VmMemberEngine {
    /// The engine for a new container of `sandbox`'s pod ([`runs_inside`]).
    pub fn for_sandbox(sandbox: ContainerState) -> Self {
        VmMemberEngine {
            sandbox: Some(sandbox),
            ..Default::default()
        }
    }
}

fn unsupported(msg: String) -> Error {
    Error::Unsupported(format!("{msg} (a container of a pod in a pve-vm VM)"))
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// The spec in guest terms: its mounts (bind sources as copies on the
/// disk), its pid namespace, rlimits; what a VM member cannot have refused
/// by field. Nothing is made.
fn check_spec(eng: &mut VmMemberEngine, id: &str, spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("process: required by create".into()))?;
    if process.terminal().unwrap_or(false) {
        return Err(unsupported(
            "process.terminal: no terminal yet (stdio is relayed as pipes)".into(),
        ));
    }
    super::pve_vm::refuse_hooks(spec)?;
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for (typ, name) in [
        (LinuxNamespaceType::Network, "network"),
        (LinuxNamespaceType::Ipc, "ipc"),
        (LinuxNamespaceType::Uts, "uts"),
    ] {
        // The pod's (a path, containerd's view of the sandbox) is the VM's.
        if nss.iter().any(|n| n.typ() == typ && n.path().is_none()) {
            return Err(unsupported(format!(
                "linux.namespaces: a {name} namespace of its own; a container of a pod in a VM \
                 shares the VM's"
            )));
        }
    }
    if nss.iter().any(|n| n.typ() == LinuxNamespaceType::User) {
        return Err(unsupported(
            "linux.namespaces: a user namespace (the VM is the isolation)".into(),
        ));
    }
    // Its own pid namespace unless it shares the pod's (a path).
    eng.own_pid_ns = !nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_some());
    let rootfs_bytes = super::pve_vm::tree_size(
        &spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default(),
    );
    let mut bytes = rootfs_bytes;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination().to_string_lossy().into_owned();
        super::pve_vm::check_destination(i, &dest)?;
        let mut opts = m.options().clone().unwrap_or_default();
        for o in &opts {
            if o.contains(['\0', '\n', ',']) {
                return Err(Error::Spec(format!("mounts[{i}] {dest}: option {o:?}")));
            }
        }
        let mut typ = m.typ().clone().unwrap_or_default();
        let mut source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "none".into());
        if is_bind(m) {
            if dest.trim_end_matches('/') == "/dev/shm" {
                // The pod's shm cannot be shared with a VM: a tmpfs of the
                // container's own.
                typ = "tmpfs".into();
                source = "shm".into();
                opts = ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
                    .map(String::from)
                    .to_vec();
            } else {
                let src = fs::canonicalize(&source).map_err(|e| {
                    Error::Spec(format!("mounts[{i}] {dest}: source {source:?}: {e}"))
                })?;
                let md = fs::metadata(&src).map_err(|e| {
                    Error::Spec(format!("mounts[{i}] {dest}: source {source:?}: {e}"))
                })?;
                if !md.is_file() && !md.is_dir() {
                    return Err(unsupported(format!(
                        "mounts[{i}] {dest}: source {source:?} is neither a file nor a directory"
                    )));
                }
                bytes += if md.is_dir() {
                    super::pve_vm::tree_size(&src)
                } else {
                    md.len() + 4096
                };
                let n = eng.binds.len();
                eng.binds.push((n, src));
                source = format!("{VM_POD_DIR}/{id}/{VM_DISK_BINDS}/{n}");
                typ = "bind".into();
            }
        } else if !GUEST_FS.contains(&typ.as_str()) {
            return Err(unsupported(format!(
                "mounts[{i}] {dest}: type {typ:?} (a guest mounts {} and copies of binds)",
                GUEST_FS.join(", ")
            )));
        }
        if source.contains(['\0', '\n']) {
            return Err(Error::Spec(format!(
                "mounts[{i}] {dest}: source {source:?}"
            )));
        }
        eng.mounts.push(GuestMount {
            destination: dest,
            typ,
            source,
            options: opts,
        });
    }
    for r in process.rlimits().iter().flatten() {
        eng.rlimits
            .push((super::pve_vm::rlimit_name(r), r.soft(), r.hard()));
    }
    eng.disk_bytes = bytes * 3 / 2 + (64 << 20);
    Ok(())
}

/// The container's disk as an ext4 file system: `rootfs/` = the
/// container's rootfs, `binds/<n>` = a copy of each bind source.
/// `mkfs.ext4 -d <staging>` reads them through bind mounts made in a mount
/// namespace of its own (set up between its fork and its exec), so they
/// vanish with it: a crash of ours can never leave the image or a volume
/// mounted under the container's directory, where a later removal could
/// reach into it. The staging directory holds empty mount points only.
fn fill_member_disk(
    staging: &Path,
    rootfs: &Path,
    binds: &[(usize, PathBuf)],
    disk: &Path,
) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::Guest(format!("{}: {e}", p.display()))
    }
    clear_staging(staging);
    let root = staging.join(VM_DISK_ROOTFS);
    fs::create_dir_all(&root).map_err(io(&root))?;
    let bd = staging.join(VM_DISK_BINDS);
    fs::create_dir_all(&bd).map_err(io(&bd))?;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Spec(format!("{}: a path with a NUL byte", p.display())))
    };
    let mut pairs = vec![(cstr(rootfs)?, cstr(&root)?)];
    for (n, src) in binds {
        let dst = bd.join(n.to_string());
        if src.is_dir() {
            fs::create_dir(&dst)
        } else {
            fs::write(&dst, b"")
        }
        .map_err(io(&dst))?;
        pairs.push((cstr(src)?, cstr(&dst)?));
    }
    let slash = CString::new("/").expect("no NUL");
    let mut cmd = std::process::Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-L", "lxcri-member", "-d"])
        .arg(staging)
        .arg(disk);
    // SAFETY: between fork and exec only syscalls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                slash.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst) in &pairs {
                if libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output();
    clear_staging(staging);
    let o = out.map_err(|e| {
        Error::Guest(format!(
            "running mkfs.ext4 (e2fsprogs) for the container's disk, its files bound in a \
             mount namespace of its own: {e}"
        ))
    })?;
    if !o.status.success() {
        return Err(Error::Guest(format!(
            "mkfs.ext4 -d {} {} failed: {}",
            staging.display(),
            disk.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// The staging directory's empty mount points, removed without ever
/// descending into anything (nothing is mounted there in our namespace).
fn clear_staging(staging: &Path) {
    let bd = staging.join(VM_DISK_BINDS);
    for e in fs::read_dir(&bd).into_iter().flatten().flatten() {
        let p = e.path();
        if fs::remove_dir(&p).is_err() {
            let _ = fs::remove_file(&p);
        }
    }
    let _ = fs::remove_dir(&bd);
    let _ = fs::remove_dir(staging.join(VM_DISK_ROOTFS));
    let _ = fs::remove_dir(staging);
}

impl VmMemberEngine {
    /// The container's disk: allocated, filled, added to the running VM.
    fn make_disk(&mut self, cx: &mut Cx, req: &Request) -> Result<String> {
        let rt = cx.rt;
        let cfg = rt.config.pve()?;
        let client = client(rt)?;
        let (node, vmid) = (self.rec.node.clone(), self.rec.vmid);
        let size = format!("{}M", self.disk_bytes.div_ceil(1 << 20));
        // 1. The volume, its name recorded first: a name of this
        // container's own, so that the record alone tells which volume is
        // its (a lost answer, a crash), never another container's.
        let filename = volume_name(vmid, &cx.state.id);
        self.rec.filename = Some(filename.clone());
        set_record(cx, &self.rec)?;
        let volid = client
            .volume_alloc(&node, &cfg.storage, vmid, &filename, &size)
            .map_err(api("allocating the container's disk"))?;
        if volid.contains([',', '\n', '\0', '=']) {
            return Err(Error::Guest(format!(
                "Proxmox answered the volume id {volid:?}"
            )));
        }
        self.rec.volume = Some(volid.clone());
        set_record(cx, &self.rec)?;
        // 2. Its file system: the rootfs and the binds' copies.
        let info = client
            .volume_info(&node, &cfg.storage, &volid)
            .map_err(api("looking up the container's disk"))?;
        let path = PathBuf::from(info.path);
        let staging = cx.paths.lxcpath.join("vm-disk");
        fill_member_disk(&staging, &req.rootfs, &self.binds, &path)?;
        // 3. Into the running VM: a free virtio<n>, the config's digest
        // guarding against another container's disk taking it meanwhile.
        for _attempt in 0..8 {
            let conf = client
                .qemu_config(&node, vmid)
                .map_err(api("reading the pod VM's config"))?;
            let key = (1..=MAX_VIRTIO)
                .map(|n| format!("virtio{n}"))
                .find(|k| conf.get(k).is_none())
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "the pod's VM {vmid} has no free virtio disk slot (virtio1-virtio{MAX_VIRTIO}: \
                         at most {MAX_VIRTIO} containers per VM pod)"
                    ))
                })?;
            self.rec.disk_key = Some(key.clone());
            set_record(cx, &self.rec)?;
            let serial = serial_for(&key);
            let mut params = Params::new().set(&key, format!("{volid},serial={serial}"));
            if let Some(d) = &conf.digest {
                params = params.set("digest", d.clone());
            }
            match client.qemu_set_config(&node, vmid, &params) {
                Ok(()) => return Ok(serial),
                Err(e)
                    if e.server_message()
                        .is_some_and(|m| m.contains("detected modified configuration")) =>
                {
                    continue
                }
                Err(e) => return Err(api("adding the container's disk to the pod's VM")(e)),
            }
        }
        Err(Error::Guest(format!(
            "the pod VM {vmid}'s config kept changing while adding a disk; retry"
        )))
    }
}

impl Engine for VmMemberEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        let sb = self.sandbox.clone().expect("for_sandbox");
        let cfg = rt.config.pve()?;
        client(rt)?;
        let (node, vmid) = super::pve_vm::record_of(&sb)
            .and_then(|r| Some((r.node.clone(), r.vmid?)))
            .ok_or_else(|| Error::Guest(format!("pod sandbox {}: its VM was never made", sb.id)))?;
        if !sb.monitor.as_ref().is_some_and(proc::is_alive) {
            return Err(Error::Guest(format!(
                "pod sandbox {}: its VM's monitor is gone (the pod is stopped)",
                sb.id
            )));
        }
        let sb_paths = Paths::new(&rt.store.dir(&sb.id), &sb.id);
        self.socket = sb_paths.exchange.join(super::pve_vm::SOCKET_EXEC);
        if !self.socket.exists() {
            return Err(Error::Guest(format!(
                "pod sandbox {}: its VM takes containers once started",
                sb.id
            )));
        }
        self.rec = VmMemberRecord {
            sandbox: sb.id.clone(),
            node,
            vmid,
            storage: cfg.storage.clone(),
            ..Default::default()
        };
        self.boot_timeout = Duration::from_secs(cfg.vm_boot_timeout_secs);
        let mut spec = req.spec.clone();
        if let Some(r) = spec.root_mut() {
            r.set_path(req.rootfs.clone());
        }
        check_spec(self, &req.id, &spec)
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::VmMember(self.rec.clone())
    }

    fn provision(&mut self, _cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        Ok(req.rootfs.clone())
    }

    fn mapped_root(&self, _spec: &Spec) -> Option<(u32, u32)> {
        None
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        // Only the init's part: the guest's agent runs the process.
        Ok(translate_excluding(spec, ctx, &[])?)
    }

    fn configure(&mut self, cx: &mut Cx, req: &Request, tr: &Translation) -> Result<()> {
        let mut init = tr.init.clone();
        init.exec_in_place = false;
        init.console_socket = false;
        let serial = self.make_disk(cx, req)?;
        self.member = Some(MemberSpec {
            id: cx.state.id.clone(),
            mounts: self.mounts.clone(),
            own_pid_ns: self.own_pid_ns,
            rlimits: self.rlimits.clone(),
            disk: Some(serial),
            process: Some(Box::new(init)),
        });
        Ok(())
    }

    fn start(&mut self, cx: &mut Cx, stdio: Option<&OwnedFd>) -> Result<Pid> {
        let args = super::pve_vm::MonitorArgs {
            exchange: cx.paths.exchange.clone(),
            serial: self.socket.clone(),
            console: PathBuf::new(),
            console_log: cx.paths.lxcpath.join("console.log"),
            container: Default::default(),
            boot_timeout: self.boot_timeout,
            terminal: false,
            member: self.member.clone(),
        };
        let (mon, gate) = super::pve_vm::spawn_monitor(args, stdio.map(|f| f.as_raw_fd()))?;
        if let Err(e) = cx.record_monitor(mon) {
            drop(gate);
            let _ = nix::sys::wait::waitpid(mon, None);
            return Err(e);
        }
        gate.open()?;
        Ok(mon)
    }

    fn ready_timeout(&self, rt: &Runtime) -> Duration {
        rt.config
            .pve()
            .map(|c| Duration::from_secs(c.vm_boot_timeout_secs))
            .unwrap_or(Duration::from_secs(120))
    }

    fn start_failed(&mut self, _rt: &Runtime, paths: &Paths) -> Option<String> {
        fs::read_to_string(paths.exchange.join(super::pve_vm::FILE_MONITOR_ERROR))
            .ok()
            .map(|e| format!("the container's monitor: {e}"))
    }

    fn find_init(
        &self,
        _rt: &Runtime,
        _paths: &Paths,
        monitor: Pid,
        _early: bool,
    ) -> Option<ProcRef> {
        // The process is in the VM: our monitor stands for it on the host.
        proc::proc_ref(monitor.as_raw())
    }

    fn hand_over(&mut self, _cx: &mut Cx, init: ProcRef) -> Result<ProcRef> {
        Ok(init)
    }

    fn monitor_grace(&self, _paths: &Paths) -> Duration {
        Duration::from_secs(2)
    }

    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        let Some(rec) = record_of(st) else {
            return Ok(());
        };
        let client = client(rt)?;
        let cfg = rt.config.pve()?;
        let (node, vmid) = (rec.node.as_str(), rec.vmid);
        let volid = match (&rec.volume, &rec.filename) {
            (Some(v), _) => Some(v.clone()),
            // Allocated, maybe, with the answer lost: by its name.
            (None, Some(f)) => client
                .storage_content(node, &rec.storage, Some("images"), Some(vmid))
                .map_err(api("listing the pod VM's volumes"))?
                .into_iter()
                .map(|v| v.volid)
                .find(|v| {
                    // `local:100/vm-100-...raw` (dir), `local-lvm:vm-100-...` (LVM, ZFS).
                    v.rsplit(['/', ':']).next().is_some_and(|n| {
                        n == f.as_str() || n.strip_suffix(".raw") == Some(f.as_str())
                    })
                }),
            (None, None) => None,
        };
        let Some(volid) = volid else { return Ok(()) };
        // Out of the VM's config: unplugged (if it runs), then freed.
        match client.qemu_config(node, vmid) {
            Ok(conf) => {
                let names_ours = |v: Option<&str>| {
                    v.and_then(|v| v.split(',').next())
                        .is_some_and(|f| f.trim_start_matches("file=") == volid)
                };
                if let Some(key) = rec.disk_key.as_deref().filter(|k| names_ours(conf.get(k))) {
                    client
                        .qemu_set_config(node, vmid, &Params::new().delete(&[key]))
                        .map_err(api("removing the container's disk from the pod's VM"))?;
                }
                let conf = client
                    .qemu_config(node, vmid)
                    .map_err(api("reading the pod VM's config"))?;
                let unused: Vec<String> = conf
                    .values
                    .keys()
                    .filter(|k| k.starts_with("unused") && names_ours(conf.get(k)))
                    .cloned()
                    .collect();
                if !unused.is_empty() {
                    let keys: Vec<&str> = unused.iter().map(String::as_str).collect();
                    client
                        .qemu_set_config(node, vmid, &Params::new().delete(&keys))
                        .map_err(api("freeing the container's disk"))?;
                }
            }
            // The pod's VM went first (with its disks).
            Err(e) if super::pve_vm::is_missing(&e, node, vmid) => {}
            Err(e) => return Err(api("reading the pod VM's config")(e)),
        }
        // Still there (never in the config): freed directly.
        if client.volume_info(node, &rec.storage, &volid).is_ok() {
            let upid = client
                .volume_delete(node, &rec.storage, &volid)
                .map_err(api("freeing the container's disk"))?;
            wait(client, cfg, &upid, "freeing the container's disk")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_volume_and_serial_are_its_own() {
        let a = volume_name(100, "abc");
        assert!(a.starts_with("vm-100-lxcri-") && a.len() == "vm-100-lxcri-".len() + 16);
        assert_ne!(a, volume_name(100, "abd"));
        assert_eq!(a, volume_name(100, "abc"));
        let s = serial_for("virtio15");
        assert!(proxmox_lxcri_agent_proto::pod::valid_disk_serial(&s), "{s}");
    }

    #[test]
    fn binds_become_copies_and_what_a_vm_cannot_do_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let spec = |mounts: serde_json::Value, extra: serde_json::Value| -> Spec {
            let mut v = serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                "root": {"path": d.path()},
                "mounts": mounts,
                "linux": {"namespaces": [{"type": "pid"},
                                         {"type": "network", "path": "/proc/1/ns/net"}]}
            });
            if let Some(o) = extra.as_object() {
                for (k, x) in o {
                    v[k] = x.clone();
                }
            }
            serde_json::from_value(v).unwrap()
        };
        let mut e = VmMemberEngine::default();
        let s = spec(
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind",
                 "source": d.path().join("hosts"), "options": ["rbind", "ro"]},
                {"destination": "/dev/shm", "type": "bind", "source": d.path(),
                 "options": ["rbind"]}
            ]),
            serde_json::json!({}),
        );
        check_spec(&mut e, "c1", &s).unwrap();
        assert!(e.own_pid_ns);
        assert_eq!(e.binds.len(), 1);
        assert_eq!(
            e.mounts[1].source,
            format!("{VM_POD_DIR}/c1/{VM_DISK_BINDS}/0")
        );
        assert_eq!(e.mounts[2].typ, "tmpfs", "/dev/shm is the container's own");
        for (mounts, extra, want) in [
            (
                serde_json::json!([{"destination": "/x/../etc", "type": "tmpfs", "source": "t"}]),
                serde_json::json!({}),
                "must be absolute",
            ),
            (
                serde_json::json!([{"destination": "/d", "type": "ext4", "source": "/dev/sda"}]),
                serde_json::json!({}),
                "type \"ext4\"",
            ),
            (
                serde_json::json!([]),
                serde_json::json!({"process": {"args": ["sh"], "cwd": "/", "terminal": true,
                                               "user": {"uid": 0, "gid": 0}}}),
                "process.terminal",
            ),
            (
                serde_json::json!([]),
                serde_json::json!({"linux": {"namespaces": [{"type": "network"}]}}),
                "network namespace of its own",
            ),
        ] {
            let mut e = VmMemberEngine::default();
            let err = check_spec(&mut e, "c1", &spec(mounts, extra))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
