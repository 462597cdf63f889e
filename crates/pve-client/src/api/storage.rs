//! Storage: list, content, volume info, template upload.

use std::fs::File;

use std::io::{self, Read};
use std::path::Path;

use crate::client::{seg, Body, Client, Method};
use crate::error::{Error, Result};
use crate::multipart::Multipart;
use crate::params::Params;
use crate::types::{StorageInfo, VolumeEntry, VolumeInfo};
use crate::upid::Upid;

impl Client {
    /// `GET /nodes/{node}/storage`.
    pub fn storage_list(&self, node: &str) -> Result<Vec<StorageInfo>> {
        self.get(
            &format!("/nodes/{}/storage", seg("node", node)?),
            &Params::new(),
        )
    }

    /// `GET /nodes/{node}/storage/{storage}/content`, optionally only one
    /// content type (`vztmpl`, `rootdir`, `images`, `iso`) or one guest's volumes.
    pub fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<VolumeEntry>> {
        let path = format!(
            "/nodes/{}/storage/{}/content",
            seg("node", node)?,
            seg("storage", storage)?
        );
        let mut params = Params::new().opt("content", content);
        if let Some(id) = vmid {
            params = params.int("vmid", id);
        }
        self.get(&path, &params)
    }

    /// `POST /nodes/{node}/storage/{storage}/content`: allocate a raw disk
    /// image `filename` (`vm-<vmid>-disk-<n>`) of `size` (`512M`, `2G`)
    /// owned by VM `vmid` (`pvesm alloc`); its volume id.
    pub fn volume_alloc(
        &self,
        node: &str,
        storage: &str,
        vmid: u32,
        filename: &str,
        size: &str,
    ) -> Result<String> {
        let path = format!(
            "/nodes/{}/storage/{}/content",
            seg("node", node)?,
            seg("storage", storage)?
        );
        let params = Params::new()
            .int("vmid", vmid)
            .set("filename", filename)
            .set("size", size)
            .set("format", "raw");
        self.send(Method::Post, &path, &params)
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`; its task.
    pub fn volume_delete(&self, node: &str, storage: &str, volid: &str) -> Result<Upid> {
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            seg("node", node)?,
            seg("storage", storage)?,
            seg("volume", volid)?
        );
        self.send(Method::Delete, &path, &Params::new())
    }

    /// `GET /nodes/{node}/storage/{storage}/content/{volume}`: where the
    /// volume is on the node (`path`), its size and format.
    pub fn volume_info(&self, node: &str, storage: &str, volid: &str) -> Result<VolumeInfo> {
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            seg("node", node)?,
            seg("storage", storage)?,
            seg("volume", volid)?
        );
        self.get(&path, &Params::new())
    }

    /// `POST /nodes/{node}/storage/{storage}/upload` of a CT template
    /// (`content=vztmpl`), stored as `filename` (e.g. `alpine.tar.zst`). The
    /// file's SHA-256 is sent along so the server checks what it received.
    /// Returns the upload task.
    pub fn upload_template(
        &self,
        node: &str,
        storage: &str,
        file: &Path,
        filename: &str,
    ) -> Result<Upid> {
        check_template_name(filename)?;
        let path = format!(
            "/nodes/{}/storage/{}/upload",
            seg("node", node)?,
            seg("storage", storage)?
        );
        let checksum = sha256_file(file).map_err(|e| {
            Error::Config(format!("POST {path}: cannot read {}: {e}", file.display()))
        })?;
        let form = Multipart::new(
            &[
                ("content", "vztmpl"),
                ("checksum", &checksum),
                ("checksum-algorithm", "sha256"),
            ],
            "filename",
            filename,
            file,
        )
        .map_err(|e| Error::Config(format!("POST {path}: cannot read {}: {e}", file.display())))?;
        let data = self.request(Method::Post, &path, Body::Multipart(&form))?;
        crate::client::decode(Method::Post, &path, data)
    }
}

/// Template names as Proxmox accepts them; also keeps the name safe inside
/// the multipart header.
fn check_template_name(name: &str) -> Result<()> {
    let ext_ok = [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e));
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !ext_ok || !chars_ok || name.starts_with('.') || name.len() > 255 {
        return Err(Error::invalid(
            "template filename",
            name,
            "must be letters, digits, '.', '_', '+', '-' ending in .tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2",
        ));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names() {
        for ok in [
            "alpine.tar.zst",
            "debian-12-standard_12.7-1_amd64.tar.zst",
            "x.tar",
            "busybox_latest.tar",
        ] {
            check_template_name(ok).unwrap();
        }
        for bad in [
            ".tar",
            "a.zip",
            "a\".tar",
            "a\r\nX: y.tar",
            "../a.tar",
            "a b.tar",
            "a/b.tar.gz",
            ".hidden.tar",
        ] {
            assert!(check_template_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
