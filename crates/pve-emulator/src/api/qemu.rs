//! /nodes/{node}/qemu: VMs run as real QEMU processes (`crate::qemu`);
//! the start time is a small file under the data dir.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::config::NOT_CONFIG;
use super::{find_storage, flag, internal, ok, parse_size, read, vmid, App, Ctx, P, R};
use crate::api::access::check_root_only;
use crate::auth::now;
use crate::storage::{self, Storage};
use crate::store::{Conf, Kind, Section};

/// The VMs' QEMU; KVM only when asked (`PVE_EMULATOR_QEMU_KVM=1`): nested
/// KVM hangs where this is tested, so TCG is the default.
pub(super) fn qemu(app: &App) -> crate::qemu::Qemu {
    let kvm = std::env::var("PVE_EMULATOR_QEMU_KVM").is_ok_and(|v| v == "1");
    crate::qemu::Qemu::new(&app.data_dir, kvm)
}

pub(super) fn running(app: &App, id: u32) -> bool {
    qemu(app).pid(id).is_some()
}

/// Start VM `id` from its config now.
fn start_vm(app: &App, node: &str, id: u32) -> anyhow::Result<()> {
    let (c, _) = app
        .store
        .read(node, Kind::Qemu, id)
        .map_err(|e| anyhow!(e.message))?;
    // Each disk's file on its storage (cdroms and `none` stay out).
    let mut disks = std::collections::BTreeMap::new();
    for (k, v) in &c.main.keys {
        let base = k.trim_end_matches(|ch: char| ch.is_ascii_digit());
        if !matches!(base, "scsi" | "virtio" | "ide" | "sata") || v.contains("media=cdrom") {
            continue;
        }
        let vol = v.split(',').next().unwrap_or("");
        let Some((sid, name)) = storage::split_volid(vol) else {
            continue;
        };
        let st = app
            .storages
            .iter()
            .find(|s| s.id == sid)
            .ok_or_else(|| anyhow!("{k}: storage '{sid}' does not exist"))?;
        let path = st.path(name)?;
        if !path.exists() {
            anyhow::bail!("{k}: volume '{vol}' does not exist");
        }
        disks.insert(k.clone(), path);
    }
    qemu(app).start(id, &c.main, &disks)?;
    qemu_set_state(app, id, Some(json!({"since": now()})))
}

fn qemu_state_path(app: &App, id: u32) -> PathBuf {
    app.data_dir
        .join("run")
        .join("qemu")
        .join(format!("{id}.json"))
}

