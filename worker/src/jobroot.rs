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
use std::sync::Arc;

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

#[derive(Debug)]
enum Planned<'a> {
    Dir { writable: bool, toolchain: bool },
    Link { target: &'a Path, toolchain: bool },
    ToolFile,
    Input(PathBuf),
}

impl Planned<'_> {
    /// Whether the toolchain's part of a root makes it (a spare root holds it already).
    fn of_toolchain(&self) -> bool {
        match self {
            Planned::Dir { toolchain, .. } | Planned::Link { toolchain, .. } => *toolchain,
            Planned::ToolFile => true,
            Planned::Input(_) => false,
        }
    }
}

/// Every path of a root, checked: the toolchain's and the tree's, parents first.
type Plan<'a> = BTreeMap<&'a Path, Planned<'a>>;

/// Which nodes of a plan [`make`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// All of them, in one pass (a root built at once).
    All,
    /// The toolchain's, and `/tmp` (a spare root).
    Toolchain,
    /// The tree's, into a spare root holding the toolchain's part already.
    Tree,
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

/// The toolchain's nodes of a root (its charset modules only when `charsets`).
fn toolchain_plan(toolchain: &Toolchain, charsets: bool) -> Plan<'_> {
    let mut plan: Plan<'_> = BTreeMap::new();
    for (path, node) in &toolchain.nodes {
        if !charsets && offload_shared::toolchain::is_charset_module(path) {
            continue;
        }
        let p = match node {
            Node::Dir => Planned::Dir {
                writable: false,
                toolchain: true,
            },
            Node::Symlink(t) => Planned::Link {
                target: t,
                toolchain: true,
            },
            Node::File => Planned::ToolFile,
        };
        plan.insert(path, p);
    }
    plan
}

/// The nodes of a root for `toolchain` and `entries`, checked against each other on paths
/// alone (nothing on disk is looked at but the store's blobs).
fn plan<'a>(
    toolchain: &'a Toolchain,
    entries: &'a [TreeEntry],
    store: &Store,
    charsets: bool,
) -> Result<Plan<'a>, RootError> {
    tree::validate(entries)?;
    let mut plan = toolchain_plan(toolchain, charsets);
    for e in entries {
        let path = Path::new(&e.path);
        let new = match &e.kind {
            EntryKind::Dir { writable } => Planned::Dir {
                writable: *writable,
                toolchain: false,
            },
            EntryKind::Symlink { target } => Planned::Link {
                target: Path::new(target),
                toolchain: false,
            },
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
            // The same link twice is made once, by whoever listed it first (the
            // toolchain: a spare root holds it already).
            (Some(Planned::Link { target: a, .. }), Planned::Link { target: b, .. }) if a == b => {}
            _ => return Err(RootError::Collision(e.path.clone())),
        }
    }
    check_below(&plan)?;
    Ok(plan)
}

