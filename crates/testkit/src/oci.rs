//! OCI images as OCI-layout archives (what `skopeo copy oci-archive:` and
//! Proxmox's OCI templates are).
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An OCI image of uncompressed layers and an image config, written as an
/// OCI-layout archive ([`OciImage::archive`]).
#[derive(Clone, Debug, Default)]
pub struct OciImage {
    layers: Vec<Vec<u8>>,
    config: Value,
    name: Option<String>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes a blob into an OCI layout and returns its descriptor.
fn blob(layout: &Path, media: &str, data: &[u8]) -> Value {
    let h = sha256_hex(data);
    std::fs::write(layout.join("blobs/sha256").join(&h), data).unwrap();
    json!({"mediaType": media, "digest": format!("sha256:{h}"), "size": data.len()})
}

impl OciImage {
    /// No layers, an empty config.
    pub fn new() -> OciImage {
        OciImage::default()
    }

    /// One more layer: an uncompressed tar (e.g. [`crate::Rootfs::layer`]).
    pub fn layer(mut self, tar: Vec<u8>) -> OciImage {
        self.layers.push(tar);
        self
    }

    /// One more layer: the tar of what `make` puts into an empty directory
    /// (made under `dir`). Whiteouts are files named `.wh.NAME`.
    pub fn layer_from(self, dir: &Path, make: impl FnOnce(&Path)) -> OciImage {
        let src = dir.join(format!("layer-src-{}", crate::unique()));
        std::fs::create_dir_all(&src).unwrap();
        make(&src);
        let out = dir.join(format!("layer-{}.tar", crate::unique()));
        crate::rootfs::tar(&out, &src);
        self.layer(std::fs::read(out).unwrap())
    }

    /// The image config's `config` (`Entrypoint`, `Cmd`, `Env`, `User`,
    /// `WorkingDir`, …).
    pub fn config(mut self, config: Value) -> OciImage {
        self.config = config;
        self
    }

    /// The name `ctr images import` registers the image under (the index
    /// entry's `io.containerd.image.name` annotation), e.g. `localhost/pause:test`.
    pub fn name(mut self, name: &str) -> OciImage {
        self.name = Some(name.to_string());
        self
    }

    /// The OCI layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in a
    /// fresh directory under `dir`, packed as `dir/img<N>_latest.tar`.
    pub fn archive(&self, dir: &Path) -> PathBuf {
        let layout = dir.join(format!("layout-{}", crate::unique()));
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let descs: Vec<_> = self
            .layers
            .iter()
            .map(|l| blob(&layout, "application/vnd.oci.image.layer.v1.tar", l))
            .collect();
        let diff_ids: Vec<_> = self
            .layers
            .iter()
            .map(|l| format!("sha256:{}", sha256_hex(l)))
            .collect();
        let config = json!({
            "architecture": "amd64", "os": "linux", "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let dc = blob(
            &layout,
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": dc, "layers": descs});
        let mut dm = blob(
            &layout,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        );
        if let Some(n) = &self.name {
            dm["annotations"] = json!({"io.containerd.image.name": n});
        }
        std::fs::write(
            layout.join("index.json"),
            json!({"schemaVersion": 2, "manifests": [dm]}).to_string(),
        )
        .unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let out = dir.join(format!("img{}_latest.tar", crate::unique()));
        crate::sh(
            "tar",
            &[
                "-cf",
                &out.to_string_lossy(),
                "-C",
                &layout.to_string_lossy(),
                "oci-layout",
                "index.json",
                "blobs",
            ],
        );
        out
    }
}
