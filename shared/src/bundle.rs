//! A toolchain bundle: a compiler's files (see [`crate::toolchain`]) as a zstd-compressed
//! tar, named by the SHA-256 of its bytes. The host packs it for a worker of its own
//! architecture that has no such compiler; the worker checks and unpacks it.
//!
//! Entries are the nodes at their absolute paths stored relative (`usr/bin/gcc`), parents
//! before children: directories, symbolic links (targets as `readlink` gave them) and
//! regular files (mode `0755` or `0644`, owner 0, time 0). To the worker a bundle is
//! hostile input: [`unpack`] verifies the digest first, accepts only those three kinds of
//! entry, with relative paths of plain components below a directory entry it has already
//! seen, never writes through a link or outside its directory, and caps the unpacked size
//! and the number of entries.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::{EntryType, Header};

use crate::Digest;
use crate::walk::Node;

/// Limits a worker applies when unpacking.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Most bytes of file content.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: usize,
}

impl UnpackLimits {
    /// 2 GiB in 100 000 entries (gcc 12 with cc1plus and its libraries: ~160 MB in ~100).
    pub const DEFAULT: UnpackLimits = UnpackLimits {
        max_bytes: 2 << 30,
        max_entries: 100_000,
    };
}

/// Why a bundle could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not the bundle offered.
    #[error("toolchain bundle digest is {got}, expected {want}")]
    Digest {
        /// What arrived.
        got: Digest,
        /// What was offered.
        want: Digest,
    },
    /// An entry that the worker does not accept.
    #[error("toolchain bundle entry {path:?} refused: {why}")]
    Entry {
        /// The entry's path as stored.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// Too many bytes.
    #[error("toolchain bundle unpacks to more than {0} bytes")]
    TooLarge(u64),
    /// Too many entries.
    #[error("toolchain bundle has more than {0} entries")]
    TooManyEntries(usize),
    /// The bundle is not a valid zstd-compressed tar.
    #[error("reading toolchain bundle: {0}")]
    Format(io::Error),
    /// Writing the unpacked files failed.
    #[error("unpacking toolchain bundle to {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading a file to pack failed.
    #[error("packing toolchain file {path}: {source}")]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// zstd level of bundles. Measured on gcc 12's 80 MB (docs/BENCHMARKS.md): level 3 packs
/// it to 31 MB in 0.4 s, level 9 to 28 MB in 1.6 s; the first build waits for the packing,
/// and 3 MB more cost a LAN well under the 1.2 s saved.
pub const LEVEL: i32 = 3;

/// Packs `nodes` (absolute paths, as [`crate::walk::PathWalker`] records them) into a
/// bundle, reading each file from its own path.
pub fn pack(nodes: &BTreeMap<PathBuf, Node>) -> Result<Vec<u8>, BundleError> {
    let format = |source| BundleError::Format(source);
    let enc = zstd::stream::write::Encoder::new(Vec::new(), LEVEL).map_err(format)?;
    let mut tar = tar::Builder::new(enc);
    for (path, node) in nodes {
        let Ok(rel) = path.strip_prefix("/") else {
            return Err(BundleError::Entry {
                path: path.display().to_string(),
                why: "not an absolute path",
            });
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rerr = |source| BundleError::Read {
            path: path.clone(),
            source,
        };
        let mut h = Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match node {
            Node::Dir => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, rel, io::empty()).map_err(rerr)?;
            }
            Node::Symlink(target) => {
                h.set_entry_type(EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, rel, target).map_err(rerr)?;
            }
            Node::File => {
                let f = std::fs::File::open(path).map_err(rerr)?;
                let meta = f.metadata().map_err(rerr)?;
                h.set_entry_type(EntryType::Regular);
                h.set_mode(file_mode(meta.permissions().mode()));
                h.set_size(meta.len());
                // A file that changes while it is read makes a short entry: an error.
                tar.append_data(&mut h, rel, f.take(meta.len()))
                    .map_err(rerr)?;
            }
        }
    }
    let enc = tar.into_inner().map_err(format)?;
    enc.finish().map_err(format)
}

