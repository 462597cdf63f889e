//! One function per command; the lifecycle itself lives in the runtime crate.
use std::io::Write;

use anyhow::{bail, Context, Result};
use proxmox_lxcri_runtime::config::Config;
use proxmox_lxcri_runtime::{signal, CreateOptions, ExecFlags, ResourceFlags, Runtime};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs, ListFormat, UpdateArgs};

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    }
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Spec { bundle, rootless } => return spec(&bundle, rootless).map(|_| 0),
        Command::Features => return features().map(|_| 0),
        Command::Generate(c) => return crate::obs_cmds::generate(c).map(|_| 0),
        Command::Doctor { json, strict } => return crate::obs_cmds::doctor(g, json, strict),
        Command::ApparmorProfile { bundle, name, id } => {
            let spec = proxmox_lxcri_runtime::create::load_spec(&bundle)?;
            let name = name.unwrap_or_else(|| proxmox_lxcri_lxc::apparmor::profile_name(&id));
            print!(
                "{}",
                proxmox_lxcri_lxc::apparmor::profile(&name, &spec).map_err(anyhow::Error::msg)?
            );
            return Ok(0);
        }
        _ => {}
    }
    let config = Config::load(g.config.as_deref())?;
    let rt = Runtime::new(&g.root, config);
    match cli.command {
        Command::Create(a) => rt.create(&a.id, &create_options(&a))?,
        Command::Start { id } => rt.start(&id)?,
        Command::State { id } => {
            let st = rt.state(&id)?;
            print!("{}", serde_json::to_string_pretty(&st.oci_json())?);
            std::io::stdout().flush()?;
        }
        Command::Kill { all, id, signal } => {
            // runc accepts signal 0 (is it alive?); nix has no Signal for it.
            let sig = match signal.as_str() {
                "0" => None,
                s => Some(signal::parse(s)?),
            };
            rt.kill(&id, sig, all)?
        }
        Command::Delete { force, id } => rt.delete(&id, force)?,
        Command::Run { create, detach, .. } => {
            return Ok(rt.run(&create.id, &create_options(&create), detach)?);
        }
        Command::List { format, quiet } => list(&rt, format, quiet)?,
        Command::Exec(a) => return exec(&rt, a),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &id, format, &ps_args)?,
        Command::Pause { id } => rt.pause(&id)?,
        Command::Resume { id } => rt.resume(&id)?,
        Command::Update(a) => update(&rt, a)?,
        Command::Events {
            stats,
            interval,
            id,
        } => {
            if stats {
                println!("{}", rt.stats(&id)?);
            } else {
                let every = humantime::parse_duration(&interval)
                    .with_context(|| format!("--interval {interval:?}"))?;
                rt.watch(&id, every, |v| println!("{v}"))?;
            }
        }
        Command::Snapshot(c) => crate::storage_cmds::snapshot(&rt, c)?,
        Command::Image(c) => crate::storage_cmds::image(&rt, c)?,
        Command::Gc { dry_run } => crate::storage_cmds::gc(&rt, dry_run)?,
        Command::Metrics(c) => return crate::obs_cmds::metrics(rt, c),
        Command::Network(c) => crate::network_cmds::network(&rt, c)?,
        Command::Spec { .. }
        | Command::Features
        | Command::ApparmorProfile { .. }
        | Command::Generate(_)
        | Command::Doctor { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

fn list(rt: &Runtime, format: ListFormat, quiet: bool) -> Result<()> {
    let all = rt.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for st in &all {
            writeln!(out, "{}", st.id)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            // runc's keys in runc's order (scripts match the text), and
            // its owner name for root.
            let v: Vec<_> = all
                .iter()
                .map(|s| {
                    let mut v = s.oci_json();
                    if s.owner.is_empty() {
                        v["owner"] = "root".into();
                    }
                    v
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
        ListFormat::Table => {
            writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            )?;
            for st in &all {
                let v = st.oci_json();
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    st.id,
                    v["pid"],
                    st.status,
                    st.bundle.display(),
                    st.created,
                    if st.owner.is_empty() {
                        "root"
                    } else {
                        &st.owner
                    }
                )?;
            }
        }
    }
    Ok(())
}

/// `spec`: a default config.json, as `runc spec` writes one.
fn spec(bundle: &std::path::Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let mut spec = if rootless {
        oci_spec::runtime::Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        oci_spec::runtime::Spec::default()
    };
    // runc's default runs `sh` with a terminal.
    if let Some(p) = spec.process_mut() {
        p.set_args(Some(vec!["sh".into()]));
        p.set_terminal(Some(true));
    }
    let json = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn features() -> Result<()> {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": proxmox_lxcri_runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount",
            "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "knownFlags": [],
                "supportedFlags": []
            },
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false}
        },
        "annotations": {
            "io.github.proxmox-lxcri.engines": "lxc",
            "org.opencontainers.runc.checkpoint.enabled": "false"
        }
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let process: oci_spec::runtime::Process = match &a.process {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("--process {}", p.display()))?;
            let mut v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("--process {}: invalid process JSON", p.display()))?;
            proxmox_lxcri_runtime::compat::normalize_process(&mut v).log();
            serde_json::from_value(v)
                .with_context(|| format!("--process {}: invalid process JSON", p.display()))?
        }
        None => rt.exec_process(
            &a.id,
            &ExecFlags {
                args: a.command.clone(),
                tty: a.tty,
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                no_new_privs: a.no_new_privs,
                caps: a.cap.clone(),
            },
        )?,
    };
    let opts = proxmox_lxcri_runtime::ExecOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        detach: a.detach,
        ignore_paused: a.ignore_paused,
        preserve_fds: a.preserve_fds,
        cgroups: a.cgroup.clone(),
    };
    Ok(rt.exec(&a.id, &process, &opts)?)
}

fn ps(rt: &Runtime, id: &str, format: ListFormat, ps_args: &[String]) -> Result<()> {
    let pids = rt.pids(id)?;
    match format {
        // runc prints `null` for no processes (a nil slice).
        ListFormat::Json if pids.is_empty() => println!("null"),
        ListFormat::Json => println!("{}", serde_json::to_string(&pids)?),
        ListFormat::Table => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("running ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .context("ps output has no PID column")?;
            println!("{header}");
            for l in lines {
                if let Some(pid) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&pid) {
                        println!("{l}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn update(rt: &Runtime, a: UpdateArgs) -> Result<()> {
    use oci_spec::runtime::LinuxResources;
    let mut r: LinuxResources = match &a.resources {
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(p)
                    .with_context(|| format!("--resources {}", p.display()))?
            };
            serde_json::from_str(&text).context("--resources: invalid LinuxResources JSON")?
        }
        None => LinuxResources::default(),
    };
    ResourceFlags {
        memory: a.memory,
        memory_swap: a.memory_swap,
        memory_reservation: a.memory_reservation,
        cpu_shares: a.cpu_shares,
        cpu_quota: a.cpu_quota,
        cpu_period: a.cpu_period,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        pids_limit: a.pids_limit,
    }
    .apply(&mut r);
    rt.update(&a.id, &r)?;
    Ok(())
}
