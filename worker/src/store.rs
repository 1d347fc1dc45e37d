//! The content-addressed store: every input file the worker has received, named by its
//! digest, read-only. A header crosses the network once per worker.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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
}

impl Store {
    /// Opens (creating) a store in `dir`.
    pub fn open(dir: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_owned(),
        })
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_checks_digest_and_is_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
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
}
