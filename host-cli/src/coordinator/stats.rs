//! Counters for the end-of-build summary.

use std::collections::BTreeMap;
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
    reasons: Mutex<BTreeMap<String, u64>>,
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
        // Group reasons by their first words, so paths do not make every reason unique.
        let key: String = reason.split(':').next().unwrap_or(reason).chars().take(80).collect();
        *self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
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

    /// The one summary line.
    pub fn summary(&self, sent: u64, received: u64, elapsed: Duration) -> String {
        let r = self.remote.load(Ordering::Relaxed);
        let l = self.local.load(Ordering::Relaxed);
        let f = self.fell_back.load(Ordering::Relaxed);
        format!(
            "offload: {} compiler calls: {r} remote, {l} local, {f} fell back; sent {}, received {}; {:.1} s",
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
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
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
        assert_eq!(
            s.summary(1536, 10, Duration::from_millis(4200)),
            "offload: 22 compiler calls: 20 remote, 1 local, 1 fell back; sent 1.5 KiB, received 10 B; 4.2 s"
        );
        assert_eq!(s.reasons()[0].1, 1);
    }
}
