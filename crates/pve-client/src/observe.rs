//! What the client tells an observer about every HTTP exchange, so the
//! runtime can log API latency and status without the client knowing where
//! the record goes (the events log, a metrics registry).
use std::sync::Arc;
use std::time::Duration;

/// One HTTP exchange with the API (a retry is a second exchange).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: &'static str,
    /// The path with its variable segments named: `/nodes/{node}/lxc/{vmid}/status/current`.
    /// Bounded: ids, names and UPIDs never appear.
    pub endpoint: String,
    /// HTTP status; None when no answer came (connect, TLS, timeout).
    pub status: Option<u16>,
    pub duration: Duration,
}

/// Called after every exchange, on the thread that made it.
pub type Observer = Arc<dyn Fn(&ApiRequest) + Send + Sync>;

/// The endpoint template of a request path below `/api2/json`.
///
/// Segments that follow a collection whose members are named by the caller
/// (`nodes`, `lxc`, `storage` ...) become `{name}`; any other segment that
/// is not a plain lower-case API word becomes `{arg}`, so an unexpected path
/// cannot grow the number of distinct templates without bound.
pub fn endpoint_template(path: &str) -> String {
    const NAMED: &[(&str, &str)] = &[
        ("nodes", "{node}"),
        ("lxc", "{vmid}"),
        ("qemu", "{vmid}"),
        ("storage", "{storage}"),
        ("content", "{volume}"),
        ("tasks", "{upid}"),
        ("snapshot", "{snapname}"),
        ("pools", "{poolid}"),
        ("users", "{userid}"),
        ("token", "{tokenid}"),
        ("groups", "{groupid}"),
        ("roles", "{roleid}"),
    ];
    let path = path.split('?').next().unwrap_or_default();
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let named = prev.and_then(|p| NAMED.iter().find(|(c, _)| *c == p).map(|(_, n)| *n));
        out.push('/');
        match named {
            Some(n) => {
                out.push_str(n);
                prev = None;
            }
            None if is_api_word(seg) => {
                out.push_str(seg);
                prev = Some(seg);
            }
            None => {
                out.push_str("{arg}");
                prev = None;
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn is_api_word(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::endpoint_template as t;

    #[test]
    fn variable_segments_are_named() {
        assert_eq!(
            t("/nodes/pve1/lxc/104/status/current"),
            "/nodes/{node}/lxc/{vmid}/status/current"
        );
        assert_eq!(t("/nodes/pve1/lxc"), "/nodes/{node}/lxc");
        assert_eq!(t("/cluster/nextid"), "/cluster/nextid");
        assert_eq!(
            t("/nodes/pve/tasks/UPID%3Apve%3A0000/status"),
            "/nodes/{node}/tasks/{upid}/status"
        );
        assert_eq!(
            t("/nodes/pve/storage/local/content/local%3Avztmpl%2Fa.tar"),
            "/nodes/{node}/storage/{storage}/content/{volume}"
        );
        assert_eq!(t("/access/ticket"), "/access/ticket");
        assert_eq!(t("/version"), "/version");
        assert_eq!(t(""), "/");
    }

    #[test]
    fn unknown_values_do_not_leak_into_templates() {
        assert_eq!(t("/weird/ABC123/x"), "/weird/{arg}/x");
        assert_eq!(t("/a/%2F..%2F"), "/a/{arg}");
        let long = format!("/x/{}", "a".repeat(40));
        assert_eq!(t(&long), "/x/{arg}");
    }
}
