//! The toolchain probe: a worker whose compiler differs from the host's in a way that shows
//! in objects gets no compiles for it, and the build is still identical to a local one.

use std::path::PathBuf;

use offload_e2e::cmd::{Cmd, Status};
use offload_e2e::{NetnsWorker, Twice, projects, run_twice};

use crate::via;

/// A stand-in assembler: writes a file that is not the real object where `-o` says, and
/// succeeds. A worker with it would return wrong objects for every compile.
const FAKE_AS: &str = r#"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "-o") == 0) {
            FILE *f = fopen(argv[i + 1], "w");
            if (!f) return 1;
            fputs("not the object the host's assembler makes\n", f);
            return fclose(f) != 0;
        }
    return 0;
}
"#;

/// Builds the fake assembler, statically (the worker copies it into its job roots without
/// libraries), outside `/tmp` (the worker's `/tmp` is private).
fn fake_assembler() -> PathBuf {
    // One directory per call: tests running in parallel remove their own when done.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(format!(
        "/var/tmp/offload-e2e-fake-as/{}-{seq}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("creating the fake assembler's directory");
    std::fs::write(dir.join("fake-as.c"), FAKE_AS).expect("writing fake-as.c");
    let out = Cmd::new(
        ["gcc", "-static", "-O2", "fake-as.c", "-o", "fake-as"],
        &dir,
    )
    .run();
    assert_eq!(
        out.status,
        Status::Code(0),
        "building the fake assembler:\n{}",
        out.describe()
    );
    dir.join("fake-as")
}

/// The worker's `as` is replaced (bind mount in its own mount namespace): the probe must
/// fail, no compile may run there, and the build must equal the plain one.
#[test]
fn worker_with_a_different_assembler_gets_no_jobs() {
    let fake = fake_assembler();
    let real_as = std::fs::canonicalize("/usr/bin/as").expect("/usr/bin/as");
    let worker = NetnsWorker::start_with_setup(
        2,
        &format!("mount --bind {} {}", fake.display(), real_as.display()),
    );
    let project = projects::tiny(6);
    let both = run_twice(&Twice {
        name: "probe_different_assembler",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(3, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    let s = &both.summary;
    assert!(
        s.remote == 0 && s.fell_back == 0,
        "no compile may run on a worker that failed the probe\n{}",
        both.context()
    );
    assert!(
        both.summary_text.contains("failed the toolchain probe")
            && both.summary_text.contains("gives different output there"),
        "the probe's failure (different objects) must be reported\n{}",
        both.context()
    );
    let _ = std::fs::remove_dir_all(fake.parent().expect("dir"));
}

/// Builds `project` through `worker` with offload's caches in `cache`.
fn build_with_cache(
    name: &str,
    worker: &NetnsWorker,
    cache: &std::path::Path,
) -> offload_e2e::twice::Both {
    let project = projects::tiny(3);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(2, "gcc"),
        env: vec![(
            "XDG_CACHE_HOME".into(),
            cache.to_string_lossy().into_owned(),
        )],
        stdin: None,
        offload_args: via(worker),
    });
    both.assert_plain_succeeded();
    both
}

/// A probe result is kept across builds (per worker, host compiler fingerprint and worker
/// toolchain fingerprint): the second build against the same worker probes nothing, and
/// `offload status` reports the result as still valid.
#[test]
fn probe_results_are_kept_across_builds() {
    let cache = offload_e2e::twice::fresh_dir("probe_cache_dir");
    let worker = NetnsWorker::start(2);
    let first = build_with_cache("probe_cache_first", &worker, &cache);
    assert!(
        first.summary.remote == 4
            && first
                .summary_text
                .contains("toolchain probes run: 1, reused from earlier builds: 0"),
        "the first build probes once\n{}",
        first.context()
    );
    let second = build_with_cache("probe_cache_second", &worker, &cache);
    assert!(
        second.summary.remote == 4
            && second
                .summary_text
                .contains("toolchain probes run: 0, reused from earlier builds: 1"),
        "the second build reuses the result\n{}",
        second.context()
    );
    let status = Cmd::new(
        [
            offload_e2e::paths::offload_bin()
                .to_string_lossy()
                .into_owned(),
            "status".into(),
            "--worker".into(),
            worker.worker_arg(),
        ],
        &cache,
    )
    .env("XDG_CACHE_HOME", &cache.to_string_lossy())
    .run();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status == Status::Code(0)
            && text.contains("Host compilers:")
            && text.contains("[C]: Native with")
            && text.contains("probe passed")
            && text.contains("still valid")
            && text.contains("not probed yet"),
        "offload status:\n{}",
        status.describe()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// A failed probe is kept too: the next build sends that worker nothing without probing,
/// and still says why.
#[test]
fn a_failed_probe_is_kept_across_builds() {
    let fake = fake_assembler();
    let real_as = std::fs::canonicalize("/usr/bin/as").expect("/usr/bin/as");
    let worker = NetnsWorker::start_with_setup(
        2,
        &format!("mount --bind {} {}", fake.display(), real_as.display()),
    );
    let cache = offload_e2e::twice::fresh_dir("probe_cache_failed_dir");
    let first = build_with_cache("probe_cache_failed_first", &worker, &cache);
    let second = build_with_cache("probe_cache_failed_second", &worker, &cache);
    for (both, run, reused) in [(&first, 1, 0), (&second, 0, 1)] {
        assert!(
            both.summary.remote == 0
                && both.summary_text.contains("failed the toolchain probe")
                && both.summary_text.contains(&format!(
                    "toolchain probes run: {run}, reused from earlier builds: {reused}"
                )),
            "no compile may go to the failed worker, probed once in all\n{}",
            both.context()
        );
    }
    assert!(second.summary_text.contains("in an earlier build"));
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(fake.parent().expect("dir"));
}

/// With a good worker beside the bad one, compiles go to the good one.
#[test]
fn jobs_go_to_the_worker_that_passed_the_probe() {
    let fake = fake_assembler();
    let real_as = std::fs::canonicalize("/usr/bin/as").expect("/usr/bin/as");
    let bad = NetnsWorker::start_with_setup(
        2,
        &format!("mount --bind {} {}", fake.display(), real_as.display()),
    );
    let good = NetnsWorker::start(2);
    let project = projects::tiny(8);
    let both = run_twice(&Twice {
        name: "probe_good_and_bad_worker",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(4, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: vec![
            "--worker".into(),
            bad.worker_arg(),
            "--worker".into(),
            good.worker_arg(),
            "-j".into(),
            "1".into(),
        ],
    });
    both.assert_plain_succeeded();
    let s = &both.summary;
    assert!(
        s.remote > 0
            && s.fell_back == 0
            && both.summary_text.contains("failed the toolchain probe"),
        "compiles must go to the good worker, none to the bad one\n{}",
        both.context()
    );
    let _ = std::fs::remove_dir_all(fake.parent().expect("dir"));
}
