//! The lxc engine's rootfs volume from `[storage]`: planned before anything
//! is made, recorded in the state before it is made, destroyed with the
//! container; and `gc`'s search for volumes whose container is gone.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use storage::{IdRange, IdShift, TerminalProgress, VolumePlan, VolumeRequest};

use super::super::{Cx, EngineRecord};
use crate::error::Result;
use crate::gc::{Leftover, LeftoverSource};
use crate::runtime::Runtime;
use crate::state::ContainerState;

/// The uid/gid shift of a spec with a user namespace and id mappings.
pub fn id_shift(spec: &Spec) -> Option<IdShift> {
    let linux = spec.linux().as_ref()?;
    let userns = linux
        .namespaces()
        .as_ref()?
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    if !userns {
        return None;
    }
    let ranges = |m: &Option<Vec<LinuxIdMapping>>| -> Vec<IdRange> {
        m.as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| IdRange {
                container_id: m.container_id(),
                host_id: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    let shift = IdShift {
        uids: ranges(linux.uid_mappings()),
        gids: ranges(linux.gid_mappings()),
    };
    (!shift.uids.is_empty() || !shift.gids.is_empty()).then_some(shift)
}

/// Check what the container asks of storage; nothing is made. None when
/// there is no `[storage]` (the bundle's rootfs is used in place).
pub(super) fn plan(
    rt: &Runtime,
    id: &str,
    annotations: &BTreeMap<String, String>,
    spec: &Spec,
) -> Result<Option<VolumePlan>> {
    let Some(storage) = rt.storage()? else {
        return Ok(None);
    };
    let plan = storage.plan(&VolumeRequest {
        id,
        owner: &rt.store.root,
        annotations,
        shift: id_shift(spec),
    })?;
    Ok(Some(plan))
}

/// Record the volume in the state, make it from `source`, record where it
/// is; returns the rootfs to give LXC. The create guard destroys the
/// volume if anything after this fails.
pub(super) fn make(cx: &mut Cx, plan: &VolumePlan, source: &Path) -> Result<PathBuf> {
    let storage = cx.rt.storage_required()?;
    set_volume(&mut cx.state, Some(plan.volume.clone()));
    cx.save()?;
    let mut progress = TerminalProgress::new(format!("copying rootfs of {}", cx.state.id), None);
    let vol = storage.create(plan, source, &mut progress)?;
    cx.state.rootfs = vol.path.clone();
    set_volume(&mut cx.state, Some(vol));
    cx.save()?;
    Ok(cx.state.rootfs.clone())
}

fn set_volume(st: &mut ContainerState, vol: Option<storage::Volume>) {
    if let EngineRecord::Lxc(rec) = &mut st.engine {
        rec.volume = vol;
    }
}

/// Destroy a container's volume, if it has one.
pub(super) fn destroy(rt: &Runtime, st: &ContainerState) -> Result<()> {
    let EngineRecord::Lxc(super::LxcRecord {
        volume: Some(vol), ..
    }) = &st.engine
    else {
        return Ok(());
    };
    rt.storage_for(vol)?.destroy(vol)?;
    Ok(())
}

/// Storage volumes of this --root whose container has no state (or a state
/// that records another volume).
pub struct OrphanVolumes;

impl LeftoverSource for OrphanVolumes {
    fn name(&self) -> &'static str {
        "volume"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        let Some(storage) = rt.storage()? else {
            return Ok(vec![]);
        };
        // Volumes first, states second: a create records its volume before
        // making it, so a volume listed here has its state saved already.
        let found = storage.volumes()?;
        let mut out = vec![];
        for f in found {
            if f.owner.as_deref() != Some(rt.store.root.as_path()) {
                continue; // another runtime's (another --root)
            }
            let recorded =
                f.id.as_deref()
                    .and_then(|id| rt.store.load(id).ok())
                    .and_then(|st| rt.volume_of_state(&st).cloned())
                    .is_some_and(|v| v.name == f.volume.name);
            if !recorded {
                out.push(Leftover {
                    source: self.name(),
                    name: f.volume.name.clone(),
                    reason: format!("no container {} records it", f.id.as_deref().unwrap_or("?")),
                    stamp: None,
                });
            }
        }
        Ok(out)
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let Some(storage) = rt.storage()? else {
            return Ok(());
        };
        // Looked up again: only a volume storage lists can be destroyed.
        if let Some(f) = storage
            .volumes()?
            .into_iter()
            .find(|f| f.volume.name == item.name)
        {
            storage.destroy(&f.volume)?;
        }
        Ok(())
    }
}
