//! TLS settings: a CA file or the system roots (full verification), a pinned
//! certificate fingerprint (what Proxmox's own tools do for self-signed node
//! certificates), or, only when asked for, no verification.

use std::fmt;
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::config::Tls;
use crate::error::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for `tls`.
pub(crate) fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?;
    let config = match tls {
        Tls::Verify { ca_file } => {
            let roots = match ca_file {
                Some(path) => roots_from_file(path)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Fingerprint(pin) => {
            let pin = parse_fingerprint(pin)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: Some(pin),
                    provider,
                }))
                .with_no_client_auth()
        }
        Tls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots_from_file(path: &std::path::Path) -> Result<RootCertStore> {
    let bad = |why: String| Error::Config(format!("CA file {}: {why}", path.display()));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(Error::Config(format!(
            "no system CA certificates could be loaded{why}; install ca-certificates, \
             or give a CA file or the node's certificate fingerprint"
        )));
    }
    Ok(roots)
}

/// `AA:BB:..` (colons optional, any case) to the 32 digest bytes.
pub(crate) fn parse_fingerprint(s: &str) -> Result<[u8; 32]> {
    let hex: String = s.trim().chars().filter(|c| *c != ':').collect();
    let bad = || {
        Error::Config(format!(
            "fingerprint {s:?} is not a SHA-256 fingerprint (64 hex digits, optionally colon-separated)"
        ))
    };
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The Proxmox form of a certificate's SHA-256 fingerprint.
pub fn fingerprint_of(der: &[u8]) -> String {
    let d = digest(&SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug)]
struct PinMismatch {
    expected: String,
    got: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate fingerprint {} does not match the pinned fingerprint {}",
            self.got, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts the server certificate whose SHA-256 equals the pin (any
/// certificate when `pin` is None: insecure mode). Handshake signatures are
/// still verified with the certificate's key, so the peer must hold the
/// private key of the certificate it shows.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = digest(&SHA256, end_entity.as_ref());
        if got.as_ref() == pin.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    expected: fingerprint_hex(pin),
                    got: fingerprint_hex(got.as_ref()),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn fingerprint_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let fp = fingerprint_of(b"hello");
        assert_eq!(fp.len(), 95);
        let bytes = parse_fingerprint(&fp).unwrap();
        assert_eq!(fingerprint_hex(&bytes), fp);
        assert_eq!(
            parse_fingerprint(&fp.replace(':', "").to_lowercase()).unwrap(),
            bytes
        );
        assert!(parse_fingerprint("AA:BB").is_err());
        assert!(parse_fingerprint(&fp.replace('A', "G")).is_err() || !fp.contains('A'));
        assert!(parse_fingerprint("").is_err());
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a pem").unwrap();
        let err = client_config(&Tls::Verify {
            ca_file: Some(p.clone()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = client_config(&Tls::Verify {
            ca_file: Some(dir.path().join("missing.pem")),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.pem"), "{err}");
        assert!(client_config(&Tls::Fingerprint("zz".into())).is_err());
        assert!(client_config(&Tls::Insecure).is_ok());
    }
}
