//! copy_tree on this host's filesystem: every kind of entry and attribute.
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, Mode, SFlag};
use storage::{copy_tree, copy_tree_with, CopyOptions, IdRange, IdShift, NoProgress, XattrPolicy};

fn tree(root: &Path) {
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd.hl")).unwrap();
    symlink("../etc/passwd", root.join("etc/sub/link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::write(root.join("suid"), "x").unwrap();
    nix::unistd::chown(&root.join("suid"), Some(1000.into()), Some(1001.into())).unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4751)).unwrap();
    mknod(
        &root.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    // 64 MiB apparent, one byte at each end.
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"a", 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"z", (64 << 20) - 1).unwrap();
    rustix::fs::lsetxattr(
        root.join("etc/passwd"),
        "user.test",
        b"v1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::set_permissions(root.join("etc/sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    let t = nix::sys::time::TimeSpec::new(1_600_000_000, 0);
    nix::sys::stat::utimensat(
        None,
        &root.join("etc"),
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

#[test]
fn copies_every_kind_of_entry_and_attribute() {
    testkit::require_root("the copy tests (chown, mknod)");
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    tree(&src);
    let stats = copy_tree(&src, &dst, None, &mut NoProgress).unwrap();
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.specials, 2);
    assert_eq!(stats.symlinks, 2);
    // Only the two data bytes' blocks are written, not 64 MiB.
    assert!(stats.bytes < 1 << 20, "{stats:?}");
    let sp = fs::metadata(dst.join("sparse")).unwrap();
    assert_eq!(sp.len(), 64 << 20);
    assert!(
        sp.blocks() * 512 < 1 << 20,
        "sparse file became {} blocks",
        sp.blocks()
    );
    let a = fs::metadata(dst.join("etc/passwd")).unwrap();
    let b = fs::metadata(dst.join("etc/passwd.hl")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read_link(dst.join("etc/sub/link")).unwrap(),
        Path::new("../etc/passwd")
    );
    assert_eq!(
        fs::read_link(dst.join("dangling")).unwrap(),
        Path::new("/nonexistent/target")
    );
    let s = fs::metadata(dst.join("suid")).unwrap();
    assert_eq!((s.uid(), s.gid(), s.mode() & 0o7777), (1000, 1001, 0o4751));
    let n = fs::symlink_metadata(dst.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(
        fs::symlink_metadata(dst.join("fifo")).unwrap().mode() & 0o7777,
        0o640
    );
    let mut v = [0u8; 8];
    let len = rustix::fs::lgetxattr(dst.join("etc/passwd"), "user.test", &mut v[..]).unwrap();
    assert_eq!(&v[..len], b"v1");
    assert_eq!(
        fs::metadata(dst.join("etc")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::metadata(dst.join("etc/sub")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn shifts_owners_and_refuses_unmapped_ids() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    tree(&src);
    let shift = IdShift {
        uids: vec![IdRange {
            container_id: 0,
            host_id: 100000,
            size: 65536,
        }],
        gids: vec![IdRange {
            container_id: 0,
            host_id: 200000,
            size: 65536,
        }],
    };
    copy_tree(&src, &dst, Some(&shift), &mut NoProgress).unwrap();
    let s = fs::metadata(dst.join("suid")).unwrap();
    assert_eq!((s.uid(), s.gid()), (101000, 201001));
    assert_eq!(s.mode() & 0o7777, 0o4751, "setuid survives the chown");
    let l = fs::symlink_metadata(dst.join("etc/sub/link")).unwrap();
    assert_eq!((l.uid(), l.gid()), (100000, 200000));
    assert_eq!(fs::metadata(&dst).unwrap().uid(), 100000);

    let narrow = IdShift {
        uids: vec![IdRange {
            container_id: 0,
            host_id: 100000,
            size: 10,
        }],
        gids: shift.gids.clone(),
    };
    let dst2 = t.path().join("dst2");
    fs::create_dir(&dst2).unwrap();
    let e = copy_tree(&src, &dst2, Some(&narrow), &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(e.contains("uid 1000 is outside"), "{e}");
}

#[test]
fn refuses_a_non_empty_target_and_a_missing_source() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("x"), "").unwrap();
    let e = copy_tree(Path::new("/etc"), t.path(), None, &mut NoProgress).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = copy_tree(&t.path().join("nope"), empty.path(), None, &mut NoProgress).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let opts = CopyOptions {
        shift: None,
        xattrs: XattrPolicy::Skip,
    };
    copy_tree_with(t.path(), empty.path(), &opts, &mut NoProgress).unwrap();
    assert!(empty.path().join("x").exists());
}
