//! Path walking that records every symbolic link it passes through, so that a path can be
//! recreated elsewhere with exactly the same lookup result.
//!
//! The kernel resolves a path one component at a time; `..` goes to the parent of the
//! directory actually reached. [`PathWalker::resolve`] does the same with `lstat` and
//! `readlink`, and remembers each real directory, link and file it met. Recreating those
//! nodes in an empty root gives a tree in which the same path string reaches the same file
//! through the same links. This is the one place in this crate that touches the file system,
//! and it only reads metadata.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Most links followed in one resolution (Linux's limit).
const MAX_LINKS: u32 = 40;

/// A node met while walking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A real directory.
    Dir,
    /// A symbolic link and its target, as `readlink` gave it.
    Symlink(PathBuf),
    /// A regular file (or anything else that is not a directory or a link).
    File,
}

/// Where a path led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A file at this real path.
    File(PathBuf),
    /// A directory at this real path.
    Dir(PathBuf),
    /// Nothing there (some component missing or not a directory).
    Missing,
}

/// Walks paths and accumulates the nodes met; caches `lstat`/`readlink` results, so it is
/// meant for one job's or one toolchain's worth of paths at a time.
#[derive(Debug, Default)]
pub struct PathWalker {
    nodes: BTreeMap<PathBuf, Node>,
    cache: HashMap<PathBuf, Option<Node>>,
}

impl PathWalker {
    /// An empty walker.
    pub fn new() -> PathWalker {
        PathWalker::default()
    }

    /// The nodes met so far, parents before children.
    pub fn nodes(&self) -> &BTreeMap<PathBuf, Node> {
        &self.nodes
    }

    /// Consumes the walker, giving its nodes.
    pub fn into_nodes(self) -> BTreeMap<PathBuf, Node> {
        self.nodes
    }

    fn node(&mut self, path: &Path) -> io::Result<Option<Node>> {
        if let Some(n) = self.cache.get(path) {
            return Ok(n.clone());
        }
        let node = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Some(Node::Symlink(std::fs::read_link(path)?)),
            Ok(m) if m.is_dir() => Some(Node::Dir),
            Ok(_) => Some(Node::File),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        self.cache.insert(path.to_owned(), node.clone());
        Ok(node)
    }

    /// Resolves `path` (relative paths start at `cwd`, which must be absolute and free of
    /// links, as `getcwd` gives it) and records every node on the way.
    pub fn resolve(&mut self, path: &Path, cwd: &Path) -> io::Result<Resolved> {
        let mut queue: VecDeque<OsString> = VecDeque::new();
        let mut cur = if path.is_absolute() {
            PathBuf::from("/")
        } else {
            cwd.to_owned()
        };
        push_front_components(&mut queue, path);
        let mut links = 0u32;
        let mut last = Node::Dir;
        while let Some(comp) = queue.pop_front() {
            match comp.as_bytes() {
                b"/" => {
                    cur = PathBuf::from("/");
                    last = Node::Dir;
                }
                b"." => {}
                b".." => {
                    if last == Node::File {
                        return Ok(Resolved::Missing);
                    }
                    cur.pop();
                }
                _ => {
                    if last == Node::File {
                        return Ok(Resolved::Missing);
                    }
                    let next = cur.join(&comp);
                    match self.node(&next)? {
                        None => return Ok(Resolved::Missing),
                        Some(Node::Symlink(target)) => {
                            links += 1;
                            if links > MAX_LINKS {
                                return Err(io::Error::other(format!(
                                    "too many levels of symbolic links in {}",
                                    path.display()
                                )));
                            }
                            self.nodes.insert(next, Node::Symlink(target.clone()));
                            push_front_components(&mut queue, &target);
                        }
                        Some(n) => {
                            self.nodes.insert(next.clone(), n.clone());
                            cur = next;
                            last = n;
                        }
                    }
                }
            }
        }
        Ok(match last {
            Node::File => Resolved::File(cur),
            _ => Resolved::Dir(cur),
        })
    }
}

/// Puts `path`'s components at the front of `queue`, a leading `/` as the component "/".
/// `.` components are kept out; `..` stays, to be resolved against the real directory.
fn push_front_components(queue: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir => queue.push_front(OsString::from("/")),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => queue.push_front(OsString::from("..")),
            Component::Normal(n) => queue.push_front(n.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn records_links_and_resolves_dotdot_after_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/inc")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("real/inc/a.h"), "a").unwrap();
        std::fs::write(root.join("real/top.h"), "t").unwrap();
        symlink("real/inc", root.join("link")).unwrap();
        symlink("../real/top.h", root.join("other/top.h")).unwrap();

        let mut w = PathWalker::new();
        // link/../top.h: ".." applies to real/inc, so this is real/top.h.
        assert_eq!(
            w.resolve(Path::new("link/../top.h"), &root).unwrap(),
            Resolved::File(root.join("real/top.h"))
        );
        assert_eq!(
            w.resolve(&root.join("other/top.h"), Path::new("/"))
                .unwrap(),
            Resolved::File(root.join("real/top.h"))
        );
        assert_eq!(
            w.resolve(Path::new("link/a.h/x"), &root).unwrap(),
            Resolved::Missing
        );
        assert_eq!(
            w.resolve(Path::new("nope.h"), &root).unwrap(),
            Resolved::Missing
        );
        let nodes = w.nodes();
        assert_eq!(
            nodes.get(&root.join("link")),
            Some(&Node::Symlink("real/inc".into()))
        );
        assert_eq!(
            nodes.get(&root.join("other/top.h")),
            Some(&Node::Symlink("../real/top.h".into()))
        );
        assert_eq!(nodes.get(&root.join("real/inc")), Some(&Node::Dir));
        assert_eq!(nodes.get(&root.join("real/top.h")), Some(&Node::File));
    }

    #[test]
    fn link_loops_are_errors() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let err = PathWalker::new()
            .resolve(&t.path().join("a"), Path::new("/"))
            .unwrap_err();
        assert!(err.to_string().contains("too many levels"));
    }
}
