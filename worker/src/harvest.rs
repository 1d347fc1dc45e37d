//! Collects a job's outputs: the plain files it created in the directories it may write.
//!
//! The job is hostile and has run by the time its outputs are read, so nothing here
//! resolves a path the job could have changed. Each writable directory is opened before
//! the job runs (the handle the job root made it through, [`WritableDir::from_fd`]);
//! afterwards its entries are listed through that handle, each is checked with `fstatat`
//! (no link followed), and only a regular file is opened beneath it, with
//! `O_NOFOLLOW | O_NONBLOCK`: a link the job put there is not followed, a FIFO, socket or
//! device node is never opened, a directory swapped for a link still reads the directory
//! the worker made. Only regular files with a single link, owned by the
//! job's user (when it has one), count; sizes are checked with `fstat` before a byte is
//! read, against one budget for the whole job.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};

/// Why the outputs could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// The outputs add up to more than the job may return.
    #[error("the outputs exceed the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// More files than a compile makes.
    #[error("the job created more than {0} files")]
    TooMany(usize),
    /// Reading failed.
    #[error("reading the outputs in {dir}: {source}")]
    Io {
        /// The host's path of the directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Most output files of one job (a compile makes a handful).
pub const MAX_FILES: usize = 1000;

/// A directory the job may write, opened before it runs.
#[derive(Debug)]
pub struct WritableDir {
    /// The host's absolute path of it.
    pub host: String,
    fd: OwnedFd,
}

impl WritableDir {
    /// Opens `path` (which the worker has just made, before the job runs) without
    /// following a link.
    pub fn open(path: &Path, host: String) -> std::io::Result<WritableDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(WritableDir { host, fd })
    }

    /// A handle the worker opened on the directory (without following a link) while it made
    /// the job root, before the job runs.
    pub fn from_fd(fd: OwnedFd, host: String) -> WritableDir {
        WritableDir { host, fd }
    }
}

/// What counts as an output.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Only files owned by this uid (the job's user).
    pub owner: Option<u32>,
    /// Most bytes of all outputs together.
    pub max_bytes: u64,
}

/// Every output of the job: (host path, bytes), sorted by path.
pub fn collect(dirs: &[WritableDir], rules: Rules) -> Result<Vec<(String, Vec<u8>)>, HarvestError> {
    let io = |dir: &WritableDir, source: std::io::Error| HarvestError::Io {
        dir: dir.host.clone(),
        source,
    };
    // Every candidate of every directory first.
    let mut found: Vec<(&WritableDir, String)> = Vec::new();
    let mut listed = 0usize;
    for dir in dirs {
        let fd = dir.fd.try_clone().map_err(|e| io(dir, e))?;
        let mut listing = Dir::from_fd(fd).map_err(|e| io(dir, e.into()))?;
        for entry in listing.iter() {
            let entry = entry.map_err(|e| io(dir, e.into()))?;
            // Directories, links and special files are never outputs; the type is checked
            // again before and after the file is opened.
            if matches!(entry.file_type(), Some(t) if t != Type::File) {
                continue;
            }
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            listed += 1;
            if listed > MAX_FILES {
                return Err(HarvestError::TooMany(MAX_FILES));
            }
            if let Ok(text) = std::str::from_utf8(name) {
                found.push((dir, text.to_owned()));
            }
        }
    }
    // The sizes of all of them before a byte of any is read: the budget is the job's, so
    // files each under it cannot make the worker read past it.
    let too_large = HarvestError::TooLarge {
        limit: rules.max_bytes,
    };
    let mut announced = 0u64;
    for (dir, name) in &found {
        if let Some(size) = output_size(&dir.fd, name, rules).map_err(|e| io(dir, e))? {
            announced = announced.saturating_add(size);
            if announced > rules.max_bytes {
                return Err(too_large);
            }
        }
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for (dir, name) in found {
        let read = read_beneath(&dir.fd, &name, rules, &mut total).map_err(|e| match e {
            Skip::Io(source) => io(dir, source),
            Skip::TooLarge => HarvestError::TooLarge {
                limit: rules.max_bytes,
            },
        })?;
        let Some(bytes) = read else {
            continue;
        };
        let host = if dir.host == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", dir.host)
        };
        out.push((host, bytes));
    }
    out.sort();
    Ok(out)
}

