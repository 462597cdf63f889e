//! /nodes/{node}/lxc/{vmid}/snapshot: snapshots of the rootfs volume, kept
//! in the config's snapshot sections as Proxmox keeps them.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::api::{check_lock, internal, ok, read, rootfs_volume, vmid, App, Ctx, P, R};
use crate::auth::now;
use crate::error::ApiError;
use crate::store::Kind;

pub(in crate::api) fn snapshot_list(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Lxc)?;
    let mut out: Vec<Value> = conf
        .snapshots
        .iter()
        .map(|(n, s)| {
            let mut v =
                json!({"name": n, "description": s.description.clone().unwrap_or_default()});
            if let Some(t) = s.get("snaptime").and_then(|t| t.parse::<i64>().ok()) {
                v["snaptime"] = json!(t);
            }
            if let Some(pa) = s.get("parent") {
                v["parent"] = json!(pa);
            }
            v
        })
        .collect();
    let mut cur = json!({"name": "current", "description": "You are here!", "running": app.runner.state(vmid(p)).is_some() as i32});
    if let Some(pa) = conf.main.get("parent") {
        cur["parent"] = json!(pa);
    }
    out.push(cur);
    ok(json!(out))
}

fn snapshot_task(app: &Arc<App>, ctx: &Ctx, p: &P, kind: &str, lock: &str, work: SnapWork) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    let snap = p["snapname"].clone();
    {
        let _l = app.store.lock(id)?;
        let (mut conf, _) = read(app, p, Kind::Lxc)?;
        check_lock(&conf.main, false)?;
        let exists = conf.snapshots.iter().any(|(n, _)| *n == snap);
        match work {
            SnapWork::Create if exists => {
                return Err(internal(format!("snapshot name '{snap}' already used")))
            }
            SnapWork::Delete | SnapWork::Rollback if !exists => {
                return Err(internal(format!("snapshot '{snap}' does not exist")))
            }
            _ => {}
        }
        if snap == "current" {
            return Err(ApiError::param(
                "snapname",
                "invalid snapshot name 'current'",
            ));
        }
        conf.main.keys.insert("lock".into(), lock.into());
        app.store.write(&node, Kind::Lxc, id, &conf)?;
    }
    let app2 = app.clone();
    let description = p.get("description").cloned();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, name) = rootfs_volume(&app2, &conf.main)?;
                    match work {
                        SnapWork::Create => s.snapshot(&name, &snap)?,
                        SnapWork::Delete => s.delete_snapshot(&name, &snap)?,
                        SnapWork::Rollback => {
                            if app2.runner.state(id).is_some() {
                                app2.runner.stop(id)?;
                            }
                            s.rollback(&name, &snap)?
                        }
                    }
                    Ok(())
                })();
                let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (mut conf, _) = app2
                    .store
                    .read(&node, Kind::Lxc, id)
                    .map_err(|e| anyhow!(e.message))?;
                conf.main.keys.remove("lock");
                if res.is_ok() {
                    match work {
                        SnapWork::Create => {
                            let mut s = conf.main.clone();
                            s.keys.insert("snaptime".into(), now().to_string());
                            s.description = description.clone();
                            conf.main.keys.insert("parent".into(), snap.clone());
                            conf.snapshots.push((snap.clone(), s));
                        }
                        SnapWork::Delete => {
                            let parent = conf
                                .snapshots
                                .iter()
                                .find(|(n, _)| *n == snap)
                                .and_then(|(_, s)| s.get("parent").map(str::to_string));
                            conf.snapshots.retain(|(n, _)| *n != snap);
                            for (_, s) in conf
                                .snapshots
                                .iter_mut()
                                .map(|(n, s)| (n.clone(), s))
                                .chain(std::iter::once((String::new(), &mut conf.main)))
                            {
                                if s.get("parent") == Some(snap.as_str()) {
                                    match &parent {
                                        Some(pa) => s.keys.insert("parent".into(), pa.clone()),
                                        None => s.keys.remove("parent"),
                                    };
                                }
                            }
                        }
                        SnapWork::Rollback => {
                            if let Some((_, s)) = conf.snapshots.iter().find(|(n, _)| *n == snap) {
                                let mut main = s.clone();
                                main.keys.remove("snaptime");
                                main.description = conf.main.description.clone();
                                main.keys.insert("parent".into(), snap.clone());
                                conf.main = main;
                            }
                        }
                    }
                }
                app2.store
                    .write(&node, Kind::Lxc, id, &conf)
                    .map_err(|e| anyhow!(e.message))?;
                res
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

#[derive(Clone, Copy)]
enum SnapWork {
    Create,
    Delete,
    Rollback,
}

pub(in crate::api) fn snapshot_create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(app, ctx, p, "vzsnapshot", "snapshot", SnapWork::Create)
}
pub(in crate::api) fn snapshot_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(
        app,
        ctx,
        p,
        "vzdelsnapshot",
        "snapshot-delete",
        SnapWork::Delete,
    )
}
pub(in crate::api) fn snapshot_rollback(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(app, ctx, p, "vzrollback", "rollback", SnapWork::Rollback)
}
