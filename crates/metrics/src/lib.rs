//! The Prometheus/OpenMetrics exporter behind `proxmox-lxcri metrics serve`.
//!
//! Two sources: the runtime's events log (operations, errors, API requests,
//! image cache lookups; followed across rotations, see [`follow`]) and a
//! reading taken at each scrape (containers, volumes, storage pools; see
//! [`usage`]). Every name starts with `proxmox_lxcri_`.
pub mod events;
pub mod follow;
pub mod server;
pub mod usage;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use proxmox_lxcri_runtime::Runtime;

pub use server::Reply;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often the events log is read between scrapes (a scrape reads it too).
const POLL_EVERY: Duration = Duration::from_millis(250);

pub struct Exporter {
    registry: Registry,
    events: events::EventMetrics,
    follower: Mutex<follow::Follower>,
    rotations: Counter,
    usage: usage::Usage,
    reader: Mutex<usage::Reader>,
}

impl Exporter {
    /// An exporter for the runtime root of `rt`, following its events log
    /// from the current end.
    pub fn new(rt: Runtime) -> Self {
        let log = rt.store.events_log();
        Self::with_follower(rt, follow::Follower::new(log))
    }

    pub fn with_follower(rt: Runtime, follower: follow::Follower) -> Self {
        let mut registry = Registry::with_prefix("proxmox_lxcri");
        let events = events::EventMetrics::register(&mut registry);
        let rotations = Counter::default();
        registry.register(
            "events_rotations_followed",
            "Rotations of the events log the exporter followed",
            rotations.clone(),
        );
        let usage = usage::Usage::default();
        registry.register_collector(Box::new(usage.clone()));
        let reader = usage::Reader::new(rt, events.clone());
        Exporter {
            registry,
            events,
            follower: Mutex::new(follower),
            rotations,
            usage,
            reader: Mutex::new(reader),
        }
    }

    /// Account the lines written to the events log since the last call.
    pub fn poll_events(&self) {
        let mut f = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        let before = f.rotations;
        let ev = &self.events;
        f.poll(&mut |line| ev.line(line));
        self.rotations.inc_by(f.rotations - before);
    }

    /// The OpenMetrics text of a scrape: the events log read to its end and
    /// a fresh usage reading.
    pub fn render(&self) -> String {
        self.poll_events();
        {
            let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
            reader.read(&self.usage);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    /// Serve `/metrics` and `/healthz` (`health` answers: healthy, JSON
    /// body) on `listener` until the process ends.
    pub fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        health: Box<dyn Fn() -> (bool, String) + Send + Sync>,
    ) -> std::io::Result<()> {
        let poller = self.clone();
        std::thread::spawn(move || loop {
            poller.poll_events();
            std::thread::sleep(POLL_EVERY);
        });
        let me = self;
        server::run(
            listener,
            Arc::new(move |path: &str| match path {
                "/metrics" => Reply {
                    status: 200,
                    content_type: OPENMETRICS,
                    body: me.render().into_bytes(),
                },
                "/healthz" => {
                    let (ok, body) = health();
                    Reply {
                        status: if ok { 200 } else { 503 },
                        content_type: "application/json",
                        body: body.into_bytes(),
                    }
                }
                "/" => Reply {
                    status: 200,
                    content_type: "text/plain; charset=utf-8",
                    body: b"proxmox-lxcri exporter: /metrics, /healthz\n".to_vec(),
                },
                _ => Reply {
                    status: 404,
                    content_type: "text/plain; charset=utf-8",
                    body: b"not found: try /metrics or /healthz\n".to_vec(),
                },
            }),
        )
    }
}
