//! /nodes/{node}/lxc: containers that really run, under LXC. Create,
//! destroy and interfaces here; status, snapshots and clone beside.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde_json::json;

use super::config::NOT_CONFIG;
use super::{
    check_lock, find_storage, flag, internal, ok, parse_size, read, rootfs_volume, vmid,
    volumes_of, with_hwaddr, App, Ctx, Data, P, R,
};
use crate::api::access::check_root_only;
use crate::error::ApiError;
use crate::propstr;
use crate::runner::{self, ID_OFFSET};
use crate::storage;
use crate::store::{Conf, Kind, Section};
use crate::template;

mod clone;
mod oci;
mod snapshot;
mod status;

pub(super) use clone::clone;
pub(super) use snapshot::{snapshot_create, snapshot_delete, snapshot_list, snapshot_rollback};
pub(super) use status::{current, power, status_json};

pub(super) fn create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    check_root_only(ctx, p)?;
    let node = p["node"].clone();
    let id = vmid(p);
    let default_storage = p.get("storage").cloned().unwrap_or_else(|| "local".into());
    // rootfs: STORAGE:SIZE_GiB, a bare size, or nothing (4 GiB).
    let rootfs_arg = p
        .get("rootfs")
        .cloned()
        .unwrap_or_else(|| format!("{default_storage}:4"));
    let mut rootfs =
        propstr::parse_lxc("lxc-rootfs", &rootfs_arg).map_err(|e| ApiError::param("rootfs", e))?;
    let vol = rootfs.remove("volume").unwrap_or_default();
    let (sid, size) = match vol.split_once(':') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (default_storage.clone(), vol.clone()),
    };
    let size = parse_size(&size).ok_or_else(|| {
        ApiError::param(
            "rootfs",
            format!(
                "only new volumes (STORAGE:SIZE_GiB) are supported by the emulator, got '{vol}'"
            ),
        )
    })?;
    let st = find_storage(app, &sid)?;
    if !st.supports("rootdir") {
        return Err(internal(format!(
            "storage '{sid}' does not support container directories"
        )));
    }
    let ost = &p["ostemplate"];
    let (tsid, tname) = storage::split_volid(ost).ok_or_else(|| {
        ApiError::param("ostemplate", format!("unable to parse volume ID '{ost}'"))
    })?;
    let tname = tname
        .strip_prefix("vztmpl/")
        .filter(|n| storage::is_template_name(n))
        .ok_or_else(|| {
            ApiError::param(
                "ostemplate",
                format!("'{ost}' is not a vztmpl volume (STORAGE:vztmpl/NAME.tar[.gz|.xz|.zst])"),
            )
        })?;
    let tpath = find_storage(app, tsid)?
        .template_dir()
        .map(|d| d.join(tname))
        .filter(|p| p.exists())
        .ok_or_else(|| internal(format!("volume '{ost}' does not exist")))?;
    for (k, v) in p {
        if k.starts_with("mp")
            && storage::split_volid(v.split(',').next().unwrap_or(""))
                .is_some_and(|(_, n)| parse_size(n).is_some())
        {
            return Err(ApiError::param(
                k,
                "allocating mount point volumes is not supported by the emulator",
            ));
        }
    }

    let mut main = Section::default();
    main.keys.insert("arch".into(), "amd64".into());
    main.keys.insert("memory".into(), "512".into());
    main.keys.insert("swap".into(), "512".into());
    main.keys.insert("ostype".into(), "unmanaged".into());
    main.keys.insert("unprivileged".into(), "1".into());
    for (k, v) in p {
        if NOT_CONFIG.contains(&k.as_str()) || k == "rootfs" {
            continue;
        }
        let v = if k.starts_with("net") {
            with_hwaddr(v)
        } else {
            v.clone()
        };
        main.keys.insert(k.clone(), v);
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    main.keys.insert("lock".into(), "create".into());
    let conf = Conf {
        main,
        snapshots: vec![],
    };
    if flag(p, "force") {
        if let Some((n, k)) = app.store.locate(id) {
            if n != node || k != Kind::Lxc {
                return Err(internal(format!(
                    "{} {id} already exists on node '{n}'",
                    k.label()
                )));
            }
            return Err(internal(
                "forced overwrite of an existing CT is not supported by the emulator",
            ));
        }
    }
    app.store.create_new(&node, Kind::Lxc, id, &conf)?;

    let app2 = app.clone();
    let start = flag(p, "start");
    let has_password = p.contains_key("password");
    let opts: Vec<(String, String)> = rootfs.into_iter().collect();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "vzcreate",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let mut allocated: Option<String> = None;
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    let name = st.alloc_subvol(id, size)?;
                    allocated = Some(name.clone());
                    let path = st.path(&name)?;
                    task.log(format!("extracting archive '{}'", tpath.display()));
                    let scratch = app2.data_dir.join("tmp").join(format!("create-{id}"));
                    let _ = std::fs::remove_dir_all(&scratch);
                    std::fs::create_dir_all(&scratch)?;
                    let oci = template::extract(&tpath, &path, &scratch);
                    let _ = std::fs::remove_dir_all(&scratch);
                    let oci = oci?;
                    let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                    let (mut conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    if let Some(o) = oci {
                        task.log("Detected OCI archive");
                        oci::apply_oci(&mut conf.main, &o, &path);
                    }
                    if conf.main.get("unprivileged") == Some("1") {
                        task.log("shifting file ownership for the unprivileged container");
                        template::shift_ids(&path, ID_OFFSET)?;
                    }
                    if has_password {
                        task.log("note: the emulator does not set the root password inside the CT");
                    }
                    let mut r = format!("{}:{name}", st.id);
                    for (k, v) in &opts {
                        if k != "size" {
                            r.push_str(&format!(",{k}={v}"));
                        }
                    }
                    if size > 0.0 {
                        r.push_str(&format!(",size={}G", size));
                    }
                    conf.main.keys.insert("rootfs".into(), r);
                    conf.main.keys.remove("lock");
                    app2.store
                        .write(&node, Kind::Lxc, id, &conf)
                        .map_err(|e| anyhow!(e.message))?;
                    task.log(format!(
                        "Total bytes written: {}",
                        st.usage(&name).map(|u| u.1).unwrap_or(0)
                    ));
                    Ok(())
                })();
                if let Err(e) = res {
                    if let Some(n) = allocated {
                        let _ = st.free(&n);
                    }
                    app2.store.remove(&node, Kind::Lxc, id);
                    return Err(e);
                }
                if start {
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, n) = rootfs_volume(&app2, &conf.main)?;
                    for w in crate::runner::Runner::config_warnings(id, &conf.main) {
                        task.log(w);
                    }
                    app2.runner.start(id, &conf.main, &s.path(&n)?)?;
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

