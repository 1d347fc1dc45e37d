//! Toolchain shipping: a worker of the host's architecture without the host's gcc gets the
//! host's toolchain as a bundle, once, and then compiles everything byte-identically.

use std::path::{Path, PathBuf};

use offload_e2e::cmd::{Cmd, Status};
use offload_e2e::paths::{TEST_ROOT, on_path};
use offload_e2e::{NetnsWorker, Twice, projects, run_twice};

use crate::via;

const SLOTS: u32 = 3;

/// The host gcc's driver binary and the directory holding its `cc1`
/// (`/usr/lib/gcc/x86_64-linux-gnu` on Debian 12).
fn host_gcc() -> (PathBuf, PathBuf) {
    let gcc = on_path("gcc").expect("gcc is not installed");
    let driver = std::fs::canonicalize(&gcc).expect("resolving gcc");
    let out = Cmd::new(["gcc", "-print-prog-name=cc1"], Path::new("/")).run();
    assert_eq!(out.status, Status::Code(0), "{}", out.describe());
    let cc1 = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // …/x86_64-linux-gnu/12/cc1 → …/x86_64-linux-gnu
    let libdir = cc1
        .ancestors()
        .nth(2)
        .filter(|d| d.is_absolute() && d.components().count() > 2)
        .unwrap_or_else(|| panic!("unexpected cc1 path {}", cc1.display()))
        .to_owned();
    (driver, libdir)
}

/// A worker whose gcc is not the host's: the driver is `/bin/false` and the compiler's own
/// directory is empty, in the worker's mount namespace only.
fn worker_without_gcc() -> NetnsWorker {
    let (driver, libdir) = host_gcc();
    NetnsWorker::start_with_setup(
        SLOTS,
        &format!(
            "mount -t tmpfs tmpfs {} && mount --bind /bin/false {}",
            libdir.display(),
            driver.display()
        ),
    )
}

/// Lua built twice against one worker that lacks gcc: the first build ships the toolchain
/// once (not per job) and compiles every object remotely; the second ships nothing.
#[test]
fn toolchain_is_shipped_once_to_a_worker_without_gcc() {
    let worker = worker_without_gcc();
    // The host's bundle cache for this test: empty, so the first build makes the bundle.
    let cache = PathBuf::from(TEST_ROOT).join("ship-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let project = projects::lua("-O2 -g", true);
    let build = |name: &str| {
        run_twice(&Twice {
            name,
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(SLOTS as usize, "gcc"),
            env: vec![("XDG_CACHE_HOME".into(), cache.display().to_string())],
            stdin: None,
            offload_args: via(&worker),
        })
    };

    let first = build("ship_first");
    first.assert_plain_succeeded();
    first.assert_counts(project.objects as u64, project.links as u64);
    assert!(
        first.summary_text.contains("(1 toolchain shipped, "),
        "the first build must ship the toolchain exactly once\n{}",
        first.context()
    );
    let bundles: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(
        bundles.len(),
        1,
        "one bundle in the host's cache: {bundles:?}"
    );

    let second = build("ship_second");
    second.assert_counts(project.objects as u64, project.links as u64);
    assert!(
        !second.summary_text.contains("shipped"),
        "the worker keeps the toolchain: nothing is shipped again\n{}",
        second.context()
    );
    assert!(
        worker.log_text().contains("shipped toolchain installed"),
        "{}",
        worker.log_text()
    );
    let _ = std::fs::remove_dir_all(&cache);
}
