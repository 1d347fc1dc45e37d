//! A job's root directory: the toolchain and the host's tree, recreated at their absolute
//! paths below one directory that the compile is then `chroot`ed into.
//!
//! Inputs are hard links to the read-only store; the compile runs as an unprivileged user
//! that may write only to the directories the host marked writable (and `/tmp`).
//! Everything new in those directories after the run is an output.
//!
//! The tree is the peer's, so the worker (root, outside the `chroot`) never resolves a path
//! through it: before anything is made, no path of the root may lie below a link or a file
//! of the toolchain or the tree; and everything is then made relative to a handle on the
//! root, one component at a time, with `O_NOFOLLOW` (a link met on the way is an error,
//! never followed). Errors name paths inside the root only, never the worker's directories.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, fchown, linkat, symlinkat};
use offload_shared::tree::{self, EntryKind, TreeEntry, TreeError};
use offload_shared::walk::Node;

use crate::harvest::{self, HarvestError, Rules, WritableDir};
use crate::store::Store;
use crate::toolchain::Toolchain;

/// Why a job root could not be made. The messages name paths inside the job root (the
/// host's, or the toolchain's, which the job sees anyway), never the worker's own.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The host's tree is not acceptable.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The host's tree marks a directory of the toolchain writable.
    #[error("the job marks a directory of the worker's toolchain writable: {0}")]
    WritableToolchainDir(String),
    /// The host's tree and the toolchain disagree about a path.
    #[error("input {0} collides with the worker's toolchain")]
    Collision(String),
    /// A path of the root (the toolchain's or the tree's) below a link of the other:
    /// making it would follow the link.
    #[error("{path} lies below the symbolic link {link} in the job root")]
    BelowLink {
        /// The path.
        path: String,
        /// The link above it.
        link: String,
    },
    /// An input is not in the store.
    #[error("input blob {0} is missing from the store")]
    MissingBlob(String),
    /// File-system work failed (a full disk, a link met where a directory was to be).
    #[error("building the job root at {path}: {source}")]
    Io {
        /// Where, inside the job root.
        path: String,
        /// Why.
        source: io::Error,
    },
}

enum Planned<'a> {
    Dir { writable: bool, toolchain: bool },
    Link(&'a Path),
    ToolFile,
    Input(PathBuf),
}

/// A made job root.
#[derive(Debug)]
pub struct JobRoot {
    /// The directory to `chroot` into.
    pub root: PathBuf,
    writable: Vec<WritableDir>,
    /// Host paths of the inputs.
    inputs: HashSet<String>,
    owner: Option<u32>,
}

/// Who the compile runs as.
#[derive(Debug, Clone, Copy)]
pub struct JobUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// An error at `path` inside the job root.
fn err(path: &Path) -> impl FnOnce(io::Error) -> RootError + '_ {
    move |source| RootError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Makes things below a job root through a handle on it, never following a link: each
/// directory on the way is made where missing and opened with `O_NOFOLLOW`.
struct Beneath {
    root: OwnedFd,
    /// The directory used last (entries come parents first, siblings together).
    last: Option<(PathBuf, OwnedFd)>,
}

/// Mode of the directories the worker makes.
const DIR_MODE: Mode = Mode::from_bits_truncate(0o755);

/// The directory `name` in `parent`, made if missing; a link or anything else that is not
/// a directory there is an error (`ELOOP`, `ENOTDIR`).
fn mkdir_open(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    match mkdirat(parent, name, DIR_MODE) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(parent, name, flags, Mode::empty())?)
}

