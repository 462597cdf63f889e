//! The node's certificates, made once like a Proxmox node has them: a CA
//! (pve-root-ca.pem) and the node certificate it signs (pve-ssl.pem/.key).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct NodeCert {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the node certificate, `AA:BB:...`.
    pub fingerprint: String,
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

fn generate(dir: &Path, nodes: &[String]) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Proxmox Virtual Environment");
    ca.distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Manager CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2034, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    sans.extend(nodes.iter().cloned());
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(sans)?;
    let cn = nodes.first().map(String::as_str).unwrap_or("pve");
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{cn}.local"));
    leaf.distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Node");
    leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2034, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    write_private(&dir.join("pve-root-ca.key"), &ca_key.serialize_pem())?;
    std::fs::write(dir.join("pve-root-ca.pem"), ca_cert.pem())?;
    write_private(&dir.join("pve-ssl.key"), &leaf_key.serialize_pem())?;
    std::fs::write(dir.join("pve-ssl.pem"), leaf_cert.pem())?;
    Ok(())
}

/// `AA:BB:...` (uppercase, colon-separated) SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the node certificate from `dir`, making it first if absent.
pub fn load_or_create(dir: &Path, nodes: &[String]) -> Result<NodeCert> {
    let cert_path = dir.join("pve-ssl.pem");
    let key_path = dir.join("pve-ssl.key");
    if !cert_path.exists() || !key_path.exists() {
        generate(dir, nodes).context("making the node certificates")?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let leaf = certs.first().context("pve-ssl.pem holds no certificate")?;
    let fingerprint = fingerprint(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the node certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(NodeCert {
        config: Arc::new(config),
        fingerprint,
    })
}
