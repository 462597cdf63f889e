//! /nodes/{node}/tasks: the task list, a task's status and log. The tasks
//! themselves run in crate::tasks.

use serde_json::{json, Value};

use super::{ok, App, Data, P, R};
use crate::error::ApiError;
use crate::tasks::ListFilter;

pub(super) fn list(app: &App, p: &P) -> R {
    let num = |k: &str| p.get(k).and_then(|v| v.parse::<i64>().ok());
    let f = ListFilter {
        start: num("start").unwrap_or(0) as usize,
        // As pve-manager: a limit of 0 means the default.
        limit: num("limit").filter(|l| *l > 0).unwrap_or(50) as usize,
        source: p.get("source").cloned().unwrap_or_else(|| "archive".into()),
        typefilter: p.get("typefilter").cloned(),
        userfilter: p.get("userfilter").cloned(),
        vmid: num("vmid").map(|v| v as u32),
        errors: p.get("errors").map(String::as_str) == Some("1"),
        since: num("since"),
        until: num("until"),
        statusfilter: p.get("statusfilter").map(|l| {
            l.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }),
    };
    let (page, total) = app.tasks.list(&p["node"], &f);
    Ok(Data::WithTotal(json!(page), total))
}

pub(super) fn status(app: &App, p: &P) -> R {
    app.tasks
        .status(task_upid(p)?)
        .map(Data::Plain)
        .ok_or_else(|| ApiError::param("upid", "no such task"))
}

pub(super) fn log(app: &App, p: &P) -> R {
    let start = p.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit = p.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
    let (lines, total) = app
        .tasks
        .log(task_upid(p)?, start, limit)
        .ok_or_else(|| ApiError::param("upid", "no such task"))?;
    Ok(Data::WithTotal(json!(lines), total))
}

/// Stopping a task is not emulated: a known task answers null.
pub(super) fn delete(app: &App, p: &P) -> R {
    if !app.tasks.exists(task_upid(p)?) {
        return Err(ApiError::param("upid", "no such task"));
    }
    ok(Value::Null)
}

/// The `{upid}` of a task path, parsed (it names files) and of the path's node.
fn task_upid(p: &P) -> Result<&str, ApiError> {
    let upid = p.get("upid").map(String::as_str).unwrap_or("");
    match crate::tasks::Upid::parse(upid) {
        Some(u) if u.node == p["node"] => Ok(upid),
        _ => Err(ApiError::param("upid", "no such task")),
    }
}