/// Whatever listed it (the toolchain, the tree, or the toolchain's file at the host
/// compiler's path, whose directories the toolchain may not list), nothing lies below a
/// link or a file.
fn check_below(plan: &Plan<'_>) -> Result<(), RootError> {
    for path in plan.keys() {
        for anc in path.ancestors().skip(1) {
            match plan.get(anc) {
                Some(Planned::Link { .. }) => {
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
    Ok(())
}

/// What [`make`] made that the job root keeps: handles on the writable directories, the
/// host paths of the inputs.
#[derive(Default)]
struct Made {
    writable: Vec<WritableDir>,
    inputs: HashSet<String>,
}

/// Makes `part` of `plan` below `beneath`'s root: `/tmp` (mode 1777) first with the
/// toolchain's part, then every node in order, parents first. Making the toolchain's part
/// and then the tree's gives what one pass over all of them gives: every node is made by
/// one step of its own, directories are made where missing (`EEXIST` is not an error) with
/// one mode, and only the tree's directories are ever writable (owned by the job's user).
fn make(
    beneath: &mut Beneath,
    plan: &Plan<'_>,
    part: Part,
    toolchain: &Toolchain,
    user: Option<JobUser>,
) -> Result<Made, RootError> {
    if part != Part::Tree {
        let tmp = Path::new("/tmp");
        let tmp_fd = beneath.dir(tmp).map_err(err(tmp))?;
        fchmod(tmp_fd, Mode::from_bits_truncate(0o1777)).map_err(|e| err(tmp)(e.into()))?;
    }
    let mut made = Made::default();
    for (&path, p) in plan {
        let wanted = match part {
            Part::All => true,
            Part::Toolchain => p.of_toolchain(),
            Part::Tree => !p.of_toolchain(),
        };
        if !wanted {
            continue;
        }
        let host = || path.display().to_string();
        if let Planned::Dir { writable: w, .. } = *p {
            let fd = beneath.dir(path).map_err(err(path))?;
            if w {
                if let Some(u) = user {
                    fchown(fd, Some(Uid::from_raw(u.uid)), Some(Gid::from_raw(u.gid)))
                        .map_err(|e| err(path)(e.into()))?;
                }
                // Harvesting reads through this handle, opened before the job runs.
                let fd = fd.try_clone_to_owned().map_err(err(path))?;
                made.writable.push(WritableDir::from_fd(fd, host()));
            }
            continue;
        }
        let (dir, name) = beneath.parent_of(path).map_err(err(path))?;
        match p {
            Planned::Link { target, .. } => {
                symlinkat(*target, dir, name).map_err(|e| err(path)(e.into()))?;
            }
            Planned::ToolFile => {
                link_or_copy(&toolchain.source_of(path), dir, name).map_err(err(path))?;
            }
            Planned::Input(src) => {
                link_or_copy(src, dir, name).map_err(err(path))?;
                made.inputs.insert(host());
            }
            Planned::Dir { .. } => {}
        }
    }
    Ok(made)
}

/// A root holding a toolchain's part alone (its files, links and directories, and `/tmp`),
/// made ahead of the job that will use it: no job has run in it, and one job only ever
/// does ([`JobRoot::create_in`] takes it by value).
#[derive(Debug)]
pub struct SpareRoot {
    root: PathBuf,
    toolchain: Arc<Toolchain>,
    charsets: bool,
    /// Removed when dropped (unless it became a job's root).
    armed: bool,
}

impl Drop for SpareRoot {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl SpareRoot {
    /// Makes `root` (which must not exist) with `toolchain`'s part of a job root, its
    /// charset modules only when `charsets`, through a handle on it as a whole root is.
    pub fn create(
        root: &Path,
        toolchain: Arc<Toolchain>,
        charsets: bool,
    ) -> Result<SpareRoot, RootError> {
        let plan = toolchain_plan(&toolchain, charsets);
        check_below(&plan)?;
        let top = Path::new("/");
        std::fs::create_dir(root).map_err(err(top))?;
        let made = Beneath::new(root)
            .map_err(err(top))
            .and_then(|mut b| make(&mut b, &plan, Part::Toolchain, &toolchain, None));
        drop(plan);
        match made {
            Ok(_) => Ok(SpareRoot {
                root: root.to_owned(),
                toolchain,
                charsets,
                armed: true,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(root);
                Err(e)
            }
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether a job with `toolchain` (the same prepared one) and `charsets` can use it.
    pub fn fits(&self, toolchain: &Arc<Toolchain>, charsets: bool) -> bool {
        Arc::ptr_eq(&self.toolchain, toolchain) && self.charsets == charsets
    }

    /// [`SpareRoot::fits`] by the toolchain's address (the pool's key; the spare holds its
    /// toolchain, so the address is not reused while it lives).
    pub(crate) fn fits_key(&self, (toolchain, charsets): (usize, bool)) -> bool {
        Arc::as_ptr(&self.toolchain) as usize == toolchain && self.charsets == charsets
    }

    /// Removes it (a spare no job took; dropping it does too, without an error).
    pub fn remove(mut self) -> io::Result<()> {
        self.armed = false;
        std::fs::remove_dir_all(&self.root)
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
        let plan = plan(toolchain, entries, store, charsets)?;
        let top = Path::new("/");
        std::fs::create_dir(root).map_err(err(top))?;
        let mut beneath = Beneath::new(root).map_err(err(top))?;
        let made = make(&mut beneath, &plan, Part::All, toolchain, user)?;
        Ok(JobRoot::made(root, made, user))
    }

    /// Builds a job root from `spare` (made for the job's toolchain and charsets, see
    /// [`SpareRoot::fits`]) and the host's tree: every check of [`JobRoot::create`] runs
    /// on the whole root's paths first, then only the tree's part is made into the spare,
    /// which becomes the job's root; what it holds then is what `create` would have made.
    /// On an error the spare is removed (it is dropped).
    pub fn create_in(
        mut spare: SpareRoot,
        entries: &[TreeEntry],
        store: &Store,
        user: Option<JobUser>,
    ) -> Result<JobRoot, RootError> {
        let plan = plan(&spare.toolchain, entries, store, spare.charsets)?;
        let top = Path::new("/");
        let mut beneath = Beneath::new(&spare.root).map_err(err(top))?;
        let made = make(&mut beneath, &plan, Part::Tree, &spare.toolchain, user)?;
        // The job's root now: removed as one, by its owner.
        spare.armed = false;
        Ok(JobRoot::made(&spare.root, made, user))
    }

    fn made(root: &Path, made: Made, user: Option<JobUser>) -> JobRoot {
        JobRoot {
            root: root.to_owned(),
            writable: made.writable,
            inputs: made.inputs,
            owner: user.map(|u| u.uid),
        }
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
pub(crate) mod tests {
    use super::*;
    use crate::toolchain::Mode;
    use offload_shared::Digest;

    /// A toolchain of one file, `/usr/bin/gcc`, also answering at `alias` (as another build
    /// of the host's compiler does), with its template under `dir`.
    pub(crate) fn toolchain(dir: &Path, alias: &str) -> Toolchain {
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

    fn link(path: &str, target: &str) -> TreeEntry {
        entry(
            path,
            EntryKind::Symlink {
                target: target.into(),
            },
        )
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

    /// The worker's own gcc as a native toolchain (prepared under `dir`) and a tree like
    /// a host's for one small compile: include directories (one inside the toolchain's
    /// directories, which the tree lists again, as hosts do), `<stdc-predef.h>`, a writable
    /// source directory with one file.
    fn real_gcc(dir: &Path, store: &Store) -> (Arc<Toolchain>, Vec<TreeEntry>) {
        let gcc = "/usr/bin/gcc";
        let real = std::fs::canonicalize(gcc).unwrap();
        let cc = offload_shared::protocol::CompilerRef {
            path: gcc.into(),
            digest: crate::inventory::digest_of_regular(&real).unwrap(),
            version: String::new(),
            ident: String::new(),
        };
        let tcs = crate::toolchain::Toolchains::new(&dir.join("toolchains"));
        let tc = tcs.get(&cc, &crate::shipped::Owned::default()).unwrap();
        // gcc's own include directory (next to cc1, inside the toolchain's directories)
        // and the system's, with their ancestors: the tree lists toolchain directories
        // again, as a host's does.
        let cc1 = tc.nodes.keys().find(|p| p.ends_with("cc1")).unwrap();
        let mut dirs = std::collections::BTreeSet::new();
        for d in [
            cc1.with_file_name("include"),
            "/usr/local/include".into(),
            "/usr/include".into(),
        ] {
            for a in d.ancestors() {
                if a != Path::new("/") {
                    dirs.insert(a.to_owned());
                }
            }
        }
        dirs.insert("/src".into());
        let mut tree: Vec<TreeEntry> = dirs
            .iter()
            .map(|d| {
                entry(
                    &d.to_string_lossy(),
                    EntryKind::Dir {
                        writable: d == Path::new("/src"),
                    },
                )
            })
            .collect();
        for (path, bytes) in [
            ("/usr/include/stdc-predef.h", b"/* predef */\n".to_vec()),
            ("/src/s.c", b"int f(void) { return 1; }\n".to_vec()),
        ] {
            let digest = Digest::of(&bytes);
            store.put(&digest, &bytes).unwrap();
            tree.push(entry(
                path,
                EntryKind::File {
                    digest,
                    size: bytes.len() as u64,
                    executable: false,
                },
            ));
        }
        (tc, tree)
    }

    /// Median and p95 of `v`, in µs.
    fn stats(v: &mut [std::time::Duration]) -> (f64, f64) {
        v.sort();
        let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e6;
        (at(50), at(95))
    }

    /// Where a job root's time goes (with the worker's own gcc and a host-like tree), in
    /// `OFFLOAD_ROOT_BENCH_DIR` (default `/var/tmp`: the worker's default file system),
    /// `OFFLOAD_OVERHEAD_RUNS` rounds (default 200): the checks on paths, a whole root at
    /// once, the toolchain's part (a spare) and the tree's part into it, each kind of
    /// step of the toolchain's part summed per root, and removing a root. A measurement for
    /// `bench/overhead.sh`, not a test.
    #[test]
    #[ignore = "a measurement; run by bench/overhead.sh"]
    fn root_cost_by_part() {
        use std::time::{Duration, Instant};
        let base = std::env::var("OFFLOAD_ROOT_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
        let n: usize = std::env::var("OFFLOAD_OVERHEAD_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let t = tempfile::tempdir_in(&base).unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 30).unwrap();
        let (tc, tree) = real_gcc(t.path(), &store);
        let jobs = t.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        let user = Some(JobUser {
            uid: 64000,
            gid: 64000,
        });
        let names = [
            "checks on paths (plan)",
            "whole root at once (create)",
            "toolchain part (a spare root)",
            "tree part into a spare (create_in)",
            "  toolchain part: mkdirat + openat of directories",
            "  toolchain part: linkat of files",
            "  toolchain part: symlinkat",
            "remove a root (remove_dir_all)",
        ];
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
        let (mut files, mut dirs, mut links) = (0, 0, 0);
        for i in 0..n {
            let t0 = Instant::now();
            let plan = plan(&tc, &tree, &store, false).unwrap();
            times[0].push(t0.elapsed());
            drop(plan);
            let whole = jobs.join(format!("w{i}"));
            let t0 = Instant::now();
            let jr = JobRoot::create(&whole, &tc, &tree, &store, user, false).unwrap();
            times[1].push(t0.elapsed());
            let t0 = Instant::now();
            let spare = SpareRoot::create(&jobs.join(format!("s{i}")), tc.clone(), false).unwrap();
            times[2].push(t0.elapsed());
            let t0 = Instant::now();
            let jr2 = JobRoot::create_in(spare, &tree, &store, user).unwrap();
            times[3].push(t0.elapsed());
            // The toolchain's part again, each kind of step timed.
            let by_step = jobs.join(format!("p{i}"));
            std::fs::create_dir(&by_step).unwrap();
            let mut b = Beneath::new(&by_step).unwrap();
            let (mut d, mut f, mut l) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            (files, dirs, links) = (0, 0, 0);
            for (path, p) in &toolchain_plan(&tc, false) {
                let t0 = Instant::now();
                if let Planned::Dir { .. } = p {
                    b.dir(path).unwrap();
                    d += t0.elapsed();
                    dirs += 1;
                    continue;
                }
                let (dir, name) = b.parent_of(path).unwrap();
                let made_dir = t0.elapsed();
                d += made_dir;
                let t1 = Instant::now();
                match p {
                    Planned::Link { target, .. } => {
                        symlinkat(*target, dir, name).unwrap();
                        l += t1.elapsed();
                        links += 1;
                    }
                    _ => {
                        link_or_copy(&tc.source_of(path), dir, name).unwrap();
                        f += t1.elapsed();
                        files += 1;
                    }
                }
            }
            times[4].push(d);
            times[5].push(f);
            times[6].push(l);
            let t0 = Instant::now();
            jr.remove().unwrap();
            times[7].push(t0.elapsed());
            jr2.remove().unwrap();
            std::fs::remove_dir_all(&by_step).unwrap();
        }
        let fs = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(&base)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!(
            "root_cost_by_part: {n} rounds in {base} ({fs}); toolchain: {files} files, {dirs} directories, {links} links; tree: {} entries",
            tree.len()
        );
        for (name, v) in names.iter().zip(&mut times) {
            let (p50, p95) = stats(v);
            println!("  {name:<52} median {:>7.0} µs  p95 {:>7.0} µs", p50, p95);
        }
    }

    /// Everything below `root`, never following a link: per path, its type, mode, owner,
    /// link target, and for a file its inode (a hard link's source).
    pub(crate) fn listing(root: &Path) -> BTreeMap<PathBuf, String> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut todo = vec![root.to_owned()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let m = std::fs::symlink_metadata(&path).unwrap();
                let kind = if m.is_dir() {
                    todo.push(path.clone());
                    "dir".to_string()
                } else if m.file_type().is_symlink() {
                    format!("link -> {}", std::fs::read_link(&path).unwrap().display())
                } else {
                    format!("file ino {}", m.ino())
                };
                let rel = path.strip_prefix(root).unwrap().to_owned();
                let what = format!("{kind} mode {:o} {}:{}", m.mode(), m.uid(), m.gid());
                out.insert(rel, what);
            }
        }
        out
    }

    /// A tree that reaches into the toolchain's paths: its directories listed again (one
    /// holding the tree's header), the toolchain's own link listed again, a writable
    /// directory that is an ancestor of the cross driver's alias (not a toolchain
    /// directory), and `/tmp` itself writable.
    fn overlapping_tree(store: &Store) -> Vec<TreeEntry> {
        let digest = Digest::of(b"int x;\n");
        store.put(&digest, b"int x;\n").unwrap();
        let file = || EntryKind::File {
            digest,
            size: 7,
            executable: false,
        };
        vec![
            entry("/usr", EntryKind::Dir { writable: false }),
            entry("/usr/bin", EntryKind::Dir { writable: false }),
            link("/usr/bin/cc", "gcc"),
            entry("/usr/bin/x.h", file()),
            entry("/opt", EntryKind::Dir { writable: false }),
            entry("/opt/cc", EntryKind::Dir { writable: false }),
            entry("/opt/cc/bin", EntryKind::Dir { writable: true }),
            entry("/src", EntryKind::Dir { writable: true }),
            entry("/src/a.c", file()),
            entry("/src/sub", EntryKind::Dir { writable: true }),
            entry("/tmp", EntryKind::Dir { writable: true }),
        ]
    }

    /// [`toolchain`] with a link of its own, `/usr/bin/cc -> gcc`.
    fn toolchain_with_link(dir: &Path) -> Arc<Toolchain> {
        let mut tc = toolchain(dir, "/opt/cc/bin/gcc");
        tc.nodes
            .insert(PathBuf::from("/usr/bin/cc"), Node::Symlink("gcc".into()));
        Arc::new(tc)
    }

    const USER: Option<JobUser> = Some(JobUser {
        uid: 64011,
        gid: 64012,
    });

    #[test]
    fn a_root_from_a_spare_is_the_root_made_at_once() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let synthetic = toolchain_with_link(t.path());
        let (gcc, gcc_tree) = real_gcc(t.path(), &store);
        let cases = [
            (synthetic.clone(), overlapping_tree(&store), false),
            (synthetic, Vec::new(), false),
            (gcc.clone(), gcc_tree.clone(), false),
            (gcc, gcc_tree, true),
        ];
        for (i, (tc, tree, charsets)) in cases.into_iter().enumerate() {
            let whole = t.path().join(format!("whole-{i}"));
            let a = JobRoot::create(&whole, &tc, &tree, &store, USER, charsets).unwrap();
            let spare =
                SpareRoot::create(&t.path().join(format!("spare-{i}")), tc.clone(), charsets)
                    .unwrap();
            assert!(spare.fits(&tc, charsets) && !spare.fits(&tc, !charsets));
            let b = JobRoot::create_in(spare, &tree, &store, USER).unwrap();
            let (la, lb) = (listing(&a.root), listing(&b.root));
            assert!(la.len() > 3, "case {i}: {la:?}");
            assert_eq!(la, lb, "case {i}");
            let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode();
            assert_eq!(meta(&a.root), meta(&b.root), "case {i}: the root itself");
            assert_eq!(a.writable.len(), b.writable.len(), "case {i}");
            assert_eq!(a.inputs, b.inputs, "case {i}");
        }
    }

    #[test]
    fn a_spare_holds_the_toolchain_alone() {
        let t = tempfile::tempdir().unwrap();
        let tc = toolchain_with_link(t.path());
        let spare = SpareRoot::create(&t.path().join("spare"), tc, false).unwrap();
        let l = listing(spare.path());
        let names: Vec<String> = l.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "opt",
                "opt/cc",
                "opt/cc/bin",
                "opt/cc/bin/gcc",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/cc",
                "usr/bin/gcc"
            ]
        );
        assert!(
            l[Path::new("tmp")].starts_with("dir mode 41777 0:0"),
            "{l:?}"
        );
        // Nothing of it is the job's user's.
        assert!(l.values().all(|v| v.ends_with(" 0:0")), "{l:?}");
        // Made anew, never over something that is there.
        let again = SpareRoot::create(spare.path(), toolchain_with_link(t.path()), false);
        assert!(again.is_err());
        let path = spare.path().to_owned();
        spare.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_tree_that_collides_with_the_toolchain_is_refused_before_the_spare_is_touched() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let tc = toolchain_with_link(t.path());
        let digest = Digest::of(b"x");
        store.put(&digest, b"x").unwrap();
        let file = EntryKind::File {
            digest,
            size: 1,
            executable: false,
        };
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        type Case = (Vec<TreeEntry>, fn(&RootError) -> bool);
        let bad: Vec<Case> = vec![
            // A file over the toolchain's driver.
            (
                vec![
                    entry("/usr", EntryKind::Dir { writable: false }),
                    entry("/usr/bin", EntryKind::Dir { writable: false }),
                    entry("/usr/bin/gcc", file.clone()),
                ],
                |e| matches!(e, RootError::Collision(p) if p == "/usr/bin/gcc"),
            ),
            // The toolchain's link pointed elsewhere.
            (
                vec![
                    entry("/usr", EntryKind::Dir { writable: false }),
                    entry("/usr/bin", EntryKind::Dir { writable: false }),
                    link("/usr/bin/cc", "/etc"),
                ],
                |e| matches!(e, RootError::Collision(p) if p == "/usr/bin/cc"),
            ),
            // A toolchain directory made writable.
            (
                vec![
                    entry("/usr", EntryKind::Dir { writable: false }),
                    entry("/usr/bin", EntryKind::Dir { writable: true }),
                ],
                |e| matches!(e, RootError::WritableToolchainDir(p) if p == "/usr/bin"),
            ),
            // A link where the toolchain has a directory.
            (
                vec![entry(
                    "/usr",
                    EntryKind::Symlink {
                        target: outside.to_string_lossy().into_owned(),
                    },
                )],
                |e| matches!(e, RootError::Collision(p) if p == "/usr"),
            ),
            // A link above the cross driver's alias.
            (
                vec![
                    entry("/opt", EntryKind::Dir { writable: false }),
                    entry(
                        "/opt/cc",
                        EntryKind::Symlink {
                            target: outside.to_string_lossy().into_owned(),
                        },
                    ),
                ],
                |e| matches!(e, RootError::BelowLink { link, .. } if link == "/opt/cc"),
            ),
            // A file below the toolchain's driver.
            (
                vec![entry("/usr/bin/gcc/x", file.clone())],
                |e| matches!(e, RootError::Collision(p) if p == "/usr/bin/gcc/x"),
            ),
        ];
        for (i, (tree, want)) in bad.iter().enumerate() {
            let whole = t.path().join(format!("whole-{i}"));
            let e = JobRoot::create(&whole, &tc, tree, &store, USER, false).unwrap_err();
            assert!(want(&e), "case {i}, at once: {e}");
            assert!(
                !whole.exists(),
                "case {i}: refused before anything was made"
            );
            let path = t.path().join(format!("spare-{i}"));
            let spare = SpareRoot::create(&path, tc.clone(), false).unwrap();
            let fresh = listing(&path);
            // Refused on paths, before anything is made: a copy of the spare's state
            // seen at the error is the spare's as made.
            let e = plan(&tc, tree, &store, false).unwrap_err();
            assert!(want(&e), "case {i}, its plan: {e}");
            assert_eq!(listing(&path), fresh, "case {i}: the spare is untouched");
            let e = JobRoot::create_in(spare, tree, &store, USER).unwrap_err();
            assert!(want(&e), "case {i}, into a spare: {e}");
            assert!(!path.exists(), "case {i}: a refused job's spare is removed");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
