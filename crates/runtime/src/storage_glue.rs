//! The runtime's side of `[storage]`: a container's rootfs volume (planned
//! before anything is made, recorded in the state before it is made,
//! destroyed with the container) and the snapshot and image commands.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use storage::{IdRange, IdShift, Storage, TerminalProgress, Volume, VolumePlan, VolumeRequest};

use crate::error::{Error, Result};
use crate::id;
use crate::runtime::Runtime;
use crate::state::{ContainerState, Status};

/// The configured storage, if the config file has a `[storage]` section.
pub fn configured(rt: &Runtime) -> Result<Option<Storage>> {
    match &rt.config.storage {
        Some(cfg) => Ok(Some(Storage::new(cfg.clone())?)),
        None => Ok(None),
    }
}

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
pub fn plan(
    rt: &Runtime,
    id: &str,
    annotations: &BTreeMap<String, String>,
    spec: &Spec,
) -> Result<Option<(Storage, VolumePlan)>> {
    let Some(storage) = configured(rt)? else {
        return Ok(None);
    };
    let root = crate::runtime::absolute(&rt.store.root);
    let plan = storage.plan(&VolumeRequest {
        id,
        owner: &root,
        annotations,
        shift: id_shift(spec),
    })?;
    Ok(Some((storage, plan)))
}

/// Record the volume in the state, make it from `source`, record where it
/// is; returns the rootfs to give the engine. The caller destroys the
/// volume if anything after this fails.
pub fn make(
    rt: &Runtime,
    state: &mut ContainerState,
    storage: &Storage,
    plan: &VolumePlan,
    source: &Path,
) -> Result<PathBuf> {
    state.volume = Some(plan.volume.clone());
    rt.store.save(state)?;
    let mut progress = TerminalProgress::new(format!("copying rootfs of {}", state.id), None);
    let vol = storage.create(plan, source, &mut progress)?;
    state.rootfs = vol.path.clone();
    state.volume = Some(vol);
    rt.store.save(state)?;
    Ok(state.rootfs.clone())
}

/// Destroy a container's volume, if it has one.
pub fn destroy(rt: &Runtime, st: &ContainerState) -> Result<()> {
    let Some(vol) = &st.volume else {
        return Ok(());
    };
    storage_for(rt, vol)?.destroy(vol)?;
    Ok(())
}

fn storage_for(rt: &Runtime, vol: &Volume) -> Result<Storage> {
    configured(rt)?.ok_or_else(|| {
        Error::Config(format!(
            "volume {} was made with a [storage] section that the config file no longer has",
            vol.name
        ))
    })
}

impl Runtime {
    /// The volume of a container, with the container locked.
    fn volume_of(&self, id: &str) -> Result<(crate::state::ContainerLock, ContainerState, Volume)> {
        id::validate(id)?;
        let lock = self.store.lock(id)?;
        let st = self.refresh(self.store.load(id)?);
        let vol = st.volume.clone().ok_or_else(|| {
            Error::Config(format!(
                "container {id} has no storage volume (its rootfs is the bundle's; configure [storage])"
            ))
        })?;
        Ok((lock, st, vol))
    }

    pub fn snapshot_create(&self, id: &str, name: &str) -> Result<()> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(storage_for(self, &vol)?.snapshot_create(&vol, name)?)
    }

    pub fn snapshot_list(&self, id: &str) -> Result<Vec<storage::SnapshotInfo>> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(storage_for(self, &vol)?.snapshot_list(&vol)?)
    }

    /// Roll the rootfs back; not under a running process.
    pub fn snapshot_rollback(&self, id: &str, name: &str) -> Result<()> {
        let (_l, st, vol) = self.volume_of(id)?;
        if matches!(st.status, Status::Running | Status::Paused) {
            return Err(Error::BadState {
                id: id.into(),
                status: st.status.to_string(),
                action: "snapshot rollback",
                needs: "created or stopped",
            });
        }
        Ok(storage_for(self, &vol)?.snapshot_rollback(&vol, name)?)
    }

    pub fn snapshot_delete(&self, id: &str, name: &str) -> Result<()> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(storage_for(self, &vol)?.snapshot_delete(&vol, name)?)
    }

    fn storage_required(&self) -> Result<Storage> {
        configured(self)?
            .ok_or_else(|| Error::Config("no [storage] section in the config file".into()))
    }

    pub fn image_list(&self) -> Result<Vec<storage::ImageInfo>> {
        Ok(self.storage_required()?.images()?)
    }

    /// Remove cached images no container needs; their keys.
    pub fn image_gc(&self) -> Result<Vec<String>> {
        Ok(self.storage_required()?.image_gc()?)
    }
}
