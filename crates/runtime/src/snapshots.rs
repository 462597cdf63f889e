//! `[storage]` as the runtime holds it (built once per command), and the
//! snapshot and image commands on container volumes.
use storage::{Storage, Volume};

use crate::engine::EngineRecord;
use crate::error::{Error, Result};
use crate::id;
use crate::runtime::Runtime;
use crate::state::{ContainerLock, ContainerState, Status};

impl Runtime {
    /// The configured storage; None without a `[storage]` section.
    pub fn storage(&self) -> Result<Option<&Storage>> {
        let Some(cfg) = &self.config.storage else {
            return Ok(None);
        };
        if let Some(s) = self.storage.get() {
            return Ok(Some(s));
        }
        let s = Storage::new(cfg.clone())?;
        Ok(Some(self.storage.get_or_init(|| s)))
    }

    pub(crate) fn storage_required(&self) -> Result<&Storage> {
        self.storage()?
            .ok_or_else(|| Error::Config("no [storage] section in the config file".into()))
    }

    /// The storage that made `vol`.
    pub(crate) fn storage_for(&self, vol: &Volume) -> Result<&Storage> {
        self.storage()?.ok_or_else(|| {
            Error::Config(format!(
                "volume {} was made with a [storage] section that the config file no longer has",
                vol.name
            ))
        })
    }

    /// The `[storage]` volume a state records, if any.
    pub(crate) fn volume_of_state<'s>(&self, st: &'s ContainerState) -> Option<&'s Volume> {
        match &st.engine {
            EngineRecord::Lxc(r) => r.volume.as_ref(),
            _ => None,
        }
    }

    /// The volume of a container, with the container locked.
    fn volume_of(&self, id: &str) -> Result<(ContainerLock, ContainerState, Volume)> {
        id::validate(id)?;
        let lock = self.store.lock(id)?;
        let st = self.refresh(self.store.load(id)?);
        let vol = self.volume_of_state(&st).cloned().ok_or_else(|| {
            Error::Config(format!(
                "container {id} has no storage volume (its rootfs is the bundle's; configure [storage])"
            ))
        })?;
        Ok((lock, st, vol))
    }

    pub fn snapshot_create(&self, id: &str, name: &str) -> Result<()> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(self.storage_for(&vol)?.snapshot_create(&vol, name)?)
    }

    pub fn snapshot_list(&self, id: &str) -> Result<Vec<storage::SnapshotInfo>> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(self.storage_for(&vol)?.snapshot_list(&vol)?)
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
        Ok(self.storage_for(&vol)?.snapshot_rollback(&vol, name)?)
    }

    pub fn snapshot_delete(&self, id: &str, name: &str) -> Result<()> {
        let (_l, _st, vol) = self.volume_of(id)?;
        Ok(self.storage_for(&vol)?.snapshot_delete(&vol, name)?)
    }

    pub fn image_list(&self) -> Result<Vec<storage::ImageInfo>> {
        Ok(self.storage_required()?.images()?)
    }

    /// Remove cached images no container needs; their keys.
    pub fn image_gc(&self) -> Result<Vec<String>> {
        Ok(self.storage_required()?.image_gc()?)
    }
}
