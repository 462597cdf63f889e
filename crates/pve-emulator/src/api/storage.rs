//! /nodes/{node}/storage: the storages, their content, volumes and
//! template uploads.

use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};

use super::{find_storage, internal, ok, volumes_of, App, Ctx, P, R};
use crate::error::ApiError;
use crate::storage::{self, Storage};

pub(super) fn list(app: &App, p: &P) -> Value {
    json!(app
        .storages
        .iter()
        .filter(|s| p.get("storage").is_none_or(|x| *x == s.id))
        .filter(|s| p.get("content").is_none_or(|c| c.split(',').all(|c| s.supports(c))))
        .map(|s| {
            let (total, used, avail) = s.status();
            json!({
                "storage": s.id, "type": s.type_name(), "content": s.content(), "active": 1, "enabled": 1,
                "shared": 0, "total": total, "used": used, "avail": avail,
                "used_fraction": if total > 0 { used as f64 / total as f64 } else { 0.0 },
            })
        })
        .collect::<Vec<_>>())
}

/// GET .../storage/{storage}/status: sizes from the backend itself
/// (statvfs of the directory, or the dataset's used/available).
pub(super) fn status(app: &App, p: &P) -> R {
    let s = find_storage(app, &p["storage"])?;
    let (total, used, avail) = s.status();
    ok(json!({
        "type": s.type_name(), "content": s.content(), "active": 1, "enabled": 1, "shared": 0,
        "total": total, "used": used, "avail": avail,
    }))
}

pub(super) fn content(app: &App, p: &P) -> R {
    let s = find_storage(app, &p["storage"])?;
    let vmid = p.get("vmid").and_then(|v| v.parse().ok());
    ok(json!(s.list(p.get("content").map(String::as_str), vmid)))
}

/// Resolves `{volume}` (`STORAGE:NAME` or just `NAME`) on `{storage}`.
fn volume_of(app: &App, p: &P) -> Result<(Storage, String), ApiError> {
    let vol = &p["volume"];
    let (sid, name) = match storage::split_volid(vol) {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (p.get("storage").cloned().unwrap_or_default(), vol.clone()),
    };
    if p.get("storage").is_some_and(|s| *s != sid) {
        return Err(ApiError::param(
            "volume",
            format!("volume '{vol}' is not on storage '{}'", p["storage"]),
        ));
    }
    Ok((find_storage(app, &sid)?, name))
}

pub(super) fn volume_info(app: &App, p: &P) -> R {
    let (s, name) = volume_of(app, p)?;
    if let Some(t) = name.strip_prefix("vztmpl/") {
        let path = s
            .template_dir()
            .map(|d| d.join(t))
            .filter(|p| storage::is_template_name(t) && p.exists())
            .ok_or_else(|| internal(format!("volume '{}:{name}' does not exist", s.id)))?;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        return ok(
            json!({"path": path, "size": len, "used": len, "format": t.split_once('.').map(|x| x.1).unwrap_or("tar")}),
        );
    }
    let path = s.path(&name).map_err(ApiError::from)?;
    if !path.exists() {
        return Err(internal(format!("volume '{}:{name}' does not exist", s.id)));
    }
    let (size, used) = s.usage(&name).map_err(ApiError::from)?;
    ok(json!({"path": path, "size": size, "used": used, "format": "subvol"}))
}

pub(super) fn volume_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let (s, name) = volume_of(app, p)?;
    let volid = format!("{}:{name}", s.id);
    // A volume still referenced by a guest config is refused.
    for (n, k, id) in app.store.list() {
        if let Ok((c, _)) = app.store.read(&n, k, id) {
            if volumes_of(&c.main).contains(&volid) {
                return Err(internal(format!(
                    "unable to delete volume '{volid}' - used by CT {id}"
                )));
            }
        }
    }
    let path = if let Some(t) = name.strip_prefix("vztmpl/") {
        s.template_dir()
            .map(|d| d.join(t))
            .filter(|_| storage::is_template_name(t))
    } else {
        None
    };
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "imgdel",
            "",
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                match &path {
                    Some(f) => std::fs::remove_file(f)
                        .with_context(|| format!("removing {}", f.display()))?,
                    None => s.free(&name)?,
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

pub(super) fn upload(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let s = find_storage(app, &p["storage"])?;
    if p["content"] != "vztmpl" {
        return Err(ApiError::param(
            "content",
            "only 'vztmpl' uploads are supported by the emulator",
        ));
    }
    if !s.supports("vztmpl") {
        return Err(ApiError::param(
            "content",
            format!("storage '{}' does not support 'vztmpl' content", s.id),
        ));
    }
    let Some((name, data)) = &ctx.file else {
        return Err(ApiError::param(
            "filename",
            "no file part named 'filename' in the multipart body",
        ));
    };
    if !storage::is_template_name(name) {
        return Err(ApiError::param(
            "filename",
            format!("wrong file extension or name '{name}'"),
        ));
    }
    if let Some(sum) = p.get("checksum") {
        let alg = p
            .get("checksum-algorithm")
            .map(String::as_str)
            .unwrap_or("");
        let got = match alg {
            "sha256" => ring::digest::digest(&ring::digest::SHA256, data),
            "sha512" => ring::digest::digest(&ring::digest::SHA512, data),
            "sha384" => ring::digest::digest(&ring::digest::SHA384, data),
            "sha1" => ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data),
            _ => {
                return Err(ApiError::param(
                    "checksum-algorithm",
                    "supported here: sha1, sha256, sha384, sha512",
                ))
            }
        };
        let hex: String = got.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if !hex.eq_ignore_ascii_case(sum) {
            return Err(internal(format!(
                "checksum mismatch: got '{hex}' != expect '{sum}'"
            )));
        }
    }
    let dir = s.template_dir().expect("dir storage");
    // One temp file per upload: concurrent uploads of one name must not share it.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".upload-{}-{n}-{name}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| internal(format!("writing upload: {e}")))?;
    let dst = dir.join(name);
    let len = data.len();
    let volid_log = format!("{}:vztmpl/{name}", s.id);
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "imgcopy",
            "",
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let r = task.injected().and_then(|_| {
                    std::fs::rename(&tmp, &dst).context("moving the upload into place")
                });
                if r.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                r?;
                task.log(format!("target file: {} ({volid_log})", dst.display()));
                task.log(format!("file size is: {len}"));
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

/// POST /nodes/{node}/storage/{storage}/content: allocate a VM disk image
/// (`pvesm alloc`); answers its volume id (synchronously, no task).
pub(super) fn alloc(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let _ = ctx;
    let s = find_storage(app, &p["storage"])?;
    let vmid: u32 = p["vmid"]
        .parse()
        .map_err(|_| ApiError::param("vmid", "not an integer"))?;
    if let Some(f) = p.get("format").filter(|f| *f != "raw") {
        return Err(ApiError::param(
            "format",
            format!("format '{f}' is not supported by the emulator (raw only)"),
        ));
    }
    let size = &p["size"];
    let (num, mult) = match size.strip_suffix('G') {
        Some(n) => (n, 1u64 << 30),
        None => match size.strip_suffix('M') {
            Some(n) => (n, 1u64 << 20),
            None => (size.as_str(), 1u64 << 10),
        },
    };
    let bytes = num
        .parse::<u64>()
        .map_err(|_| ApiError::param("size", "size format error"))?
        * mult;
    let name = s
        .alloc_named(vmid, &p["filename"], bytes)
        .map_err(|e| internal(format!("{e:#}")))?;
    ok(json!(format!("{}:{name}", s.id)))
}
