//! Storage benchmark: creating a container volume from rootfs of about
//! 20 MB, 200 MB and 1 GB on a throw-away ZFS pool (zfs-fuse here):
//! first create (copy into the image cache, then clone), cached create
//! (clone only; key from a digest annotation, or from the metadata
//! fingerprint walk), and the `dir` storage (a full copy each time).
//!
//! `storage-bench [--sizes 20,200,1024] [--runs N] [--first-runs N]`
//! (run as root; bench/storage.sh builds and runs it).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use storage::testpool::{run, TestPool};
use storage::{Kind, NoProgress, Storage, StorageConfig, VolumeRequest, DIGEST_ANNOTATION};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> R<()> {
    let mut sizes = vec![20u64, 200, 1024];
    let mut runs = 10usize;
    let mut first_runs = 3usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                sizes = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--runs" => runs = val()?.parse()?,
            "--first-runs" => first_runs = val()?.parse()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let work = tempfile::Builder::new().prefix("lxcri-bench").tempdir()?;
    let max = sizes.iter().max().copied().unwrap_or(20);
    let pool = TestPool::new(((max * 3) << 20).max(2 << 30))?;
    let parent = format!("{}/lxcri", pool.name);
    let mut cfg = StorageConfig::new(Kind::Zfs);
    cfg.zfs_parent = Some(parent.clone());
    cfg.properties.insert("compression".into(), "on".into());
    cfg.properties.insert("atime".into(), "off".into());
    cfg.lock_dir = work.path().join("locks");
    let zfs = Storage::new(cfg.clone())?;
    let mut dcfg = StorageConfig::new(Kind::Dir);
    dcfg.dir_root = work.path().join("dir");
    let dir = Storage::new(dcfg)?;
    let owner = work.path().join("root");

    let mut rows = vec![];
    for &mb in &sizes {
        eprintln!("building a {mb} MB rootfs ...");
        let src = make_rootfs(&work.path().join(format!("rootfs-{mb}")), mb << 20)?;
        let files = count(&src);
        let digest = format!("sha256:{:064x}", mb);
        let with_digest: BTreeMap<String, String> = [(DIGEST_ANNOTATION.to_string(), digest)]
            .into_iter()
            .collect();
        let none = BTreeMap::new();
        let mut n = 0;
        let mut create =
            |s: &Storage, ann: &BTreeMap<String, String>| -> R<(Duration, storage::Volume)> {
                n += 1;
                let id = format!("b{mb}-{n}");
                let t = Instant::now();
                let plan = s.plan(&VolumeRequest {
                    id: &id,
                    owner: &owner,
                    annotations: ann,
                    shift: None,
                })?;
                let v = s.create(&plan, &src, &mut NoProgress)?;
                Ok((t.elapsed(), v))
            };
        let fr = if mb >= 1024 { 1 } else { first_runs };
        let mut first = vec![];
        for i in 0..fr {
            eprintln!("  {mb} MB: first create {}/{fr}", i + 1);
            let (d, v) = create(&zfs, &none)?;
            first.push(d);
            zfs.destroy(&v)?;
            zfs.image_gc()?;
        }
        // Warm the cache once per key, then time clones.
        let (_, keep_fp) = create(&zfs, &none)?;
        let (_, keep_dg) = create(&zfs, &with_digest)?;
        let (mut cached_fp, mut cached_dg, mut vols) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let (d, v) = create(&zfs, &none)?;
            cached_fp.push(d);
            vols.push(v);
            let (d, v) = create(&zfs, &with_digest)?;
            cached_dg.push(d);
            vols.push(v);
        }
        eprintln!("  {mb} MB: cached creates done");
        for v in vols.iter().chain([&keep_fp, &keep_dg]) {
            zfs.destroy(v)?;
        }
        zfs.image_gc()?;
        let mut dirs = vec![];
        for i in 0..fr {
            eprintln!("  {mb} MB: dir create {}/{fr}", i + 1);
            let (d, v) = create(&dir, &none)?;
            dirs.push(d);
            dir.destroy(&v)?;
        }
        std::fs::remove_dir_all(&src)?;
        rows.push(Row {
            mb,
            files,
            first: median(first),
            cached_dg: median(cached_dg),
            cached_fp: median(cached_fp),
            dir: median(dirs),
        });
    }
    let left = run(
        "zfs",
        &["list", "-H", "-o", "name", "-r", "-t", "all", &parent],
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "| rootfs | files | zfs first create (copy + clone) | zfs cached create, digest key | zfs cached create, fingerprint key | dir create (copy) | cached/first | dir/first |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for r in &rows {
        writeln!(
            out,
            "| {} MB | {} | {} | {} | {} | {} | {:.3} / {:.3} | {:.2} |",
            r.mb,
            r.files,
            ms(r.first),
            ms(r.cached_dg),
            ms(r.cached_fp),
            ms(r.dir),
            r.cached_dg.as_secs_f64() / r.first.as_secs_f64(),
            r.cached_fp.as_secs_f64() / r.first.as_secs_f64(),
            r.dir.as_secs_f64() / r.first.as_secs_f64(),
        )?;
    }
    writeln!(out, "\n(medians; cached: {runs} runs each; first and dir: {first_runs} runs, 1 for 1 GB; left in the pool after cleanup: {} datasets)", left.lines().count())?;
    Ok(())
}

struct Row {
    mb: u64,
    files: u64,
    first: Duration,
    cached_dg: Duration,
    cached_fp: Duration,
    dir: Duration,
}

fn ms(d: Duration) -> String {
    if d.as_secs() >= 10 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn count(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        n += 1;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            n += count(&e.path());
        }
    }
    n
}

/// A rootfs of about `bytes`: busybox, then incompressible files, 80 % of
/// the bytes in 1-4 MiB files and 20 % in 4-64 KiB files, in directories of
/// 100 (like /usr/lib: few big libraries, many small files).
fn make_rootfs(root: &Path, bytes: u64) -> R<PathBuf> {
    for d in ["bin", "etc", "usr/lib", "usr/share"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut buf = vec![0u8; 4 << 20];
    let mut fill = |buf: &mut [u8]| {
        for c in buf.chunks_mut(8) {
            let v = next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    };
    fill(&mut buf);
    let (big_budget, mut small_budget) = (bytes * 8 / 10, bytes * 2 / 10);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < big_budget {
        let sz = ((1 << 20) + (i * 777_777) % (3 << 20)).min(big_budget - written + 4096);
        let d = root.join(format!("usr/lib/d{}", i / 100));
        std::fs::create_dir_all(&d)?;
        buf.rotate_left(4093);
        std::fs::write(d.join(format!("lib{i}.so")), &buf[..sz as usize])?;
        written += sz;
        i += 1;
    }
    let mut j = 0u64;
    while small_budget > 0 {
        let sz = (4096 + (j * 7919) % (60 << 10)).min(small_budget);
        let d = root.join(format!("usr/share/d{}", j / 100));
        std::fs::create_dir_all(&d)?;
        buf.rotate_left(509);
        std::fs::write(d.join(format!("f{j}")), &buf[..sz as usize])?;
        small_budget -= sz;
        j += 1;
    }
    Ok(root.to_path_buf())
}
