//! The scenarios: the hosts (their builds, local slots and speed, `-jN`, start time) and
//! the workers (slots, speed), made from one row of [`SCENARIOS`] and a seed. The same row
//! and seed give the same scenario.
//!
//! Speeds are relative to a reference core: a job of `work` seconds takes `work / speed`
//! on a slot of that speed.

use std::time::Duration;

/// One compile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Its source's bytes: the scheduler's estimate of its cost, as the coordinator's.
    pub cost: u64,
    /// What it really takes, in seconds of a reference core.
    pub work: f64,
}

/// One host and its build.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Its local compile slots (`offload build -jN`).
    pub local_slots: usize,
    /// Its cores' speed.
    pub speed: f64,
    /// The build command's jobs limit (`make -jN`): jobs outstanding at once.
    pub jobs_limit: usize,
    /// When its build starts.
    pub start: Duration,
    /// Its compiles, in the order the build offers them.
    pub jobs: Vec<Job>,
}

/// One worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSpec {
    /// Its compile slots.
    pub slots: usize,
    /// Its cores' speed.
    pub speed: f64,
}

/// Hosts and workers on one LAN.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name in the report.
    pub name: &'static str,
    /// The hosts.
    pub hosts: Vec<HostSpec>,
    /// The workers.
    pub workers: Vec<WorkerSpec>,
    /// One way between a host and a worker, with the job's preparation and shipping: each
    /// remote job pays it twice.
    pub net: Duration,
}

/// One row of the table: ranges are inclusive, drawn uniformly (speeds log-uniformly).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// The scenario's name.
    pub name: &'static str,
    /// What it shows, for the report.
    pub about: &'static str,
    /// Hosts.
    pub hosts: usize,
    /// Jobs in each host's build.
    pub jobs: (usize, usize),
    /// Every host builds the same job list.
    pub same_build: bool,
    /// `make -jN` of each host.
    pub jobs_limit: (usize, usize),
    /// Local slots of each host.
    pub local_slots: (usize, usize),
    /// Speed of each host.
    pub host_speed: (f64, f64),
    /// Builds start at a time drawn from `0..=stagger` seconds.
    pub stagger_secs: f64,
    /// Workers.
    pub workers: usize,
    /// Slots of each worker.
    pub worker_slots: (usize, usize),
    /// Speed of each worker.
    pub worker_speed: (f64, f64),
    /// This many of the workers are replaced by very slow ones ([`SLOW_WORKER`]).
    pub slow_workers: usize,
    /// One way host to worker, milliseconds.
    pub net_ms: u64,
}

/// A very slow worker: a small board, or a laptop on battery.
pub const SLOW_WORKER: WorkerSpec = WorkerSpec {
    slots: 4,
    speed: 0.1,
};

/// Seconds of a reference core per unit of cost (source byte, plus [`BASE_BYTES`]).
const SECS_PER_BYTE: f64 = 25e-6;
/// What a job costs beyond its source (headers, the compiler's start), in bytes' worth.
const BASE_BYTES: f64 = 8192.0;
/// Sources are 2 KiB to 256 KiB, log-uniformly (a mean job of about 1.5 s).
const SOURCE_BYTES: (f64, f64) = (2048.0, 262_144.0);
/// The real work of a job is its estimate times a factor drawn from this range: the
/// source's size says little about its headers.
const NOISE: (f64, f64) = (0.5, 1.5);

/// The first scenario, which the others vary.
const SATURATING: Params = Params {
    name: "saturating",
    about: "10 different 3000-job builds started together, make -j160",
    hosts: 10,
    jobs: (3000, 3000),
    same_build: false,
    jobs_limit: (160, 160),
    local_slots: (8, 8),
    host_speed: (1.0, 1.0),
    stagger_secs: 0.0,
    workers: 50,
    worker_slots: (1, 16),
    worker_speed: (0.5, 3.0),
    slow_workers: 0,
    net_ms: 5,
};

