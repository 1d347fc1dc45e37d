//! Toolchains the host shipped (see `offload_shared::bundle`).
//!
//! A bundle is content-addressed: kept on disk under its digest across restarts, so a
//! host that offers it again need not send it again. It serves only the connection that
//! shipped or offered it ([`Owned`]), as that host's own files: another host's jobs never
//! see it, and the worker's own compiler of the same path and digest always comes first.
//!
//! ```text
//! shipped/<bundle digest>/usr/bin/gcc …      an unpacked, checked bundle: a template
//! shipped/.staging-*                          unpacking and checking in progress
//! ```
//!
//! A bundle is unpacked into a staging directory, checked there (it holds the offered
//! driver with the offered digest, and nothing the loader would run by itself) and only
//! then renamed into place; a bundle that fails is deleted. A template, once visible, is
//! whole and never written again (job roots hard-link its files).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use offload_shared::Digest;
use offload_shared::bundle::{self, UnpackLimits};
use offload_shared::protocol::CompilerRef;
use offload_shared::walk::Node;

use crate::inventory::digest_of_regular;
use crate::toolchain::{Mode, Toolchain, ToolchainError};

/// Largest toolchain bundle accepted (compressed; gcc 12 with cc1plus is ~30 MB).
pub const MAX_BUNDLE_BYTES: u64 = 256 << 20;

/// Whether an offered bundle of `size` bytes may be sent, within a frame of at most
/// `max_frame` bytes of payload.
pub fn check_offer_size(size: u64, max_frame: u64) -> Result<(), ToolchainError> {
    let limit = MAX_BUNDLE_BYTES.min(max_frame);
    if size > limit {
        return Err(ToolchainError::BundleTooLarge { size, limit });
    }
    Ok(())
}

/// Most bundles kept on disk; the least recently installed go first.
const MAX_BUNDLES: usize = 8;

/// Paths a bundle may not hold: the dynamic loader reads them by itself, in every program
/// of the job.
const FORBIDDEN: &[&str] = &["/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d"];

/// The toolchains one connection shipped, by compiler path and driver digest.
#[derive(Debug, Default)]
pub struct Owned(HashMap<(String, Digest), Arc<Toolchain>>);

impl Owned {
    /// This connection's toolchain for `compiler`.
    pub fn get(&self, compiler: &CompilerRef) -> Option<Arc<Toolchain>> {
        self.0
            .get(&(compiler.path.clone(), compiler.digest))
            .cloned()
    }

    /// Records a toolchain this connection shipped; a connection holds a few at most.
    pub fn insert(&mut self, compiler: &CompilerRef, tc: Arc<Toolchain>) {
        if self.0.len() >= MAX_BUNDLES {
            self.0.clear();
        }
        self.0.insert((compiler.path.clone(), compiler.digest), tc);
    }
}

/// The shipped toolchains under one directory.
#[derive(Debug)]
pub struct Shipped {
    dir: PathBuf,
}

impl Shipped {
    /// Shipped toolchains kept under `dir`; leftovers of interrupted unpacking are removed.
    pub fn new(dir: &Path) -> Shipped {
        let _ = std::fs::create_dir_all(dir);
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name();
                let name = name.to_string_lossy();
                // Also the index of earlier versions, which served every host.
                if name.starts_with(".staging-") || name == "compilers" {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Shipped {
            dir: dir.to_owned(),
        }
    }

    fn template(&self, bundle: &Digest) -> PathBuf {
        self.dir.join(bundle.to_hex())
    }

    /// Whether the bundle is unpacked here.
    pub fn has(&self, bundle: &Digest) -> bool {
        self.template(bundle).is_dir()
    }

    /// Checks and unpacks `bytes` (the bundle `bundle`) unless it is here already.
    pub fn install(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
        bytes: &[u8],
    ) -> Result<Toolchain, ToolchainError> {
        if self.has(bundle) {
            return self.adopt(compiler, bundle);
        }
        let io = |e| io_err(compiler, e);
        self.evict();
        // Dropped, and so deleted, unless it passes every check.
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.dir)
            .map_err(io)?;
        bundle::unpack(bytes, bundle, staging.path(), UnpackLimits::DEFAULT)?;
        check(compiler, bundle, staging.path())?;
        let kept = staging.keep();
        if let Err(e) = std::fs::rename(&kept, self.template(bundle)) {
            let _ = std::fs::remove_dir_all(&kept);
            // Another connection may have unpacked the same bundle meanwhile.
            if !self.has(bundle) {
                return Err(io(e));
            }
        }
        self.adopt(compiler, bundle)
    }

    /// The bundle `bundle`, already here, as `compiler`'s toolchain, after checking it
    /// holds that compiler (a bundle is named by its bytes: whoever names it gets exactly
    /// the files whose digest they named).
    pub fn adopt(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
    ) -> Result<Toolchain, ToolchainError> {
        let template = self.template(bundle);
        let nodes = check(compiler, bundle, &template)?;
        tracing::debug!(compiler = compiler.path, %bundle, files = nodes.len(), "shipped toolchain loaded");
        Ok(Toolchain {
            template,
            nodes,
            mode: Mode::Shipped,
            runs_as: compiler.path.clone(),
            fingerprint: *bundle,
            aliases: BTreeMap::new(),
        })
    }

