//! `snapshot`, `image` and `gc`: storage commands over the runtime.
use std::io::Write;

use anyhow::Result;
use proxmox_lxcri_runtime::Runtime;

use crate::cli::{ImageCmd, ListFormat, SnapshotCmd};

pub fn snapshot(rt: &Runtime, c: SnapshotCmd) -> Result<()> {
    match c {
        SnapshotCmd::Create { id, name } => rt.snapshot_create(&id, &name)?,
        SnapshotCmd::Rollback { id, name } => rt.snapshot_rollback(&id, &name)?,
        SnapshotCmd::Delete { id, name } => rt.snapshot_delete(&id, &name)?,
        SnapshotCmd::List { format, id } => {
            let snaps = rt.snapshot_list(&id)?;
            let mut out = std::io::stdout().lock();
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&snaps)?)?,
                ListFormat::Table => {
                    writeln!(out, "{:<32} {:<32} USED", "NAME", "CREATED")?;
                    for s in snaps {
                        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created);
                        writeln!(
                            out,
                            "{:<32} {:<32} {}",
                            s.name,
                            humantime::format_rfc3339_seconds(t),
                            storage::size::human(s.used_bytes)
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn image(rt: &Runtime, c: ImageCmd) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match c {
        ImageCmd::Gc => {
            for key in rt.image_gc()? {
                writeln!(out, "removed image {key}")?;
            }
        }
        ImageCmd::List { format } => {
            let images = rt.image_list()?;
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&images)?)?,
                ListFormat::Table => {
                    writeln!(out, "{:<68} {:>8} {:>7} STATE", "KEY", "SIZE", "CLONES")?;
                    for i in images {
                        writeln!(
                            out,
                            "{:<68} {:>8} {:>7} {}",
                            i.key,
                            storage::size::human(i.referenced_bytes),
                            i.clones.len(),
                            if i.complete { "ready" } else { "incomplete" }
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn gc(rt: &Runtime, dry_run: bool) -> Result<()> {
    let results = rt.gc(dry_run)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for r in &results {
        let what = if dry_run { "would remove" } else { "removed" };
        match &r.error {
            None => writeln!(
                out,
                "{what} {} {} ({})",
                r.item.source, r.item.name, r.item.reason
            )?,
            Some(e) => {
                failed += 1;
                writeln!(out, "cannot remove {} {}: {e}", r.item.source, r.item.name)?
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("gc: {failed} leftover(s) could not be removed");
    }
    Ok(())
}
