//! The emulator as these tests start it (the test kit's, with a known token
//! and root password and a 200 ms delay on failed logins), and their busybox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[allow(unused_imports)] // not every test file uses all
pub use testkit::{sh, vmid, Emulator, EmulatorBuilder, Rootfs};

/// The API token, `ID=SECRET`.
pub const TOKEN: &str = "root@pam!tok=s3cret";
/// root@pam's password.
pub const ROOT_PASSWORD: &str = "pw";

/// This package's emulator on the data dir `dir`; more options before `start()`.
pub fn builder(dir: &Path) -> EmulatorBuilder {
    let (id, secret) = TOKEN.split_once('=').unwrap();
    Emulator::builder()
        .bin(env!("CARGO_BIN_EXE_pve-emulator"))
        .data_dir(dir)
        .token(id, secret)
        .root_password(ROOT_PASSWORD)
        .auth_fail_delay_ms(200)
}

/// [`builder`] with `extra` arguments, started.
pub fn start(dir: &Path, extra: &[&str]) -> Emulator {
    builder(dir).args(extra).start()
}

/// The rootfs of these tests' guests: busybox, root and nobody.
fn busybox() -> Rootfs {
    Rootfs::busybox()
        .dirs(&["sbin", "root"])
        .applets(&["sleep", "cat", "ls", "ps", "ip"])
        .users()
}

/// A busybox CT template packed as `name` (tar, tar.gz, tar.xz, tar.zst) in `dir`.
pub fn busybox_template(dir: &Path, name: &str) -> PathBuf {
    busybox().template(dir, name)
}

/// The same tree as an OCI image layer.
pub fn busybox_layer(dir: &Path) -> Vec<u8> {
    busybox().layer(dir)
}

/// Puts a template into the storage's cache directly.
pub fn install_template(data_dir: &Path, file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let cache = data_dir.join("storage/local/template/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(file, cache.join(&name)).unwrap();
    format!("local:vztmpl/{name}")
}
