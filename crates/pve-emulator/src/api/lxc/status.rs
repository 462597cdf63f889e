//! /nodes/{node}/lxc/{vmid}/status: the live state and the power actions.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::api::access::check_root_only;
use crate::api::nodes::ncpus;
use crate::api::{check_lock, flag, internal, ok, read, rootfs_volume, vmid, App, Ctx, P, R};
use crate::runner;
use crate::stats;
use crate::store::{Kind, Section};

pub(in crate::api) fn status_json(app: &App, id: u32, conf: &Section) -> Value {
    let live = app.runner.state(id);
    let maxmem = conf
        .get("memory")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(512)
        << 20;
    let maxswap = conf
        .get("swap")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(512)
        << 20;
    let cpus: f64 = conf
        .get("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(ncpus() as f64);
    let (maxdisk, disk) = rootfs_volume(app, conf)
        .ok()
        .and_then(|(s, n)| s.usage(&n).ok())
        .unwrap_or((0, 0));
    let mut v = json!({
        "vmid": id, "type": "lxc", "status": if live.is_some() { "running" } else { "stopped" },
        "name": conf.get("hostname").map(str::to_string).unwrap_or(format!("CT{id}")),
        "maxmem": maxmem, "maxswap": maxswap, "cpus": cpus, "maxdisk": maxdisk, "disk": disk,
        "mem": 0, "cpu": 0, "uptime": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "ha": {"managed": 0}, "template": 0,
    });
    if let Some(l) = conf.get("lock") {
        v["lock"] = json!(l);
    }
    if let Some(t) = conf.get("tags") {
        v["tags"] = json!(t);
    }
    if let Some(live) = live {
        let up = runner::uptime_of(live.pid);
        v["pid"] = json!(live.pid);
        v["mem"] = json!(runner::mem_usage(live.pid));
        v["uptime"] = json!(up);
        let secs = runner::cpu_seconds(live.pid);
        v["cpu"] = json!(if up > 0 {
            (secs / up as f64 / cpus.max(1.0)).min(1.0)
        } else {
            0.0
        });
        let (netin, netout) = net_bytes(id, conf);
        let (read, written) = runner::cgroup_dir(live.pid, "blkio")
            .map(|d| stats::cgroup_io_bytes(&d))
            .unwrap_or((0, 0));
        v["netin"] = json!(netin);
        v["netout"] = json!(netout);
        v["diskread"] = json!(read);
        v["diskwrite"] = json!(written);
    }
    v
}

/// Bytes into and out of the CT over its `net[n]`, counted on the host's
/// end of each veth (what the host sends is what the CT receives).
fn net_bytes(id: u32, conf: &Section) -> (u64, u64) {
    (0..32u32)
        .filter(|n| conf.get(&format!("net{n}")).is_some())
        .filter_map(|n| stats::iface_bytes(&runner::veth_name(id, n)))
        .fold((0, 0), |(i, o), (rx, tx)| (i + tx, o + rx))
}

/// A failed start as a node reports it: LXC's error lines in the task log,
/// then "startup for container 'N' failed". Errors before lxc-start ran
/// (no LXC log lines) are passed on as they are.
fn start_failed(
    task: &crate::tasks::Task,
    r: &runner::Runner,
    id: u32,
    e: anyhow::Error,
) -> anyhow::Error {
    let lines = crate::lxc_log::error_lines(&r.lxcpath.join(id.to_string()).join("lxc.log"));
    if lines.is_empty() || !format!("{e}").starts_with("startup for container") {
        return e;
    }
    for l in lines {
        task.log(l);
    }
    anyhow!("startup for container '{id}' failed")
}

pub(in crate::api) fn current(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Lxc)?;
    ok(status_json(app, vmid(p), &conf.main))
}

pub(in crate::api) fn power(app: &Arc<App>, ctx: &Ctx, p: &P, action: &str) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);
    let node = p["node"].clone();
    let (conf, _) = read(app, p, Kind::Lxc)?;
    let running = app.runner.state(id).is_some();
    if action != "stop" || !flag(p, "skiplock") {
        check_lock(&conf.main, flag(p, "skiplock"))?;
    }
    match (action, running) {
        ("start", true) => return Err(internal(format!("CT {id} already running"))),
        ("stop" | "shutdown" | "suspend" | "resume" | "reboot", false) => {
            return Err(internal(format!("CT {id} not running")))
        }
        _ => {}
    }
    let kind = match action {
        "start" => "vzstart",
        "stop" => "vzstop",
        "shutdown" => "vzshutdown",
        "suspend" => "vzsuspend",
        "resume" => "vzresume",
        _ => "vzreboot",
    };
    let timeout: u64 = p.get("timeout").and_then(|t| t.parse().ok()).unwrap_or(60);
    let force = flag(p, "forceStop");
    let action = action.to_string();
    let app2 = app.clone();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                let r = &app2.runner;
                let start = |task: &crate::tasks::Task| -> anyhow::Result<()> {
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, n) = rootfs_volume(&app2, &conf.main)?;
                    for w in crate::runner::Runner::config_warnings(id, &conf.main) {
                        task.log(w);
                    }
                    if let Err(e) = r.start(id, &conf.main, &s.path(&n)?) {
                        return Err(start_failed(task, r, id, e));
                    }
                    task.log(format!("CT {id} started"));
                    Ok(())
                };
                match action.as_str() {
                    "start" => start(task)?,
                    "stop" => r.stop(id)?,
                    "shutdown" => {
                        if !r.shutdown(id, timeout) {
                            if force {
                                task.log("shutdown timed out, stopping");
                                r.stop(id)?;
                            } else {
                                anyhow::bail!("container did not stop");
                            }
                        }
                    }
                    "suspend" => r.freeze(id, true)?,
                    "resume" => r.freeze(id, false)?,
                    _ => {
                        if !r.shutdown(id, timeout) {
                            r.stop(id)?;
                        }
                        start(task)?;
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}
