//! Where things are: the binary under test, the repository, `shared/`, and per-test
//! directories under the host's `/tmp`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every test tree lives below this directory of the host's `/tmp`, which a worker in its own
/// mount namespace (private tmpfs on `/tmp`) cannot see.
pub const TEST_ROOT: &str = "/tmp/offload-e2e";

/// The mtime every materialized input gets (2020-01-01T00:00:00Z), as the fidelity harness does.
pub const FIXED_MTIME: u64 = 1_577_836_800;

/// The repository root (the directory holding the workspace's `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/<profile>` of the running test binary (`target/<profile>/deps/e2e-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf()
}

/// The cargo target directory of the running test binary.
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf()
}

/// The `offload` binary under test: `$OFFLOAD_BIN`, else `target/<profile>/offload` of the
/// same profile as this test binary. Panics with a clear message when it is missing.
pub fn offload_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OFFLOAD_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "OFFLOAD_BIN={} is not a file", p.display());
        return p;
    }
    let p = profile_dir().join("offload");
    let profile = profile_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flag = if profile == "release" {
        " --release"
    } else {
        ""
    };
    assert!(
        p.is_file(),
        "the offload binary {} is missing: run `cargo build{flag} -p offload` before the e2e tests \
         (or set OFFLOAD_BIN)",
        p.display()
    );
    p
}

/// The offload binary at a path outside `/tmp`, for workers: they run with a private tmpfs
/// on `/tmp`, which would hide a binary built in a checkout under `/tmp` (CI's may be).
/// Copied once per test process.
pub fn worker_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let src = offload_bin();
        if !src.starts_with("/tmp") {
            return src;
        }
        let base = PathBuf::from("/var/tmp/offload-e2e-bin");
        // Copies left by test processes that have ended.
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("creating /var/tmp/offload-e2e-bin");
        let dst = dir.join("offload");
        std::fs::copy(&src, &dst).expect("copying the offload binary out of /tmp");
        dst
    })
    .clone()
}

/// `shared/` beside the repository (`$OFFLOAD_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    let p = std::env::var_os("OFFLOAD_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared"));
    assert!(
        p.join("fidelity").join("run.py").is_file(),
        "{} has no fidelity/run.py: shared/ must sit beside the repository (or set OFFLOAD_SHARED_DIR)",
        p.display()
    );
    p
}

/// Whether a program is on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Panics unless the test runs as root: the worker needs it (it chroots every job), and so do
/// network namespaces.
pub fn require_root() {
    // SAFETY: plain syscall.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests must run as root: the worker chroots each job and the tests create network namespaces"
    );
}

/// Gives every file and directory under `root` (not symlinks or special files) the mtime [`FIXED_MTIME`].
pub fn fix_mtimes(root: &Path) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_MTIME);
    let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // A FIFO would block the open (its time is compared by no test).
        if meta.file_type().is_symlink() || !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.expect("dir entry").path());
            }
        }
        std::fs::File::open(&p)
            .and_then(|f| f.set_times(times))
            .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", p.display()));
    }
}
