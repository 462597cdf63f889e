//! pve-emulator: serves the Proxmox VE API over HTTPS (see docs/pve-emulator.md).

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use pve_emulator::{
    api, auth, faults, http, preflight, rrd, runner, sampler, schema, server, storage, store,
    tasks, tls,
};

#[derive(Parser, Debug)]
#[command(
    name = "pve-emulator",
    version,
    about = "A Proxmox VE node in a box: the REST API over HTTPS, real LXC guests"
)]
struct Cli {
    /// ADDR:PORT to listen on (port 0 picks a free one; the real one is printed).
    #[arg(long, required_unless_present = "dump_schema")]
    listen: Option<String>,
    /// Where the state lives (configs, tasks, certificates, storage by default).
    #[arg(long, required_unless_present = "dump_schema")]
    data_dir: Option<PathBuf>,
    /// Cluster node names (one VMID space); default `pve`.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Password of root@pam for /access/ticket (none: ticket login refused).
    /// Prefer --root-password-file: the command line is visible to all users.
    #[arg(long, conflicts_with = "root_password_file")]
    root_password: Option<String>,
    /// A file (not group/world-readable) whose first line is root@pam's password.
    #[arg(long)]
    root_password_file: Option<PathBuf>,
    /// API token `USER@REALM!ID=SECRET` (repeatable). Parsed in `run`, not by
    /// clap, whose error would echo the secret. Prefer --token-file.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// A file (not group/world-readable) of tokens, one `USER@REALM!ID=SECRET` a line (repeatable).
    #[arg(long = "token-file")]
    token_files: Vec<PathBuf>,
    /// `ID=dir:/path` or `ID=zfspool:POOL/DATASET` (repeatable); `local=dir:DIR/storage/local` unless given.
    #[arg(long = "storage", value_parser = storage::parse_arg)]
    storages: Vec<storage::Storage>,
    /// Bridges to create if missing (repeatable).
    #[arg(long = "bridge")]
    bridges: Vec<String>,
    /// Delay before a 401 for bad credentials, as pveproxy's ~3 s.
    #[arg(long, default_value_t = 3000)]
    auth_fail_delay_ms: u64,
    /// Lowest VMID /cluster/nextid hands out (datacenter.cfg `next-id: lower=`).
    /// Emulators running side by side need disjoint ranges: a CT's veth is
    /// named after its VMID (`veth<vmid>i0`) in the host's one namespace.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(100..=999_000_000))]
    next_id_lower: u32,
    /// A fault rule as JSON (repeatable), as for POST /_emulator/faults.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// How often the node, storages and guests are sampled for rrddata
    /// (pvestatd: every 10 s).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    stats_interval_ms: u64,
    /// Print the emulator's parameter table as JSON and exit.
    #[arg(long)]
    dump_schema: bool,
}

extern "C" fn on_term(_: libc::c_int) {
    // Stop serving at once; CTs run on (lxc-start daemonized them).
    unsafe { libc::_exit(0) };
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pve-emulator: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if cli.dump_schema {
        println!("{}", serde_json::to_string_pretty(&schema::dump())?);
        return Ok(());
    }
    let mut tokens = cli
        .tokens
        .iter()
        .map(|t| auth::parse_token_arg(t).map_err(|e| anyhow::anyhow!("--token: {e}")))
        .collect::<Result<Vec<_>>>()?;
    for f in &cli.token_files {
        tokens.extend(auth::read_token_file(f).context("--token-file")?);
    }
    let root_password = match &cli.root_password_file {
        Some(f) => Some(auth::read_password_file(f).context("--root-password-file")?),
        None => cli.root_password.clone(),
    };
    let listen = cli.listen.clone().unwrap_or_default();
    let dir = cli.data_dir.clone().unwrap_or_default();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let nodes = if cli.nodes.is_empty() {
        vec!["pve".to_string()]
    } else {
        cli.nodes.clone()
    };
    for n in &nodes {
        anyhow::ensure!(schema::is_node_name(n), "node name '{n}' is not valid");
    }
    let mut storages = cli.storages.clone();
    // Like every Proxmox node, there is always a `local` directory storage.
    if !storages.iter().any(|s| s.id == "local") {
        storages.push(storage::Storage {
            id: "local".into(),
            backend: storage::Backend::Dir(dir.join("storage/local")),
        });
    }
    for s in &storages {
        s.init().with_context(|| format!("storage '{}'", s.id))?;
    }
    runner::ensure_subids()?;
    for b in &cli.bridges {
        runner::ensure_bridge(b).with_context(|| format!("bridge '{b}'"))?;
    }
    let fault_rules: Vec<faults::Rule> = cli
        .faults
        .iter()
        .map(|f| serde_json::from_str(f).with_context(|| format!("--fault '{f}'")))
        .collect::<Result<_>>()?;

    let runner = runner::Runner::new(dir.join("run/lxc"))?;
    // Before serving: a directory unprivileged CTs cannot reach would
    // fail every CT start later, with nothing saying why.
    let volume_dirs: Vec<_> = storages
        .iter()
        .filter_map(|s| Some((s.id.clone(), s.volume_dir()?)))
        .collect();
    preflight::check_all(&runner.lxcpath, &volume_dirs)?;
    let stats_interval = std::time::Duration::from_millis(cli.stats_interval_ms);

    let cert = tls::load_or_create(&dir, &nodes)?;
    std::fs::write(dir.join("fingerprint"), format!("{}\n", cert.fingerprint))?;
    let mut out = std::io::stdout();
    writeln!(out, "fingerprint {}", cert.fingerprint)?;
    out.flush()?;

    let app = Arc::new(api::App {
        data_dir: dir.clone(),
        nodes: nodes.clone(),
        auth: auth::Auth::new(&dir, root_password, tokens)?,
        store: store::Store::new(&dir, nodes)?,
        tasks: Arc::new(tasks::Tasks::new(dir.join("tasks"))?),
        runner,
        faults: faults::Faults::default(),
        storages,
        auth_fail_delay_ms: cli.auth_fail_delay_ms,
        next_id_lower: cli.next_id_lower,
        fingerprint: cert.fingerprint.clone(),
        rrd: rrd::Rrd::default(),
    });
    sampler::spawn(app.clone(), stats_interval);
    app.faults
        .add(fault_rules)
        .map_err(|e| anyhow::anyhow!("--fault: {e}"))?;

    let listener = TcpListener::bind(&listen).with_context(|| format!("listening on {listen}"))?;
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as usize);
        libc::signal(libc::SIGINT, on_term as *const () as usize);
    }
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    let a = app.clone();
    let handler: Arc<http::Handler> = Arc::new(move |req| server::handle(&a, req));
    let a = app.clone();
    let admit: Arc<http::Admit> = Arc::new(move |req: &http::Request| server::admit(&a, req));
    http::serve(listener, cert.config, admit, handler);
    Ok(())
}
