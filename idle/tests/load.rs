//! Real load from another process: a busy loop pinned to one CPU makes a policy that
//! judges that CPU busy (`busy-cpu`), not one that judges another CPU, and not one that
//! counts the loop as the worker's own (a descendant of this process).

#![cfg(target_os = "linux")]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use offload_idle::linux::LinuxSource;
use offload_idle::linux::cpu::allowed_cpus;
use offload_idle::{Engine, OwnJobs, Reason, Settings, Verdict};

const PERIOD: Duration = Duration::from_millis(500);

/// A shell busy loop pinned to `cpu`, killed when dropped.
struct Hog(Child);

impl Hog {
    fn on(cpu: usize) -> Hog {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn the busy loop");
        let hog = Hog(child);
        let mut set = CpuSet::new();
        set.set(cpu).expect("cpu in range");
        let pid = Pid::from_raw(i32::try_from(hog.0.id()).expect("pid"));
        sched_setaffinity(pid, &set).expect("pin the busy loop");
        hog
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A source judging only `cpu`, counting nothing as the worker's own (or this process
/// and its children when `own`).
fn source(cpu: usize, own: bool) -> LinuxSource {
    let own = if own {
        OwnJobs::this_process(None)
    } else {
        OwnJobs::default()
    };
    let mut s = LinuxSource::new(own).with_cpus(vec![cpu]).without_logind();
    let _ = s.other_load();
    s
}

/// The CPUs to use, or `None` (with a note) on a machine with one.
fn two_cpus() -> Option<(usize, usize)> {
    let cpus = allowed_cpus("/proc".as_ref(), "/sys/fs/cgroup".as_ref());
    match cpus.as_slice() {
        [a, .., b] => Some((*a, *b)),
        _ => {
            eprintln!("one CPU only ({cpus:?}): nothing to compare");
            None
        }
    }
}

/// Samples every period for `n` periods: each source's loads and its engine's verdicts.
fn run(sources: &mut [LinuxSource], n: usize) -> Vec<(Vec<f64>, Vec<Verdict>)> {
    let mut engines: Vec<Engine> = sources
        .iter()
        .map(|_| Engine::new(Settings::default()))
        .collect();
    let mut out = vec![(Vec::new(), Vec::new()); sources.len()];
    let start = Instant::now();
    for i in 1..=n {
        std::thread::sleep((start + PERIOD * i as u32).saturating_duration_since(Instant::now()));
        for ((s, e), o) in sources.iter_mut().zip(&mut engines).zip(&mut out) {
            let load = s.other_load();
            let sample = offload_idle::Sample {
                other_load: load,
                ..Default::default()
            };
            o.0.push(load.unwrap_or(f64::NAN));
            o.1.push(e.step(&sample, start.elapsed()).clone());
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn a_busy_loop_on_its_cpu_makes_only_that_cpu_busy() {
    let Some((other, hogged)) = two_cpus() else {
        return;
    };
    // How busy the other CPU is with unrelated work before the loop starts.
    let baseline = run(&mut [source(other, false)], 2);
    let quiet_before = baseline[0].0.iter().all(|l| *l < 0.1);
    let _hog = Hog::on(hogged);
    let got = run(&mut [source(hogged, false), source(other, false)], 6);
    let (hog_loads, hog_verdicts) = &got[0];
    let (other_loads, other_verdicts) = &got[1];
    eprintln!(
        "baseline {:?}; hogged CPU {hog_loads:?}; other CPU {other_loads:?}",
        baseline[0].0
    );
    // The busy loop has its CPU to itself, or shares it with unrelated work: busy either
    // way, from the third sample at the latest.
    assert!(
        hog_loads[1..].iter().all(|l| *l > 0.5),
        "the hogged CPU's load: {hog_loads:?}"
    );
    let busy = Verdict::Busy(vec![Reason::BusyCpu]);
    assert!(
        hog_verdicts[2..].iter().all(|v| *v == busy),
        "{hog_verdicts:?}"
    );
    // The other CPU: idle, unless unrelated work loads it (then nothing can be said).
    if quiet_before {
        assert!(
            mean(other_loads) < 0.25,
            "the other CPU looked busy: {other_loads:?}"
        );
        if other_verdicts.iter().any(|v| !v.is_idle()) {
            eprintln!("the other CPU went busy (unrelated work?): {other_verdicts:?}");
        }
    } else {
        eprintln!("the other CPU was busy before the test: not judged");
    }
}

#[test]
fn a_busy_loop_of_the_workers_own_is_not_other_load() {
    let Some((_, hogged)) = two_cpus() else {
        return;
    };
    // The loop is this process's child: the worker's own when the policy counts it so.
    let _hog = Hog::on(hogged);
    let got = run(&mut [source(hogged, false), source(hogged, true)], 4);
    let (all, others) = (&got[0].0, &got[1].0);
    eprintln!("everything {all:?}; without the worker's own {others:?}");
    // The loop gets at least half its CPU however busy the machine; leaving it out
    // takes at least that much off.
    assert!(
        mean(all) - mean(others) > 0.4,
        "the worker's own loop was not left out: {all:?} vs {others:?}"
    );
}
