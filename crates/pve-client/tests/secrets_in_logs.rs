//! No secret (password, token secret, ticket) in any log line or error of
//! the client, against a running pve-emulator. A test binary of its own:
//! tracing caches each log call site's interest process-wide, and another
//! test thread hitting the client's call sites first, with no subscriber,
//! would hide them from this test's capture.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Clients;
use pve_client::{Auth, Client, Params, Tls};

/// Collects every tracing event's fields as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct V<'a>(&'a mut String);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", f.name(), v));
            }
        }
        let mut out = self.0.lock().unwrap();
        out.push_str(event.metadata().level().as_str());
        event.record(&mut V(&mut out));
        out.push('\n');
    }
}

#[test]
fn secrets_never_reach_logs_or_errors() {
    use tracing_subscriber::layer::SubscriberExt;
    let emu = common::start();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let mut errors = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let c = emu.password_client();
        c.set_ticket_renew_after(Duration::ZERO);
        c.version().unwrap();
        c.version().unwrap();
        errors.push(
            c.lxc_set_config(
                emu.node(),
                999_999_993,
                &Params::new().set("description", "x"),
            )
            .unwrap_err()
            .to_string(),
        );
        let t = emu.token_client();
        t.nodes().unwrap();
        let bad = Client::new(emu.config(
            Auth::password(
                "root@pam",
                format!("{}-wrong", emu.root_password().unwrap()),
            ),
            Tls::Insecure,
        ))
        .unwrap();
        errors.push(bad.version().unwrap_err().to_string());
        errors.push(format!("{:?}", emu.password_auth()));
        errors.push(format!("{:?}", emu.token_auth()));
        errors.push(format!("{c:?}"));
    });
    let logs = capture.0.lock().unwrap().clone();
    // The capture works: requests and the insecure-TLS warning are there.
    assert!(logs.contains("Proxmox API call"), "{logs}");
    assert!(logs.contains("WARN") && logs.contains("DISABLED"), "{logs}");
    let all = format!("{logs}\n{}", errors.join("\n"));
    for secret in [
        emu.root_password().unwrap(),
        emu.token_secret(),
        "PVE:root@pam",
        "PVEAPIToken",
    ] {
        assert!(!all.contains(secret), "{secret:?} leaked:\n{all}");
    }
}
