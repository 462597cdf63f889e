//! Making the CT: a VMID, the create request, the rootfs volume filled from
//! the bundle. Each step is recorded in the state before it is made.
use std::path::Path;

use super::*;

/// The error text of a task that ended badly; None while it runs or if OK.
pub(super) fn task_error(client: &Client, upid: &Upid) -> Option<String> {
    let st = client.task_status(upid).ok()?;
    if st.status != "stopped" {
        return None;
    }
    match st.exitstatus.as_deref() {
        Some("OK") => None,
        Some(s) if s.starts_with("WARNINGS") => None,
        Some(s) => Some(super::task_log::describe(client, upid, s)),
        None => Some("the task ended without a status".into()),
    }
}

/// Allocate a VMID and create a guest with it (`create` sends the request
/// for a VMID), waiting for the task. The
/// record (`set` puts it into the state) names each VMID before its create
/// is sent and says `created` once it was. nextid gives every concurrent
/// create the same lowest free id: after a collision the next try spreads
/// out above it. A create sent without an answer is looked for (by our
/// description) rather than sent twice. `failed` sees every other error.
pub(crate) fn create_guest(
    cx: &mut Cx,
    mut rec: PveRecord,
    kind: Guest,
    set: fn(&mut ContainerState, PveRecord),
    create: impl Fn(u32) -> std::result::Result<Upid, pve_client::Error>,
    failed: impl Fn(&pve_client::Error),
) -> Result<u32> {
    let rt = cx.rt;
    let cfg = rt.config.pve()?;
    let client = client(rt)?;
    let id = cx.state.id.clone();
    let what = format!("creating the {}", kind.name());
    let mut attempt = 0u32;
    let mut skip = 0u32;
    loop {
        attempt += 1;
        let vmid = client
            .next_id(None)
            .map_err(api("allocating a VMID"))?
            .saturating_add(skip);
        rec.vmid = Some(vmid);
        rec.created = false;
        set(&mut cx.state, rec.clone());
        cx.save()?;
        let upid = match create(vmid) {
            Ok(u) => Some(u),
            // Another node (or runtime) took the VMID between nextid and
            // create: ask again.
            Err(e) if is_taken(&e) && attempt < 30 => {
                skip = jitter(attempt * 3);
                continue;
            }
            // Sent, but no answer: look whether it landed, never create
            // twice.
            Err(e @ (pve_client::Error::Disconnected(_) | pve_client::Error::Timeout(_))) => {
                if kind.owns(client, &cfg.node, vmid, &id, &rt.store.root)? {
                    None
                } else {
                    return Err(api(&what)(e));
                }
            }
            Err(e) => {
                failed(&e);
                return Err(api(&what)(e));
            }
        };
        rec.created = true;
        set(&mut cx.state, rec.clone());
        cx.save()?;
        match upid {
            Some(u) => wait(client, cfg, &u, &format!("creating {} {vmid}", kind.name()))?,
            None => kind.wait_unlocked(client, cfg, &cfg.node, vmid)?,
        }
        return Ok(vmid);
    }
}

/// Allocate a VMID and create the CT (stopped) with the bundle's rootfs in
/// its volume; returns the VMID.
pub(super) fn make_ct(cx: &mut Cx, plan: &CtPlan, rootfs: &Path) -> Result<u32> {
    let rt = cx.rt;
    let cfg = rt.config.pve()?;
    let client = client(rt)?;
    let template = ensure_template(client, cfg, &rt.store.root)?;
    let rec = PveRecord {
        node: cfg.node.clone(),
        vmid: None,
        created: false,
        unprivileged: plan.unprivileged,
    };
    let vmid = create_guest(
        cx,
        rec,
        Guest::Ct,
        set_record,
        |vmid| {
            let params = plan
                .params
                .clone()
                .int("vmid", vmid as i64)
                .set("ostemplate", template.clone());
            client.lxc_create(&cfg.node, &params)
        },
        |e| {
            if is_missing_template(e) {
                forget_template(&rt.store.root);
            }
        },
    )?;
    let volume = rootfs_path(client, &cfg.node, vmid)?;
    let shift = plan.unprivileged.then(unprivileged_shift);
    let mut progress =
        storage::TerminalProgress::new(format!("copying rootfs to {}", volume.display()), None);
    storage::fill_volume(
        rt.storage()?,
        rootfs,
        &volume,
        &cx.state.annotations,
        shift.as_ref(),
        &mut progress,
    )?;
    Ok(vmid)
}
