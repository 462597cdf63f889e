//! A real pve-emulator (the test kit's: HTTPS, its own CA and node
//! certificate) for the client's integration tests, with secrets unique to
//! each instance, and clients for it. The binary is `PVE_EMULATOR_BIN`, the
//! one in the target dir, or built from this workspace; when there is none
//! the tests fail, never skip.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pve_client::{Auth, Client, ClientConfig, Tls};
pub use testkit::Emulator;

/// An emulator in a data dir of its own, with a token secret and a root
/// password no other instance has (so a log that shows one is caught).
pub fn start() -> Emulator {
    start_with(&[])
}

/// The same with `extra` arguments.
pub fn start_with(extra: &[&str]) -> Emulator {
    let u = testkit::vmid();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Emulator::builder()
        .token("root@pam!citest", &format!("5ec7e7a0-{u:08x}-{nanos:08x}"))
        .root_password(&format!("pw-{u}-{nanos:x}-Zq"))
        .auth_fail_delay_ms(10)
        .args(extra)
        .start()
}

/// Clients of an emulator.
pub trait Clients {
    fn config(&self, auth: Auth, tls: Tls) -> ClientConfig;
    fn token_auth(&self) -> Auth;
    fn password_auth(&self) -> Auth;
    /// A client with token auth that trusts the emulator's CA.
    fn token_client(&self) -> Client;
    /// A client with password (ticket) auth pinned to the node certificate.
    fn password_client(&self) -> Client;
    /// A plain HTTPS agent (no client code involved) that trusts the CA.
    fn raw_agent(&self) -> ureq::Agent;
}

impl Clients for Emulator {
    fn config(&self, auth: Auth, tls: Tls) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.url(), auth, tls);
        cfg.timeout = Duration::from_secs(20);
        cfg.retries = 3;
        cfg
    }

    fn token_auth(&self) -> Auth {
        Auth::token(self.token_id(), self.token_secret())
    }

    fn password_auth(&self) -> Auth {
        Auth::password("root@pam", self.root_password().unwrap())
    }

    fn token_client(&self) -> Client {
        let mut c = Client::new(self.config(
            self.token_auth(),
            Tls::Verify {
                ca_file: Some(self.ca_file()),
            },
        ))
        .unwrap();
        c.set_retry_backoff(Duration::from_millis(10));
        c
    }

    fn password_client(&self) -> Client {
        let mut c = Client::new(self.config(
            self.password_auth(),
            Tls::Fingerprint(self.fingerprint().to_string()),
        ))
        .unwrap();
        c.set_retry_backoff(Duration::from_millis(10));
        c
    }

    fn raw_agent(&self) -> ureq::Agent {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(self.ca_file()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new()
            .tls_config(Arc::new(cfg))
            .timeout(Duration::from_secs(20))
            .build()
    }
}

/// A busybox CT template (`.tar.gz`, …, as `name` says) in `dir`:
/// /bin/busybox (static, from the host) with /sbin/init a script that
/// sleeps, so a started CT stays up.
pub fn busybox_template(dir: &Path, name: &str) -> PathBuf {
    testkit::Rootfs::busybox()
        .dirs(&["run"])
        .sleeping_init()
        .template(dir, name)
}