/// The mode a file gets in a bundle and on the worker: executable or not, never more.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Checks that `bundle` has digest `want`, then unpacks it into `dest` (an empty directory
/// of the caller's) and returns its nodes at their absolute paths. On error `dest` may hold
/// part of the bundle: the caller removes it.
pub fn unpack(
    bundle: &[u8],
    want: &Digest,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<BTreeMap<PathBuf, Node>, BundleError> {
    let got = Digest::of(bundle);
    if got != *want {
        return Err(BundleError::Digest { got, want: *want });
    }
    let format = BundleError::Format;
    let dec = zstd::stream::read::Decoder::new(bundle).map_err(format)?;
    // The tar stream is file content plus at most ~1.5 KiB per entry (header, long-name
    // header, padding): stop decompressing far beyond that.
    let stream_cap = limits
        .max_bytes
        .saturating_add(2048u64.saturating_mul(limits.max_entries as u64 + 2));
    let mut archive = tar::Archive::new(Capped {
        inner: dec,
        left: stream_cap,
    });
    let mut check = Checker::new(limits);
    for entry in archive.entries().map_err(format)? {
        let mut entry = entry.map_err(format)?;
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let target = entry.link_name_bytes().map(|t| t.into_owned());
        let size = entry.size();
        let planned = check.entry(&raw, kind, target.as_deref(), size)?;
        let (rel, node) = planned;
        let dst = dest.join(&rel);
        let werr = |source| BundleError::Write {
            path: dst.clone(),
            source,
        };
        match &node {
            Node::Dir => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dst)
                .map_err(werr)?,
            Node::Symlink(t) => std::os::unix::fs::symlink(t, &dst).map_err(werr)?,
            Node::File => {
                // create_new: never through a link, never over another entry.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(file_mode(entry.header().mode().unwrap_or(0o644)))
                    .open(&dst)
                    .map_err(werr)?;
                let n = io::copy(&mut entry, &mut f).map_err(format)?;
                if n != size {
                    return Err(BundleError::Format(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is truncated", rel.display()),
                    )));
                }
                f.flush().map_err(werr)?;
            }
        }
        check.accept(rel, node);
    }
    Ok(check.nodes)
}

/// A reader that fails once more than `left` bytes came through.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the decompressed stream exceeds the size limit",
            )
        })?;
        Ok(n)
    }
}

/// The rules for entries, apart from the file-system work: what a hostile bundle may not do.
#[derive(Debug)]
pub struct Checker {
    limits: UnpackLimits,
    bytes: u64,
    count: usize,
    dirs: HashSet<PathBuf>,
    seen: HashSet<PathBuf>,
    /// The nodes accepted, at their absolute paths.
    pub nodes: BTreeMap<PathBuf, Node>,
}

impl Checker {
    /// Nothing accepted yet.
    pub fn new(limits: UnpackLimits) -> Checker {
        Checker {
            limits,
            bytes: 0,
            count: 0,
            dirs: HashSet::new(),
            seen: HashSet::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// Checks the next entry: path `raw` (as stored), `kind`, link target, content size.
    /// Gives the relative path to create and the node it becomes.
    pub fn entry(
        &mut self,
        raw: &[u8],
        kind: EntryType,
        target: Option<&[u8]>,
        size: u64,
    ) -> Result<(PathBuf, Node), BundleError> {
        let refuse = |why| BundleError::Entry {
            path: String::from_utf8_lossy(raw).into_owned(),
            why,
        };
        self.count += 1;
        if self.count > self.limits.max_entries {
            return Err(BundleError::TooManyEntries(self.limits.max_entries));
        }
        let rel = PathBuf::from(OsStr::from_bytes(raw));
        if raw.is_empty() || raw.contains(&0) {
            return Err(refuse("empty path"));
        }
        if rel.is_absolute() {
            return Err(refuse("absolute path"));
        }
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refuse("path with `..` or `.` components"));
        }
        if let Some(parent) = rel.parent()
            && !parent.as_os_str().is_empty()
            && !self.dirs.contains(parent)
        {
            return Err(refuse("not below a directory entry that came before it"));
        }
        if self.seen.contains(&rel) {
            return Err(refuse("duplicate entry"));
        }
        let node = match kind {
            EntryType::Directory => Node::Dir,
            EntryType::Symlink => {
                let t = target.filter(|t| !t.is_empty() && !t.contains(&0));
                let t = t.ok_or_else(|| refuse("symbolic link without a target"))?;
                Node::Symlink(PathBuf::from(OsStr::from_bytes(t)))
            }
            EntryType::Regular => {
                self.bytes = self.bytes.saturating_add(size);
                if self.bytes > self.limits.max_bytes {
                    return Err(BundleError::TooLarge(self.limits.max_bytes));
                }
                Node::File
            }
            _ => return Err(refuse("not a regular file, directory or symbolic link")),
        };
        Ok((rel, node))
    }