/// The scenarios of the report, in its order.
pub const SCENARIOS: &[Params] = &[
    SATURATING,
    Params {
        name: "equal builds",
        about: "10 hosts build the same 2000 jobs at once, make -j100",
        jobs: (2000, 2000),
        same_build: true,
        jobs_limit: (100, 100),
        ..SATURATING
    },
    Params {
        name: "mixed",
        about: "builds of 300-4000 jobs started over 60 s, make -j16..200, hosts 4-16 slots",
        jobs: (300, 4000),
        jobs_limit: (16, 200),
        local_slots: (4, 16),
        host_speed: (0.7, 1.5),
        stagger_secs: 60.0,
        ..SATURATING
    },
    Params {
        name: "slow workers",
        about: "as saturating, 5 of the 50 workers at 0.1x (4 slots each)",
        slow_workers: 5,
        ..SATURATING
    },
];

/// The row named `name`.
pub fn params(name: &str) -> Option<&'static Params> {
    SCENARIOS.iter().find(|p| p.name == name)
}

fn int(rng: &mut fastrand::Rng, (lo, hi): (usize, usize)) -> usize {
    rng.usize(lo..=hi)
}

fn uniform(rng: &mut fastrand::Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.f64()
}

fn log_uniform(rng: &mut fastrand::Rng, (lo, hi): (f64, f64)) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * rng.f64()).exp()
}

/// A build of `n` jobs.
fn build(rng: &mut fastrand::Rng, n: usize) -> Vec<Job> {
    (0..n)
        .map(|_| {
            let cost = log_uniform(rng, SOURCE_BYTES) as u64;
            let work = (cost as f64 + BASE_BYTES) * SECS_PER_BYTE * uniform(rng, NOISE);
            Job { cost, work }
        })
        .collect()
}

impl Params {
    /// The scenario of this row for `seed`.
    pub fn scenario(&self, seed: u64) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(seed);
        // The fleet first, so that every row with the same worker ranges has the same one.
        let mut workers: Vec<WorkerSpec> = (0..self.workers)
            .map(|_| WorkerSpec {
                slots: int(&mut rng, self.worker_slots),
                speed: log_uniform(&mut rng, self.worker_speed),
            })
            .collect();
        for w in workers.iter_mut().take(self.slow_workers) {
            *w = SLOW_WORKER;
        }
        let shared = self.same_build.then(|| {
            let n = int(&mut rng, self.jobs);
            build(&mut rng, n)
        });
        let hosts = (0..self.hosts)
            .map(|_| HostSpec {
                local_slots: int(&mut rng, self.local_slots),
                speed: log_uniform(&mut rng, self.host_speed),
                jobs_limit: int(&mut rng, self.jobs_limit),
                start: Duration::from_secs_f64(uniform(&mut rng, (0.0, self.stagger_secs))),
                jobs: match &shared {
                    Some(jobs) => jobs.clone(),
                    None => {
                        let n = int(&mut rng, self.jobs);
                        build(&mut rng, n)
                    }
                },
            })
            .collect();
        Scenario {
            name: self.name,
            hosts,
            workers,
            net: Duration::from_millis(self.net_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_scenario() {
        for p in SCENARIOS {
            let (a, b) = (p.scenario(7), p.scenario(7));
            assert_eq!(a.workers, b.workers);
            let jobs = |s: &Scenario| s.hosts.iter().map(|h| h.jobs.clone()).collect::<Vec<_>>();
            assert_eq!(jobs(&a), jobs(&b));
            assert_ne!(jobs(&a), jobs(&p.scenario(8)));
        }
    }

    #[test]
    fn rows_are_what_they_say() {
        let s = params("slow workers").expect("a row").scenario(1);
        assert_eq!(s.workers.len(), 50);
        assert_eq!(s.workers.iter().filter(|w| **w == SLOW_WORKER).count(), 5);
        let eq = params("equal builds").expect("a row").scenario(1);
        assert!(eq.hosts.iter().all(|h| h.jobs == eq.hosts[0].jobs));
        let mixed = params("mixed").expect("a row").scenario(1);
        assert!(mixed.hosts.iter().any(|h| h.start > Duration::from_secs(1)));
        for w in &mixed.workers {
            assert!((1..=16).contains(&w.slots) && (0.5..=3.0).contains(&w.speed));
        }
    }
}
