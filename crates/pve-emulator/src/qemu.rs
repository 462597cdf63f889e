//! Real QEMU guests: a VM's options become a `qemu-system-x86_64` command
//! line the way qemu-server builds one (memory, sockets/cores, NICs as tap
//! devices on their bridge, serial sockets, QMP), started daemonized with a
//! pid file, and driven over QMP (status, pause/resume, reset, quit).
//! TCG unless the emulator was told to use KVM (`--qemu-kvm`): nested KVM
//! hangs on the machines this is tested on.
//!
//! `args` (raw QEMU options, e.g. `-kernel`/`-initrd`/`-append` for a
//! direct kernel boot) are appended last, as qemu-server does.
//!
//! Disks (`virtio<n>`, `scsi<n>` on the `scsihw` controller, `sata<n>`,
//! `ide<n>`) are the raw files of a dir storage, resolved by the caller.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::propstr;
use crate::store::Section;

/// A NIC's host end and its bridge.
pub type Tap = (String, String);

pub struct Qemu {
    run_dir: PathBuf,
    kvm: bool,
}

/// The host end of VM `vmid`'s NIC `n`, as qemu-server names it.
pub fn tap_name(vmid: u32, n: u32) -> String {
    format!("tap{vmid}i{n}")
}

/// A VM NIC's model and MAC: `virtio=MAC,...` or `model=virtio,macaddr=MAC`
/// (the MAC may be empty: QEMU picks one).
pub fn nic_model_mac(m: &std::collections::BTreeMap<String, String>) -> Option<(&str, String)> {
    match m.get("model") {
        Some(model) => Some((
            model.as_str(),
            m.get("macaddr").cloned().unwrap_or_default(),
        )),
        None => ["virtio", "e1000", "rtl8139", "vmxnet3"]
            .iter()
            .find_map(|model| m.get(*model).map(|mac| (*model, mac.clone()))),
    }
}

impl Qemu {
    pub fn new(data_dir: &Path, kvm: bool) -> Qemu {
        Qemu {
            run_dir: data_dir.join("run").join("qemu-server"),
            kvm,
        }
    }

    fn file(&self, vmid: u32, ext: &str) -> PathBuf {
        self.run_dir.join(format!("{vmid}.{ext}"))
    }

