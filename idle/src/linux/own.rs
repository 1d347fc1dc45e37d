//! The CPU time the worker and its jobs used: the worker process, every process under it
//! and every process whose real uid is in its jobs' range, each with its own time and
//! that of its reaped children (`utime + stime + cutime + cstime` of `/proc/PID/stat`).
//! A process that ends moves its time into its parent's children's time, so the sum
//! over such a closed set only grows (but for one sample's race with an exit).

use std::collections::HashMap;
use std::path::Path;

use crate::source::OwnJobs;

/// What `/proc/PID/stat` says of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Its parent.
    pub ppid: u32,
    /// Its time and its reaped children's, in ticks.
    pub ticks: u64,
}

/// Parses `/proc/PID/stat` (its name, in parentheses, may hold anything).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime …
    let f: Vec<&str> = rest.split_ascii_whitespace().take(15).collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid = u32::try_from(num(1)?).ok()?;
    let ticks = num(11)? + num(12)? + num(13)? + num(14)?;
    Some(ProcStat { ppid, ticks })
}

/// The real uid on the `Uid:` line of `/proc/PID/status`.
pub fn parse_real_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The ticks of the processes in `procs` that are `own`'s: `uid_of` gives a process's
/// real uid, asked only for those not already the worker's by descent.
pub fn own_ticks(
    procs: &HashMap<u32, ProcStat>,
    own: &OwnJobs,
    mut uid_of: impl FnMut(u32) -> Option<u32>,
) -> u64 {
    if own.pid.is_none() && own.uids.is_none() {
        return 0;
    }
    let mut memo: HashMap<u32, bool> = HashMap::new();
    let mut sum = 0;
    for (&pid, st) in procs {
        let counted = descends(pid, procs, own.pid, &mut memo)
            || own
                .uids
                .as_ref()
                .is_some_and(|r| uid_of(pid).is_some_and(|u| r.contains(&u)));
        if counted {
            sum += st.ticks;
        }
    }
    sum
}

/// Whether `pid` is `root` or under it.
fn descends(
    pid: u32,
    procs: &HashMap<u32, ProcStat>,
    root: Option<u32>,
    memo: &mut HashMap<u32, bool>,
) -> bool {
    let Some(root) = root else { return false };
    let mut chain = Vec::new();
    let mut at = pid;
    let found = loop {
        if at == root {
            break true;
        }
        if let Some(&known) = memo.get(&at) {
            break known;
        }
        chain.push(at);
        match procs.get(&at) {
            // pid 0 is the kernel; a loop would be a torn read.
            Some(st) if st.ppid != 0 && chain.len() < 4096 => at = st.ppid,
            _ => break false,
        }
    };
    for p in chain {
        memo.insert(p, found);
    }
    found
}

/// Every process's stat under `proc` now.
pub fn read_all(proc: &Path) -> HashMap<u32, ProcStat> {
    let mut procs = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc) else {
        return procs;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process may end while we read: it is simply left out.
        if let Some(st) = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            procs.insert(pid, st);
        }
    }
    procs
}

/// The ticks of `own`'s processes under `proc` now.
pub fn read_own_ticks(proc: &Path, own: &OwnJobs) -> u64 {
    let procs = read_all(proc);
    own_ticks(&procs, own, |pid| {
        std::fs::read_to_string(proc.join(pid.to_string()).join("status"))
            .ok()
            .and_then(|t| parse_real_uid(&t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "4242 (cc1 (odd) name) R 4200 4242 4242 0 -1 4194304 100 0 0 0 700 50 3 2 20 0 1 0 5000 1000 100";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 4200,
                ticks: 755
            })
        );
        assert_eq!(parse_stat("4242 (x) R 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        let status = "Name:\tcc1\nUid:\t1900000003\t1900000003\t1900000003\t1900000003\n";
        assert_eq!(parse_real_uid(status), Some(1_900_000_003));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn the_worker_its_descendants_and_its_job_uids_count() {
        let p = |ppid, ticks| ProcStat { ppid, ticks };
        // 1 init; 100 the worker; 101, 102 under it; 103 under 102; 200 unrelated;
        // 300 a job process reparented to init, running as a job uid; 301 under 300.
        let procs: HashMap<u32, ProcStat> = [
            (1, p(0, 1000)),
            (100, p(1, 10)),
            (101, p(100, 20)),
            (102, p(100, 30)),
            (103, p(102, 40)),
            (200, p(1, 500)),
            (300, p(1, 7)),
            (301, p(300, 9)),
        ]
        .into_iter()
        .collect();
        let uid = |pid: u32| Some(if pid == 300 { 1_900_000_001 } else { 0 });
        let cases = [
            (OwnJobs::default(), 0),
            (
                OwnJobs {
                    pid: Some(100),
                    uids: None,
                },
                100,
            ),
            (
                OwnJobs {
                    pid: Some(100),
                    uids: Some(1_900_000_000..1_900_000_004),
                },
                107,
            ),
            (
                OwnJobs {
                    pid: None,
                    uids: Some(1_900_000_000..1_900_000_001),
                },
                0,
            ),
            (
                OwnJobs {
                    pid: Some(999),
                    uids: None,
                },
                0,
            ),
        ];
        for (own, want) in cases {
            assert_eq!(own_ticks(&procs, &own, uid), want, "{own:?}");
        }
    }

    #[test]
    fn this_process_is_its_own() {
        let own = OwnJobs::this_process(None);
        // This test's own time so far, in ticks: at least the start-up, never nothing
        // once it has spun a little.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        assert!(read_own_ticks(Path::new("/proc"), &own) > 0);
        assert_eq!(read_own_ticks(Path::new("/proc"), &OwnJobs::default()), 0);
    }
}
