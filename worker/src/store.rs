//! The content-addressed store: every input file the worker has received, named by its
//! digest, read-only. A header crosses the network once per worker.
//!
//! The store has a size limit: past it, the least recently used blobs are removed. A job
//! whose blob was removed between its request and its root simply fails to build its root
//! and is rejected, so the host compiles it locally: eviction can never produce a wrong
//! result.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use offload_shared::Digest;

/// Why a blob was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not hash to the digest they were sent under.
    #[error("blob sent as {claimed} has digest {actual}")]
    DigestMismatch {
        /// What the peer said.
        claimed: Digest,
        /// What the bytes are.
        actual: Digest,
    },
    /// Writing failed (a full disk, for one).
    #[error("cannot write {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A directory of blobs: `DIR/ab/abcdef…` (the full hex digest, fanned out by its first byte).
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
    lru: Mutex<Lru>,
}

/// Sizes and last uses of the blobs, for eviction.
#[derive(Debug, Default)]
struct Lru {
    blobs: HashMap<Digest, (u64, u64)>,
    total: u64,
    tick: u64,
}

impl Lru {
    fn touch(&mut self, d: Digest, size: u64) {
        self.tick += 1;
        let tick = self.tick;
        match self.blobs.insert(d, (size, tick)) {
            Some((old, _)) => self.total = self.total - old + size,
            None => self.total += size,
        }
    }
}

impl Store {
    /// Opens (creating) a store in `dir` that keeps at most `max_bytes` of blobs; blobs
    /// already there are indexed (oldest modification first).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for fan in std::fs::read_dir(dir)? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for e in std::fs::read_dir(fan.path())? {
                let e = e?;
                let Some(d) = e.file_name().to_str().and_then(Digest::from_hex) else {
                    continue;
                };
                let m = e.metadata()?;
                found.push((m.modified().ok(), d, m.len()));
            }
        }
        found.sort();
        let mut lru = Lru::default();
        for (_, d, size) in found {
            lru.touch(d, size);
        }
        Ok(Store {
            dir: dir.to_owned(),
            max_bytes,
            lru: Mutex::new(lru),
        })
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks blobs as used now (they survive eviction longest).
    pub fn touch(&self, digests: impl IntoIterator<Item = Digest>) {
        let mut lru = self.lru();
        for d in digests {
            if let Some(&(size, _)) = lru.blobs.get(&d) {
                lru.touch(d, size);
            }
        }
    }

    /// Bytes of blobs held.
    pub fn size(&self) -> u64 {
        self.lru().total
    }

    /// Removes least recently used blobs until the store is within its limit. Called after
    /// each job, so that a job's own blobs are not removed while it is being set up.
    pub fn evict(&self) {
        let mut lru = self.lru();
        if lru.total <= self.max_bytes {
            return;
        }
        let mut by_age: Vec<(u64, Digest, u64)> = lru
            .blobs
            .iter()
            .map(|(d, &(size, tick))| (tick, *d, size))
            .collect();
        by_age.sort();
        for (_, d, size) in by_age {
            if lru.total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(self.path(&d)).is_ok() || !self.path(&d).exists() {
                lru.blobs.remove(&d);
                lru.total -= size;
            }
        }
    }

    /// Where the blob with this digest lives.
    pub fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Whether the blob is present.
    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Stores `bytes` under `claimed` after checking the digest. Writes to a temporary file
    /// and renames, so a reader never sees a partial blob; the file is made read-only.
    pub fn put(&self, claimed: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if actual != *claimed {
            return Err(StoreError::DigestMismatch {
                claimed: *claimed,
                actual,
            });
        }
        let path = self.path(claimed);
        if path.is_file() {
            self.touch([*claimed]);
            return Ok(());
        }
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(io_err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err)?;
        tmp.write_all(bytes).map_err(io_err)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        self.lru().touch(*claimed, bytes.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_checks_digest_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path(), 1 << 20).unwrap();
        let d = Digest::of(b"hello");
        assert!(!s.has(&d));
        s.put(&d, b"hello").unwrap();
        s.put(&d, b"hello").unwrap();
        assert!(s.has(&d));
        assert_eq!(std::fs::read(s.path(&d)).unwrap(), b"hello");
        let mode = std::fs::metadata(s.path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        let err = s.put(&d, b"HELLO").unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
    }

    #[test]
    fn least_recently_used_blobs_go_first_and_the_index_survives_a_restart() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path(), 25).unwrap();
        let blob = |c: u8| vec![c; 10];
        let (a, b, c) = (
            Digest::of(&blob(b'a')),
            Digest::of(&blob(b'b')),
            Digest::of(&blob(b'c')),
        );
        s.put(&a, &blob(b'a')).unwrap();
        s.put(&b, &blob(b'b')).unwrap();
        s.touch([a]);
        s.put(&c, &blob(b'c')).unwrap();
        assert_eq!(s.size(), 30, "over the limit until the job ends");
        s.evict();
        assert!(
            s.has(&a) && !s.has(&b) && s.has(&c),
            "b was the least recently used"
        );
        assert_eq!(s.size(), 20);
        let reopened = Store::open(t.path(), 25).unwrap();
        assert_eq!(reopened.size(), 20);
    }
}
