//! This host's toolchain as a bundle for workers of its architecture that lack it: the
//! compiler's files (`offload_shared::toolchain::collect`) packed by
//! `offload_shared::bundle::pack`, named by the SHA-256 of the bundle's bytes.
//!
//! Building a bundle compresses ~100 MB, so it is kept in
//! `$XDG_CACHE_HOME/offload/toolchains/` (or `~/.cache/offload/toolchains/`) under a key
//! made of the file list with each file's size and modification time: a later build finds
//! it there while the compiler's files are unchanged, and any change (an upgrade) makes a
//! new one. Within a build each compiler's bundle is made or read once.
//!
//! [`if_needed`] decides and ships: only to a worker of this host's architecture that
//! cannot run the compiler, or that keeps another bundle of it than this host's.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use offload_shared::Digest;
use offload_shared::bundle::{self, BundleError};
use offload_shared::protocol::{CompilerRef, ToolchainInfo, ToolchainKind};
use offload_shared::toolchain;
use offload_shared::walk::Node;

use super::executor::Executor;
use super::oncemap::OnceMap;
use super::stats::Stats;

/// Whether a worker that answered `kind` and runs on `arch` may need this host's bundle.
fn may_need(kind: ToolchainKind, arch: Option<&str>) -> bool {
    matches!(kind, ToolchainKind::Unavailable | ToolchainKind::Shipped)
        && arch == Some(std::env::consts::ARCH)
}

/// Sends this host's toolchain for `ours` to `worker` when it may need it (see
/// [`may_need`]) and does not hold this very bundle. Gives the worker's new answer, or
/// `info` when nothing was (or could be) shipped; failures are warnings, never errors.
pub async fn if_needed(
    worker: &dyn Executor,
    bundles: &Bundles,
    stats: &Stats,
    ours: &CompilerRef,
    info: ToolchainInfo,
) -> ToolchainInfo {
    let addr = worker.label();
    let addr = &addr;
    if !may_need(info.kind, worker.arch().as_deref()) {
        return info;
    }
    let bundle = match bundles.get(&ours.path).await {
        Ok(b) => b,
        Err(e) => {
            stats.warn(format!(
                "cannot bundle {} for worker {addr}: {e}",
                ours.path
            ));
            return info;
        }
    };
    if info.kind == ToolchainKind::Shipped && info.fingerprint == bundle.digest {
        return info;
    }
    let t0 = Instant::now();
    match worker.ship(ours, bundle.clone()).await {
        Ok((new, sent)) => {
            let ms = t0.elapsed().as_millis() as u64;
            let (compiler, bundle, kind, detail) =
                (&ours.path, bundle.digest, new.kind, &new.detail);
            if sent > 0 {
                stats.shipped(sent);
                tracing::info!(worker = addr, compiler, %bundle, bytes = sent, ms, ?kind, detail, "toolchain shipped");
            } else {
                tracing::info!(worker = addr, compiler, %bundle, ms, ?kind, detail, "toolchain bundle was on the worker already");
            }
            if kind == ToolchainKind::Unavailable {
                stats.warn(format!(
                    "worker {addr} did not take this host's toolchain for {compiler}: {detail}"
                ));
            }
            new
        }
        Err(e) => {
            stats.warn(format!(
                "shipping the toolchain for {} to worker {addr} failed: {e}",
                ours.path
            ));
            info
        }
    }
}

/// A bundle ready to send.
#[derive(Debug)]
pub struct Bundle {
    /// SHA-256 of `bytes`.
    pub digest: Digest,
    /// The zstd-compressed tar.
    pub bytes: Vec<u8>,
    /// How many directories, links and files it holds.
    pub entries: usize,
}

/// Why no bundle could be had.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The compiler's path does not lead to a file.
    #[error("no compiler at {0}")]
    NoCompiler(String),
    /// Listing the compiler's files failed.
    #[error("listing the files of {compiler}: {source}")]
    Collect {
        /// The compiler.
        compiler: String,
        /// Why.
        source: std::io::Error,
    },
    /// Packing failed.
    #[error(transparent)]
    Pack(#[from] BundleError),
}

/// Bundles of this build, by compiler path.
#[derive(Debug, Default)]
pub struct Bundles {
    made: OnceMap<String, Result<Arc<Bundle>, String>>,
}

