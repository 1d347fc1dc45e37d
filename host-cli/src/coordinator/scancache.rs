//! Reuses a dependency scan while it provably gives the same answer.
//!
//! A scan's answer depends on the contents of the files it read and on which files exist
//! where the preprocessor looked. An entry records the identity (inode, size, mtime, ctime)
//! of every file listed, and — for every name that any of those files includes or probes
//! with `__has_include`, in every directory that may be searched for it — whether that
//! candidate exists and what it is. A file that appears where a lookup would have found it
//! therefore invalidates the entry; unrelated files (a new object beside the sources) do
//! not. A file with an include or `__has_include` computed by a macro is never cached.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What identifies a file or directory's state: any write, rename, or entry added or
/// removed changes it (ctime cannot be set back by tools that preserve mtimes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    ino: u64,
    dev: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The identity of `path` (following links), or `None` when it does not exist.
pub fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some(Identity {
        ino: m.ino(),
        dev: m.dev(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// What a scan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScanKey {
    /// The compiler.
    pub compiler: String,
    /// The scan's arguments.
    pub args: Vec<OsString>,
    /// Its working directory.
    pub cwd: String,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
}

/// The paths whose identities prove a scan still valid.
#[derive(Debug, Clone, Default)]
pub struct Witnesses {
    /// Paths (files and directories) and their identity when the scan ran; `None` for a
    /// path that did not exist.
    pub paths: Vec<(PathBuf, Option<Identity>)>,
}

impl Witnesses {
    /// Records `path` as it is now.
    pub fn record(&mut self, path: PathBuf) {
        let id = identity(&path);
        self.paths.push((path, id));
    }

    /// Whether every recorded path last changed before `time` ((seconds, nanoseconds) since
    /// the epoch):
    /// a file changed while it was being scanned could be recorded with an identity newer
    /// than the contents the scan read, so such scans are not kept ("racy" entries).
    pub fn all_older_than(&self, time: (i64, i64)) -> bool {
        self.paths
            .iter()
            .all(|(_, id)| id.is_none_or(|id| id.ctime < time && id.mtime < time))
    }

    fn still_valid(&self) -> bool {
        self.paths.iter().all(|(p, id)| identity(p) == *id)
    }
}

#[derive(Debug)]
struct Entry {
    deps: Vec<String>,
    witnesses: Witnesses,
}

/// Scans by key, for the lifetime of one build.
#[derive(Debug, Default)]
pub struct ScanCache {
    entries: Mutex<HashMap<ScanKey, Entry>>,
}

impl ScanCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScanKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dependencies of a still-valid scan with this key.
    pub fn get(&self, key: &ScanKey) -> Option<Vec<String>> {
        let (deps, witnesses) = {
            let map = self.lock();
            let e = map.get(key)?;
            (e.deps.clone(), e.witnesses.clone())
        };
        if witnesses.still_valid() {
            Some(deps)
        } else {
            self.lock().remove(key);
            None
        }
    }

    /// Remembers a scan.
    pub fn insert(&self, key: ScanKey, deps: Vec<String>, witnesses: Witnesses) {
        self.lock().insert(key, Entry { deps, witnesses });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ScanKey {
        ScanKey {
            compiler: "gcc".into(),
            args: vec!["-c".into(), "a.c".into()],
            cwd: "/x".into(),
            env: vec![],
        }
    }

    #[test]
    fn invalidated_by_a_changed_file_or_a_new_candidate_but_not_by_unrelated_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("inc")).unwrap();
        std::fs::write(d.join("a.h"), "1").unwrap();
        let witnesses = || {
            let mut w = Witnesses::default();
            w.record(d.join("a.h"));
            w.record(d.join("inc/a.h"));
            w.record(d.join("inc/sys/b.h"));
            w
        };
        let cache = ScanCache::default();
        let deps = vec!["a.h".to_string()];
        cache.insert(key(), deps.clone(), witnesses());
        std::fs::write(d.join("a.o"), "unrelated").unwrap();
        std::fs::create_dir(d.join("inc/other")).unwrap();
        assert_eq!(
            cache.get(&key()),
            Some(deps.clone()),
            "unrelated files keep it valid"
        );
        let check = |change: &dyn Fn()| {
            cache.insert(key(), deps.clone(), witnesses());
            assert_eq!(
                cache.get(&key()),
                Some(deps.clone()),
                "valid before the change"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
            change();
            assert_eq!(cache.get(&key()), None, "invalid after the change");
        };
        // A header rewritten with the same size.
        check(&|| std::fs::write(d.join("a.h"), "2").unwrap());
        // A header appearing where a lookup would find it first.
        check(&|| std::fs::write(d.join("inc/a.h"), "x").unwrap());
        // One appearing in a new subdirectory.
        check(&|| {
            std::fs::create_dir(d.join("inc/sys")).unwrap();
            std::fs::write(d.join("inc/sys/b.h"), "x").unwrap();
        });
    }
}
