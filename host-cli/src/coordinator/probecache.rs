//! Toolchain probe results kept across builds, in `$XDG_CACHE_HOME/offload/probes.json`
//! (else `~/.cache/offload/probes.json`).
//!
//! A result belongs to a worker (its address), the host compiler's fingerprint for one
//! language, the worker's toolchain fingerprint (its files and its own binary) and the probe
//! itself: it is reused only while all four are unchanged. A damaged file is ignored (the
//! probes run again) and rewritten.

use std::path::PathBuf;
use std::sync::Mutex;

use offload_shared::Digest;
use serde::{Deserialize, Serialize};

/// One probe result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The worker's `host:port`.
    pub worker: String,
    /// The name the worker gave.
    pub worker_name: String,
    /// The host compiler's path.
    pub compiler: String,
    /// C++ rather than C.
    pub cxx: bool,
    /// The host compiler's fingerprint (with the probe's version).
    pub host: Digest,
    /// The worker's toolchain fingerprint.
    pub theirs: Digest,
    /// How the worker runs the compiler (`native`, `cross_gcc`, …) and with what.
    pub how: String,
    /// The probe passed.
    pub passed: bool,
    /// What differed, when it did not.
    pub detail: String,
    /// Seconds since the epoch when it ran.
    pub when: u64,
    /// The host compiler, for people (`offload status`).
    pub summary: String,
}

impl Entry {
    fn same_key(&self, other: &Entry) -> bool {
        self.worker == other.worker && self.compiler == other.compiler && self.cxx == other.cxx
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    entries: Vec<Entry>,
}

/// The cache file and its entries.
#[derive(Debug)]
pub struct ProbeCache {
    path: Option<PathBuf>,
    entries: Mutex<Vec<Entry>>,
}

impl ProbeCache {
    /// The user's cache (empty when there is no cache directory or no file yet).
    pub fn open_default() -> ProbeCache {
        ProbeCache::open(crate::cachedir::offload_cache_dir().map(|d| d.join("probes.json")))
    }

    /// The cache at `path`; `None` keeps results in memory only.
    pub fn open(path: Option<PathBuf>) -> ProbeCache {
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<File>(&b).ok())
            .map(|f| f.entries)
            .unwrap_or_default();
        ProbeCache {
            path,
            entries: Mutex::new(entries),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry, for `offload status`.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// The result for this worker, compiler and language, if it was reached with exactly
    /// these fingerprints.
    pub fn lookup(
        &self,
        worker: &str,
        compiler: &str,
        cxx: bool,
        host: &Digest,
        theirs: &Digest,
    ) -> Option<Entry> {
        self.lock()
            .iter()
            .find(|e| {
                e.worker == worker
                    && e.compiler == compiler
                    && e.cxx == cxx
                    && e.host == *host
                    && e.theirs == *theirs
            })
            .cloned()
    }

    /// Records a result (replacing the one for the same worker, compiler and language) and
    /// writes the file. A file that cannot be written leaves the result in memory.
    pub fn record(&self, entry: Entry) -> std::io::Result<()> {
        let snapshot = {
            let mut entries = self.lock();
            // Results not renewed for 30 days belong to workers long gone.
            let oldest = now().saturating_sub(30 * 24 * 3600);
            entries.retain(|e| !e.same_key(&entry) && e.when >= oldest);
            entries.push(entry);
            File {
                entries: entries.clone(),
            }
        };
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&snapshot).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(worker: &str, cxx: bool, host: u8, passed: bool) -> Entry {
        Entry {
            worker: worker.into(),
            worker_name: "w".into(),
            compiler: "/usr/bin/gcc".into(),
            cxx,
            host: Digest([host; 32]),
            theirs: Digest([7; 32]),
            how: "native".into(),
            passed,
            detail: String::new(),
            when: now(),
            summary: String::new(),
        }
    }

    #[test]
    fn round_trip_replace_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/probes.json");
        let c = ProbeCache::open(Some(path.clone()));
        c.record(entry("a:1", false, 1, true)).unwrap();
        c.record(entry("a:1", true, 1, true)).unwrap();
        c.record(entry("a:1", false, 2, false)).unwrap();
        let again = ProbeCache::open(Some(path.clone()));
        assert_eq!(again.entries().len(), 2);
        let hit = again.lookup(
            "a:1",
            "/usr/bin/gcc",
            false,
            &Digest([2; 32]),
            &Digest([7; 32]),
        );
        assert!(hit.is_some_and(|e| !e.passed));
        // Another fingerprint on either side, another worker: no result.
        assert!(
            again
                .lookup(
                    "a:1",
                    "/usr/bin/gcc",
                    false,
                    &Digest([1; 32]),
                    &Digest([7; 32])
                )
                .is_none()
        );
        assert!(
            again
                .lookup(
                    "a:1",
                    "/usr/bin/gcc",
                    true,
                    &Digest([1; 32]),
                    &Digest([8; 32])
                )
                .is_none()
        );
        assert!(
            again
                .lookup(
                    "b:1",
                    "/usr/bin/gcc",
                    true,
                    &Digest([1; 32]),
                    &Digest([7; 32])
                )
                .is_none()
        );
        // A damaged file is an empty cache, and is rewritten.
        std::fs::write(&path, b"{not json").unwrap();
        let damaged = ProbeCache::open(Some(path.clone()));
        assert!(damaged.entries().is_empty());
        damaged.record(entry("a:1", false, 1, true)).unwrap();
        assert_eq!(ProbeCache::open(Some(path)).entries().len(), 1);
    }
}
