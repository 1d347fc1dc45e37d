//! The idle policy in a real worker: a worker started with `--lend idle` and pinned to one
//! CPU (`taskset`) stops lending (`busy-cpu`) when a busy loop from outside it loads that
//! CPU, and lends again by itself once the loop ends.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use offload_e2e::NetnsWorker;
use offload_idle::OwnJobs;
use offload_idle::linux::LinuxSource;
use offload_idle::linux::cpu::allowed_cpus;

/// A shell busy loop pinned to one CPU, killed when dropped.
struct Hog(Child);

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Of this machine's CPUs, the one least loaded by unrelated work over half a second.
fn quietest_cpu() -> Option<usize> {
    let cpus = allowed_cpus("/proc".as_ref(), "/sys/fs/cgroup".as_ref());
    if cpus.len() < 2 {
        return None;
    }
    let mut sources: Vec<LinuxSource> = cpus
        .iter()
        .map(|&c| {
            let mut s = LinuxSource::new(OwnJobs::default())
                .with_cpus(vec![c])
                .without_logind();
            let _ = s.other_load();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let loads: Vec<f64> = sources
        .iter_mut()
        .map(|s| s.other_load().unwrap_or(1.0))
        .collect();
    eprintln!("CPU loads before the test: {loads:?} on {cpus:?}");
    cpus.iter()
        .zip(&loads)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(c, _)| *c)
}

/// Polls `offload worker status` until its line contains `want`, for up to `limit`.
fn wait_status(worker: &NetnsWorker, want: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        let out = worker.control(&["status"]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains(want) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

#[test]
fn a_worker_pinned_to_a_busy_cpu_stops_lending_and_resumes_after() {
    let Some(cpu) = quietest_cpu() else {
        eprintln!("one CPU only: no CPU to load beside the test");
        return;
    };
    // A loop sharing its CPU with unrelated work still makes it ~100% busy; a threshold
    // of 60% keeps the return to idle robust against light unrelated work.
    let worker = NetnsWorker::start_with_args(1, &["--lend", "idle", "--max-other-load", "0.6"]);
    let pid = worker.pid().expect("the worker runs").to_string();
    let pinned = Command::new("taskset")
        .args(["-a", "-cp", &cpu.to_string(), &pid])
        .output()
        .expect("run taskset");
    assert!(pinned.status.success(), "taskset: {pinned:?}");
    if let Err(last) = wait_status(&worker, "lending (idle)", Duration::from_secs(15)) {
        panic!(
            "the worker did not lend before the load: {last}\n{}",
            worker.log_text()
        );
    }
    let hog = Hog(Command::new("taskset")
        .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
        .spawn()
        .expect("start the busy loop"));
    // Two samples over the threshold (500 ms apart), plus the first partial one.
    let busy = wait_status(&worker, "not lending (busy-cpu)", Duration::from_secs(5))
        .unwrap_or_else(|last| {
            panic!(
                "the worker kept lending beside a busy loop on its CPU: {last}\n{}",
                worker.log_text()
            )
        });
    eprintln!("busy-cpu {busy:?} after the loop started");
    assert!(busy < Duration::from_secs(3), "busy only after {busy:?}");
    let log = worker.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("lending changed") && l.contains("busy-cpu")),
        "the log does not say why it stopped lending:\n{log}"
    );
    drop(hog);
    // The policy waits 10 s of quiet before lending again. Unrelated work on this shared
    // machine may keep the CPU busy (then the worker rightly keeps not lending): this
    // test's own reading of the CPU says whether it was quiet long enough to judge.
    let mut mine = LinuxSource::new(OwnJobs::default())
        .with_cpus(vec![cpu])
        .without_logind();
    let _ = mine.other_load();
    let start = Instant::now();
    let (mut quiet_since, mut longest_quiet) = (Some(start), Duration::ZERO);
    let mut last = String::new();
    let back = loop {
        match wait_status(&worker, "lending (idle)", Duration::from_millis(500)) {
            Ok(_) => break Some(start.elapsed()),
            Err(l) => last = l,
        }
        let now = Instant::now();
        if mine.other_load().is_some_and(|l| l < 0.6) {
            let since = *quiet_since.get_or_insert(now);
            longest_quiet = longest_quiet.max(now - since);
        } else {
            quiet_since = None;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
    };
    match back {
        Some(back) => {
            eprintln!("lending again {back:?} after the loop ended");
            assert!(back >= Duration::from_secs(9), "no hysteresis: {back:?}");
        }
        None if longest_quiet >= Duration::from_secs(12) => panic!(
            "the worker did not lend again though its CPU was quiet for {longest_quiet:?}: {last}\n{}",
            worker.log_text()
        ),
        None => eprintln!(
            "unrelated work kept CPU {cpu} busy (quiet for {longest_quiet:?} at most): the return to lending is not judged ({last})"
        ),
    }
}