/// The VMID a volume belongs to: `subvol-<vmid>-disk-<n>` (or vm-/base-).
fn volume_owner(name: &str) -> Option<u32> {
    let rest = ["subvol-", "vm-", "base-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split_once('-')?.0.parse().ok()
}

/// Drops the config's `lock` (best effort: the guest may be gone).
fn clear_lock(app: &App, node: &str, id: u32) {
    if let Ok(_l) = app.store.lock(id) {
        if let Ok((mut conf, _)) = app.store.read(node, Kind::Lxc, id) {
            if conf.main.keys.remove("lock").is_some() {
                let _ = app.store.write(node, Kind::Lxc, id, &conf);
            }
        }
    }
}

pub(super) fn delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    // Checked and locked under the config lock: a second DELETE sees
    // "CT is locked (destroyed)" while the first one's task runs.
    {
        let _l = app.store.lock(id)?;
        let (mut conf, _) = read(app, p, Kind::Lxc)?;
        check_lock(&conf.main, false)?;
        if conf.main.get("protection") == Some("1") {
            return Err(internal(format!(
                "can't remove CT {id} - protection mode enabled"
            )));
        }
        if !flag(p, "force") && app.runner.state(id).is_some() {
            return Err(internal(format!(
                "unable to destroy CT {id} - container is running"
            )));
        }
        conf.main.keys.insert("lock".into(), "destroyed".into());
        app.store.write(&node, Kind::Lxc, id, &conf)?;
    }
    let force = flag(p, "force");
    let app2 = app.clone();
    let node2 = node.clone();
    let spawned = app.tasks.spawn(
        &p["node"],
        "vzdestroy",
        &id.to_string(),
        &ctx.user(),
        ctx.fail_task.clone(),
        move |task| {
            // Nothing is removed yet on these errors: give the CT back.
            let before = (|| -> anyhow::Result<_> {
                task.injected()?;
                let l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (conf, _) = app2
                    .store
                    .read(&node, Kind::Lxc, id)
                    .map_err(|e| anyhow!(e.message))?;
                if app2.runner.state(id).is_some() {
                    if !force {
                        anyhow::bail!("unable to destroy CT {id} - container is running");
                    }
                    app2.runner.stop(id)?;
                }
                Ok((l, conf))
            })();
            let (_l, conf) = match before {
                Ok(x) => x,
                Err(e) => {
                    clear_lock(&app2, &node, id);
                    return Err(e);
                }
            };
            for vol in volumes_of(&conf.main) {
                let (sid, name) = storage::split_volid(&vol).unwrap_or_default();
                // As Proxmox: an `unused[n]`/`mp[n]` may name another guest's
                // volume; only free our own.
                if volume_owner(name) != Some(id) {
                    task.log(format!(
                        "CT {id} isn't the owner of volume '{vol}', not removing it"
                    ));
                    continue;
                }
                if let Some(s) = app2.storages.iter().find(|s| s.id == sid) {
                    for (snap, _) in &conf.snapshots {
                        let _ = s.delete_snapshot(name, snap);
                    }
                    s.free(name)
                        .with_context(|| format!("removing volume '{vol}'"))?;
                    task.log(format!("removed volume '{vol}'"));
                }
            }
            app2.runner.forget(id);
            crate::api::firewall::forget(&app2, id);
            app2.store.remove(&node, Kind::Lxc, id);
            Ok(())
        },
    );
    match spawned {
        Ok(upid) => ok(json!(upid)),
        Err(e) => {
            clear_lock(app, &node2, id);
            Err(internal(format!("starting task: {e}")))
        }
    }
}

pub(super) fn interfaces(app: &App, p: &P) -> R {
    let id = vmid(p);
    read(app, p, Kind::Lxc)?;
    let live = app
        .runner
        .state(id)
        .ok_or_else(|| internal(format!("CT {id} not running")))?;
    runner::interfaces(live.pid)
        .map(Data::Plain)
        .map_err(ApiError::from)
}
