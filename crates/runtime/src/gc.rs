//! `gc`: find and remove what crashed commands left behind. Each source of
//! leftovers (crashed creates, orphan storage volumes, and more to come,
//! e.g. Proxmox CTs) is a [`LeftoverSource`]; [`Runtime::gc`] runs them all.
use serde::Serialize;

use crate::error::Result;
use crate::runtime::Runtime;
use crate::state::Status;
use crate::storage_glue;

/// One thing left behind.
#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    /// The source that found it (`create`, `volume`, ...).
    pub source: &'static str,
    /// What it is: a container id, a dataset, a path.
    pub name: String,
    /// Why it is a leftover.
    pub reason: String,
    /// What must still hold when it is removed (a crashed create: the
    /// `created` time of the state that was found).
    #[serde(skip)]
    pub stamp: Option<String>,
}

/// The outcome for one leftover.
#[derive(Debug, Clone, Serialize)]
pub struct GcResult {
    #[serde(flatten)]
    pub item: Leftover,
    /// None: removed (or would be, in a dry run); Some: why not.
    pub error: Option<String>,
}

/// A kind of leftover: how to find it and how to remove it.
pub trait LeftoverSource {
    fn name(&self) -> &'static str;
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>>;
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()>;
}

/// Containers whose create died half-way: status "creating", nothing of it
/// running, and no command holding its lock. Removed like `delete --force`
/// (which destroys its volume too).
pub struct CrashedCreates;

impl LeftoverSource for CrashedCreates {
    fn name(&self) -> &'static str {
        "create"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        let mut out = vec![];
        for id in rt.store.list()? {
            let Ok(st) = rt.store.load(&id) else { continue };
            if st.status != Status::Creating {
                continue;
            }
            // A create in progress holds the lock until it has recorded
            // `created`; a free lock on `creating` means its create died
            // (its monitor or CT may still be there: delete removes them).
            let Ok(Some(_lock)) = rt.store.try_lock(&id) else {
                continue;
            };
            out.push(Leftover {
                source: self.name(),
                name: id,
                reason: "its create was interrupted".into(),
                stamp: Some(st.created.clone()),
            });
        }
        Ok(out)
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        // Still the same crashed create? (It may have been deleted and the
        // id created anew since `find` looked.)
        rt.delete_if(&item.name, true, |st| {
            st.status == Status::Creating && Some(&st.created) == item.stamp.as_ref()
        })
    }
}

/// Storage volumes of this --root whose container has no state (or a state
/// that records another volume).
pub struct OrphanVolumes;

impl LeftoverSource for OrphanVolumes {
    fn name(&self) -> &'static str {
        "volume"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        let Some(storage) = storage_glue::configured(rt)? else {
            return Ok(vec![]);
        };
        // Volumes first, states second: a create records its volume before
        // making it, so a volume listed here has its state saved already.
        let found = storage.volumes()?;
        let root = crate::runtime::absolute(&rt.store.root);
        let mut out = vec![];
        for f in found {
            if f.owner.as_deref() != Some(root.as_path()) {
                continue; // another runtime's (another --root)
            }
            let recorded =
                f.id.as_deref()
                    .and_then(|id| rt.store.load(id).ok())
                    .and_then(|st| st.volume)
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
        let Some(storage) = storage_glue::configured(rt)? else {
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

/// Proxmox CTs tagged `proxmox-lxcri` whose description names this
/// runtime root and a container that has no state (its state was lost).
pub struct OrphanCts;

impl LeftoverSource for OrphanCts {
    fn name(&self) -> &'static str {
        "pve-ct"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        if rt.config.pve.is_none() {
            return Ok(vec![]);
        }
        Ok(rt
            .pve_orphans()?
            .into_iter()
            .map(|(node, vmid, id)| Leftover {
                source: self.name(),
                name: format!("{node}/{vmid}/{id}"),
                reason: format!(
                    "CT {vmid} on {node} belongs to container {id}, which has no state"
                ),
                stamp: None,
            })
            .collect())
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let mut parts = item.name.splitn(3, '/');
        let (Some(node), Some(vmid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(());
        };
        let Ok(vmid) = vmid.parse() else {
            return Ok(());
        };
        rt.pve_destroy_orphan(node, vmid, id)
    }
}

impl Runtime {
    /// Every source of leftovers this runtime knows.
    pub fn leftover_sources(&self) -> Vec<Box<dyn LeftoverSource>> {
        vec![
            Box::new(CrashedCreates),
            Box::new(OrphanVolumes),
            Box::new(OrphanCts),
        ]
    }

    /// Find leftovers of every source and (unless `dry_run`) remove them.
    /// Crashed creates go first: removing them frees their volumes.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<GcResult>> {
        let mut out = vec![];
        for src in self.leftover_sources() {
            for item in src.find(self)? {
                let error = if dry_run {
                    None
                } else {
                    src.remove(self, &item).err().map(|e| e.to_string())
                };
                out.push(GcResult { item, error });
            }
        }
        Ok(out)
    }
}
