//! The file tree a job runs in: every directory, symbolic link and file the compile may
//! look at, at the host's absolute paths.
//!
//! The host builds the list by walking each input path component by component, so that
//! the symbolic links it passes through are reproduced exactly; the worker recreates the
//! list in an empty per-job root. [`validate`] is the worker's guard against a hostile list.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// One entry of a job's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    /// Absolute, normalised path (no `.`, `..` or empty components).
    pub path: String,
    /// What is at that path.
    pub kind: EntryKind,
}

/// What a [`TreeEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EntryKind {
    /// A directory; `writable` when the compile may create files in it.
    Dir {
        /// The compile may create files here.
        writable: bool,
    },
    /// A symbolic link with this target, exactly as `readlink` gave it on the host.
    Symlink {
        /// The link's target.
        target: String,
    },
    /// A regular file with this content.
    File {
        /// Content digest.
        digest: Digest,
        /// Size in bytes.
        size: u64,
        /// Any execute bit set.
        executable: bool,
    },
}

/// Why a tree was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A path that is not absolute and normalised.
    #[error("tree path {0:?} is not an absolute normalised path")]
    BadPath(String),
    /// The same path twice.
    #[error("tree path {0:?} appears twice")]
    Duplicate(String),
    /// A path below a symbolic link: creating it would follow the link.
    #[error("tree path {path:?} lies below the symbolic link {link:?}")]
    BelowSymlink {
        /// The offending path.
        path: String,
        /// The link it would pass through.
        link: String,
    },
    /// A path below a file.
    #[error("tree path {path:?} lies below the file {file:?}")]
    BelowFile {
        /// The offending path.
        path: String,
        /// The file it would pass through.
        file: String,
    },
    /// A path the worker keeps for itself in every job root: its own directory
    /// [`WORKER_DIR`], and `/tmp` as anything but a directory.
    #[error("tree path {0:?} is reserved for the worker in the job root")]
    Reserved(String),
    /// More entries than the limit.
    #[error("tree has {0} entries, more than the limit")]
    TooLarge(usize),
}

/// At most this many entries in one job's tree.
pub const MAX_ENTRIES: usize = 200_000;

/// The worker's own directory in a job root (a cross toolchain's real assembler lives
/// there); no tree entry may be at or below it.
pub const WORKER_DIR: &str = "/.offload";

/// Whether the tree may not hold `entry`: at or below [`WORKER_DIR`], or a `/tmp` that is
/// not a directory (the worker makes the job's `/tmp` itself).
fn is_reserved(entry: &TreeEntry) -> bool {
    let p = entry.path.as_str();
    let below_worker = p
        .strip_prefix(WORKER_DIR)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    below_worker || (p == "/tmp" && !matches!(entry.kind, EntryKind::Dir { .. }))
}

/// True when `path` is absolute, has no `.`/`..`/empty components, no NUL, and is not `/`.
pub fn is_normal_absolute(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && !path.contains('\0')
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Checks that a tree can be created without following any of its own links: every path is
/// absolute and normalised, appears once, is not reserved for the worker (see
/// [`WORKER_DIR`]), and has no link or file as a proper ancestor. Ancestors that are not
/// listed are created as plain directories.
pub fn validate(entries: &[TreeEntry]) -> Result<(), TreeError> {
    if entries.len() > MAX_ENTRIES {
        return Err(TreeError::TooLarge(entries.len()));
    }
    let mut kinds: HashMap<&str, &EntryKind> = HashMap::with_capacity(entries.len());
    for e in entries {
        if !is_normal_absolute(&e.path) {
            return Err(TreeError::BadPath(e.path.clone()));
        }
        if is_reserved(e) {
            return Err(TreeError::Reserved(e.path.clone()));
        }
        if kinds.insert(&e.path, &e.kind).is_some() {
            return Err(TreeError::Duplicate(e.path.clone()));
        }
    }
    for e in entries {
        let mut end = 0;
        while let Some(pos) = e.path[end + 1..].find('/') {
            end += 1 + pos;
            let ancestor = &e.path[..end];
            match kinds.get(ancestor) {
                Some(EntryKind::Symlink { .. }) => {
                    return Err(TreeError::BelowSymlink {
                        path: e.path.clone(),
                        link: ancestor.to_owned(),
                    });
                }
                Some(EntryKind::File { .. }) => {
                    return Err(TreeError::BelowFile {
                        path: e.path.clone(),
                        file: ancestor.to_owned(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(p: &str) -> TreeEntry {
        TreeEntry {
            path: p.into(),
            kind: EntryKind::Dir { writable: false },
        }
    }
    fn link(p: &str, t: &str) -> TreeEntry {
        TreeEntry {
            path: p.into(),
            kind: EntryKind::Symlink { target: t.into() },
        }
    }
    fn file(p: &str) -> TreeEntry {
        TreeEntry {
            path: p.into(),
            kind: EntryKind::File {
                digest: Digest::of(b""),
                size: 0,
                executable: false,
            },
        }
    }

    #[test]
    fn normal_paths() {
        for (p, ok) in [
            ("/a/b", true),
            ("/a", true),
            ("/", false),
            ("a/b", false),
            ("/a//b", false),
            ("/a/./b", false),
            ("/a/../b", false),
            ("/a/b/", false),
            ("/a\0b", false),
        ] {
            assert_eq!(is_normal_absolute(p), ok, "{p}");
        }
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(Vec<TreeEntry>, Result<(), TreeError>)> = vec![
            (vec![dir("/a"), file("/a/b"), link("/c", "/a")], Ok(())),
            (vec![link("/lib", "usr/lib"), file("/usr/lib/x.h")], Ok(())),
            (
                vec![link("/a", "/etc"), file("/a/passwd")],
                Err(TreeError::BelowSymlink {
                    path: "/a/passwd".into(),
                    link: "/a".into(),
                }),
            ),
            (
                vec![file("/a"), file("/a/b")],
                Err(TreeError::BelowFile {
                    path: "/a/b".into(),
                    file: "/a".into(),
                }),
            ),
            (
                vec![file("/a"), dir("/a")],
                Err(TreeError::Duplicate("/a".into())),
            ),
            (vec![file("rel")], Err(TreeError::BadPath("rel".into()))),
            (vec![dir("/tmp"), file("/tmp/a.c")], Ok(())),
            (
                vec![link("/tmp", "/etc")],
                Err(TreeError::Reserved("/tmp".into())),
            ),
            (vec![file("/tmp")], Err(TreeError::Reserved("/tmp".into()))),
            (
                vec![dir("/.offload")],
                Err(TreeError::Reserved("/.offload".into())),
            ),
            (
                vec![file("/.offload/as")],
                Err(TreeError::Reserved("/.offload/as".into())),
            ),
            (vec![dir("/.offloadx"), dir("/tmpx")], Ok(())),
        ];
        for (entries, want) in cases {
            assert_eq!(validate(&entries), want, "{entries:?}");
        }
    }
}