/// The size of `name` beneath `dir` if it would be an output (a regular file with one
/// link, of the job's user), from `fstatat` without following a link; `None` otherwise.
fn output_size(dir: &OwnedFd, name: &str, rules: Rules) -> std::io::Result<Option<u64>> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let is_file = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !is_file || st.st_nlink != 1 || rules.owner.is_some_and(|u| u != st.st_uid) {
        return Ok(None);
    }
    Ok(Some(u64::try_from(st.st_size).unwrap_or(u64::MAX)))
}

enum Skip {
    Io(std::io::Error),
    TooLarge,
}

/// The bytes of the plain file `name` directly beneath `dir`, or `None` when it is not an
/// output (a link, not a regular file, several links, another owner, gone).
fn read_beneath(
    dir: &OwnedFd,
    name: &str,
    rules: Rules,
    total: &mut u64,
) -> Result<Option<Vec<u8>>, Skip> {
    // Anything but a regular file is never opened: opening a device can act on it, and a
    // FIFO or socket is not an output.
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {}
        Ok(_) | Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Skip::Io(e.into())),
    }
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // A link (ELOOP), removed meanwhile, or swapped for a socket (ENXIO).
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOENT | nix::errno::Errno::ENXIO) => {
            return Ok(None);
        }
        Err(e) => return Err(Skip::Io(e.into())),
    };
    let st = fstat(&fd).map_err(|e| Skip::Io(e.into()))?;
    let is_file = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !is_file || st.st_nlink != 1 || rules.owner.is_some_and(|u| u != st.st_uid) {
        return Ok(None);
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    *total = total.saturating_add(size);
    if *total > rules.max_bytes {
        return Err(Skip::TooLarge);
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // A file still growing is read up to the size it had.
    std::fs::File::from(fd)
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(Skip::Io)?;
    Ok(Some(bytes))
}

/// The writable directories of a job root: `dirs` (inside the root) with their host paths.
pub fn open_all(root: &Path, dirs: &[PathBuf]) -> std::io::Result<Vec<WritableDir>> {
    dirs.iter()
        .filter_map(|d| {
            let rel = d.strip_prefix(root).ok()?.to_str()?;
            Some((d, format!("/{rel}")))
        })
        .map(|(d, host)| WritableDir::open(d, host))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rules() -> Rules {
        Rules {
            owner: None,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn plain_files_only_and_never_through_a_link() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let out = root.join("src");
        std::fs::create_dir(&out).unwrap();
        let dirs = open_all(&root, std::slice::from_ref(&out)).unwrap();
        // What the job does after the worker opened the directory.
        std::fs::write(out.join("a.o"), b"object").unwrap();
        symlink("/etc/passwd", out.join("passwd.o")).unwrap();
        std::fs::write(root.join("secret"), b"secret").unwrap();
        std::fs::hard_link(root.join("secret"), out.join("hard.o")).unwrap();
        std::fs::create_dir(out.join("sub")).unwrap();
        let fifo = std::ffi::CString::new(format!("{}/fifo.o", out.display())).unwrap();
        // SAFETY: plain syscall on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let got = collect(&dirs, rules()).unwrap();
        assert_eq!(got, vec![("/src/a.o".to_string(), b"object".to_vec())]);
    }

    #[test]
    fn fifos_sockets_and_devices_are_never_opened() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let out = root.join("o");
        std::fs::create_dir(&out).unwrap();
        let dirs = open_all(&root, std::slice::from_ref(&out)).unwrap();
        std::fs::write(out.join("a.o"), b"object").unwrap();
        let fifo = out.join("fifo.o");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let _sock = std::os::unix::net::UnixListener::bind(out.join("sock.o")).unwrap();
        // A character device (the null device's numbers), where the test may make one.
        let dev = std::ffi::CString::new(out.join("null.o").to_str().unwrap()).unwrap();
        // SAFETY: plain syscall on a valid C string.
        let made_dev =
            unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;
        // A writer blocks in open until a reader opens the FIFO: if the harvest opened it,
        // this open would return.
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let f = std::fs::OpenOptions::new().write(true).open(&fifo);
                let _ = tx.send(());
                drop(f);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got = collect(&dirs, rules()).unwrap();
        assert_eq!(got, vec![("/o/a.o".to_string(), b"object".to_vec())]);
        // Below the listing's own type check (which file systems without `d_type`, or a
        // swap after the listing, get past): none of them is opened by name either.
        let mut total = 0;
        for name in ["fifo.o", "sock.o", "null.o"] {
            let got = read_beneath(&dirs[0].fd, name, rules(), &mut total);
            assert!(matches!(got, Ok(None)), "{name}");
        }
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the harvest opened the FIFO"
        );
        // Release the writer.
        let _r = std::fs::File::open(&fifo).unwrap();
        writer.join().unwrap();
        if !made_dev {
            eprintln!("no device node made (not root): only FIFOs and sockets checked");
        }
    }

    #[test]
    fn a_directory_swapped_for_a_link_is_still_the_worker_s() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let out = root.join("obj");
        std::fs::create_dir(&out).unwrap();
        let dirs = open_all(&root, std::slice::from_ref(&out)).unwrap();
        std::fs::write(out.join("mine.o"), b"mine").unwrap();
        std::fs::rename(&out, root.join("moved")).unwrap();
        symlink("/etc", &out).unwrap();
        let got = collect(&dirs, rules()).unwrap();
        assert_eq!(got, vec![("/obj/mine.o".to_string(), b"mine".to_vec())]);
    }

    #[test]
    fn sizes_are_checked_before_reading() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let out = root.join("o");
        std::fs::create_dir(&out).unwrap();
        let dirs = open_all(&root, std::slice::from_ref(&out)).unwrap();
        // Sparse: 4 GiB announced, nothing on disk.
        let f = std::fs::File::create(out.join("big.o")).unwrap();
        f.set_len(4 << 30).unwrap();
        let err = collect(&dirs, rules()).unwrap_err();
        assert!(matches!(err, HarvestError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn the_budget_is_checked_for_all_outputs_before_any_is_read() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let dirs = open_all(&root, &[a.clone(), b.clone()]).unwrap();
        // Each under the budget, in directories of their own, together over it.
        let small = Rules {
            max_bytes: 1 << 20,
            ..rules()
        };
        std::fs::File::create(a.join("x.o"))
            .unwrap()
            .set_len(600 << 10)
            .unwrap();
        std::fs::File::create(b.join("y.o"))
            .unwrap()
            .set_len(600 << 10)
            .unwrap();
        let err = collect(&dirs, small).unwrap_err();
        assert!(matches!(err, HarvestError::TooLarge { .. }), "{err}");
        // The same sizes through links and hard links do not count.
        std::fs::remove_file(b.join("y.o")).unwrap();
        symlink(a.join("x.o"), b.join("link.o")).unwrap();
        let got = collect(&dirs, small).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn files_of_another_owner_are_not_outputs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let out = root.join("o");
        std::fs::create_dir(&out).unwrap();
        let dirs = open_all(&root, std::slice::from_ref(&out)).unwrap();
        std::fs::write(out.join("x.o"), b"x").unwrap();
        // SAFETY: plain syscall.
        let me = unsafe { libc::geteuid() };
        let other = Rules {
            owner: Some(me.wrapping_add(1)),
            ..rules()
        };
        assert!(collect(&dirs, other).unwrap().is_empty());
        let mine = Rules {
            owner: Some(me),
            ..rules()
        };
        assert_eq!(collect(&dirs, mine).unwrap().len(), 1);
    }
}
