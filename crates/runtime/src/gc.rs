//! `gc`: find and remove what crashed commands left behind. Each source of
//! leftovers (crashed creates here; each engine's own, such as orphan
//! volumes or Proxmox CTs, in `engine/`) is a [`LeftoverSource`];
//! [`Runtime::gc`] runs them all.
use serde::Serialize;

use crate::error::Result;
use crate::runtime::Runtime;
use crate::state::Status;

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

/// Container directories without a state: a claim or a removal that a crash
/// cut short (staging names), or an id directory from before claims were
/// staged. No command holds them.
pub struct LeftoverDirs;

impl LeftoverSource for LeftoverDirs {
    fn name(&self) -> &'static str {
        "dir"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        Ok(rt
            .store
            .leftover_dirs()?
            .into_iter()
            .map(|p| Leftover {
                source: self.name(),
                name: p.display().to_string(),
                reason:
                    "a container directory without a state, left by an interrupted create or delete"
                        .into(),
                stamp: None,
            })
            .collect())
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let path = std::path::Path::new(&item.name);
        // Still one? (A create may have claimed the id since.)
        if !rt.store.leftover_dirs()?.iter().any(|p| p == path) {
            return Ok(());
        }
        crate::exchange::remove_exchange(path);
        std::fs::remove_dir_all(path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|source| crate::error::Error::Io {
                context: format!("removing {}", path.display()),
                source,
            })
    }
}

impl Runtime {
    /// Every source of leftovers this runtime knows.
    pub fn leftover_sources(&self) -> Vec<Box<dyn LeftoverSource>> {
        let mut sources: Vec<Box<dyn LeftoverSource>> =
            vec![Box::new(CrashedCreates), Box::new(LeftoverDirs)];
        sources.extend(crate::engine::leftover_sources());
        // Last: the creates removed above free their leases.
        sources.push(Box::new(crate::network::OrphanLeases));
        sources.push(Box::new(crate::network::OrphanRules));
        sources
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
