//! Metrics fed by the events log: operations, errors, API requests, image
//! cache lookups. Label values are checked against small fixed sets (or a
//! word shape), so a strange log line cannot blow up the series count.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use proxmox_lxcri_runtime::events::Event;

pub type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

const OPS: &[&str] = &[
    "create", "start", "kill", "delete", "run", "exec", "pause", "resume", "update",
];
const ENGINES: &[&str] = &["lxc", "pve-lxc", "pve-vm"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
/// Distinct API endpoint templates kept; later ones count as "other".
const MAX_ENDPOINTS: usize = 200;

fn one_of(v: &str, set: &[&str]) -> String {
    if set.contains(&v) {
        v.to_string()
    } else {
        "other".into()
    }
}

/// A lower-case word of at most 32 characters, else "other".
fn word(v: &str) -> String {
    if !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        v.to_string()
    } else {
        "other".into()
    }
}

fn op_buckets() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn api_buckets() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Where an API request came from: the runtime's commands (via the events
/// log) or the exporter's own status queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Runtime,
    Exporter,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Runtime => "runtime",
            Source::Exporter => "exporter",
        }
    }
}

#[derive(Clone)]
pub struct EventMetrics {
    operations: Family<Labels, Counter>,
    op_duration: HistogramFamily,
    errors: Family<Labels, Counter>,
    api_requests: Family<Labels, Counter>,
    api_duration: HistogramFamily,
    image_cache: Family<Labels, Counter>,
    lines: Counter,
    bad_lines: Counter,
    endpoints: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl EventMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = EventMetrics {
            operations: Family::default(),
            op_duration: Family::new_with_constructor(op_buckets),
            errors: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(api_buckets),
            image_cache: Family::default(),
            lines: Counter::default(),
            bad_lines: Counter::default(),
            endpoints: Default::default(),
        };
        reg.register(
            "operations",
            "Runtime operations by operation, engine and result (ok or error)",
            m.operations.clone(),
        );
        reg.register_with_unit(
            "operation_duration",
            "Duration of runtime operations",
            Unit::Seconds,
            m.op_duration.clone(),
        );
        reg.register(
            "operation_errors",
            "Failed runtime operations by operation, engine and error kind",
            m.errors.clone(),
        );
        reg.register(
            "api_requests",
            "Proxmox API requests by method, endpoint template, HTTP status (none: no answer) and source",
            m.api_requests.clone(),
        );
        reg.register_with_unit(
            "api_request_duration",
            "Duration of Proxmox API requests by method and endpoint template",
            Unit::Seconds,
            m.api_duration.clone(),
        );
        reg.register(
            "image_cache_lookups",
            "Image cache lookups at create (hit: cached; miss: copied)",
            m.image_cache.clone(),
        );
        reg.register(
            "events_lines",
            "Lines read from the events log",
            m.lines.clone(),
        );
        reg.register(
            "events_unparsable_lines",
            "Lines of the events log that were not an event",
            m.bad_lines.clone(),
        );
        m
    }

    /// Account one line of the events log.
    pub fn line(&self, line: &str) {
        self.lines.inc();
        match serde_json::from_str::<Event>(line) {
            Ok(ev) => self.event(&ev),
            Err(_) => {
                self.bad_lines.inc();
            }
        }
    }

    pub fn event(&self, ev: &Event) {
        let op = one_of(&ev.operation, OPS);
        let engine = one_of(ev.engine.as_deref().unwrap_or("none"), ENGINES);
        let engine = if ev.engine.is_none() {
            "none".into()
        } else {
            engine
        };
        let ok = ev.result == "ok";
        let result = if ok { "ok" } else { "error" };
        let labels = vec![
            ("operation", op.clone()),
            ("engine", engine.clone()),
            ("result", result.to_string()),
        ];
        self.operations.get_or_create(&labels).inc();
        self.op_duration
            .get_or_create(&labels)
            .observe(ev.duration_ms / 1e3);
        if !ok {
            let kind = word(ev.error_kind.as_deref().unwrap_or("unknown"));
            self.errors
                .get_or_create(&vec![("operation", op), ("engine", engine), ("kind", kind)])
                .inc();
        }
        for call in &ev.api {
            self.api(
                &call.method,
                &call.endpoint,
                call.status,
                call.duration_ms / 1e3,
                Source::Runtime,
            );
        }
        if ev.image_cache_hits > 0 {
            self.image_cache
                .get_or_create(&vec![("result", "hit".to_string())])
                .inc_by(ev.image_cache_hits as u64);
        }
        if ev.image_cache_misses > 0 {
            self.image_cache
                .get_or_create(&vec![("result", "miss".to_string())])
                .inc_by(ev.image_cache_misses as u64);
        }
    }

    /// Account one API request.
    pub fn api(
        &self,
        method: &str,
        endpoint: &str,
        status: Option<u16>,
        secs: f64,
        source: Source,
    ) {
        let endpoint = {
            let mut seen = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            let shaped = endpoint.len() <= 128
                && endpoint.starts_with('/')
                && endpoint
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/{}_-".contains(c));
            if shaped && (seen.contains(endpoint) || seen.len() < MAX_ENDPOINTS) {
                seen.insert(endpoint.to_string());
                endpoint.to_string()
            } else {
                "other".to_string()
            }
        };
        let method = one_of(method, METHODS);
        let status = match status {
            Some(s) if (100..600).contains(&s) => s.to_string(),
            Some(_) => "other".into(),
            None => "none".into(),
        };
        self.api_requests
            .get_or_create(&vec![
                ("method", method.clone()),
                ("endpoint", endpoint.clone()),
                ("status", status),
                ("source", source.as_str().to_string()),
            ])
            .inc();
        self.api_duration
            .get_or_create(&vec![("method", method), ("endpoint", endpoint)])
            .observe(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
        s
    }

    #[test]
    fn lines_become_labelled_series_with_bounded_values() {
        let mut reg = Registry::with_prefix("t");
        let m = EventMetrics::register(&mut reg);
        m.line(r#"{"time":"t","id":"a","operation":"create","result":"ok","duration_ms":20,"api_calls":1,"engine":"pve-lxc","api":[{"method":"POST","endpoint":"/nodes/{node}/lxc","status":200,"duration_ms":4}],"image_cache_misses":1}"#);
        m.line(r#"{"time":"t","id":"b","operation":"create","result":"bundle x: no","duration_ms":1,"api_calls":0,"engine":"lxc","error_kind":"bundle"}"#);
        m.line(r#"{"time":"t","id":"c","operation":"Evil\"op","result":"x","duration_ms":1,"api_calls":0,"engine":"weird","error_kind":"Not A Word"}"#);
        m.line("not json");
        let out = text(&reg);
        assert!(
            out.contains(
                r#"t_operations_total{operation="create",engine="pve-lxc",result="ok"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"t_operation_errors_total{operation="create",engine="lxc",kind="bundle"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"t_operation_errors_total{operation="other",engine="other",kind="other"} 1"#
            ),
            "{out}"
        );
        assert!(out.contains(r#"t_api_requests_total{method="POST",endpoint="/nodes/{node}/lxc",status="200",source="runtime"} 1"#), "{out}");
        assert!(
            out.contains(r#"t_image_cache_lookups_total{result="miss"} 1"#),
            "{out}"
        );
        assert!(out.contains("t_events_unparsable_lines_total 1"), "{out}");
        assert!(out.contains("t_events_lines_total 4"), "{out}");
        assert!(!out.contains("Evil"));
    }

    #[test]
    fn endpoint_templates_are_capped() {
        let mut reg = Registry::default();
        let m = EventMetrics::register(&mut reg);
        for i in 0..MAX_ENDPOINTS + 50 {
            m.api("GET", &format!("/e{i}"), Some(200), 0.001, Source::Exporter);
        }
        m.api("GET", "/has space", Some(200), 0.001, Source::Exporter);
        let out = text(&reg);
        let series = out
            .lines()
            .filter(|l| l.starts_with("api_requests_total{"))
            .count();
        assert_eq!(series, MAX_ENDPOINTS + 1);
        assert!(
            out.contains(r#"endpoint="other",status="200",source="exporter"} 51"#),
            "{out}"
        );
    }
}
