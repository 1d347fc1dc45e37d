//! A CPU quota for processes under test (a cgroup with a CFS bandwidth limit): makes a
//! worker that is much slower than the host, on one machine. cgroup v2 where it is
//! mounted at `/sys/fs/cgroup`, else v1's `cpu` controller.

use std::path::{Path, PathBuf};

/// A cgroup limited to a share of one CPU; removed (its processes moved back to the root
/// group) when dropped.
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
    root: PathBuf,
}

/// The CFS period the quota is a share of, in microseconds.
const PERIOD_US: u64 = 100_000;

impl CpuLimit {
    /// A new group `name` whose processes together get `share` of one CPU (0.05: 5%).
    /// Panics (never skips) when cgroups cannot do it.
    pub fn new(name: &str, share: f64) -> CpuLimit {
        let quota = ((share * PERIOD_US as f64) as u64).max(1000);
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let root = if v2 {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/cpu")
        };
        let dir = root.join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot make the cgroup {}: {e}", dir.display()));
        let (file, value) = if v2 {
            // The cpu controller must be on for the root's children.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
            ("cpu.max", format!("{quota} {PERIOD_US}"))
        } else {
            let period = dir.join("cpu.cfs_period_us");
            std::fs::write(&period, PERIOD_US.to_string())
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", period.display()));
            ("cpu.cfs_quota_us", quota.to_string())
        };
        std::fs::write(dir.join(file), value)
            .unwrap_or_else(|e| panic!("cannot limit {}: {e}", dir.join(file).display()));
        CpuLimit { dir, root }
    }

    /// Moves process `pid` (all its threads) into the group; its later children follow.
    pub fn add(&self, pid: u32) {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {}: {e}", procs.display()));
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