impl Beneath {
    fn new(root: &Path) -> io::Result<Beneath> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(root, flags, Mode::empty())?;
        Ok(Beneath { root, last: None })
    }

    /// The directory at `dir` (an absolute path inside the root; `/` is the root), made
    /// with its missing ancestors.
    fn dir(&mut self, dir: &Path) -> io::Result<BorrowedFd<'_>> {
        let known = matches!(&self.last, Some((p, _)) if p == dir);
        if !known {
            let mut fd = self.root.try_clone()?;
            for c in dir.components() {
                match c {
                    Component::RootDir => {}
                    Component::Normal(name) => fd = mkdir_open(fd.as_fd(), name)?,
                    _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
                }
            }
            self.last = Some((dir.to_owned(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// The parent directory of `path` and `path`'s last component.
    fn parent_of<'p>(&mut self, path: &'p Path) -> io::Result<(BorrowedFd<'_>, &'p OsStr)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        Ok((self.dir(parent)?, name))
    }
}

/// Hard-links the worker's file `src` (the store's, a template's) as `name` in `dir`, or
/// copies it (with its permission bits) across file systems.
fn link_or_copy(src: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match linkat(AT_FDCWD, src, dir, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EXDEV) => {
            let mut from = std::fs::File::open(src)?;
            let mode = from.metadata()?.permissions().mode() & 0o7777;
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let to = openat(dir, name, flags, Mode::from_bits_truncate(mode))?;
            fchmod(&to, Mode::from_bits_truncate(mode))?;
            io::copy(&mut from, &mut std::fs::File::from(to))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

impl JobRoot {
    /// Builds `root` (which must not exist) from the toolchain and the host's tree; the
    /// toolchain's charset modules only when `charsets` (see
    /// [`offload_shared::toolchain::needs_charsets`]).
    pub fn create(
        root: &Path,
        toolchain: &Toolchain,
        entries: &[TreeEntry],
        store: &Store,
        user: Option<JobUser>,
        charsets: bool,
    ) -> Result<JobRoot, RootError> {
        tree::validate(entries)?;
        let mut plan: BTreeMap<&Path, Planned> = BTreeMap::new();
        for (path, node) in &toolchain.nodes {
            if !charsets && offload_shared::toolchain::is_charset_module(path) {
                continue;
            }
            let p = match node {
                Node::Dir => Planned::Dir {
                    writable: false,
                    toolchain: true,
                },
                Node::Symlink(t) => Planned::Link(t),
                Node::File => Planned::ToolFile,
            };
            plan.insert(path, p);
        }
        for e in entries {
            let path = Path::new(&e.path);
            let new = match &e.kind {
                EntryKind::Dir { writable } => Planned::Dir {
                    writable: *writable,
                    toolchain: false,
                },
                EntryKind::Symlink { target } => Planned::Link(Path::new(target)),
                EntryKind::File { digest, .. } => {
                    let src = store.path(digest);
                    if !src.is_file() {
                        return Err(RootError::MissingBlob(digest.to_hex()));
                    }
                    Planned::Input(src)
                }
            };
            match (plan.get(path), &new) {
                (None, _) => {
                    plan.insert(path, new);
                }
                // The toolchain's directories stay read-only: a job writing there could
                // return the toolchain's files as its outputs.
                (
                    Some(Planned::Dir {
                        toolchain: true, ..
                    }),
                    Planned::Dir { writable: true, .. },
                ) => return Err(RootError::WritableToolchainDir(e.path.clone())),
                (Some(Planned::Dir { toolchain, .. }), Planned::Dir { writable, .. }) => {
                    let dir = Planned::Dir {
                        writable: *writable,
                        toolchain: *toolchain,
                    };
                    plan.insert(path, dir);
                }
                (Some(Planned::Link(a)), Planned::Link(b)) if a == b => {}
                _ => return Err(RootError::Collision(e.path.clone())),
            }
        }
        // Whatever listed it (the toolchain, the tree, or the toolchain's file at the
        // host compiler's path, whose directories the toolchain may not list), nothing
        // lies below a link or a file.
        for path in plan.keys() {
            for anc in path.ancestors().skip(1) {
                match plan.get(anc) {
                    Some(Planned::Link(_)) => {
                        return Err(RootError::BelowLink {
                            path: path.display().to_string(),
                            link: anc.display().to_string(),
                        });
                    }
                    Some(Planned::ToolFile | Planned::Input(_)) => {
                        return Err(RootError::Collision(path.display().to_string()));
                    }
                    _ => {}
                }
            }
        }

        let top = Path::new("/");
        std::fs::create_dir(root).map_err(err(top))?;
        let mut beneath = Beneath::new(root).map_err(err(top))?;
        let tmp = Path::new("/tmp");
        let tmp_fd = beneath.dir(tmp).map_err(err(tmp))?;
        fchmod(tmp_fd, Mode::from_bits_truncate(0o1777)).map_err(|e| err(tmp)(e.into()))?;
        let mut writable = Vec::new();
        let mut inputs = HashSet::new();
        for (path, p) in plan {
            let host = || path.display().to_string();
            if let Planned::Dir { writable: w, .. } = p {
                let fd = beneath.dir(path).map_err(err(path))?;
                if w {
                    if let Some(u) = user {
                        fchown(fd, Some(Uid::from_raw(u.uid)), Some(Gid::from_raw(u.gid)))
                            .map_err(|e| err(path)(e.into()))?;
                    }
                    // Harvesting reads through this handle, opened before the job runs.
                    let fd = fd.try_clone_to_owned().map_err(err(path))?;
                    writable.push(WritableDir::from_fd(fd, host()));
                }
                continue;
            }
            let (dir, name) = beneath.parent_of(path).map_err(err(path))?;
            match p {
                Planned::Link(target) => {
                    symlinkat(target, dir, name).map_err(|e| err(path)(e.into()))?;
                }
                Planned::ToolFile => {
                    link_or_copy(&toolchain.source_of(path), dir, name).map_err(err(path))?;
                }
                Planned::Input(src) => {
                    link_or_copy(&src, dir, name).map_err(err(path))?;
                    inputs.insert(host());
                }
                Planned::Dir { .. } => {}
            }
        }
        Ok(JobRoot {
            root: root.to_owned(),
            writable,
            inputs,
            owner: user.map(|u| u.uid),
        })
    }

    /// Files the compile created (see [`harvest`]), with their host paths, sorted;
    /// together at most `max_bytes`.
    pub fn outputs(&self, max_bytes: u64) -> Result<Vec<(String, Vec<u8>)>, HarvestError> {
        let rules = Rules {
            owner: self.owner,
            max_bytes,
        };
        let mut files = harvest::collect(&self.writable, rules)?;
        files.retain(|(host, _)| !self.inputs.contains(host));
        Ok(files)
    }

    /// Removes the root.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::Mode;
    use offload_shared::Digest;

    /// A toolchain of one file, `/usr/bin/gcc`, also answering at `alias` (as another build
    /// of the host's compiler does), with its template under `dir`.
    fn toolchain(dir: &Path, alias: &str) -> Toolchain {
        let template = dir.join("template");
        std::fs::create_dir_all(template.join("usr/bin")).unwrap();
        std::fs::write(template.join("usr/bin/gcc"), b"driver").unwrap();
        let mut nodes = BTreeMap::new();
        nodes.insert(PathBuf::from("/usr"), Node::Dir);
        nodes.insert(PathBuf::from("/usr/bin"), Node::Dir);
        nodes.insert(PathBuf::from("/usr/bin/gcc"), Node::File);
        nodes.insert(PathBuf::from(alias), Node::File);
        let mut aliases = BTreeMap::new();
        aliases.insert(PathBuf::from(alias), PathBuf::from("/usr/bin/gcc"));
        Toolchain {
            template,
            nodes,
            mode: Mode::Native,
            runs_as: "/usr/bin/gcc".into(),
            fingerprint: Digest([0; 32]),
            aliases,
        }
    }

    fn entry(path: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind,
        }
    }

    #[test]
    fn a_root_is_made_and_its_writable_directories_harvested() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let digest = Digest::of(b"int x;\n");
        store.put(&digest, b"int x;\n").unwrap();
        let tc = toolchain(t.path(), "/opt/cc/bin/gcc");
        let tree = [
            entry("/src", EntryKind::Dir { writable: true }),
            entry(
                "/src/a.c",
                EntryKind::File {
                    digest,
                    size: 7,
                    executable: false,
                },
            ),
            entry(
                "/src/inc",
                EntryKind::Symlink {
                    target: "/usr".into(),
                },
            ),
        ];
        let root = t.path().join("root");
        let jr = JobRoot::create(&root, &tc, &tree, &store, None, false).unwrap();
        assert_eq!(std::fs::read(root.join("src/a.c")).unwrap(), b"int x;\n");
        assert_eq!(
            std::fs::read(root.join("opt/cc/bin/gcc")).unwrap(),
            b"driver"
        );
        assert_eq!(
            std::fs::read_link(root.join("src/inc")).unwrap(),
            Path::new("/usr")
        );
        let mode = std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777);
        std::fs::write(root.join("src/a.o"), b"obj").unwrap();
        let out = jr.outputs(1 << 20).unwrap();
        assert_eq!(out, vec![("/src/a.o".to_string(), b"obj".to_vec())]);
    }

    #[test]
    fn the_toolchain_is_never_made_below_a_link_of_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let tc = toolchain(t.path(), "/opt/cc/bin/gcc");
        let tree = [
            entry("/opt", EntryKind::Dir { writable: false }),
            entry(
                "/opt/cc",
                EntryKind::Symlink {
                    target: outside.to_string_lossy().into_owned(),
                },
            ),
        ];
        let root = t.path().join("root");
        let err = JobRoot::create(&root, &tc, &tree, &store, None, false).unwrap_err();
        assert!(
            matches!(&err, RootError::BelowLink { path, link }
                if path == "/opt/cc/bin/gcc" && link == "/opt/cc"),
            "{err}"
        );
        assert!(!root.exists(), "refused before anything was made");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn making_a_path_never_follows_a_link_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        std::fs::write(root.join("a/file"), b"").unwrap();
        let mut b = Beneath::new(&root).unwrap();
        // ENOTDIR (O_DIRECTORY) or ELOOP (O_NOFOLLOW): a link is never a directory here.
        let e = b.dir(Path::new("/a/link/made")).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{e}"
        );
        let e = b.dir(Path::new("/a/file/made")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
        assert!(b.dir(Path::new("/a/new/deeper")).is_ok());
        assert!(root.join("a/new/deeper").is_dir());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // The root itself may not be a link either.
        let link_root = t.path().join("link-root");
        std::os::unix::fs::symlink(&outside, &link_root).unwrap();
        assert!(Beneath::new(&link_root).is_err());
    }

    #[test]
    fn errors_name_paths_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let tc = toolchain(t.path(), "/usr/bin/cc");
        let root = t.path().join("root");
        let missing = [entry(
            "/src/a.c",
            EntryKind::File {
                digest: Digest([3; 32]),
                size: 1,
                executable: false,
            },
        )];
        let err = JobRoot::create(&root, &tc, &missing, &store, None, false).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(&*t.path().to_string_lossy()), "{text}");
        // The root exists already: the error names "/", not the worker's directory.
        std::fs::create_dir(&root).unwrap();
        let err = JobRoot::create(&root, &tc, &[], &store, None, false).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("building the job root at /:"), "{text}");
        assert!(!text.contains(&*t.path().to_string_lossy()), "{text}");
    }
}