    /// Records an entry that [`Checker::entry`] passed and that was created.
    pub fn accept(&mut self, rel: PathBuf, node: Node) {
        if node == Node::Dir {
            self.dirs.insert(rel.clone());
        }
        self.seen.insert(rel.clone());
        self.nodes.insert(Path::new("/").join(rel), node);
    }
}

/// Resolves the absolute `path` among `nodes` the way the kernel would in a root holding
/// only them: the real path of the file it reaches, if any.
pub fn resolve_in(nodes: &BTreeMap<PathBuf, Node>, path: &Path) -> Option<PathBuf> {
    let mut queue: Vec<Component> = path.components().rev().collect();
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    let mut at_file = false;
    while let Some(c) = queue.pop() {
        if at_file {
            return None;
        }
        match c {
            Component::RootDir => cur = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(n) => {
                let next = cur.join(n);
                match nodes.get(&next)? {
                    Node::Dir => cur = next,
                    Node::File => {
                        cur = next;
                        at_file = true;
                    }
                    Node::Symlink(t) => {
                        links += 1;
                        if links > 40 {
                            return None;
                        }
                        queue.extend(t.components().rev());
                    }
                }
            }
        }
    }
    at_file.then_some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// An entry written raw: name, kind, content, link target.
    type Raw<'a> = (&'a str, EntryType, &'a [u8], &'a str);

    /// A tar.zst whose entries' names are written raw (no checks by the tar crate).
    fn raw_bundle(entries: &[Raw]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut hd = h(*kind, data.len() as u64);
            let gnu = hd.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            hd.set_cksum();
            tar.append(&hd, *data).expect("append");
        }
        let bytes = tar.into_inner().expect("tar");
        zstd::encode_all(&bytes[..], 3).expect("zstd")
    }

    fn unpack_raw(bundle: &[u8]) -> Result<BTreeMap<PathBuf, Node>, BundleError> {
        let t = tempfile::tempdir().unwrap();
        unpack(bundle, &Digest::of(bundle), t.path(), UnpackLimits::DEFAULT)
    }

    fn refused(entries: &[Raw]) -> String {
        match unpack_raw(&raw_bundle(entries)) {
            Ok(n) => panic!("accepted {n:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip_keeps_links_dirs_files_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/cc-12"), b"\x7fELF driver").unwrap();
        std::fs::set_permissions(
            root.join("bin/cc-12"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("cc-12", root.join("bin/cc")).unwrap();
        let mut w = crate::walk::PathWalker::new();
        w.resolve(&root.join("bin/cc"), Path::new("/")).unwrap();
        let nodes = w.into_nodes();
        let bundle = pack(&nodes).unwrap();

        let out = tempfile::tempdir().unwrap();
        let got = unpack(
            &bundle,
            &Digest::of(&bundle),
            out.path(),
            UnpackLimits::DEFAULT,
        )
        .unwrap();
        assert_eq!(got, nodes);
        let rel = root.strip_prefix("/").unwrap();
        let driver = out.path().join(rel).join("bin/cc-12");
        assert_eq!(std::fs::read(&driver).unwrap(), b"\x7fELF driver");
        // setuid never survives.
        let mode = std::fs::metadata(&driver).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(out.path().join(rel).join("bin/cc")).unwrap(),
            PathBuf::from("cc-12")
        );
        assert_eq!(
            resolve_in(&got, &root.join("bin/cc")),
            Some(root.join("bin/cc-12"))
        );
    }

    #[test]
    fn digest_mismatch_is_refused_before_anything_is_written() {
        let bundle = raw_bundle(&[("a", EntryType::Regular, b"x", "")]);
        let t = tempfile::tempdir().unwrap();
        let err = unpack(
            &bundle,
            &Digest::of(b"something else"),
            t.path(),
            UnpackLimits::DEFAULT,
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::Digest { .. }), "{err}");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn hostile_entries_are_refused() {
        use EntryType::*;
        let cases: &[(&[Raw], &str)] = &[
            (&[("/etc/passwd", Regular, b"x", "")], "absolute path"),
            (
                &[
                    ("usr", Directory, b"", ""),
                    ("usr/../../x", Regular, b"x", ""),
                ],
                "`..`",
            ),
            (&[("../x", Regular, b"x", "")], "`..`"),
            (&[("./x", Regular, b"x", "")], "`..` or `.`"),
            (
                &[("dev", Directory, b"", ""), ("dev/sda", Block, b"", "")],
                "not a regular file",
            ),
            (&[("tty", Char, b"", "")], "not a regular file"),
            (&[("fifo", Fifo, b"", "")], "not a regular file"),
            (
                &[("a", Regular, b"x", ""), ("b", Link, b"", "a")],
                "not a regular file",
            ),
            // Writing below a link would write wherever it points.
            (
                &[("lib", Symlink, b"", "/etc"), ("lib/x", Regular, b"x", "")],
                "not below a directory",
            ),
            (
                &[("f", Regular, b"x", ""), ("f/x", Regular, b"x", "")],
                "not below a directory",
            ),
            (&[("x/y", Regular, b"x", "")], "not below a directory"),
            (
                &[("a", Regular, b"x", ""), ("a", Regular, b"y", "")],
                "duplicate",
            ),
            (&[("l", Symlink, b"", "")], "without a target"),
        ];
        for (entries, want) in cases {
            let err = refused(entries);
            assert!(err.contains(want), "{entries:?}: {err}");
        }
    }

    #[test]
    fn oversize_and_too_many_entries_are_refused() {
        let bundle = raw_bundle(&[
            ("a", EntryType::Regular, &[7u8; 600], ""),
            ("b", EntryType::Regular, &[7u8; 600], ""),
        ]);
        let t = tempfile::tempdir().unwrap();
        let small = UnpackLimits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let err = unpack(&bundle, &Digest::of(&bundle), t.path(), small).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge(1000)), "{err}");
        let t = tempfile::tempdir().unwrap();
        let few = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 1,
        };
        let err = unpack(&bundle, &Digest::of(&bundle), t.path(), few).unwrap_err();
        assert!(matches!(err, BundleError::TooManyEntries(1)), "{err}");
        // A header that lies about its size cannot get past the stream cap either.
        let mut c = Checker::new(small);
        assert!(matches!(
            c.entry(b"big", EntryType::Regular, None, u64::MAX),
            Err(BundleError::TooLarge(_))
        ));
    }

    #[test]
    fn garbage_is_a_format_error() {
        let err = unpack_raw(b"not zstd at all").unwrap_err();
        assert!(matches!(err, BundleError::Format(_)), "{err}");
    }

    #[test]
    fn resolution_inside_a_node_list() {
        let mut n = BTreeMap::new();
        n.insert(PathBuf::from("/usr"), Node::Dir);
        n.insert(PathBuf::from("/usr/bin"), Node::Dir);
        n.insert(
            PathBuf::from("/usr/bin/gcc"),
            Node::Symlink("gcc-12".into()),
        );
        n.insert(
            PathBuf::from("/usr/bin/gcc-12"),
            Node::Symlink("/usr/bin/x86_64-linux-gnu-gcc-12".into()),
        );
        n.insert(
            PathBuf::from("/usr/bin/x86_64-linux-gnu-gcc-12"),
            Node::File,
        );
        n.insert(PathBuf::from("/bin"), Node::Symlink("usr/bin".into()));
        n.insert(PathBuf::from("/loop"), Node::Symlink("/loop".into()));
        let real = Some(PathBuf::from("/usr/bin/x86_64-linux-gnu-gcc-12"));
        assert_eq!(resolve_in(&n, Path::new("/usr/bin/gcc")), real);
        assert_eq!(resolve_in(&n, Path::new("/bin/gcc")), real);
        assert_eq!(resolve_in(&n, Path::new("/bin/../bin/gcc")), real);
        assert_eq!(resolve_in(&n, Path::new("/usr/bin")), None);
        assert_eq!(resolve_in(&n, Path::new("/usr/bin/cc")), None);
        assert_eq!(resolve_in(&n, Path::new("/loop")), None);
        assert_eq!(resolve_in(&n, Path::new("/usr/bin/gcc/x")), None);
    }
}
