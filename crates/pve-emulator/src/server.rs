//! The request pipeline: faults, routing by the schema table, auth, CSRF,
//! parameter parsing and validation, then the handlers in `api`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::{self, App};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::http::{Outcome, Request, Response};
use crate::schema;

pub const PREFIX: &str = "/api2/json";

/// A multipart part: (field name, file name, data).
pub type Part = (String, Option<String>, Vec<u8>);
/// Request parameters and the uploaded file (name, data), if any.
type Params = (BTreeMap<String, String>, Option<(String, Vec<u8>)>);

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn respond(status: u16, reason: &str, body: Value) -> Outcome {
    Outcome::Respond(Response {
        status,
        reason: reason.to_string(),
        content_type: "application/json;charset=UTF-8",
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

pub fn error_outcome(e: &ApiError) -> Outcome {
    let mut msg = e.message.clone();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    let mut body = json!({"data": null, "message": msg});
    if let Some(errs) = &e.errors {
        body["errors"] = json!(errs);
    }
    let reason = e.message.lines().next().unwrap_or("error").to_string();
    respond(e.status, &reason, body)
}

/// Matches a raw path against the table's patterns; returns the pattern and
/// the path parameters. `{volume}` takes the rest of the path.
pub fn route(path: &str) -> (Option<&'static str>, BTreeMap<String, String>) {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let mut seen = std::collections::HashSet::new();
    for ep in schema::endpoints() {
        if !seen.insert(ep.path) {
            continue;
        }
        let pat: Vec<&str> = ep.path.split('/').skip(1).collect();
        let mut params = BTreeMap::new();
        let mut ok = true;
        let mut i = 0;
        for (pi, p) in pat.iter().enumerate() {
            if *p == "{volume}" && pi == pat.len() - 1 {
                if i >= segs.len() {
                    ok = false;
                    break;
                }
                params.insert(
                    "volume".to_string(),
                    segs[i..]
                        .iter()
                        .map(|s| decode(s))
                        .collect::<Vec<_>>()
                        .join("/"),
                );
                i = segs.len();
                break;
            }
            let Some(s) = segs.get(i) else {
                ok = false;
                break;
            };
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let v = decode(s);
                if v.is_empty() {
                    ok = false;
                    break;
                }
                params.insert(name.to_string(), v);
            } else if p != s {
                ok = false;
                break;
            }
            i += 1;
        }
        if ok && i == segs.len() {
            return (Some(ep.path), params);
        }
    }
    (None, BTreeMap::new())
}

fn parse_json_body(body: &[u8], out: &mut BTreeMap<String, String>) -> Result<(), ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, format!("unable to parse JSON body: {e}")))?;
    let Value::Object(m) = v else {
        return Err(ApiError::new(400, "JSON body is not an object"));
    };
    for (k, v) in m {
        let s = match v {
            Value::String(s) => s,
            Value::Bool(b) => if b { "1" } else { "0" }.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => {
                return Err(ApiError::param(
                    &k,
                    format!("type check failed - got '{other}'"),
                ));
            }
        };
        out.insert(k, s);
    }
    Ok(())
}

/// A multipart body's parts: (name, filename, data).
pub fn multipart(ct: &str, body: &[u8]) -> Result<Vec<Part>, ApiError> {
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .ok_or_else(|| ApiError::new(400, "multipart body without boundary"))?;
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], from: usize, needle: &[u8]| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut pos = find(body, 0, &delim)
        .ok_or_else(|| ApiError::new(400, "malformed multipart body"))?
        + delim.len();
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        pos += 2; // CRLF after the delimiter
        let head_end = find(body, pos, b"\r\n\r\n")
            .ok_or_else(|| ApiError::new(400, "malformed multipart part"))?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).to_string();
        let data_start = head_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let end = find(body, data_start, &next_delim)
            .ok_or_else(|| ApiError::new(400, "malformed multipart part"))?;
        let mut name = None;
        let mut filename = None;
        for l in head.lines() {
            if l.to_ascii_lowercase().starts_with("content-disposition") {
                for attr in l.split(';').skip(1) {
                    let attr = attr.trim();
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_string());
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_string());
                    }
                }
            }
        }
        if let Some(n) = name {
            parts.push((n, filename, body[data_start..end].to_vec()));
        }
        pos = end + next_delim.len();
    }
    Ok(parts)
}

/// The incoming parameters: body (form, JSON or multipart fields), then the
/// query string on top (it wins, as in pve-http-server), then the path.
fn params(req: &Request, path_params: BTreeMap<String, String>) -> Result<Params, ApiError> {
    let mut p = BTreeMap::new();
    let mut file = None;
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if !req.body.is_empty() {
        if ct.starts_with("application/json") {
            parse_json_body(&req.body, &mut p)?;
        } else if ct.starts_with("multipart/form-data") {
            for (name, fname, data) in
                multipart(req.header("content-type").unwrap_or(""), &req.body)?
            {
                if name == "filename" && fname.is_some() {
                    let f = fname.unwrap_or_default();
                    let base = f.rsplit(['/', '\\']).next().unwrap_or("").to_string();
                    p.insert("filename".to_string(), base.clone());
                    file = Some((base, data));
                } else {
                    p.insert(name, String::from_utf8_lossy(&data).into_owned());
                }
            }
        } else {
            for (k, v) in form_urlencoded::parse(&req.body) {
                p.insert(k.into_owned(), v.into_owned());
            }
        }
    }
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        p.insert(k.into_owned(), v.into_owned());
    }
    p.extend(path_params);
    Ok((p, file))
}

fn cookie_ticket(req: &Request) -> Option<String> {
    let c = req.header("cookie")?;
    c.split(';')
        .filter_map(|kv| kv.trim().strip_prefix("PVEAuthCookie="))
        .next()
        .map(decode)
}

