//! The targets, in virtual time (each run takes about a second of real time in
//! release): fairness between ten hosts building the same thing, and throughput against
//! the ideal when every host keeps the LAN busy.

use offload_sim::{scenario, sim};

const SEED: u64 = 1;

fn run(name: &str) -> offload_sim::metrics::Summary {
    let p = scenario::params(name).expect("a scenario of the table");
    sim::run(&p.scenario(SEED))
}

#[test]
fn ten_hosts_building_the_same_thing_are_served_fairly() {
    let s = run("equal builds");
    assert_eq!(s.jobs, 20_000);
    assert!(
        s.jain_speedup >= 0.9,
        "Jain index of speedups {:.3}",
        s.jain_speedup
    );
    assert!(
        s.jain_share >= 0.9,
        "Jain index of worker shares {:.3}",
        s.jain_share
    );
}

/// What the scheduler reaches now (0.82 of the ideal, see docs/BENCHMARKS.md): a floor
/// that catches a regression.
#[test]
fn saturating_throughput_does_not_regress() {
    let s = run("saturating");
    assert_eq!(s.jobs, 30_000);
    assert!(
        s.throughput >= 0.80,
        "throughput {:.3} of the ideal",
        s.throughput
    );
}

/// The target, not met yet: the jobs that hosts commit to crowded workers' queues
/// make a tail after the workers run dry (docs/BENCHMARKS.md).
#[test]
#[ignore = "the target: the scheduler reaches 0.83 of the ideal (docs/BENCHMARKS.md)"]
fn saturating_throughput_is_within_ten_percent_of_ideal() {
    let s = run("saturating");
    assert!(
        s.throughput >= 0.90,
        "throughput {:.3} of the ideal",
        s.throughput
    );
}

#[test]
fn a_run_is_the_same_for_a_seed() {
    let (a, b) = (run("mixed"), run("mixed"));
    assert_eq!(a.makespan, b.makespan);
    assert_eq!(a.worst_latency, b.worst_latency);
}
