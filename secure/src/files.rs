//! Files only their owner may read: the key file and the pin stores. Read with an ownership
//! and mode check, written whole (a temporary file in the same directory, then a rename or
//! link), mode 0600, in a directory created 0700.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A private file that could not be read or written, or must not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Group or others may access the file: a key or a pin list anyone else can read or
    /// change is not trusted.
    #[error("{path} has mode {mode:04o}: group and others must have no access (chmod 600 it)")]
    Insecure { path: PathBuf, mode: u32 },
    #[error("{path} belongs to uid {owner}, not to this user (uid {uid})")]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: usize },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path` whole if it exists (`None` if it does not), after checking that it is a
/// regular file owned by this user with no group or other permissions. Reads at most `max`
/// bytes: a larger file is [`FileError::TooLarge`], not a large allocation.
pub(crate) fn read_private(path: &Path, max: usize) -> Result<Option<Vec<u8>>, FileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    // The checks look at the opened file, so a rename between check and read changes nothing.
    check_private(&file, path)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    if bytes.len() > max {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(Some(bytes))
}

#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_owned(),
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(FileError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::Insecure {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(file: &File, path: &Path) -> Result<(), FileError> {
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Creates `dir` and its missing parents, mode 0700 (an existing directory is left as it is).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_at(dir))
}

/// What [`write_private`] does when `path` already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    Replace,
    /// Leave it and fail with `AlreadyExists`: two processes creating a key at once keep
    /// one of them, never a mix.
    Keep,
}

/// Writes `bytes` as the whole of `path`, mode 0600: a reader sees the old file or the new
/// one, never a part.
pub(crate) fn write_private(
    path: &Path,
    bytes: &[u8],
    existing: Existing,
) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let tmp = temp_path(path);
    let written = write_new(&tmp, bytes).and_then(|()| match existing {
        Existing::Replace => fs::rename(&tmp, path),
        Existing::Keep => fs::hard_link(&tmp, path),
    });
    // After a rename the temporary name is gone; after a link or a failure it is removed.
    let _ = fs::remove_file(&tmp);
    written.map_err(io_at(path))?;
    // Makes the new name durable; some file systems cannot sync a directory, and the data
    // itself is already synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// An exclusive lock on `PATH.lock`, held until dropped: for a read-modify-write of `path`
/// by one process at a time. Advisory (`flock`): it orders writers of this crate only.
pub(crate) struct Lock {
    _file: File,
}

pub(crate) fn lock(path: &Path) -> Result<Lock, FileError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&lock_path).map_err(io_at(&lock_path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: the descriptor is open for as long as `file` lives; flock has no other
            // preconditions. The lock is released when `file` is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_at(&lock_path)(e));
            }
        }
    }
    Ok(Lock { _file: file })
}

/// A name beside `path`, unique to this process and call.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_0600_in_a_0700_directory_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/file");
        write_private(&path, b"one", Existing::Replace).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        assert_eq!(read_private(&path, 16).unwrap().unwrap(), b"one");
        write_private(&path, b"two", Existing::Replace).unwrap();
        assert_eq!(read_private(&path, 16).unwrap().unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn keep_refuses_to_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file");
        write_private(&path, b"first", Existing::Keep).unwrap();
        let err = write_private(&path, b"second", Existing::Keep).unwrap_err();
        assert!(
            matches!(&err, FileError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
        );
        assert_eq!(read_private(&path, 16).unwrap().unwrap(), b"first");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_loose_modes_large_files_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            read_private(&tmp.path().join("missing"), 16)
                .unwrap()
                .is_none()
        );
        let path = tmp.path().join("file");
        write_private(&path, b"0123456789", Existing::Replace).unwrap();
        for loose in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            let err = read_private(&path, 16).unwrap_err();
            assert!(
                matches!(err, FileError::Insecure { mode, .. } if mode == loose),
                "{err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_private(&path, 16).unwrap().is_some());
        assert!(matches!(
            read_private(&path, 9),
            Err(FileError::TooLarge { max: 9, .. })
        ));
        assert!(matches!(
            read_private(tmp.path(), 16),
            Err(FileError::NotAFile { .. })
        ));
    }

    #[test]
    fn refuses_a_file_of_another_user() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give a file away");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file");
        write_private(&path, b"x", Existing::Replace).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = read_private(&path, 16).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotOwned {
                    owner: 65534,
                    uid: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
