//! A `multipart/form-data` request body streamed from a file (template
//! uploads); the client sends it, the storage API builds it.
use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

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
    pub(crate) fn new(
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
}
