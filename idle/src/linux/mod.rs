//! The Linux backend: logind for input and lock ([`logind`]), `/proc/stat` and the
//! worker's own processes for other load ([`cpu`], [`own`]), PSI for memory pressure
//! ([`memory`]), sysfs for power and heat ([`power`]).

pub mod cpu;
pub mod logind;
pub mod memory;
pub mod own;
pub mod power;

use std::path::PathBuf;

use crate::sample::Sample;
use crate::source::{OwnJobs, Source};

/// Reads this machine.
#[derive(Debug)]
pub struct LinuxSource {
    proc: PathBuf,
    sys: PathBuf,
    own: OwnJobs,
    /// A fixed CPU set (tests), else this process's allowed CPUs at each sample.
    fixed_cpus: Option<Vec<usize>>,
    logind: Option<logind::Logind>,
    last: Option<Counters>,
}

/// The counters "other load" is the difference of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counters {
    cpus: Vec<usize>,
    times: cpu::CpuTimes,
    own: u64,
}

impl LinuxSource {
    /// This machine, leaving `own`'s CPU time out of other load.
    pub fn new(own: OwnJobs) -> LinuxSource {
        LinuxSource {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            own,
            fixed_cpus: None,
            logind: Some(logind::Logind::new()),
            last: None,
        }
    }

    /// Judges the load of `cpus` only, whatever this process's affinity.
    pub fn with_cpus(mut self, cpus: Vec<usize>) -> LinuxSource {
        self.fixed_cpus = Some(cpus);
        self
    }

    /// Leaves logind out (input and lock unknown).
    pub fn without_logind(mut self) -> LinuxSource {
        self.logind = None;
        self
    }

    /// Other load since the previous call (`None` the first time, or when the CPU set
    /// changed).
    pub fn other_load(&mut self) -> Option<f64> {
        let cpus = match &self.fixed_cpus {
            Some(c) => c.clone(),
            None => cpu::allowed_cpus(&self.proc, &self.sys.join("fs/cgroup")),
        };
        let stat = std::fs::read_to_string(self.proc.join("stat")).ok()?;
        let now = Counters {
            times: cpu::parse_stat(&stat, &cpus),
            own: own::read_own_ticks(&self.proc, &self.own),
            cpus,
        };
        let before = self.last.replace(now.clone())?;
        (before.cpus == now.cpus).then(|| other_share(&before, &now))?
    }
}

/// The share of the CPUs' time between two readings that was busy and not the worker's.
fn other_share(before: &Counters, now: &Counters) -> Option<f64> {
    let total = now.times.total.checked_sub(before.times.total)?;
    if total == 0 {
        return None;
    }
    let busy = now.times.busy.saturating_sub(before.times.busy);
    let own = now.own.saturating_sub(before.own);
    Some((busy.saturating_sub(own) as f64 / total as f64).clamp(0.0, 1.0))
}

impl Source for LinuxSource {
    fn sample(&mut self) -> Sample {
        let session = self.logind.as_mut().map(|l| l.read()).unwrap_or_default();
        Sample {
            input_idle: session.input_idle,
            screen_locked: session.locked,
            on_ac: power::on_ac(&self.sys),
            low_power: power::low_power(&self.sys),
            thermal: power::thermal(&self.sys),
            other_load: self.other_load(),
            memory_pressure: memory::pressure(&self.proc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_share_leaves_the_workers_time_out() {
        let c = |busy, total, own| Counters {
            cpus: vec![0],
            times: cpu::CpuTimes { busy, total },
            own,
        };
        let cases = [
            (c(0, 0, 0), c(50, 100, 0), Some(0.5)),
            (c(0, 0, 0), c(50, 100, 30), Some(0.2)),
            // The worker's time on other CPUs may exceed this set's busy time.
            (c(0, 0, 0), c(50, 100, 80), Some(0.0)),
            (c(10, 100, 0), c(10, 100, 0), None),
            (c(10, 200, 0), c(10, 100, 0), None),
        ];
        for (i, (a, b, want)) in cases.iter().enumerate() {
            assert_eq!(other_share(a, b), *want, "case {i}");
        }
    }
}
