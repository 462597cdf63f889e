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
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus text format (0.0.4) of an OpenMetrics text, for clients
/// that do not ask for OpenMetrics (curl, promtool, older scrapers): counter
/// families are named with their `_total` suffix there, and `# UNIT` and
/// `# EOF` do not exist.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
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
            Arc::new(move |path: &str, accept: &str| match path {
                // Prometheus asks for OpenMetrics; everyone else gets the
                // classic text format.
                "/metrics" if accept.contains("application/openmetrics-text") => Reply {
                    status: 200,
                    content_type: OPENMETRICS,
                    body: me.render().into_bytes(),
                },
                "/metrics" => Reply {
                    status: 200,
                    content_type: PROMETHEUS_TEXT,
                    body: to_prometheus_text(&me.render()).into_bytes(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn counters_get_their_total_names_in_the_text_format() {
        let om = "# HELP a_ops Ops.\n# TYPE a_ops counter\na_ops_total{x=\"1\"} 2\n# HELP a_d Dur.\n# TYPE a_d_seconds histogram\n# UNIT a_d_seconds seconds\n# HELP a_g G.\n# TYPE a_g gauge\na_g 1.0\n# EOF\n";
        let t = super::to_prometheus_text(om);
        assert_eq!(
            t,
            "# HELP a_ops_total Ops.\n# TYPE a_ops_total counter\na_ops_total{x=\"1\"} 2\n# HELP a_d Dur.\n# TYPE a_d_seconds histogram\n# HELP a_g G.\n# TYPE a_g gauge\na_g 1.0\n"
        );
    }
}
