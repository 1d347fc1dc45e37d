//! The bounded soak (`offload_e2e::soak`): many small real compiles over several
//! connections, the worker killed and restarted between them; no job lost or answered twice,
//! every object identical to a local compile, and the worker's RSS and open descriptors
//! flat over each of its lifetimes.
//!
//! `short` runs in CI (600 jobs, 2 restarts). `long` and `overhead` are `#[ignore]`d: they
//! are what `bench/soak.sh` and `bench/overhead.sh` run, with `SOAK_*` variables for their
//! sizes (see `offload_e2e::soak::Config::from_env`).

use offload_e2e::soak::{self, Bounds, Config};

/// Fails with every violation, the summary and the worker's log.
fn check(report: &soak::Report, worker: &offload_e2e::NetnsWorker, bounds: Bounds) {
    let v = report.violations(bounds);
    assert!(
        v.is_empty(),
        "{} problems:\n{}\n\n{}\n{}",
        v.len(),
        v.iter().take(50).cloned().collect::<Vec<_>>().join("\n"),
        report.summary(),
        worker.log_text()
    );
}

/// 600 jobs on 2 connections, the worker killed with jobs in flight after 200 and 400 of
/// them: every job answered exactly once with the local compile's object, cut jobs sent
/// again, and RSS and descriptors flat in each of the 3 lifetimes.
#[test]
fn short() {
    let cfg = Config::default();
    let (report, worker) = soak::run("soak-short", &cfg);
    eprintln!("{}", report.summary());
    check(&report, &worker, Bounds::default());
    assert_eq!(report.restarts, 2, "{}", report.summary());
    assert_eq!(report.lifetimes.len(), 3);
    assert!(
        report.cut() >= 1,
        "no restart cut a job in flight: the retry path went untested\n{}",
        report.summary()
    );
    for life in &report.lifetimes {
        assert!(
            life.samples.len() > cfg.warmup_samples + cfg.window,
            "too few samples for a trend: {life:?}"
        );
    }
}

/// `bench/soak.sh`: 10,000 jobs, a restart every 1,000 (every size from `SOAK_*`).
#[test]
#[ignore = "long; run by bench/soak.sh"]
fn long() {
    let cfg = Config::from_env(Config {
        jobs: 10_000,
        restart_every: 1_000,
        sample_every: 25,
        window: 8,
        ..Config::default()
    });
    let (report, worker) = soak::run("soak-long", &cfg);
    println!("{}", report.summary());
    if let Some(o) = report.overhead(cfg.warmup_samples * cfg.sample_every) {
        println!("\nPer-job overhead from the worker's log:\n\n{}", o.table());
    }
    let v = report.violations(Bounds::default());
    println!("\nviolations: {}", v.len());
    for line in v.iter().take(50) {
        println!("  {line}");
    }
    check(&report, &worker, Bounds::default());
}

/// `bench/overhead.sh`: 1,000 sequential jobs on one connection, each right after the local
/// compile of the same source, worker and local compiles on one CPU (`SOAK_WORKER_CPU`,
/// `SOAK_LOCAL_CPU`, default 1), both writing to a tmpfs (the worker's work directory and
/// the local source directory; `SOAK_KEEP_WORK_DIR=1 SOAK_LOCAL_TMPFS=0` puts both on
/// `/var/tmp` and `/tmp`'s file system instead), and the worker's own timings against the
/// local compile. Needs `OFFLOAD_LOG=offload_worker=debug`.
#[test]
#[ignore = "a measurement; run by bench/overhead.sh"]
fn overhead() {
    let cfg = Config::from_env(Config {
        jobs: 1_000,
        restart_every: 0,
        connections: 1,
        jobs_per_connection: 0,
        sample_every: 100,
        warmup_samples: 1,
        window: 3,
        slots: 1,
        keep_work_dir: false,
        worker_cpu: Some(1),
        local_cpu: Some(1),
        interleave_local: true,
        local_tmpfs: true,
        ..Config::default()
    });
    let (report, worker) = soak::run("soak-overhead", &cfg);
    println!("{}", report.summary());
    check(&report, &worker, Bounds::default());
    let o = report.overhead(20).unwrap_or_else(|| {
        panic!("the worker logged no job timings: run with OFFLOAD_LOG=offload_worker=debug")
    });
    println!(
        "\nPer-job overhead (first 20 jobs left out):\n\n{}",
        o.table()
    );
}
