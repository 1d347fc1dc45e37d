//! What a run measured, against the ideal.
//!
//! **Capacity** is every slot's speed added up: the workers' slots and the hosts' local
//! slots, in reference cores. **Demand** is every job's work in reference seconds. The
//! **ideal makespan** is a lower bound that no scheduler can beat, the largest of:
//! - for each start time `s`: `s` + the demand of the builds starting at `s` or later ÷
//!   the capacity (with every build starting at 0: demand ÷ capacity);
//! - for each build: its start + its demand ÷ (its `-jN` × the fastest slot's speed)
//!   (`make` keeps no more than N jobs going);
//! - for each build: its start + its largest job on the fastest slot.
//!
//! The network time is not in it, so the ideal is never reached; **throughput** is
//! ideal ÷ simulated makespan (1.0 would be perfect).

use std::time::Duration;

use crate::host::{JobRecord, LocalUse, Ran};
use crate::scenario::Scenario;
use crate::worker::Spent;

/// A run's figures.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The scenario's name.
    pub name: &'static str,
    /// Jobs run.
    pub jobs: usize,
    /// The lower bound on the makespan, seconds.
    pub ideal: f64,
    /// The simulated makespan (the last result), seconds.
    pub makespan: f64,
    /// Ideal ÷ makespan.
    pub throughput: f64,
    /// The longest from submission to result, seconds.
    pub worst_latency: f64,
    /// The 99th percentile of that.
    pub p99_latency: f64,
    /// The median of that.
    pub median_latency: f64,
    /// Jain's index over the hosts' speedups (local-only build time ÷ build time).
    pub jain_speedup: f64,
    /// Jain's index over the hosts' shares of the workers' compute.
    pub jain_share: f64,
    /// The least and greatest speedup of a host.
    pub speedups: (f64, f64),
    /// The workers' busy compute ÷ their capacity over the makespan.
    pub worker_use: f64,
    /// The least busy worker's busy slot-time ÷ its slot-time over the makespan.
    pub worker_use_min: f64,
    /// The hosts' local slots' busy time ÷ their slot-time over the makespan.
    pub local_use: f64,
    /// Jobs whose result came from a local slot (second runs included).
    pub local_jobs: usize,
    /// Second runs started, and those that won.
    pub speculated: (usize, usize),
    /// Compute spent on results thrown away (stopped on a worker or here), ÷ demand.
    pub wasted: f64,
}

/// Jain's fairness index of `xs`: 1 when all are equal, 1/n when one has everything.
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// The `q` quantile of `sorted` (ascending), nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Every slot's speed added up, in reference cores.
pub fn capacity(s: &Scenario) -> f64 {
    let workers: f64 = s.workers.iter().map(|w| w.slots as f64 * w.speed).sum();
    let hosts: f64 = s.hosts.iter().map(|h| h.local_slots as f64 * h.speed).sum();
    workers + hosts
}

/// The ideal makespan of `s`, seconds (see the module's documentation).
pub fn ideal(s: &Scenario) -> f64 {
    let cap = capacity(s);
    let fastest = s
        .workers
        .iter()
        .map(|w| w.speed)
        .chain(s.hosts.iter().map(|h| h.speed))
        .fold(f64::MIN_POSITIVE, f64::max);
    let demand = |h: &crate::scenario::HostSpec| h.jobs.iter().map(|j| j.work).sum::<f64>();
    let mut bound: f64 = 0.0;
    for h in &s.hosts {
        let start = h.start.as_secs_f64();
        let later: f64 = s
            .hosts
            .iter()
            .filter(|o| o.start >= h.start)
            .map(demand)
            .sum();
        let largest = h.jobs.iter().map(|j| j.work).fold(0.0, f64::max);
        bound = bound
            .max(start + later / cap)
            .max(start + demand(h) / (h.jobs_limit.max(1) as f64 * fastest))
            .max(start + largest / fastest);
    }
    bound
}

/// What a run of `s` measured.
pub fn summarise(
    s: &Scenario,
    records: &[JobRecord],
    workers: &[Vec<Spent>],
    locals: &[LocalUse],
) -> Summary {
    let secs = Duration::as_secs_f64;
    let makespan = records
        .iter()
        .map(|r| secs(&r.finished))
        .fold(0.0, f64::max);
    let ideal = ideal(s);
    let mut latencies: Vec<f64> = records
        .iter()
        .map(|r| secs(&r.finished) - secs(&r.submitted))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let speedups: Vec<f64> = s
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let end = records
                .iter()
                .filter(|r| r.host == i)
                .map(|r| secs(&r.finished))
                .fold(0.0, f64::max);
            let alone: f64 =
                h.jobs.iter().map(|j| j.work).sum::<f64>() / (h.local_slots as f64 * h.speed);
            alone / (end - h.start.as_secs_f64()).max(f64::MIN_POSITIVE)
        })
        .collect();
    let shares: Vec<f64> = (0..s.hosts.len())
        .map(|i| {
            s.workers
                .iter()
                .zip(workers)
                .map(|(w, spent)| (spent[i].done + spent[i].stopped) * w.speed)
                .sum()
        })
        .collect();
    let busy = |sp: &[Spent]| sp.iter().map(|x| x.done + x.stopped).sum::<f64>();
    let worker_cap: f64 = s
        .workers
        .iter()
        .map(|w| w.slots as f64 * w.speed * makespan)
        .sum();
    let worker_busy: f64 = s
        .workers
        .iter()
        .zip(workers)
        .map(|(w, sp)| busy(sp) * w.speed)
        .sum();
    let worker_use_min = s
        .workers
        .iter()
        .zip(workers)
        .map(|(w, sp)| busy(sp) / (w.slots as f64 * makespan))
        .fold(f64::INFINITY, f64::min);
    let local_slot_time: f64 = s
        .hosts
        .iter()
        .map(|h| h.local_slots as f64 * makespan)
        .sum();
    let local_busy: f64 = locals.iter().map(|l| l.done + l.stopped).sum();
    let demand: f64 = records.iter().map(|r| r.work).sum();
    let stopped_remote: f64 = s
        .workers
        .iter()
        .zip(workers)
        .map(|(w, sp)| sp.iter().map(|x| x.stopped).sum::<f64>() * w.speed)
        .sum();
    let stopped_local: f64 = s
        .hosts
        .iter()
        .zip(locals)
        .map(|(h, l)| l.stopped * h.speed)
        .sum();
    let won = records.iter().filter(|r| r.ran == Ran::Speculated).count();
    Summary {
        name: s.name,
        jobs: records.len(),
        ideal,
        makespan,
        throughput: ideal / makespan.max(f64::MIN_POSITIVE),
        worst_latency: latencies.last().copied().unwrap_or(0.0),
        p99_latency: quantile(&latencies, 0.99),
        median_latency: quantile(&latencies, 0.5),
        jain_speedup: jain(&speedups),
        jain_share: jain(&shares),
        speedups: (
            speedups.iter().copied().fold(f64::INFINITY, f64::min),
            speedups.iter().copied().fold(0.0, f64::max),
        ),
        worker_use: worker_busy / worker_cap.max(f64::MIN_POSITIVE),
        worker_use_min,
        local_use: local_busy / local_slot_time.max(f64::MIN_POSITIVE),
        local_jobs: records
            .iter()
            .filter(|r| !matches!(r.ran, Ran::Remote(_)))
            .count(),
        speculated: (locals.iter().map(|l| l.speculated).sum(), won),
        wasted: (stopped_remote + stopped_local) / demand.max(f64::MIN_POSITIVE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_has_all() {
        assert!((jain(&[2.0, 2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 1.0), 100.0);
    }
}
