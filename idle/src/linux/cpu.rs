//! CPU time of a set of CPUs from `/proc/stat`, and which CPUs this process may run on
//! (its affinity, within its cgroup's cpuset).

use std::path::Path;

/// Ticks (USER_HZ) the CPUs of a set spent, since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Running anything (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Busy plus idle and iowait.
    pub total: u64,
}

/// The times of `cpus` in `/proc/stat`'s text; CPUs it does not list count nothing.
pub fn parse_stat(text: &str, cpus: &[usize]) -> CpuTimes {
    let mut t = CpuTimes::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(n) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&n) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest is within user).
        let v: Vec<u64> = fields.take(8).map(|f| f.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        t.busy += busy;
        t.total += busy + at(3) + at(4);
    }
    t
}

/// A kernel CPU list (`0-3,8,10-11`); `None` if malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The CPUs this process may run on: its affinity, narrowed to its cgroup's effective
/// cpuset where that is readable. Empty if neither can be read.
pub fn allowed_cpus(proc: &Path, cgroup_root: &Path) -> Vec<usize> {
    let mut cpus = affinity();
    if let Some(set) = cgroup_cpuset(proc, cgroup_root) {
        if cpus.is_empty() {
            cpus = set;
        } else {
            cpus.retain(|c| set.contains(c));
        }
    }
    cpus
}

fn affinity() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect(),
        Err(e) => {
            tracing::debug!("sched_getaffinity: {e}");
            Vec::new()
        }
    }
}

/// The cgroup v2 `cpuset.cpus.effective` of this process's cgroup.
fn cgroup_cpuset(proc: &Path, cgroup_root: &Path) -> Option<Vec<usize>> {
    let cg = std::fs::read_to_string(proc.join("self/cgroup")).ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = cgroup_root
        .join(rel.trim_start_matches('/'))
        .join("cpuset.cpus.effective");
    let set = parse_cpu_list(&std::fs::read_to_string(file).ok()?)?;
    (!set.is_empty()).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  300 0 60 1000 10 0 4 0 0 0
cpu0 100 0 20 500 5 0 2 0 0 0
cpu1 200 10 40 500 5 1 2 3 50 0
intr 12345
ctxt 999
";

    #[test]
    fn stat_times_of_a_set() {
        assert_eq!(
            parse_stat(STAT, &[0]),
            CpuTimes {
                busy: 122,
                total: 627
            }
        );
        assert_eq!(
            parse_stat(STAT, &[1]),
            CpuTimes {
                busy: 256,
                total: 761
            }
        );
        let both = parse_stat(STAT, &[0, 1]);
        assert_eq!((both.busy, both.total), (378, 1388));
        assert_eq!(parse_stat(STAT, &[7]), CpuTimes::default());
        // The aggregate line is never taken for a CPU.
        assert_eq!(parse_stat("cpu  1 2 3 4\n", &[0]), CpuTimes::default());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus(Path::new("/proc"), Path::new("/sys/fs/cgroup"));
        assert!(!cpus.is_empty());
    }
}