impl Bundles {
    /// The bundle of `compiler`, made (or read from the cache) on first use in this build.
    pub async fn get(&self, compiler: &str) -> Result<Arc<Bundle>, String> {
        self.made
            .get_or_init(compiler.to_owned(), || async {
                let c = compiler.to_owned();
                tokio::task::spawn_blocking(move || load_or_build(&c, cache_dir().as_deref()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

/// Where bundles are kept: the user's offload cache directory's `toolchains`.
pub fn cache_dir() -> Option<PathBuf> {
    crate::cachedir::offload_cache_dir().map(|d| d.join("toolchains"))
}

/// The bundle of `compiler`: from `cache` when its files are unchanged since it was made,
/// else packed now (and stored in `cache`; a cache that cannot be written only costs time).
pub fn load_or_build(compiler: &str, cache: Option<&Path>) -> Result<Bundle, ShipError> {
    let t0 = Instant::now();
    let collect = |source| ShipError::Collect {
        compiler: compiler.to_owned(),
        source,
    };
    let collected = toolchain::collect(compiler)
        .map_err(collect)?
        .ok_or_else(|| ShipError::NoCompiler(compiler.to_owned()))?;
    let nodes = collected.nodes;
    let key = cache_key(&nodes).map_err(collect)?;
    let file = cache.map(|d| d.join(format!("{}.tar.zst", key.to_hex())));
    if let Some(f) = &file
        && let Ok(bytes) = std::fs::read(f)
    {
        let digest = Digest::of(&bytes);
        tracing::info!(
            compiler,
            %digest,
            bytes = bytes.len(),
            ms = t0.elapsed().as_millis() as u64,
            cache = %f.display(),
            "toolchain bundle read from the cache"
        );
        return Ok(Bundle {
            digest,
            bytes,
            entries: nodes.len(),
        });
    }
    let bytes = bundle::pack(&nodes)?;
    let digest = Digest::of(&bytes);
    tracing::info!(
        compiler,
        %digest,
        entries = nodes.len(),
        bytes = bytes.len(),
        ms = t0.elapsed().as_millis() as u64,
        "toolchain bundle built"
    );
    if let (Some(dir), Some(f)) = (cache, &file)
        && let Err(e) = store(dir, f, &bytes)
    {
        tracing::warn!("cannot keep the toolchain bundle in {}: {e}", dir.display());
    }
    Ok(Bundle {
        digest,
        bytes,
        entries: nodes.len(),
    })
}

/// Writes `bytes` to `file` in `dir` atomically (a temporary file renamed into place), so
/// that builds running at once never read half a bundle.
fn store(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// Names a bundle's contents without reading them: the bundle format's version, each
/// node, and each file's size and modification time.
fn cache_key(nodes: &BTreeMap<PathBuf, Node>) -> std::io::Result<Digest> {
    let mut listing = String::from("offload toolchain bundle 1\n");
    for (path, node) in nodes {
        let line = match node {
            Node::Dir => format!("d {}\n", path.display()),
            Node::Symlink(t) => format!("l {} {}\n", path.display(), t.display()),
            Node::File => {
                let m = std::fs::metadata(path)?;
                format!(
                    "f {} {} {}.{}\n",
                    path.display(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec()
                )
            }
        };
        listing.push_str(&line);
    }
    Ok(Digest::of(listing.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake compiler: a shell script that answers `-print-prog-name` with nothing useful.
    fn fake_compiler(dir: &Path) -> PathBuf {
        let cc = dir.join("cc");
        std::fs::write(&cc, "#!/bin/sh\necho none\n").unwrap();
        std::fs::set_permissions(&cc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        cc
    }

    #[test]
    fn only_same_architecture_workers_without_the_compiler_get_it() {
        let here = Some(std::env::consts::ARCH);
        assert!(may_need(ToolchainKind::Unavailable, here));
        assert!(may_need(ToolchainKind::Shipped, here));
        assert!(!may_need(ToolchainKind::Native, here));
        assert!(!may_need(ToolchainKind::CrossGcc, here));
        assert!(!may_need(ToolchainKind::Unavailable, Some("elsewhere")));
        assert!(!may_need(ToolchainKind::Unavailable, None));
    }

    #[test]
    fn bundles_are_cached_until_the_compiler_changes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().canonicalize().unwrap();
        let cc = fake_compiler(&src);
        let cache = src.join("cache");
        let cc_s = cc.to_str().unwrap();
        let a = load_or_build(cc_s, Some(&cache)).unwrap();
        assert_eq!(a.digest, Digest::of(&a.bytes));
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        let b = load_or_build(cc_s, Some(&cache)).unwrap();
        assert_eq!(a.digest, b.digest);
        // Another size: another key, another bundle.
        std::fs::write(&cc, "#!/bin/sh\necho none; true\n").unwrap();
        let c = load_or_build(cc_s, Some(&cache)).unwrap();
        assert_ne!(a.digest, c.digest);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // Without a cache it is made each time.
        let d = load_or_build(cc_s, None).unwrap();
        assert_eq!(c.digest, d.digest);
        assert!(matches!(
            load_or_build("/nonexistent/cc", None),
            Err(ShipError::NoCompiler(_))
        ));
    }
}