/// Who is asking; 401 after the configured delay for bad credentials.
fn authenticate(app: &App, req: &Request) -> Result<Identity, ApiError> {
    let fail = |had_credentials: bool| {
        if had_credentials {
            std::thread::sleep(Duration::from_millis(app.auth_fail_delay_ms));
        }
        ApiError::new(
            401,
            if had_credentials {
                "authentication failure"
            } else {
                "No ticket"
            },
        )
    };
    if let Some(h) = req.header("authorization") {
        if h.starts_with("PVEAPIToken") {
            return app.auth.verify_token_header(h).ok_or_else(|| fail(true));
        }
    }
    let Some(ticket) = cookie_ticket(req) else {
        return Err(fail(false));
    };
    let user = app.auth.verify_ticket(&ticket).ok_or_else(|| fail(true))?;
    if req.method != "GET" {
        let ok = req
            .header("csrfpreventiontoken")
            .is_some_and(|t| app.auth.verify_csrf(t, &user));
        if !ok {
            return Err(ApiError::forbidden(
                "Permission denied - invalid csrf token",
            ));
        }
    }
    Ok(Identity::Ticket { user })
}

/// Largest body of a request other than a template upload.
pub const MAX_SMALL_BODY: usize = 1 << 20;

/// The endpoint of a request, or the 501 answer.
fn endpoint(
    req: &Request,
) -> Result<(&'static schema::Endpoint, String, BTreeMap<String, String>), ApiError> {
    let not_impl = || {
        ApiError::new(
            501,
            format!("Method '{} {}' not implemented", req.method, req.path),
        )
    };
    let rel = req.path.strip_prefix(PREFIX).ok_or_else(not_impl)?;
    let rel = if rel.is_empty() { "/" } else { rel }.to_string();
    let (pattern, path_params) = route(&rel);
    let ep = pattern
        .and_then(|p| schema::find(&req.method, p))
        .ok_or_else(|| {
            ApiError::new(
                501,
                format!("Method '{} {}' not implemented", req.method, rel),
            )
        })?;
    Ok((ep, rel, path_params))
}

/// Before the body is read: only authenticated requests get to send one
/// (login aside), and only uploads a large one.
pub fn admit(app: &Arc<App>, req: &Request) -> Result<usize, Outcome> {
    if req.path == "/_emulator/faults" {
        return authenticate(app, req)
            .map(|_| MAX_SMALL_BODY)
            .map_err(|e| error_outcome(&e));
    }
    let (ep, _, _) = endpoint(req).map_err(|e| error_outcome(&e))?;
    if ep.path == "/access/ticket" {
        return Ok(MAX_SMALL_BODY);
    }
    authenticate(app, req).map_err(|e| error_outcome(&e))?;
    Ok(if ep.path == "/nodes/{node}/storage/{storage}/upload" {
        crate::http::MAX_BODY
    } else {
        MAX_SMALL_BODY
    })
}

pub fn handle(app: &Arc<App>, req: Request) -> Outcome {
    if req.path == "/_emulator/faults" {
        return match authenticate(app, &req) {
            Err(e) => error_outcome(&e),
            Ok(_) => control(app, &req),
        };
    }
    let (ep, rel, path_params) = match endpoint(&req) {
        Ok(x) => x,
        Err(e) => return error_outcome(&e),
    };
    let identity = if ep.path == "/access/ticket" {
        None
    } else {
        match authenticate(app, &req) {
            Ok(i) => Some(i),
            Err(e) => return error_outcome(&e),
        }
    };
    // Faults after auth: an unauthenticated client cannot trigger them.
    let eff = app.faults.check(&req.method, &rel);
    if eff.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(eff.latency_ms));
    }
    if eff.drop {
        return Outcome::Drop;
    }
    if let Some((status, message)) = eff.error {
        return error_outcome(&ApiError::new(status, message));
    }
    let result = (|| {
        let (mut p, file) = params(&req, path_params)?;
        if ep.path == "/access/ticket" {
            if let (Some(realm), Some(u)) = (p.get("realm").cloned(), p.get("username").cloned()) {
                if !u.contains('@') {
                    p.insert("username".into(), format!("{u}@{realm}"));
                }
            }
        }
        schema::validate(ep, &p).map_err(ApiError::params)?;
        let ctx = api::Ctx {
            identity,
            fail_task: eff.fail_task.clone(),
            file,
        };
        api::dispatch(app, &ctx, ep.method, ep.path, &p)
    })();
    match result {
        Ok(data) => {
            let body = match data {
                api::Data::Plain(v) => json!({ "data": v }),
                api::Data::WithTotal(v, total) => json!({ "data": v, "total": total }),
            };
            respond(200, "OK", body)
        }
        Err(e) => error_outcome(&e),
    }
}

fn control(app: &App, req: &Request) -> Outcome {
    match req.method.as_str() {
        "GET" => respond(200, "OK", json!({"data": app.faults.list()})),
        "DELETE" => {
            app.faults.clear();
            respond(200, "OK", json!({"data": null}))
        }
        "POST" => {
            #[derive(serde::Deserialize)]
            struct Body {
                rules: Vec<crate::faults::Rule>,
            }
            let r = serde_json::from_slice::<Body>(&req.body)
                .map_err(|e| e.to_string())
                .and_then(|b| app.faults.add(b.rules));
            match r {
                Ok(()) => respond(200, "OK", json!({"data": null})),
                Err(e) => error_outcome(&ApiError::param("rules", e)),
            }
        }
        m => error_outcome(&ApiError::new(
            501,
            format!("Method '{m} /_emulator/faults' not implemented"),
        )),
    }
}
