//! A job's root directory: the toolchain and the host's tree, recreated at their absolute
//! paths below one directory that the compile is then `chroot`ed into.
//!
//! Inputs are hard links to the read-only store; the compile runs as an unprivileged user
//! that may write only to the directories the host marked writable (and `/tmp`).
//! Everything new in those directories after the run is an output.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use offload_shared::tree::{self, EntryKind, TreeEntry, TreeError};
use offload_shared::walk::Node;

use crate::harvest::{self, HarvestError, Rules, WritableDir};
use crate::store::Store;
use crate::toolchain::Toolchain;

/// Why a job root could not be made.
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
    /// An input is not in the store.
    #[error("input blob {0} is missing from the store")]
    MissingBlob(String),
    /// File-system work failed (a full disk, for one).
    #[error("building the job root at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
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

fn err(path: &Path) -> impl FnOnce(io::Error) -> RootError + '_ {
    move |source| RootError::Io {
        path: path.to_owned(),
        source,
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
            for anc in path.ancestors().skip(1) {
                if matches!(plan.get(anc), Some(Planned::Link(_) | Planned::ToolFile)) {
                    return Err(RootError::Collision(e.path.clone()));
                }
            }
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

        std::fs::create_dir(root).map_err(err(root))?;
        let tmp = root.join("tmp");
        std::fs::create_dir(&tmp).map_err(err(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
            .map_err(err(&tmp))?;
        let mut writable = Vec::new();
        let mut inputs = HashSet::new();
        for (path, p) in plan {
            let dst = root.join(path.strip_prefix("/").unwrap_or(path));
            if let Planned::Dir { writable: w, .. } = p {
                std::fs::create_dir_all(&dst).map_err(err(&dst))?;
                if w {
                    if let Some(u) = user {
                        std::os::unix::fs::chown(&dst, Some(u.uid), Some(u.gid))
                            .map_err(err(&dst))?;
                    }
                    writable.push(dst);
                }
                continue;
            }
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(err(parent))?;
            }
            match p {
                Planned::Link(target) => symlink(target, &dst).map_err(err(&dst))?,
                Planned::ToolFile => link_or_copy(&toolchain.source_of(path), &dst)?,
                Planned::Input(src) => {
                    link_or_copy(&src, &dst)?;
                    inputs.insert(dst);
                }
                Planned::Dir { .. } => {}
            }
        }
        // Opened now, before the job runs: harvesting reads through these handles.
        let writable = harvest::open_all(root, &writable).map_err(err(root))?;
        let inputs = inputs
            .iter()
            .filter_map(|p| Some(format!("/{}", p.strip_prefix(root).ok()?.to_str()?)))
            .collect();
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

fn link_or_copy(src: &Path, dst: &Path) -> Result<(), RootError> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(src, dst).map(|_| ()).map_err(err(dst))
        }
        Err(e) => Err(RootError::Io {
            path: dst.to_owned(),
            source: e,
        }),
    }
}
