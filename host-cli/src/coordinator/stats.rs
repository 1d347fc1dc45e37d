//! Counters for the end-of-build summary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What happened to the build's compiler calls.
#[derive(Debug, Default)]
pub struct Stats {
    /// Ran on a worker (successfully or with a real compile error).
    pub remote: AtomicU64,
    /// Ran here by choice.
    pub local: AtomicU64,
    /// Tried remotely, then ran here.
    pub fell_back: AtomicU64,
    /// Remote compiles whose dependency scan was reused.
    pub scans_reused: AtomicU64,
    /// Toolchain probes run in this build.
    pub probes_run: AtomicU64,
    /// Toolchain probe results taken from an earlier build.
    pub probes_reused: AtomicU64,
    /// Toolchains shipped to workers.
    pub toolchains_shipped: AtomicU64,
    /// Bytes of those toolchains.
    pub toolchain_bytes: AtomicU64,
    /// Slow remote jobs also run here.
    pub second_runs: AtomicU64,
    /// Of those, the ones the worker still won.
    pub second_runs_lost: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
    warnings: Mutex<BTreeSet<String>>,
}

impl Stats {
    /// Counts a local run and why.
    pub fn local_because(&self, reason: &str) {
        self.local.fetch_add(1, Ordering::Relaxed);
        self.note(reason);
    }

    /// Counts a fallback and why.
    pub fn fell_back_because(&self, reason: &str) {
        self.fell_back.fetch_add(1, Ordering::Relaxed);
        self.note(&format!("fell back: {reason}"));
    }

    fn note(&self, reason: &str) {
        // Paths would make every reason unique: group without them.
        let key: String = reason
            .split(' ')
            .map(|w| if w.starts_with('/') { "…" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(100)
            .collect();
        *self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// Counts a second run here of a slow remote job.
    pub fn speculated(&self) {
        self.second_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a second run the worker won after all.
    pub fn speculation_lost(&self) {
        self.second_runs_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a toolchain bundle of `bytes` sent to a worker.
    pub fn shipped(&self, bytes: u64) {
        self.toolchains_shipped.fetch_add(1, Ordering::Relaxed);
        self.toolchain_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a problem to report after the build (never during it: the build's own
    /// output must stay as it would be without offload).
    pub fn warn(&self, message: String) {
        tracing::warn!("{message}");
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(message);
    }

    /// The problems recorded, each once.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The reasons for local runs, most frequent first.
    pub fn reasons(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The one summary line; toolchains shipped are named within what was sent.
    pub fn summary(&self, sent: u64, received: u64, elapsed: Duration) -> String {
        let r = self.remote.load(Ordering::Relaxed);
        let l = self.local.load(Ordering::Relaxed);
        let f = self.fell_back.load(Ordering::Relaxed);
        let shipped = match self.toolchains_shipped.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(
                " ({n} toolchain{} shipped, {})",
                if n == 1 { "" } else { "s" },
                human(self.toolchain_bytes.load(Ordering::Relaxed))
            ),
        };
        format!(
            "offload: {} compiler calls: {r} remote, {l} local, {f} fell back; sent {}{shipped}, received {}; {:.1} s",
            r + l + f,
            human(sent),
            human(received),
            elapsed.as_secs_f64()
        )
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let s = Stats::default();
        s.remote.store(20, Ordering::Relaxed);
        s.local_because("linking");
        s.fell_back_because("worker w: connection closed");
        s.local_because("/a/b.c uses __TIMESTAMP__");
        s.local_because("/c/d.c uses __TIMESTAMP__");
        assert_eq!(s.reasons()[0], ("… uses __TIMESTAMP__".to_string(), 2));
        assert_eq!(
            s.summary(1536, 10, Duration::from_millis(4200)),
            "offload: 24 compiler calls: 20 remote, 3 local, 1 fell back; sent 1.5 KiB, received 10 B; 4.2 s"
        );
        s.shipped(30 << 20);
        assert_eq!(
            s.summary(31 << 20, 10, Duration::from_millis(4200)),
            "offload: 24 compiler calls: 20 remote, 3 local, 1 fell back; sent 31.0 MiB (1 toolchain shipped, 30.0 MiB), received 10 B; 4.2 s"
        );
    }
}
