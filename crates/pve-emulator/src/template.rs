//! Template extraction: vztmpl tarballs (plain, gz, xz, zst, bz2: GNU tar
//! detects the compression) and OCI-layout archives (layers applied in
//! order with whiteouts), then the uid/gid shift of unprivileged CTs.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::storage::run;

/// What an OCI image's config asks of the CT.
#[derive(Debug, Default, Clone)]
pub struct OciConfig {
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stop_signal: Option<String>,
}

fn tar_list(file: &Path) -> Result<Vec<String>> {
    let out = run(
        "tar",
        &["--quoting-style=literal", "-tf", &file.to_string_lossy()],
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

/// GNU tar as root keeps owners (`--numeric-owner`: ids, not names looked up
/// on the host) and modes (`-p`), and detects the compression itself.
fn untar(file: &Path, dest: &Path, exclude_whiteouts: bool) -> Result<()> {
    let file = file.to_string_lossy();
    let dest = dest.to_string_lossy();
    let mut args = vec!["-xpf", &file, "-C", &dest, "--numeric-owner"];
    if exclude_whiteouts {
        args.push("--exclude=.wh.*");
    }
    run("tar", &args).map(|_| ())
}

/// Joins a relative archive path under `root`, refusing `..` and symlinked parents.
fn safe_join(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    let rel = Path::new(rel.trim_start_matches("./"));
    let comps: Vec<Component> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::Normal(s) => {
                p.push(s);
                if i + 1 < comps.len()
                    && p.symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                {
                    bail!("layer path '{}' goes through a symlink", rel.display());
                }
            }
            Component::CurDir => {}
            _ => bail!(
                "layer path '{}' is not a plain relative path",
                rel.display()
            ),
        }
    }
    Ok(p)
}

fn remove_any(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p)?,
        Ok(_) => std::fs::remove_file(p)?,
        Err(_) => {}
    }
    Ok(())
}

/// Applies one layer: whiteouts first (they only ever name lower content), then the files.
fn apply_layer(blob: &Path, rootfs: &Path) -> Result<()> {
    for name in tar_list(blob)? {
        let name = name.trim_end_matches('/');
        let (dir, base) = match name.rsplit_once('/') {
            Some((d, b)) => (d, b),
            None => ("", name),
        };
        if base == ".wh..wh..opq" {
            let d = safe_join(rootfs, dir)?;
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    remove_any(&e.path())?;
                }
            }
        } else if let Some(target) = base.strip_prefix(".wh.") {
            let rel = if dir.is_empty() {
                target.to_string()
            } else {
                format!("{dir}/{target}")
            };
            remove_any(&safe_join(rootfs, &rel)?)?;
        }
    }
    untar(blob, rootfs, true)
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}
#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
}
#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}
#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}
#[derive(Deserialize, Default)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ImgCfg>,
}
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ImgCfg {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let (alg, hex) = digest
        .split_once(':')
        .with_context(|| format!("bad digest '{digest}'"))?;
    if !alg.chars().all(|c| c.is_ascii_alphanumeric())
        || !hex.chars().all(|c| c.is_ascii_hexdigit())
    {
        bail!("bad digest '{digest}'");
    }
    Ok(layout.join("blobs").join(alg).join(hex))
}

/// Quotes an argument for lxc.init.cmd (which LXC splits honouring quotes).
fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn extract_oci(file: &Path, rootfs: &Path, scratch: &Path) -> Result<OciConfig> {
    let layout = scratch.join("oci");
    std::fs::create_dir_all(&layout)?;
    untar(file, &layout, false).context("unpacking the OCI archive")?;
    let read = |p: &Path| -> Result<Vec<u8>> {
        std::fs::read(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut index: Index =
        serde_json::from_slice(&read(&layout.join("index.json"))?).context("parsing index.json")?;
    // An index may point at another index (multi-platform): take amd64.
    let manifest: Manifest = loop {
        let d = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.architecture == "amd64")
            })
            .context("index.json lists no amd64 manifest")?;
        let bytes = read(&blob_path(&layout, &d.digest)?)?;
        if d.media_type.contains("image.index") || d.media_type.contains("manifest.list") {
            index = serde_json::from_slice(&bytes).context("parsing the image index")?;
            continue;
        }
        break serde_json::from_slice(&bytes).context("parsing the image manifest")?;
    };
    for l in &manifest.layers {
        apply_layer(&blob_path(&layout, &l.digest)?, rootfs)
            .with_context(|| format!("applying layer {}", l.digest))?;
    }
    let cfg: ImageConfig =
        serde_json::from_slice(&read(&blob_path(&layout, &manifest.config.digest)?)?)
            .unwrap_or_default();
    let c = cfg.config.unwrap_or_default();
    let mut argv = c.entrypoint.unwrap_or_default();
    argv.extend(c.cmd.unwrap_or_default());
    Ok(OciConfig {
        entrypoint: (!argv.is_empty())
            .then(|| argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")),
        env: c.env.unwrap_or_default(),
        user: c.user.filter(|u| !u.is_empty()),
        workdir: c.working_dir.filter(|w| !w.is_empty()),
        stop_signal: c.stop_signal,
    })
}

/// Extracts `file` into `rootfs`; returns the OCI config for OCI archives.
pub fn extract(file: &Path, rootfs: &Path, scratch: &Path) -> Result<Option<OciConfig>> {
    let name = file.to_string_lossy();
    if name.ends_with(".tar") {
        let members = tar_list(file)?;
        let has = |n: &str| members.iter().any(|m| m.trim_start_matches("./") == n);
        if has("oci-layout") && has("index.json") {
            return extract_oci(file, rootfs, scratch).map(Some);
        }
    }
    untar(file, rootfs, false)?;
    Ok(None)
}

/// Shifts every file's owner by `offset` (unprivileged CTs), keeping
/// setuid/setgid bits that chown clears.
pub fn shift_ids(root: &Path, offset: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = p
            .symlink_metadata()
            .with_context(|| format!("stat {}", p.display()))?;
        if m.uid() < 65536 || m.gid() < 65536 {
            let uid = if m.uid() < 65536 {
                m.uid() + offset
            } else {
                m.uid()
            };
            let gid = if m.gid() < 65536 {
                m.gid() + offset
            } else {
                m.gid()
            };
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
            if !m.file_type().is_symlink() && m.mode() & 0o6000 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p)?.flatten() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Looks a user/group name up in the rootfs's /etc/passwd or /etc/group.
pub fn lookup_id(rootfs: &Path, file: &str, name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join("etc").join(file)).ok()?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            let id = f[2].parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            return Some((id, gid));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        assert!(safe_join(d.path(), "a/b").is_ok());
        assert!(safe_join(d.path(), "../x").is_err());
        std::os::unix::fs::symlink("/etc", d.path().join("l")).unwrap();
        assert!(safe_join(d.path(), "l/passwd").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/bin/sh"), "/bin/sh");
        assert_eq!(quote("a b"), "'a b'");
    }
}
