//! Operations commands: `metrics serve`, `doctor`, and the hidden
//! `generate` that writes man pages and completions for the package.
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::CommandFactory;
use proxmox_lxcri_runtime::config::Config;
use proxmox_lxcri_runtime::Runtime;

use crate::cli::{Cli, GenerateCmd, GlobalOpts, MetricsCmd};

pub fn metrics(rt: Runtime, c: MetricsCmd) -> Result<i32> {
    match c {
        MetricsCmd::Serve { listen } => {
            let listener = TcpListener::bind(&listen)
                .with_context(|| format!("--listen {listen}: cannot listen"))?;
            let root = rt.store.root.clone();
            let config = rt.config.clone();
            let exporter = Arc::new(proxmox_lxcri_metrics::Exporter::new(rt));
            // /healthz has a runtime of its own: the exporter's is busy scraping.
            let health_rt = Runtime::new(root, config);
            let cache = proxmox_lxcri_doctor::Cached::new(Duration::from_secs(5));
            let health = Box::new(move || {
                let r = cache.get(&health_rt);
                // Its gc --dry-run may call the API; nothing logs those.
                drop(health_rt.take_api_requests());
                (
                    r.healthy,
                    serde_json::to_string(&r).unwrap_or_else(|_| "{}".into()),
                )
            });
            eprintln!(
                "proxmox-lxcri: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            exporter.serve(listener, health)?;
            Ok(0)
        }
    }
}

/// Exit code: 0 healthy (warnings allowed unless `strict`), 1 otherwise.
pub fn doctor(g: &GlobalOpts, json: bool, strict: bool) -> Result<i32> {
    use proxmox_lxcri_doctor::{Check, Report, Status};
    let report = match Config::load(g.config.as_deref()) {
        Ok(config) => proxmox_lxcri_doctor::run(&Runtime::new(&g.root, config)),
        // A config that does not load is the first thing to fix.
        Err(e) => Report {
            healthy: false,
            checks: vec![Check {
                name: "config",
                status: Status::Fail,
                detail: e.to_string(),
            }],
        },
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    let bad = !report.healthy || (strict && report.worst() == Status::Warn);
    Ok(if bad { 1 } else { 0 })
}

pub fn generate(c: GenerateCmd) -> Result<()> {
    let cmd = Cli::command();
    match c {
        GenerateCmd::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            write_man(&dir, &cmd, "proxmox-lxcri", "proxmox-lxcri")?;
        }
        GenerateCmd::Completions { dir } => {
            use clap_complete::Shell;
            std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let mut cmd = Cli::command();
                clap_complete::generate_to(shell, &mut cmd, "proxmox-lxcri", &dir)
                    .with_context(|| format!("{shell} completions into {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// One page per command, `proxmox-lxcri-<sub>.1` for subcommands (as git
/// does), whose synopsis shows how it is typed: `proxmox-lxcri <sub> ...`.
fn write_man(
    dir: &std::path::Path,
    cmd: &clap::Command,
    page: &str,
    invocation: &str,
) -> Result<()> {
    let cmd = cmd
        .clone()
        .display_name(page.to_string())
        .bin_name(invocation.to_string());
    let mut buf = vec![];
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    let path = dir.join(format!("{page}.1"));
    std::fs::write(&path, buf).with_context(|| format!("{}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man(
            dir,
            sub,
            &format!("{page}-{}", sub.get_name()),
            &format!("{invocation} {}", sub.get_name()),
        )?;
    }
    Ok(())
}
