//! Template extraction: vztmpl tarballs (plain, gz, xz, zst, bz2: GNU tar
//! detects the compression) and OCI-layout archives (layers applied in
//! order with whiteouts), then the uid/gid shift of unprivileged CTs.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// Reads a file of the unpacked layout: a regular file, never through a symlink.
fn read_member(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .with_context(|| format!("opening {} (symlinks are refused)", p.display()))?;
    if !f.metadata()?.is_file() {
        bail!("{} is not a regular file", p.display());
    }
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    Ok(b)
}

/// Refuses an OCI layout holding anything but directories and regular files
/// with a single link: a symlink or hard link could make a "blob" of a host file.
fn check_layout(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let m = p.symlink_metadata()?;
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            if m.is_dir() {
                stack.push(p);
            } else if !m.is_file() {
                bail!("OCI archive member '{rel}' is not a regular file or directory");
            } else if m.nlink() != 1 {
                bail!("OCI archive member '{rel}' is a hard link");
            }
        }
    }
    Ok(())
}

/// Refuses control characters (newlines above all) in a value from the image
/// config: it ends up in a CT config line.
fn clean_oci(field: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        bail!(
            "OCI image config: {field} '{}' contains a control character",
            v.escape_debug()
        );
    }
    Ok(())
}

fn extract_oci(file: &Path, rootfs: &Path, scratch: &Path) -> Result<OciConfig> {
    let layout = scratch.join("oci");
    std::fs::create_dir_all(&layout)?;
    untar(file, &layout, false).context("unpacking the OCI archive")?;
    check_layout(&layout)?;
    let mut index: Index = serde_json::from_slice(&read_member(&layout.join("index.json"))?)
        .context("parsing index.json")?;
    // An index may point at another index (multi-platform): take amd64.
    let (manifest, desc): (Manifest, Descriptor) = loop {
        let i = index
            .manifests
            .iter()
            .position(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.architecture == "amd64")
            })
            .context("index.json lists no amd64 manifest")?;
        let d = index.manifests.swap_remove(i);
        let bytes = read_member(&blob_path(&layout, &d.digest)?)?;
        if d.media_type.contains("image.index") || d.media_type.contains("manifest.list") {
            index = serde_json::from_slice(&bytes).context("parsing the image index")?;
            continue;
        }
        let m = serde_json::from_slice(&bytes).context("parsing the image manifest")?;
        break (m, d);
    };
    let cfg: ImageConfig =
        serde_json::from_slice(&read_member(&blob_path(&layout, &manifest.config.digest)?)?)
            .unwrap_or_default();
    let c = cfg.config.unwrap_or_default();
    let mut argv = c.entrypoint.unwrap_or_default();
    argv.extend(c.cmd.unwrap_or_default());
    for a in &argv {
        clean_oci("Entrypoint/Cmd argument", a)?;
    }
    let env = c.env.unwrap_or_default();
    for e in &env {
        clean_oci("Env entry", e)?;
    }
    for (f, v) in [
        ("User", &c.user),
        ("WorkingDir", &c.working_dir),
        ("StopSignal", &c.stop_signal),
    ] {
        if let Some(v) = v {
            clean_oci(f, v)?;
        }
    }
    // umoci applies the layers (whiteouts included) keeping every path inside
    // the rootfs, also through symlinks an earlier layer made. It needs a
    // tagged top-level manifest: point a fresh index.json at the chosen one.
    let size = read_member(&blob_path(&layout, &desc.digest)?)?.len();
    let media = if desc.media_type.is_empty() {
        "application/vnd.oci.image.manifest.v1+json"
    } else {
        &desc.media_type
    };
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": media, "digest": desc.digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "pve-emulator"},
    }]});
    std::fs::write(layout.join("index.json"), top.to_string())?;
    let image = format!("{}:pve-emulator", layout.to_string_lossy());
    run(
        "umoci",
        &[
            "--log",
            "error",
            "raw",
            "unpack",
            "--image",
            &image,
            &rootfs.to_string_lossy(),
        ],
    )
    .context("applying the image layers (umoci raw unpack)")?;
    Ok(OciConfig {
        entrypoint: (!argv.is_empty())
            .then(|| argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")),
        env,
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
    fn layout_with_links_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("blobs/sha256")).unwrap();
        std::fs::write(d.path().join("index.json"), "{}").unwrap();
        assert!(check_layout(d.path()).is_ok());
        let b = d.path().join("blobs/sha256/ab");
        std::os::unix::fs::symlink("/etc/hostname", &b).unwrap();
        assert!(check_layout(d.path()).is_err());
        assert!(read_member(&b).is_err());
        std::fs::remove_file(&b).unwrap();
        std::fs::hard_link(d.path().join("index.json"), &b).unwrap();
        assert!(check_layout(d.path()).is_err());
    }

    #[test]
    fn control_characters_refused() {
        assert!(clean_oci("Cmd", "x\nlxc.hook.pre-start: touch /pwned #").is_err());
        assert!(clean_oci("Cmd", "a\rb").is_err());
        assert!(clean_oci("Cmd", "/bin/sleep").is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/bin/sh"), "/bin/sh");
        assert_eq!(quote("a b"), "'a b'");
    }
}
