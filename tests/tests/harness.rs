//! The shared fidelity harness (`shared/fidelity/run.py`) run under `offload build` with
//! `offload cc` as its wrapper. Its work directory is in the host's `/tmp`, which the worker in
//! its own mount namespace cannot see.

use offload_e2e::cmd::{Cmd, Status};
use offload_e2e::paths::{TEST_ROOT, on_path, shared_dir};
use offload_e2e::{NetnsWorker, offload_bin};

fn harness(name: &str, cc: &str, cxx: &str, only: Option<&str>) {
    let (cc, cxx) = (
        on_path(cc).unwrap_or_else(|| panic!("{cc} is not installed (scripts/test installs it)")),
        on_path(cxx).unwrap_or_else(|| panic!("{cxx} is not installed (scripts/test installs it)")),
    );
    let worker = NetnsWorker::start(2);
    let bin = offload_bin();
    let run_py = shared_dir().join("fidelity").join("run.py");
    let workdir = format!("{TEST_ROOT}/{name}");
    let _ = std::fs::remove_dir_all(&workdir);
    let argv: Vec<String> = vec![
        bin.to_string_lossy().into_owned(),
        "build".into(),
        "-v".into(),
        "--no-discover".into(),
        "--worker".into(),
        worker.worker_arg(),
        "-j".into(),
        "1".into(),
        "--".into(),
        "python3".into(),
        run_py.to_string_lossy().into_owned(),
        "--wrapper".into(),
        format!("{} cc", bin.to_string_lossy()),
        "--cc".into(),
        cc.to_string_lossy().into_owned(),
        "--cxx".into(),
        cxx.to_string_lossy().into_owned(),
        "--workdir".into(),
        workdir.clone(),
    ];
    let mut argv = argv;
    if let Some(only) = only {
        argv.extend(["--only".into(), only.into()]);
    }
    let out = Cmd::new(argv, std::path::Path::new("/")).run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (_, summary, summary_text) = offload_e2e::cmd::split_summary(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}\n{}", out.describe()));
    let failing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    let last = stdout.lines().last().unwrap_or_default();
    let passed: u64 = last
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        out.status == Status::Code(0) && failing.is_empty() && passed > 0,
        "the fidelity harness did not pass every case through offload (kept failing cases under {workdir}):\n{}\n{}",
        failing.join("\n"),
        out.describe()
    );
    // A case whose compile fails runs remotely and then here (the local failure counts):
    // those, and only those, fall back.
    let failing_cases = stdout
        .lines()
        .filter(|l| l.contains("(rc=") && !l.contains("(rc=0,"))
        .count() as u64;
    assert!(
        summary.remote > 0 && summary.fell_back <= failing_cases,
        "the harness passed, but no compile ran remotely (or more fell back than the {failing_cases} failing cases):\n{summary_text}\n{}",
        out.describe()
    );
    let _ = std::fs::remove_dir_all(&workdir);
}

#[test]
fn fidelity_harness_gcc() {
    harness("fidelity-gcc", "gcc", "g++", None);
}

/// Every case but `file_line_date`: clang 14 ignores `SOURCE_DATE_EPOCH` (measured), so
/// that case's `__TIME__` is the wall clock, and two plain compiles a second apart differ
/// as much as a plain and a wrapped one (offload compiles it locally: it runs
/// `__DATE__`/`__TIME__` remotely only for a compiler shown to honour the variable, see
/// `cases::clang_ignores_source_date_epoch_local`). Seen once in CI: the two runs crossed a
/// second boundary.
#[test]
fn fidelity_harness_clang() {
    harness(
        "fidelity-clang",
        "clang",
        "clang++",
        Some("^(?!file_line_date$)"),
    );
}
