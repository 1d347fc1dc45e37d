//! Workers among several hosts, and workers much slower than their host: a worker shares
//! its slots fairly between the hosts using it, and a host loses (almost) nothing to a
//! worker far slower than itself.

use std::collections::BTreeMap;

use offload_e2e::cpulimit::CpuLimit;
use offload_e2e::logs::{second_of_day, seconds_after};
use offload_e2e::{NetnsWorker, Twice, keys, projects, run_twice};

/// The host a `job done` line of the worker's log names (`host=key:…`).
fn host_of(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("host="))
}

/// Two hosts (two keys) build Lua at once through one worker with two slots, each keeping
/// more jobs queued there than it has slots: while both are at it, each gets about half of
/// the worker's jobs. Both builds are identical to plain ones.
#[test]
fn two_hosts_sharing_one_worker_get_about_half_each() {
    let (second_dir, second_fp) = keys::second_host();
    let worker = NetnsWorker::start_with_args(2, &["--trust-host", &second_fp.to_string()]);
    let project = projects::lua("-O2", true);
    let build = |name: &'static str, env: Vec<(String, String)>| {
        let (worker, project) = (&worker, &project);
        move || {
            run_twice(&Twice {
                name,
                materialize: &|root| project.materialize(root),
                cwd: ".",
                argv: project.make_argv(8, "gcc"),
                env,
                stdin: None,
                offload_args: crate::via(worker),
            })
        }
    };
    let second_env = vec![(
        "OFFLOAD_CONFIG_DIR".to_string(),
        second_dir.to_string_lossy().into_owned(),
    )];
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(build("shared_by_first_host", vec![]));
        let b = s.spawn(build("shared_by_second_host", second_env));
        (a.join(), b.join())
    });
    let (first, second) = match (first, second) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("a build through the shared worker failed (see above)"),
    };
    // The worker's jobs by host, while both hosts had jobs there.
    let log = worker.log_text();
    let mut by_host: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("job done")) {
        if let (Some(h), Some(t)) = (host_of(line), second_of_day(line)) {
            by_host.entry(h).or_default().push(t);
        }
    }
    assert_eq!(by_host.len(), 2, "jobs of two hosts expected:\n{log}");
    let spans: Vec<(f64, f64)> = by_host
        .values()
        .map(|ts| (ts[0], ts[ts.len() - 1]))
        .collect();
    let start = spans.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let during: Vec<usize> = by_host
        .values()
        .map(|ts| {
            ts.iter()
                .filter(|t| seconds_after(**t, start) >= 0.0 && seconds_after(end, **t) >= 0.0)
                .count()
        })
        .collect();
    let total = during.iter().sum::<usize>();
    let context = format!(
        "jobs while both built ({:.1} s): {during:?}\nfirst host:\n{}\nsecond host:\n{}",
        seconds_after(end, start),
        first.summary_text,
        second.summary_text
    );
    assert!(
        total >= 10,
        "the builds barely overlapped at the worker\n{context}"
    );
    for n in &during {
        let share = *n as f64 / total as f64;
        assert!(
            (0.3..=0.7).contains(&share),
            "a host got {share:.2} of the shared worker's jobs\n{context}"
        );
    }
}

/// A worker at 5% of one CPU (a cgroup quota), far slower than this host: the host learns
/// it from the jobs it sends there (those it gives up on and runs here too count as at
/// least that slow) and then sends it a job only where it would end sooner than waiting
/// here, which it rarely does: the build is identical and nearly all of it compiles here.
/// What that costs in time is a benchmark's question, not a test's (the suite runs tests
/// side by side): `bench/slow.sh` measured 1.001× a local build.
#[test]
fn a_much_slower_worker_costs_the_build_little() {
    let worker = NetnsWorker::start(1);
    let limit = CpuLimit::new(&format!("offload-e2e-slow-{}", std::process::id()), 0.05);
    for pid in worker.pids() {
        limit.add(pid);
    }
    let project = projects::lua("-O2", true);
    let both = run_twice(&Twice {
        name: "slow_worker",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(4, "gcc"),
        env: vec![],
        stdin: None,
        // The host's own slots: as many as its cores, as by default.
        offload_args: vec!["--worker".into(), worker.worker_arg()],
    });
    let (plain, through) = (both.plain.elapsed, both.offload.elapsed);
    let context = format!(
        "plain {plain:?}, through offload {through:?}\n{}",
        both.summary_text
    );
    assert!(
        both.summary.remote * 4 <= project.objects as u64,
        "the slow worker kept getting jobs\n{context}"
    );
}
