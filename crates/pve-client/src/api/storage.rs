//! Storage: list, content, volume info, template upload.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

use crate::client::{seg, Body, Client, Method};
use crate::error::{Error, Result};
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

/// A `multipart/form-data` body streamed from a file: form fields, then the
/// file part (last, as Proxmox's upload handler wants it).
pub(crate) struct Multipart {
    boundary: String,
    head: Vec<u8>,
    file: PathBuf,
    file_len: u64,
    tail: Vec<u8>,
}

impl Multipart {
    fn new(
        fields: &[(&str, &str)],
        file_field: &str,
        filename: &str,
        file: &Path,
    ) -> io::Result<Multipart> {
        let meta = std::fs::metadata(file)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let boundary = random_boundary();
        let mut head = Vec::new();
        for (name, value) in fields {
            head.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        head.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
        Ok(Multipart {
            boundary,
            head,
            file: file.to_path_buf(),
            file_len: meta.len(),
            tail,
        })
    }

    pub(crate) fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub(crate) fn len(&self) -> u64 {
        self.head.len() as u64 + self.file_len + self.tail.len() as u64
    }

    /// A fresh reader over the whole body (each retry needs its own).
    pub(crate) fn reader(&self) -> io::Result<impl Read + Send + 'static> {
        let f = File::open(&self.file)?;
        Ok(Cursor::new(self.head.clone())
            .chain(f.take(self.file_len))
            .chain(Cursor::new(self.tail.clone())))
    }
}

/// 128 random bits from the std hasher's per-process random keys; a file
/// containing the boundary by chance is not a practical concern.
fn random_boundary() -> String {
    let mut out = String::from("proxmox-lxcri-");
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
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
    fn multipart_body_is_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tar");
        std::fs::write(&p, b"DATA\r\n--not-the-boundary").unwrap();
        let m = Multipart::new(&[("content", "vztmpl")], "filename", "t.tar", &p).unwrap();
        let mut body = Vec::new();
        m.reader().unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body.len() as u64, m.len());
        let text = String::from_utf8(body).unwrap();
        let b = &m.boundary;
        assert!(text.starts_with(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nvztmpl\r\n"
        )));
        assert!(text.contains("name=\"filename\"; filename=\"t.tar\""));
        assert!(text.ends_with(&format!("DATA\r\n--not-the-boundary\r\n--{b}--\r\n")));
        assert!(m.content_type().ends_with(b));
        assert_ne!(random_boundary(), random_boundary());
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
