//! /nodes/{node}/lxc/{vmid}/clone: a full copy of the rootfs under a new VMID.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::json;

use crate::api::{
    check_lock, find_storage, internal, ok, read, rootfs_volume, vmid, with_hwaddr, App, Ctx, P, R,
};
use crate::error::ApiError;
use crate::storage;
use crate::store::{Conf, Kind};

pub(in crate::api) fn clone(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    let target = p.get("target").cloned().unwrap_or_else(|| node.clone());
    if !app.nodes.contains(&target) {
        return Err(ApiError::param(
            "target",
            format!("no such cluster node '{target}'"),
        ));
    }
    let newid: u32 = p["newid"].parse().unwrap_or(0);
    let (conf, _) = read(app, p, Kind::Lxc)?;
    check_lock(&conf.main, false)?;
    let (src_store, src_name) = rootfs_volume(app, &conf.main).map_err(ApiError::from)?;
    let dst_store = match p.get("storage") {
        Some(s) => find_storage(app, s)?,
        None => src_store.clone(),
    };
    let mut main = conf.main.clone();
    main.keys.remove("parent");
    main.keys.insert("lock".into(), "create".into());
    if let Some(h) = p.get("hostname") {
        main.keys.insert("hostname".into(), h.clone());
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    // New MACs, as a clone gets.
    let nets: Vec<String> = main
        .keys
        .keys()
        .filter(|k| k.starts_with("net"))
        .cloned()
        .collect();
    for n in nets {
        let v: Vec<&str> = main.keys[&n]
            .split(',')
            .filter(|kv| !kv.starts_with("hwaddr="))
            .collect();
        let v = with_hwaddr(&v.join(","));
        main.keys.insert(n, v);
    }
    let new_conf = Conf {
        main,
        snapshots: vec![],
    };
    app.store.create_new(&target, Kind::Lxc, newid, &new_conf)?;
    let app2 = app.clone();
    let snapname = p.get("snapname").cloned();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "vzclone",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let mut allocated = None;
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    if snapname.is_some() {
                        anyhow::bail!("cloning from a snapshot is not supported by the emulator");
                    }
                    let size = src_store.usage(&src_name).map(|u| u.0).unwrap_or(0) as f64
                        / (1u64 << 30) as f64;
                    let name = dst_store.alloc_subvol(newid, size)?;
                    allocated = Some(name.clone());
                    let src = src_store.path(&src_name)?;
                    let dst = dst_store.path(&name)?;
                    task.log(format!("copying {} to {}", src.display(), dst.display()));
                    storage::run(
                        "cp",
                        &[
                            "-a",
                            &format!("{}/.", src.display()),
                            &dst.to_string_lossy(),
                        ],
                    )?;
                    let _l = app2.store.lock(newid).map_err(|e| anyhow!(e.message))?;
                    let (mut c, _) = app2
                        .store
                        .read(&target, Kind::Lxc, newid)
                        .map_err(|e| anyhow!(e.message))?;
                    let old = c.main.get("rootfs").unwrap_or("").to_string();
                    let rest: Vec<&str> = old.split(',').skip(1).collect();
                    let mut r = format!("{}:{name}", dst_store.id);
                    for kv in rest {
                        r.push(',');
                        r.push_str(kv);
                    }
                    c.main.keys.insert("rootfs".into(), r);
                    c.main.keys.remove("lock");
                    app2.store
                        .write(&target, Kind::Lxc, newid, &c)
                        .map_err(|e| anyhow!(e.message))?;
                    Ok(())
                })();
                if res.is_err() {
                    if let Some(n) = allocated {
                        let _ = dst_store.free(&n);
                    }
                    app2.store.remove(&target, Kind::Lxc, newid);
                }
                res
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}
