//! /nodes/{node}/qemu: VMs in config and status only. Nothing runs: the
//! running state is a small file under the data dir.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::config::NOT_CONFIG;
use super::{find_storage, flag, internal, ok, parse_size, read, vmid, App, Ctx, P, R};
use crate::api::access::check_root_only;
use crate::auth::now;
use crate::storage;
use crate::store::{Conf, Kind, Section};

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
    if let Some(s) = st {
        v["status"] = json!("running");
        v["qmpstatus"] = s["qmpstatus"].clone();
        v["uptime"] = json!(now() - s["since"].as_i64().unwrap_or(now()));
        v["pid"] = s["pid"].clone();
        v["running-qemu"] = json!("10.1.2");
        v["running-machine"] = json!("pc-i440fx-10.1+pve0");
        // No VM process exists, so no memory is in use (`mem` stays 0).
    }
    if let Some(l) = conf.get("lock") {
        v["lock"] = json!(l);
    }
    v
}

pub(super) fn create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    if p.contains_key("hookscript") {
        ctx.root_only("only root can set 'hookscript' config")?;
    }
    let node = p["node"].clone();
    let id = vmid(p);
    let default_storage = p.get("storage").cloned();
    let mut main = Section::default();
    let mut disk_n = 0;
    for (k, v) in p {
        if NOT_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        let mut v = v.clone();
        if matches!(base, "scsi" | "virtio" | "ide" | "sata") || k == "efidisk0" {
            // STORAGE:SIZE allocates (in the config only) vm-<vmid>-disk-<n>.
            let first = v.split(',').next().unwrap_or("").to_string();
            if let Some((sid, size)) = storage::split_volid(&first) {
                if let Some(sz) = parse_size(size) {
                    find_storage(app, sid)?;
                    let rest: Vec<String> = v.split(',').skip(1).map(String::from).collect();
                    v = format!("{sid}:vm-{id}-disk-{disk_n},size={sz}G");
                    for r in rest {
                        v.push(',');
                        v.push_str(&r);
                    }
                    disk_n += 1;
                }
            } else if first.chars().all(|c| c.is_ascii_digit() || c == '.') && !first.is_empty() {
                let sid = default_storage.clone().unwrap_or_else(|| "local".into());
                v = format!("{sid}:vm-{id}-disk-{disk_n},size={first}G");
                disk_n += 1;
            }
        }
        if base == "net" && !v.contains('=') {
            v = format!("virtio,bridge={v}");
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
    app.store.create_new(
        &node,
        Kind::Qemu,
        id,
        &Conf {
            main,
            snapshots: vec![],
        },
    )?;
    let app2 = app.clone();
    let start = flag(p, "start");
    let upid = app
        .tasks
        .spawn(&p["node"], "qmcreate", &id.to_string(), &ctx.user(), ctx.fail_task.clone(), move |task| {
            let res = (|| -> anyhow::Result<()> {
                task.injected()?;
                let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (mut c, _) = app2.store.read(&node, Kind::Qemu, id).map_err(|e| anyhow!(e.message))?;
                c.main.keys.remove("lock");
                app2.store.write(&node, Kind::Qemu, id, &c).map_err(|e| anyhow!(e.message))?;
                Ok(())
            })();
            if res.is_err() {
                app2.store.remove(&node, Kind::Qemu, id);
            }
            res?;
            if start {
                qemu_set_state(&app2, id, Some(json!({"qmpstatus": "running", "since": now(), "pid": std::process::id()})))?;
            }
            Ok(())
        })
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
    let running = qemu_state(app, id).is_some();
    match (action, running) {
        ("start", true) => return Err(internal(format!("VM {id} already running"))),
        ("stop" | "shutdown" | "reset" | "suspend" | "resume" | "reboot", false) => {
            return Err(internal(format!("VM {id} not running")))
        }
        _ => {}
    }
    let kind = format!("qm{action}");
    let action = action.to_string();
    let app2 = app.clone();
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
                let cur = qemu_state(&app2, id);
                let fresh = || {
                    Some(json!({"qmpstatus": "running", "since": now(), "pid": std::process::id()}))
                };
                let next = match action.as_str() {
                    "start" | "reset" | "reboot" => fresh(),
                    "stop" | "shutdown" => None,
                    "suspend" => cur.map(|mut c| {
                        c["qmpstatus"] = json!("paused");
                        c
                    }),
                    _ => cur.map(|mut c| {
                        c["qmpstatus"] = json!("running");
                        c
                    }),
                };
                qemu_set_state(&app2, id, next)
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
    if qemu_state(app, id).is_some() {
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
                app2.store.remove(&node, Kind::Qemu, id);
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}