    /// Removes the oldest bundles beyond [`MAX_BUNDLES`] - 1, making room for one more.
    fn evict(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter(|e| Digest::from_hex(&e.file_name().to_string_lossy()).is_some())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        kept.sort();
        let excess = (kept.len() + 1).saturating_sub(MAX_BUNDLES);
        for (_, path) in kept.into_iter().take(excess) {
            tracing::info!("removing the shipped toolchain {}", path.display());
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Checks the unpacked bundle below `dir`: it holds `compiler`'s driver with its digest
/// at its path, and no file the dynamic loader would read by itself. Returns its nodes.
fn check(
    compiler: &CompilerRef,
    bundle: &Digest,
    dir: &Path,
) -> Result<BTreeMap<PathBuf, Node>, ToolchainError> {
    let mut nodes = BTreeMap::new();
    list(dir, Path::new("/"), &mut nodes).map_err(|e| io_err(compiler, e))?;
    if let Some(bad) = FORBIDDEN
        .iter()
        .find(|f| nodes.keys().any(|p| p.starts_with(f)))
    {
        return Err(ToolchainError::Shipped(format!(
            "bundle {bundle} holds {bad}, which the dynamic loader would run"
        )));
    }
    let driver = bundle::resolve_in(&nodes, Path::new(&compiler.path)).ok_or_else(|| {
        ToolchainError::Shipped(format!("bundle {bundle} has no file at {}", compiler.path))
    })?;
    let rel = driver.strip_prefix("/").unwrap_or(&driver);
    let ours = digest_of_regular(&dir.join(rel)).map_err(|e| io_err(compiler, e))?;
    if ours != compiler.digest {
        return Err(ToolchainError::Shipped(format!(
            "bundle {bundle} holds a driver with digest {ours} at {}, not {}",
            compiler.path, compiler.digest
        )));
    }
    Ok(nodes)
}

fn io_err(compiler: &CompilerRef, source: io::Error) -> ToolchainError {
    ToolchainError::Io {
        path: compiler.path.clone(),
        source,
    }
}

/// Lists the unpacked tree below `dir` as nodes at their absolute paths (`at` is `dir`'s).
fn list(dir: &Path, at: &Path, nodes: &mut BTreeMap<PathBuf, Node>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        let path = at.join(e.file_name());
        if ft.is_symlink() {
            nodes.insert(path, Node::Symlink(std::fs::read_link(e.path())?));
        } else if ft.is_dir() {
            nodes.insert(path.clone(), Node::Dir);
            list(&e.path(), &path, nodes)?;
        } else {
            nodes.insert(path, Node::File);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake compiler on disk (`DIR/bin/cc -> cc-1`, the driver `cc-1`) and its bundle.
    fn fake(driver: &[u8]) -> (tempfile::TempDir, CompilerRef, Vec<u8>) {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().canonicalize().unwrap().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("cc-1"), driver).unwrap();
        std::os::unix::fs::symlink("cc-1", bin.join("cc")).unwrap();
        let mut w = offload_shared::walk::PathWalker::new();
        w.resolve(&bin.join("cc"), Path::new("/")).unwrap();
        let bytes = bundle::pack(&w.into_nodes()).unwrap();
        let cc = CompilerRef {
            path: bin.join("cc").to_string_lossy().into_owned(),
            digest: Digest::of(driver),
            version: "1.0 x86_64-linux-gnu".into(),
            ident: "CC 1.0".into(),
        };
        (t, cc, bytes)
    }

    #[test]
    fn installed_bundles_are_found_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let driver = b"\x7fELF the driver";
        let (_src, cc, bytes) = fake(driver);
        let digest = Digest::of(&bytes);
        {
            let s = Shipped::new(dir.path());
            assert!(!s.has(&digest));
            let tc = s.install(&cc, &digest, &bytes).unwrap();
            assert_eq!(tc.mode, Mode::Shipped);
            assert_eq!(tc.fingerprint, digest);
            assert_eq!(
                tc.nodes.get(Path::new(&cc.path)),
                Some(&Node::Symlink("cc-1".into()))
            );
            let real = Path::new(&cc.path).with_file_name("cc-1");
            assert_eq!(std::fs::read(tc.source_of(&real)).unwrap(), driver);
        }
        // A leftover of an interrupted unpacking goes at the next start.
        std::fs::create_dir(dir.path().join(".staging-x")).unwrap();
        let s = Shipped::new(dir.path());
        assert!(!dir.path().join(".staging-x").exists());
        assert!(s.has(&digest), "kept across restarts");
        let tc = s.adopt(&cc, &digest).unwrap();
        assert_eq!(tc.fingerprint, digest);
        // Another driver digest at the same path is another compiler.
        let other = CompilerRef {
            digest: Digest::of(b"other"),
            ..cc
        };
        assert!(s.adopt(&other, &digest).is_err());
    }

    #[test]
    fn a_bundle_without_the_offered_driver_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_src, cc, bytes) = fake(b"one driver");
        let s = Shipped::new(dir.path());
        let liar = CompilerRef {
            digest: Digest::of(b"another driver"),
            ..cc.clone()
        };
        let err = s.install(&liar, &Digest::of(&bytes), &bytes).unwrap_err();
        assert!(
            err.to_string().contains("holds a driver with digest"),
            "{err}"
        );
        let err = s.install(&cc, &Digest::of(b"x"), &bytes).unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        // Nothing of a refused bundle stays: no template, no staging directory.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
