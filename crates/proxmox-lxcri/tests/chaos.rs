//! Crash safety: lifecycles whose runtime command is SIGKILLed at a random
//! instant of create, start or delete, then `gc`, then the caller's retry
//! (`delete --force` of what is still listed). Afterwards nothing may be
//! left: no process, cgroup, LXC container, state or staging dir, mount,
//! ZFS dataset, exchange dir, Proxmox CT or volume. Zero is the only pass.
//!
//! `LXCRI_CHAOS_N` sets the number of lifecycles per engine (default 20;
//! bench/chaos.sh runs 100), `LXCRI_CHAOS_SEED` replays a run (the seed is
//! printed).
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storage::testpool::TestPool;
use support::emulator::RuntimeConfig;
use support::Env;

fn runs() -> usize {
    std::env::var("LXCRI_CHAOS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn seed() -> u64 {
    std::env::var("LXCRI_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Create,
    Start,
    Delete,
}

/// How long each phase takes here, measured once: kills land anywhere in
/// [0, 1.25 x that].
struct Timing {
    create: Duration,
    start: Duration,
    delete: Duration,
}

struct Chaos<'a> {
    env: &'a Env,
    bundle: PathBuf,
    prefix: String,
    /// Where unprivileged containers' exchange dirs go (pve-lxc).
    exchange_base: Option<PathBuf>,
    pool: Option<&'a TestPool>,
}

impl Chaos<'_> {
    fn id(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    fn calibrate(&self) -> Timing {
        let id = self.id(9999);
        let t = Instant::now();
        self.env.must_create(&id, &self.bundle);
        let create = t.elapsed();
        let t = Instant::now();
        self.env.ok(&["start", &id]);
        let start = t.elapsed();
        let t = Instant::now();
        self.env.ok(&["delete", "--force", &id]);
        let delete = t.elapsed();
        Timing {
            create,
            start,
            delete,
        }
    }

    /// Run our binary with `args` and SIGKILL it after `after` (unless it
    /// ended first).
    fn kill_during(&self, id: &str, args: &[&str], after: Duration) {
        let tmp = self.env.tmp.path();
        let out = std::fs::File::create(tmp.join(format!("{id}.out"))).unwrap();
        let err = std::fs::File::create(tmp.join(format!("{id}.err"))).unwrap();
        let mut child = self
            .env
            .base()
            .arg("--log")
            .arg(tmp.join(format!("{id}.log")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill();
        let _ = child.wait();
    }

    fn run(&self, n: usize, seed: u64) {
        let timing = self.calibrate();
        eprintln!(
            "chaos: seed {seed} (LXCRI_CHAOS_SEED), {n} lifecycles; create {:?}, start {:?}, delete {:?}",
            timing.create, timing.start, timing.delete
        );
        let mut rng = fastrand::Rng::with_seed(seed);
        let bundle = self.bundle.to_str().unwrap();
        for i in 0..n {
            let id = self.id(i);
            let phase = [Phase::Create, Phase::Start, Phase::Delete][rng.usize(0..3)];
            let span = match phase {
                Phase::Create => timing.create,
                Phase::Start => timing.start,
                Phase::Delete => timing.delete,
            };
            let after = Duration::from_micros(rng.u64(0..=(span.as_micros() as u64 * 5 / 4)));
            match phase {
                Phase::Create => self.kill_during(&id, &["create", "--bundle", bundle, &id], after),
                Phase::Start => {
                    self.env.must_create(&id, &self.bundle);
                    self.kill_during(&id, &["start", &id], after);
                }
                Phase::Delete => {
                    self.env.must_create(&id, &self.bundle);
                    self.env.ok(&["start", &id]);
                    self.kill_during(&id, &["delete", "--force", &id], after);
                }
            }
            let gc = self.env.cmd(&["gc"]);
            assert!(
                gc.status.success(),
                "{id} ({phase:?} killed after {after:?}, seed {seed}): gc failed: {}{}",
                String::from_utf8_lossy(&gc.stdout),
                String::from_utf8_lossy(&gc.stderr)
            );
            self.assert_truthful(&id, phase, after, seed);
            // The caller's retry (containerd's shim always deletes).
            for listed in self.listed() {
                self.env.ok(&["delete", "--force", &listed]);
            }
        }
        let counts = self.leftovers(n);
        eprintln!("chaos: leftovers after {n} lifecycles: {counts:?}");
        assert!(
            counts.iter().all(|(_, c)| *c == 0),
            "seed {seed}: leftovers {counts:?}"
        );
    }

    /// A reboot of the host: the containers' processes and cgroups are gone
    /// (CTs stopped), and the runtime root with them (it lives under /run).
    /// What persists (ZFS volumes, Proxmox CTs and their volumes) must be
    /// found and removed by `gc`.
    fn reboot_then_gc(&self, k: usize) {
        for i in 0..k {
            let id = self.id(i);
            self.env.must_create(&id, &self.bundle);
            self.env.ok(&["start", &id]);
            match &self.env.pve {
                Some(emu) => {
                    let vmid = self.env.vmid(&id);
                    let r = emu.post(&format!("/nodes/pve/lxc/{vmid}/status/stop"), &[]);
                    assert!(r["data"].as_str().unwrap_or("").starts_with("UPID:"), "{r}");
                }
                None => {
                    let pid = self.env.state(&id)["pid"].as_i64().unwrap();
                    // SAFETY: kill(2).
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    self.env.wait_status(&id, "stopped");
                    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
                    for l in mountinfo.lines().filter(|l| l.contains(" - cgroup")) {
                        let mnt = Path::new(l.split_whitespace().nth(4).unwrap());
                        for c in [id.clone(), format!("{id}.monitor")] {
                            let _ = std::fs::remove_dir(mnt.join("proxmox-lxcri").join(c));
                        }
                    }
                }
            }
        }
        if let Some(emu) = &self.env.pve {
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..k {
                let vmid = self.env.vmid(&self.id(i));
                loop {
                    let r = emu.get(&format!("/nodes/pve/lxc/{vmid}/status/current"));
                    if r["data"]["status"] == "stopped" {
                        break;
                    }
                    assert!(Instant::now() < deadline, "CT {vmid} does not stop: {r}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        std::fs::remove_dir_all(&self.env.root).unwrap();
        if let Some(b) = &self.exchange_base {
            let _ = std::fs::remove_dir_all(b);
        }
        assert_eq!(self.env.ok(&["list", "-q"]), "", "list after the reboot");
        let dry = self.env.ok(&["gc", "--dry-run"]);
        eprintln!("reboot: gc --dry-run:\n{dry}");
        assert!(dry.lines().count() >= k, "gc sees too little: {dry}");
        let out = self.env.ok(&["gc"]);
        eprintln!("reboot: gc:\n{out}");
        let counts = self.leftovers(k);
        eprintln!("reboot: leftovers: {counts:?}");
        assert!(counts.iter().all(|(_, c)| *c == 0), "leftovers {counts:?}");
    }

    fn listed(&self) -> Vec<String> {
        let out = self.env.ok(&["list", "-q"]);
        out.lines().map(str::to_string).collect()
    }

    /// After gc: every directory under containers/ is a container `state`
    /// answers for, with a status its processes bear out; an id `state`
    /// calls absent is free for `create`.
    fn assert_truthful(&self, id: &str, phase: Phase, after: Duration, seed: u64) {
        let what = format!("{id} ({phase:?} killed after {after:?}, seed {seed})");
        let listed = self.listed();
        let dir = self.env.root.join("containers");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                listed.contains(&name),
                "{what}: {name} in {} but not listed",
                dir.display()
            );
        }
        for l in &listed {
            let st = self.env.state(l);
            let status = st["status"].as_str().unwrap().to_string();
            assert!(
                ["created", "running", "stopped"].contains(&status.as_str()),
                "{what}: {l} is {status} after gc"
            );
            if status != "stopped" {
                let pid = st["pid"].as_i64().unwrap();
                assert!(
                    Path::new(&format!("/proc/{pid}")).exists(),
                    "{what}: {l} is {status} but its pid {pid} is gone"
                );
            }
        }
        if !listed.contains(&id.to_string()) {
            let o = self.env.cmd(&["state", id]);
            assert!(!o.status.success(), "{what}: state of an unlisted id works");
        }
    }

    /// Everything of this run that is still on the host.
    fn leftovers(&self, n: usize) -> Vec<(&'static str, usize)> {
        let tmp = self.env.tmp.path().to_string_lossy().into_owned();
        let root = self.env.root.join("containers");
        let emu_pid = self.env.pve.as_ref().map(|e| e.pid() as i32);
        let ids: Vec<String> = (0..n).map(|i| self.id(i)).chain([self.id(9999)]).collect();

        // Processes: ours (their command lines name the root), lxc-start
        // (-P <root>/containers), the emulator's CTs (its data dir).
        let me = std::process::id() as i32;
        let mut procs = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || Some(pid) == emu_pid {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(&tmp) {
                    eprintln!("chaos: left process {pid}: {cmd}");
                    procs += 1;
                }
            }
        }
        // Cgroups of these ids (lxc engine), and processes in them.
        let mut cgroups = 0;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for l in mountinfo.lines().filter(|l| l.contains(" - cgroup")) {
            let mnt = l.split_whitespace().nth(4).unwrap();
            for id in &ids {
                for c in [id.clone(), format!("{id}.monitor")] {
                    let d = Path::new(mnt).join("proxmox-lxcri").join(&c);
                    if d.exists() {
                        eprintln!("chaos: left cgroup {}", d.display());
                        cgroups += 1;
                    }
                }
            }
        }
        let lxc_ls = Command::new("lxc-ls")
            .arg("-P")
            .arg(&root)
            .arg("-1")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0);
        let dirs = std::fs::read_dir(&root).map(|rd| rd.count()).unwrap_or(0);
        let mounts = mountinfo.lines().filter(|l| l.contains(&tmp)).count();
        let datasets = self.pool.map_or(0, |p| {
            p.all()
                .iter()
                .filter(|d| d.contains("/containers/"))
                .count()
        });
        let exchange = self.exchange_base.as_ref().map_or(0, |b| {
            std::fs::read_dir(b).map(|rd| rd.count()).unwrap_or(0)
        });
        // Leases of this root (the ipam dir under it, on any network).
        let leases: usize = std::fs::read_dir(self.env.root.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                v["leases"].as_array().map_or(0, |a| a.len())
            })
            .sum();
        let (cts, volumes) = self
            .env
            .pve
            .as_ref()
            .map_or((0, 0), |emu| (emu.ct_ids().len(), emu.volumes().len()));
        vec![
            ("processes", procs),
            ("cgroups", cgroups),
            ("lxc-ls", lxc_ls),
            ("state dirs", dirs),
            ("mounts", mounts),
            ("zfs datasets", datasets),
            ("exchange dirs", exchange),
            ("CTs", cts),
            ("CT volumes", volumes),
            ("leases", leases),
        ]
    }
}

/// The lxc engine on ZFS volumes (zfs-fuse, a pool of this test's own).
fn zfs_env() -> (Env, TestPool) {
    let mut env = Env::new();
    let pool = TestPool::new(2 << 30).expect("test pool");
    let cfg = env.tmp.path().join("chaos.toml");
    std::fs::write(
        &cfg,
        format!(
            "default_backend = \"lxc\"\n[storage]\nkind = \"zfs\"\nzfs_parent = \"{}/lxcri\"\nlock_dir = \"{}\"\nproperties = {{ compression = \"on\" }}\n",
            pool.name,
            env.tmp.path().join("locks").display()
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    (env, pool)
}

/// pve-lxc against the emulator, exchange dirs in the test's own dir.
fn pve_env() -> Env {
    let mut env = Env::with_pve();
    let exchange = env.tmp.path().join("exchange");
    let cfg = env.tmp.path().join("chaos.toml");
    env.emu().write_config_with(
        &cfg,
        "pve-lxc",
        "local",
        &format!(
            "[lxc]\nexchange_dir = \"{}\"\n[network.chaos]\nbridge = \"{}\"\n\
             subnet = \"10.253.0.0/16\"\ngateway = \"10.253.0.1\"\n",
            exchange.display(),
            env.emu().bridge().unwrap()
        ),
    );
    env.config = Some(cfg);
    env
}

#[test]
fn lxc_engine_leaves_nothing_after_sigkill_at_any_instant() {
    let (env, pool) = zfs_env();
    let bundle = env.bundle("b", &["sleep", "1000"], |_| {});
    let chaos = Chaos {
        env: &env,
        bundle,
        prefix: format!("chaos{}l", std::process::id()),
        exchange_base: None,
        pool: Some(&pool),
    };
    chaos.run(runs(), seed());
}

/// pve-lxc against the emulator: unprivileged CTs, exchange dirs outside
/// the root.
#[test]
fn pve_lxc_leaves_nothing_after_sigkill_at_any_instant() {
    let env = pve_env();
    let exchange = env.tmp.path().join("exchange");
    // On a configured network: every CT holds a lease, counted too.
    let bundle = env.bundle("b", &["sleep", "1000"], |s| {
        s["annotations"] = serde_json::json!({"io.proxmox-lxcri.network": "chaos"});
    });
    testkit::make_traversable(&bundle);
    let chaos = Chaos {
        env: &env,
        bundle,
        prefix: format!("chaos{}p", std::process::id()),
        exchange_base: Some(exchange),
        pool: None,
    };
    chaos.run(runs(), seed());
}

#[test]
fn lxc_engine_volumes_are_collected_after_a_reboot() {
    let (env, pool) = zfs_env();
    let bundle = env.bundle("b", &["sleep", "1000"], |_| {});
    let chaos = Chaos {
        env: &env,
        bundle,
        prefix: format!("boot{}l", std::process::id()),
        exchange_base: None,
        pool: Some(&pool),
    };
    chaos.reboot_then_gc(3);
}

#[test]
fn pve_lxc_cts_are_collected_after_a_reboot() {
    let env = pve_env();
    let bundle = env.bundle("b", &["sleep", "1000"], |_| {});
    testkit::make_traversable(&bundle);
    let chaos = Chaos {
        env: &env,
        bundle,
        prefix: format!("boot{}p", std::process::id()),
        exchange_base: Some(env.tmp.path().join("exchange")),
        pool: None,
    };
    chaos.reboot_then_gc(3);
}
