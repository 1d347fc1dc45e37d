//! Toolchains the host shipped (see `offload_shared::bundle`), kept on disk across
//! restarts.
//!
//! Layout under the toolchains directory:
//!
//! ```text
//! shipped/<bundle digest>/usr/bin/gcc …      the unpacked bundle: a toolchain template
//! shipped/compilers/<digest of path + driver digest>   text: the bundle digest
//! shipped/.staging-*                          unpacking in progress (removed at start)
//! ```
//!
//! A bundle is unpacked into a staging directory and renamed into place only when complete,
//! so a template, once visible, is whole and never written again (job roots hard-link its
//! files). The compiler index is written to a temporary file and renamed too.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use offload_shared::Digest;
use offload_shared::bundle::{self, UnpackLimits};
use offload_shared::protocol::CompilerRef;
use offload_shared::walk::Node;

use crate::toolchain::{Mode, Toolchain, ToolchainError};

/// The shipped toolchains under one directory.
#[derive(Debug)]
pub struct Shipped {
    dir: PathBuf,
}

impl Shipped {
    /// Shipped toolchains kept under `dir`; leftovers of interrupted unpacking are removed.
    pub fn new(dir: &Path) -> Shipped {
        let _ = std::fs::create_dir_all(dir.join("compilers"));
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(".staging-") {
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

    fn index(&self, compiler: &CompilerRef) -> PathBuf {
        let key = Digest::of(format!("{}\0{}", compiler.path, compiler.digest).as_bytes());
        self.dir.join("compilers").join(key.to_hex())
    }

    /// Whether the bundle is unpacked here.
    pub fn has(&self, bundle: &Digest) -> bool {
        self.template(bundle).is_dir()
    }

    /// The toolchain shipped for `compiler` (its path and driver digest), if one was.
    pub fn find(&self, compiler: &CompilerRef) -> Result<Option<Toolchain>, ToolchainError> {
        let text = match std::fs::read_to_string(self.index(compiler)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(compiler, e)),
        };
        let Some(bundle) = Digest::from_hex(text.trim()) else {
            return Ok(None);
        };
        if !self.has(&bundle) {
            return Ok(None);
        }
        self.load(compiler, &bundle).map(Some)
    }

    /// Checks and unpacks `bytes` (the bundle `bundle`) unless it is here already, and
    /// records it as `compiler`'s toolchain.
    pub fn install(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
        bytes: &[u8],
    ) -> Result<Toolchain, ToolchainError> {
        let io = |e| io_err(compiler, e);
        if !self.has(bundle) {
            let staging = tempfile::Builder::new()
                .prefix(".staging-")
                .tempdir_in(&self.dir)
                .map_err(io)?;
            bundle::unpack(bytes, bundle, staging.path(), UnpackLimits::DEFAULT)?;
            let kept = staging.keep();
            if let Err(e) = std::fs::rename(&kept, self.template(bundle)) {
                let _ = std::fs::remove_dir_all(&kept);
                // Another connection may have unpacked the same bundle meanwhile.
                if !self.has(bundle) {
                    return Err(io(e));
                }
            }
        }
        self.adopt(compiler, bundle)
    }

    /// Records the bundle `bundle`, already here, as `compiler`'s toolchain.
    pub fn adopt(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
    ) -> Result<Toolchain, ToolchainError> {
        let tc = self.load(compiler, bundle)?;
        let index = self.index(compiler);
        let io = |e| io_err(compiler, e);
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("compilers")).map_err(io)?;
        io::Write::write_all(&mut tmp, bundle.to_hex().as_bytes()).map_err(io)?;
        tmp.persist(&index).map_err(|e| io(e.error))?;
        Ok(tc)
    }

    /// The toolchain in bundle `bundle`, after checking that it holds `compiler`'s driver.
    fn load(&self, compiler: &CompilerRef, bundle: &Digest) -> Result<Toolchain, ToolchainError> {
        let template = self.template(bundle);
        let mut nodes = BTreeMap::new();
        list(&template, Path::new("/"), &mut nodes).map_err(|e| io_err(compiler, e))?;
        let driver = bundle::resolve_in(&nodes, Path::new(&compiler.path)).ok_or_else(|| {
            ToolchainError::Shipped(format!("bundle {bundle} has no file at {}", compiler.path))
        })?;
        let rel = driver.strip_prefix("/").unwrap_or(&driver);
        let bytes = std::fs::read(template.join(rel)).map_err(|e| io_err(compiler, e))?;
        let ours = Digest::of(&bytes);
        if ours != compiler.digest {
            return Err(ToolchainError::Shipped(format!(
                "bundle {bundle} holds a driver with digest {ours} at {}, not {}",
                compiler.path, compiler.digest
            )));
        }
        tracing::debug!(compiler = compiler.path, %bundle, files = nodes.len(), "shipped toolchain loaded");
        Ok(Toolchain {
            template,
            nodes,
            mode: Mode::Shipped,
            runs_as: compiler.path.clone(),
            fingerprint: *bundle,
        })
    }
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
            assert!(s.find(&cc).unwrap().is_none());
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
        let tc = s.find(&cc).unwrap().expect("kept across restarts");
        assert_eq!(tc.fingerprint, digest);
        // Another driver digest at the same path is another compiler.
        let other = CompilerRef {
            digest: Digest::of(b"other"),
            ..cc
        };
        assert!(s.find(&other).unwrap().is_none());
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
    }
}