fn qemu_state(app: &App, id: u32) -> Option<Value> {
    std::fs::read(qemu_state_path(app, id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn qemu_set_state(app: &App, id: u32, v: Option<Value>) -> anyhow::Result<()> {
    let p = qemu_state_path(app, id);
    match v {
        Some(v) => {
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, serde_json::to_vec(&v)?)?;
        }
        None => {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

/// A NIC without a MAC gets one, as qemu-server gives it (`virtio=BC:24:11:..`).
fn with_mac(net: &str) -> String {
    let Ok(m) = crate::propstr::parse(net, Some("model")) else {
        return net.to_string();
    };
    let Some(model) = m.get("model").filter(|_| !m.contains_key("macaddr")) else {
        return net.to_string();
    };
    let mac = super::proxmox_mac();
    let rest: Vec<&str> = net
        .split(',')
        .filter(|p| p.contains('=') && !p.starts_with("model="))
        .collect();
    let mut out = format!("{model}={mac}");
    for r in rest {
        out.push(',');
        out.push_str(r);
    }
    out
}

pub(super) fn status_json(app: &App, id: u32, conf: &Section) -> Value {
    let st = qemu_state(app, id);
    let mem_mb: u64 = conf
        .get("memory")
        .map(|m| m.trim_start_matches("current="))
        .and_then(|m| m.split(',').next()?.parse().ok())
        .unwrap_or(512);
    let cores: u64 = conf.get("cores").and_then(|c| c.parse().ok()).unwrap_or(1);
    let sockets: u64 = conf
        .get("sockets")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let mut v = json!({
        "vmid": id, "type": "qemu", "name": conf.get("name").map(str::to_string).unwrap_or(format!("VM{id}")),
        "status": "stopped", "qmpstatus": "stopped", "maxmem": mem_mb << 20, "mem": 0, "cpus": cores * sockets, "cpu": 0,
        "uptime": 0, "maxdisk": 0, "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "ha": {"managed": 0},
        "template": 0,
    });
    let q = qemu(app);
    if let Some(pid) = q.pid(id) {
        v["status"] = json!("running");
        v["qmpstatus"] = json!(q.qmp_status(id).unwrap_or_else(|| "running".into()));
        let since = st.and_then(|s| s["since"].as_i64()).unwrap_or(now());
        v["uptime"] = json!(now() - since);
        v["pid"] = json!(pid);
        v["mem"] = json!(q.mem(id));
        if let Ok(ver) = q.qmp(id, "query-version") {
            let qv = &ver["qemu"];
            v["running-qemu"] = json!(format!("{}.{}.{}", qv["major"], qv["minor"], qv["micro"]));
            v["running-machine"] = json!(format!("pc-i440fx-{}.{}", qv["major"], qv["minor"]));
        }
    }
    if let Some(l) = conf.get("lock") {
        v["lock"] = json!(l);
    }
    // As for CTs: cluster/resources lists the tags (gc finds ours by them).
    if let Some(t) = conf.get("tags") {
        v["tags"] = json!(t);
    }
    v
}

pub(super) fn create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    check_root_only(ctx, p)?;
    let node = p["node"].clone();
    let id = vmid(p);
    let default_storage = p.get("storage").cloned();
    let mut main = Section::default();
    // Disks are allocated for real (raw files on a dir storage); freed
    // again if the create fails.
    let mut allocated: Vec<(Storage, String)> = vec![];
    let free_all = |a: &[(Storage, String)]| {
        for (s, n) in a {
            let _ = s.free(n);
        }
    };
    for (k, v) in p {
        if NOT_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        let mut v = v.clone();
        if matches!(base, "scsi" | "virtio" | "ide" | "sata") || k == "efidisk0" {
            // STORAGE:SIZE allocates (in the config only) vm-<vmid>-disk-<n>.
            let first = v.split(',').next().unwrap_or("").to_string();
            let new = match storage::split_volid(&first) {
                Some((sid, size)) => parse_size(size).map(|sz| (sid.to_string(), sz)),
                None if first.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && !first.is_empty() =>
                {
                    let sid = default_storage.clone().unwrap_or_else(|| "local".into());
                    parse_size(&first).map(|sz| (sid, sz))
                }
                None => None,
            };
            if let Some((sid, sz)) = new {
                let st = match find_storage(app, &sid) {
                    Ok(s) => s,
                    Err(e) => {
                        free_all(&allocated);
                        return Err(e);
                    }
                };
                let name = match st.alloc_vm_disk(id, sz) {
                    Ok(n) => n,
                    Err(e) => {
                        free_all(&allocated);
                        return Err(internal(format!("unable to create VM disk: {e:#}")));
                    }
                };
                allocated.push((st, name.clone()));
                let rest: Vec<String> = v.split(',').skip(1).map(String::from).collect();
                v = format!("{sid}:{name},size={sz}G");
                for r in rest {
                    v.push(',');
                    v.push_str(&r);
                }
            }
        }
        if base == "net" && !v.contains('=') {
            v = format!("virtio,bridge={v}");
        }
        if base == "net" {
            v = with_mac(&v);
        }
        main.keys.insert(k.clone(), v);
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    main.keys
        .entry("smbios1".into())
        .or_insert_with(|| "uuid=00000000-0000-4000-8000-000000000000".into());
    main.keys.insert("lock".into(), "create".into());
    if let Err(e) = app.store.create_new(
        &node,
        Kind::Qemu,
        id,
        &Conf {
            main,
            snapshots: vec![],
        },
    ) {
        free_all(&allocated);
        return Err(e);
    }
    let app2 = app.clone();
    let start = flag(p, "start");
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "qmcreate",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                    let (mut c, _) = app2
                        .store
                        .read(&node, Kind::Qemu, id)
                        .map_err(|e| anyhow!(e.message))?;
                    c.main.keys.remove("lock");
                    app2.store
                        .write(&node, Kind::Qemu, id, &c)
                        .map_err(|e| anyhow!(e.message))?;
                    Ok(())
                })();
                if res.is_err() {
                    // As qemu-server: a failed create frees the disks it
                    // allocated along with the config.
                    for (s, n) in &allocated {
                        let _ = s.free(n);
                    }
                    app2.store.remove(&node, Kind::Qemu, id);
                }
                res?;
                if start {
                    start_vm(&app2, &node, id)?;
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

pub(super) fn current(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Qemu)?;
    ok(status_json(app, vmid(p), &conf.main))
}

pub(super) fn power(app: &Arc<App>, ctx: &Ctx, p: &P, action: &str) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);

    let (conf, _) = read(app, p, Kind::Qemu)?;
    if let Some(l) = conf.main.get("lock") {
        if !flag(p, "skiplock") {
            return Err(internal(format!("VM is locked ({l})")));
        }
    }
    let is_running = running(app, id);
    match (action, is_running) {
        ("start", true) => return Err(internal(format!("VM {id} already running"))),
        ("stop" | "shutdown" | "reset" | "suspend" | "resume" | "reboot", false) => {
            return Err(internal(format!("VM {id} not running")))
        }
        _ => {}
    }
    let kind = format!("qm{action}");
    let action = action.to_string();
    let app2 = app.clone();
    let node = p["node"].clone();
    let force_stop = flag(p, "forceStop");
    let timeout: u64 = p.get("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            &kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                let q = qemu(&app2);
                match action.as_str() {
                    "start" => start_vm(&app2, &node, id)?,
                    "stop" => {
                        q.quit(id)?;
                        qemu_set_state(&app2, id, None)?;
                    }
                    "shutdown" => {
                        // ACPI power button; a guest that does not react
                        // within the timeout fails the task (forceStop: stop).
                        q.qmp(id, "system_powerdown")?;
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(timeout);
                        while q.pid(id).is_some() && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        if q.pid(id).is_some() {
                            if !force_stop {
                                anyhow::bail!("VM quit/powerdown failed - got timeout");
                            }
                            q.quit(id)?;
                        }
                        qemu_set_state(&app2, id, None)?;
                    }
                    "reset" | "reboot" => {
                        q.qmp(id, "system_reset")?;
                    }
                    "suspend" => {
                        q.qmp(id, "stop")?;
                    }
                    _ => {
                        q.qmp(id, "cont")?;
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

pub(super) fn delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);
    let node = p["node"].clone();
    let (conf, _) = read(app, p, Kind::Qemu)?;
    if let Some(l) = conf.main.get("lock") {
        if !flag(p, "skiplock") {
            return Err(internal(format!("VM is locked ({l})")));
        }
    }
    if conf.main.get("protection") == Some("1") {
        return Err(internal(format!(
            "can't remove VM {id} - protection mode enabled"
        )));
    }
    if running(app, id) {
        return Err(internal(format!("VM {id} is running - destroy failed")));
    }
    let app2 = app.clone();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "qmdestroy",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                // Its own disks go with it (`vm-<vmid>-disk-*`).
                for (k, v) in &conf.main.keys {
                    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
                    if !matches!(
                        base,
                        "scsi" | "virtio" | "ide" | "sata" | "unused" | "efidisk"
                    ) {
                        continue;
                    }
                    let vol = v.split(',').next().unwrap_or("");
                    let Some((sid, name)) = storage::split_volid(vol) else {
                        continue;
                    };
                    if !name.starts_with(&format!("{id}/vm-{id}-")) {
                        continue;
                    }
                    if let Some(s) = app2.storages.iter().find(|s| s.id == sid) {
                        s.free(name)?;
                        task.log(format!("removed volume '{vol}'"));
                    }
                }
                crate::api::firewall::forget(&app2, id);
                app2.store.remove(&node, Kind::Qemu, id);
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

/// A disk key of a VM config (`virtio3`, `scsi0`, `sata1`, `ide2`).
pub(super) fn is_disk_key(k: &str) -> bool {
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    base.len() < k.len() && matches!(base, "scsi" | "virtio" | "ide" | "sata")
}

/// `PUT .../qemu/{vmid}/config` for disks, as qemu-server applies it:
/// `STORAGE:SIZE` allocates a volume; on a running VM a new `virtio<n>` is
/// hot-plugged at once (`serial=` becomes the device's serial), a deleted
/// disk is unplugged first; a deleted disk's volume stays as `unused<n>`,
/// and deleting an `unused<n>` frees the VM's own volume. Changes `conf`;
/// the caller writes it.
pub(super) fn put_disks(
    app: &App,
    id: u32,
    conf: &mut Section,
    sets: &mut [(String, String)],
    deletes: &mut Vec<String>,
) -> Result<(), crate::error::ApiError> {
    let is_running = running(app, id);
    let q = qemu(app);
    let own = |name: &str| name.starts_with(&format!("{id}/vm-{id}-"));
    // Deleted disks: unplugged, their volume kept as unused<n>.
    let mut kept = vec![];
    for d in deletes.iter() {
        if is_disk_key(d) {
            let Some(v) = conf.keys.get(d).cloned() else {
                continue;
            };
            if is_running {
                q.unplug_disk(id, d)
                    .map_err(|e| internal(format!("{e:#}")))?;
            }
            conf.keys.remove(d);
            let vol = v
                .split(',')
                .next()
                .unwrap_or("")
                .trim_start_matches("file=");
            if storage::split_volid(vol).is_some() && !v.contains("media=cdrom") {
                let n = (0..256)
                    .find(|n| !conf.keys.contains_key(&format!("unused{n}")))
                    .unwrap_or(255);
                conf.keys.insert(format!("unused{n}"), vol.to_string());
            }
        } else if d.starts_with("unused") {
            if let Some(v) = conf.keys.remove(d) {
                if let Some((sid, name)) = storage::split_volid(&v) {
                    if own(name) {
                        if let Some(s) = app.storages.iter().find(|s| s.id == sid) {
                            s.free(name).map_err(|e| internal(format!("{e:#}")))?;
                        }
                    }
                }
            }
        } else {
            continue;
        }
        kept.push(d.clone());
    }
    deletes.retain(|d| !kept.contains(d));
    // New disks: allocated (STORAGE:SIZE), hot-plugged when it runs.
    let mut allocated: Vec<(Storage, String)> = vec![];
    let undo = |a: &[(Storage, String)]| {
        for (s, n) in a {
            let _ = s.free(n);
        }
    };
    for (k, v) in sets.iter_mut() {
        if !is_disk_key(k) {
            continue;
        }
        let first = v.split(',').next().unwrap_or("").to_string();
        if let Some((sid, size)) = storage::split_volid(&first) {
            if let Some(sz) = parse_size(size) {
                let st = find_storage(app, sid).inspect_err(|_| undo(&allocated))?;
                let name = st.alloc_vm_disk(id, sz).map_err(|e| {
                    undo(&allocated);
                    internal(format!("unable to create VM disk: {e:#}"))
                })?;
                allocated.push((st, name.clone()));
                let rest: Vec<&str> = v.split(',').skip(1).collect();
                let mut nv = format!("{sid}:{name},size={sz}G");
                for r in rest {
                    nv.push(',');
                    nv.push_str(r);
                }
                *v = nv;
            }
        }
        if !is_running {
            continue;
        }
        if conf.keys.contains_key(k.as_str()) {
            undo(&allocated);
            return Err(internal(format!(
                "{k}: replacing a disk of a running VM is not supported by the emulator; delete it first"
            )));
        }
        let m = crate::propstr::parse(v, Some("file")).map_err(|e| {
            undo(&allocated);
            crate::error::ApiError::param(k, e.to_string())
        })?;
        let vol = m.get("file").cloned().unwrap_or_default();
        let serial = m.get("serial").cloned();
        if let Some(s) = &serial {
            if s.is_empty()
                || s.len() > 20
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                undo(&allocated);
                return Err(crate::error::ApiError::param(
                    k,
                    format!("serial {s:?}: at most 20 of [-_a-zA-Z0-9]"),
                ));
            }
        }
        let path = storage::split_volid(&vol)
            .and_then(|(sid, name)| {
                app.storages
                    .iter()
                    .find(|s| s.id == sid)
                    .and_then(|s| s.path(name).ok())
            })
            .filter(|p| p.exists())
            .ok_or_else(|| {
                undo(&allocated);
                internal(format!("{k}: volume '{vol}' does not exist"))
            })?;
        if let Err(e) = q.hotplug_disk(id, k, &path, serial.as_deref()) {
            undo(&allocated);
            return Err(internal(format!("{e:#}")));
        }
    }
    Ok(())
}