    /// The command line for VM `vmid` with `conf` (without the binary),
    /// and the taps to put on their bridges once QEMU made them.
    pub fn args(
        &self,
        vmid: u32,
        conf: &Section,
        disks: &BTreeMap<String, PathBuf>,
    ) -> Result<(Vec<String>, Vec<Tap>)> {
        let mem: u64 = conf
            .get("memory")
            .map(|m| m.trim_start_matches("current="))
            .and_then(|m| m.split(',').next()?.parse().ok())
            .unwrap_or(512);
        let num = |k: &str| conf.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
        let (sockets, cores) = (num("sockets"), num("cores"));
        let name = conf
            .get("name")
            .filter(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .map(String::from)
            .unwrap_or(format!("VM{vmid}"));
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("{name},debug-threads=on"),
            "-machine".into(),
            "pc".into(),
            // TCG's translation cache defaults to 1 GiB, all of it resident
            // once touched: a few small guests would fill the host. 128 MiB
            // holds a kernel's boot and a process's code with room to spare.
            "-accel".into(),
            if self.kvm {
                "kvm".into()
            } else {
                "tcg,tb-size=128".into()
            },
            "-m".into(),
            mem.to_string(),
            "-smp".into(),
            format!(
                "{},sockets={sockets},cores={cores},maxcpus={}",
                sockets * cores,
                sockets * cores
            ),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", s(self.file(vmid, "qmp"))),
            "-pidfile".into(),
            s(self.file(vmid, "pid")),
            "-daemonize".into(),
        ];
        let mut taps = vec![];
        let mut scsi_hw = false;
        let mut ahci = false;
        for (k, path) in disks {
            let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
            let n: u32 = k[base.len()..].parse().unwrap_or(0);
            let file = path.to_string_lossy();
            if file.contains(',') {
                bail!("{k}: a disk path with ',' cannot go on QEMU's command line");
            }
            a.push("-drive".into());
            a.push(format!(
                "file={file},if=none,id=drive-{k},format=raw,cache=none,aio=threads"
            ));
            a.push("-device".into());
            match base {
                "virtio" => a.push(format!("virtio-blk-pci,drive=drive-{k},id={k}")),
                "scsi" => {
                    if !scsi_hw {
                        let hw = match conf.get("scsihw").unwrap_or("lsi") {
                            "virtio-scsi-pci" | "virtio-scsi-single" => "virtio-scsi-pci",
                            "megasas" => "megasas",
                            "pvscsi" => "pvscsi",
                            "lsi53c810" => "lsi53c810",
                            _ => "lsi",
                        };
                        a.push(format!("{hw},id=scsihw0"));
                        a.push("-device".into());
                        scsi_hw = true;
                    }
                    a.push(format!(
                        "scsi-hd,bus=scsihw0.0,scsi-id={n},drive=drive-{k},id={k}"
                    ));
                }
                "sata" => {
                    if !ahci {
                        a.push("ahci,id=ahci0".into());
                        a.push("-device".into());
                        ahci = true;
                    }
                    a.push(format!("ide-hd,bus=ahci0.{n},drive=drive-{k},id={k}"));
                }
                "ide" => a.push(format!(
                    "ide-hd,bus=ide.{},unit={},drive=drive-{k},id={k}",
                    n / 2,
                    n % 2
                )),
                _ => bail!("{k}: not a disk bus QEMU gets here"),
            }
        }
        for (k, v) in &conf.keys {
            if let Some(n) = k.strip_prefix("serial").and_then(|n| n.parse::<u32>().ok()) {
                if v != "socket" {
                    bail!("{k}: only 'socket' serial ports are supported here");
                }
                let id = format!("serial{n}");
                a.push("-chardev".into());
                a.push(format!(
                    "socket,id={id},path={},server=on,wait=off",
                    s(self.file(vmid, &id))
                ));
                a.push("-device".into());
                a.push(format!("isa-serial,chardev={id}"));
            }
            if let Some(n) = k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
                // `virtio=MAC,bridge=...` or `model=virtio,macaddr=MAC,...`.
                let m = propstr::parse(v, Some("model")).map_err(|e| anyhow!("{k}: {e}"))?;
                let (model, mac) = nic_model_mac(&m)
                    .ok_or_else(|| anyhow!("{k}: no NIC model (virtio=MAC, e1000=MAC ...)"))?;
                if !mac.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    bail!("{k}: bad MAC {mac:?}");
                }
                if !["virtio", "e1000", "rtl8139", "vmxnet3"].contains(&model) {
                    bail!("{k}: NIC model {model:?} is not emulated here");
                }
                let bridge = m
                    .get("bridge")
                    .ok_or_else(|| anyhow!("{k}: no bridge"))?
                    .clone();
                let tap = tap_name(vmid, n);
                let device = match model {
                    "virtio" => "virtio-net-pci",
                    "vmxnet3" => "vmxnet3",
                    other => other,
                };
                a.push("-netdev".into());
                a.push(format!(
                    "type=tap,id={k},ifname={tap},script=no,downscript=no"
                ));
                a.push("-device".into());
                if mac.is_empty() {
                    a.push(format!("{device},netdev={k},id={k}"));
                } else {
                    a.push(format!("{device},mac={mac},netdev={k},id={k}"));
                }
                taps.push((tap, bridge));
            }
        }
        // `args` (root@pam only, checked by the API) go last, as
        // qemu-server appends them: raw QEMU options, shell-quoted.
        if let Some(extra) = conf.get("args") {
            let words = shlex::split(extra)
                .ok_or_else(|| anyhow!("args: unbalanced quotes in {extra:?}"))?;
            a.extend(words);
        }
        Ok((a, taps))
    }

    /// Start the VM; its QEMU pid.
    pub fn start(
        &self,
        vmid: u32,
        conf: &Section,
        disks: &BTreeMap<String, PathBuf>,
    ) -> Result<u32> {
        std::fs::create_dir_all(&self.run_dir)?;
        let (args, taps) = self.args(vmid, conf, disks)?;
        let o = Command::new("qemu-system-x86_64")
            .args(&args)
            .output()
            .context("running qemu-system-x86_64 (install qemu-system-x86)")?;
        if !o.status.success() {
            bail!(
                "start failed: QEMU exited with {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        for (tap, bridge) in taps {
            let ok = Command::new("ip")
                .args(["link", "set", &tap, "master", &bridge, "up"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = self.quit(vmid);
                bail!("start failed: cannot put {tap} on bridge {bridge}");
            }
        }
        self.pid(vmid)
            .ok_or_else(|| anyhow!("start failed: QEMU left no pid file"))
    }

    /// The QEMU pid while VM `vmid` runs.
    pub fn pid(&self, vmid: u32) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.file(vmid, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        // The pid file's process is still this VM's QEMU (its command line
        // names this pid file).
        let want = format!("\0{}\0", self.file(vmid, "pid").display());
        (cmd.starts_with(b"qemu-system") && cmd.windows(want.len()).any(|w| w == want.as_bytes()))
            .then_some(pid)
    }

    /// One QMP command; its `return`.
    pub fn qmp(&self, vmid: u32, command: &str) -> Result<Value> {
        self.qmp_with(vmid, command, None)
    }

    /// One QMP command with its arguments; its `return`.
    pub fn qmp_with(&self, vmid: u32, command: &str, arguments: Option<Value>) -> Result<Value> {
        let path = self.file(vmid, "qmp");
        let stream =
            UnixStream::connect(&path).with_context(|| format!("QMP {}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = stream.try_clone()?;
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        let mut next = |r: &mut BufReader<UnixStream>| -> Result<Value> {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    bail!("QMP closed");
                }
                let v: Value = serde_json::from_str(&line)?;
                // Asynchronous events come in between; skip them.
                if v.get("event").is_none() {
                    return Ok(v);
                }
            }
        };
        next(&mut r)?; // greeting
        writeln!(w, "{{\"execute\":\"qmp_capabilities\"}}")?;
        next(&mut r)?;
        let mut req = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        writeln!(w, "{req}")?;
        let v = next(&mut r)?;
        if let Some(e) = v.get("error") {
            bail!("QMP {command}: {}", e["desc"]);
        }
        Ok(v["return"].clone())
    }

    /// Hot-plug a disk into the running VM as qemu-server does for a
    /// `virtio<n>` added to its config: the volume as a block node
    /// (`drive-<key>`), then a virtio-blk-pci device `<key>` on it (with
    /// the disk's `serial`). The guest sees a new PCI device (ACPI
    /// hotplug).
    pub fn hotplug_disk(
        &self,
        vmid: u32,
        key: &str,
        path: &Path,
        serial: Option<&str>,
    ) -> Result<()> {
        if !key.starts_with("virtio") {
            bail!("hotplug of {key}: only virtio disks are hot-plugged by this emulator");
        }
        let node = format!("drive-{key}");
        // A node of an earlier disk under this key that QEMU still held.
        self.blockdev_del(vmid, key)?;
        self.qmp_with(
            vmid,
            "blockdev-add",
            Some(serde_json::json!({
                "driver": "raw",
                "node-name": node,
                "file": {"driver": "file", "filename": path.to_string_lossy(), "aio": "threads"},
            })),
        )
        .with_context(|| format!("hotplug {key}"))?;
        let mut dev = serde_json::json!({"driver": "virtio-blk-pci", "id": key, "drive": node});
        if let Some(s) = serial {
            dev["serial"] = s.into();
        }
        if let Err(e) = self.qmp_with(vmid, "device_add", Some(dev)) {
            let _ = self.qmp_with(
                vmid,
                "blockdev-del",
                Some(serde_json::json!({"node-name": node})),
            );
            return Err(e.context(format!("hotplug {key}")));
        }
        Ok(())
    }

    /// Unplug disk `key` from the running VM (qemu-server's
    /// `vm_deviceunplug`): `device_del`, wait until the guest let the
    /// device go, then the block node goes (`blockdev-del`, or for a disk
    /// of the command line `-drive`, QEMU removes it with the device).
    pub fn unplug_disk(&self, vmid: u32, key: &str) -> Result<()> {
        let present = |q: &Qemu| -> Result<bool> {
            let v = q.qmp_with(
                vmid,
                "qom-list",
                Some(serde_json::json!({"path": "/machine/peripheral"})),
            )?;
            Ok(v.as_array()
                .is_some_and(|a| a.iter().any(|p| p["name"] == key)))
        };
        if present(self)? {
            self.qmp_with(vmid, "device_del", Some(serde_json::json!({"id": key})))
                .with_context(|| format!("unplug {key}"))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while present(self)? {
                if std::time::Instant::now() > deadline {
                    bail!("unplug {key}: the guest did not release the device within 30s (TCG guests are slow)");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Hot-plugged disks have a block node of their own (one from the
        // command line went with its device). The device lets go of it a
        // moment after it left the tree: retried while QEMU says it is in
        // use.
        self.blockdev_del(vmid, key)
    }

    /// `blockdev-del` of `drive-<key>`: done once QEMU has no such node.
    fn blockdev_del(&self, vmid: u32, key: &str) -> Result<()> {
        let node = format!("drive-{key}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.qmp_with(
                vmid,
                "blockdev-del",
                Some(serde_json::json!({"node-name": node})),
            ) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let msg = format!("{e:#}");
                    if msg.contains("Failed to find node") || msg.contains("Cannot find") {
                        return Ok(());
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(e.context(format!("unplug {key}")));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `running`, `paused`, ... from QMP.
    pub fn qmp_status(&self, vmid: u32) -> Option<String> {
        self.qmp(vmid, "query-status")
            .ok()?
            .get("status")?
            .as_str()
            .map(String::from)
    }

    /// Stop at once (`qm stop`): QMP quit, then SIGKILL if it lingers.
    pub fn quit(&self, vmid: u32) -> Result<()> {
        let pid = self.pid(vmid);
        let _ = self.qmp(vmid, "quit");
        if let Some(pid) = pid {
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for ext in ["pid", "qmp", "serial0", "serial1", "serial2", "serial3"] {
            let _ = std::fs::remove_file(self.file(vmid, ext));
        }
        Ok(())
    }

    /// Resident memory of the VM's QEMU, bytes.
    pub fn mem(&self, vmid: u32) -> u64 {
        let Some(pid) = self.pid(vmid) else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kb| kb << 10)
            .unwrap_or(0)
    }
}
