//! .../rrddata: the statistics history the sampler recorded, as rows of
//! `time` plus the values of that row's interval.

use serde_json::json;

use super::{find_storage, ok, read, vmid, App, P, R};
use crate::auth::now;
use crate::rrd::Cf;
use crate::sampler::kind_name;
use crate::store::Kind;

fn rows(app: &App, key: &str, p: &P) -> R {
    let cf = Cf::parse(p.get("cf").map(String::as_str));
    // The schema's enum has checked `timeframe` already.
    let rows = app
        .rrd
        .rows(key, &p["timeframe"], cf, now())
        .unwrap_or_default();
    ok(json!(rows))
}

pub(super) fn node(app: &App, p: &P) -> R {
    rows(app, &format!("node/{}", p["node"]), p)
}

pub(super) fn guest(app: &App, p: &P, kind: Kind) -> R {
    // A guest that does not exist is the config's error, as on a node.
    read(app, p, kind)?;
    rows(app, &format!("{}/{}", kind_name(kind), vmid(p)), p)
}

pub(super) fn storage(app: &App, p: &P) -> R {
    let s = find_storage(app, &p["storage"])?;
    rows(app, &format!("storage/{}/{}", p["node"], s.id), p)
}
