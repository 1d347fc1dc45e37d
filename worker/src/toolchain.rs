//! The worker's compilers, prepared for per-job roots.
//!
//! A job names the compiler by the host's path and the digest of its driver binary. The
//! worker uses its own compiler at that path only if the driver's digest matches, then
//! copies the driver, its sub-programs (cc1, cc1plus, as), their shared libraries and the
//! few data files they read into a template directory once. Each job root gets hard links
//! to the template, at the same absolute paths, through the same symbolic links.
//! Headers are never part of a toolchain: they come from the host with the job.
//!
//! A toolchain the host shipped ([`crate::shipped`]) comes first: it is the host's very
//! files. Then the worker's own driver with the host's digest, then another build of the
//! same compiler (a cross compiler).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ToolchainKind};
use offload_shared::toolchain::{self, PROGRAM_PATH, shared_libraries, sub_program};
use offload_shared::walk::{Node, PathWalker, Resolved};

use crate::shipped::Shipped;

/// Why a compiler cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// No such compiler here.
    #[error("no compiler at {0} on this worker")]
    Missing(String),
    /// A compiler, but not the host's.
    #[error("compiler {path} differs from the host's (driver digest {ours} here, {theirs} there)")]
    Differs {
        /// Path.
        path: String,
        /// Our digest.
        ours: Digest,
        /// The host's digest.
        theirs: Digest,
    },
    /// A shipped bundle that cannot be used.
    #[error(transparent)]
    Bundle(#[from] offload_shared::bundle::BundleError),
    /// A shipped bundle that does not hold the compiler it was offered for.
    #[error("shipped toolchain: {0}")]
    Shipped(String),
    /// Reading or copying failed.
    #[error("preparing toolchain {path}: {source}")]
    Io {
        /// Which compiler.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One prepared compiler: the nodes to recreate in a job root, files taken from `template`.
#[derive(Debug)]
pub struct Toolchain {
    /// Directory holding a copy of each file at its absolute path.
    pub template: PathBuf,
    /// Every directory, link and file of the toolchain, parents first.
    pub nodes: BTreeMap<PathBuf, Node>,
    /// How jobs run with it.
    pub mode: Mode,
    /// The worker's compiler that runs the jobs (its own path).
    pub runs_as: String,
    /// Identifies the template's files: paths, sources, sizes and modification times.
    pub fingerprint: Digest,
}

/// How a toolchain is made to produce the host compiler's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The host's very driver: jobs run unchanged.
    Native,
    /// Another build of the host's gcc for the same target (a cross compiler).
    CrossGcc {
        /// Its own `.ident` text, rewritten to the host's in the assembly it produces.
        ident: String,
    },
    /// Another build of the host's clang (same version and `.ident`) that also targets the
    /// host's architecture: jobs run the compiler proper with the host driver's arguments.
    CrossClangCc1,
    /// The host's own toolchain, shipped as a bundle: jobs run unchanged.
    Shipped,
}

impl Mode {
    /// The protocol's name for it.
    pub fn kind(&self) -> ToolchainKind {
        match self {
            Mode::Native => ToolchainKind::Native,
            Mode::CrossGcc { .. } => ToolchainKind::CrossGcc,
            Mode::CrossClangCc1 => ToolchainKind::CrossClangCc1,
            Mode::Shipped => ToolchainKind::Shipped,
        }
    }
}

/// Where, in a job root, the real assembler of a cross toolchain is; the assembler's own
/// path holds the rewriting shim (the worker's binary in `as-shim` mode).
pub const REAL_AS: &str = "/.offload/as";

impl Toolchain {
    /// Where the template's copy of the file at `path` is.
    pub fn source_of(&self, path: &Path) -> PathBuf {
        self.template.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// Prepared toolchains, by compiler path and digest.
#[derive(Debug)]
pub struct Toolchains {
    dir: PathBuf,
    shipped: Shipped,
    ready: Mutex<HashMap<(String, Digest), Arc<Toolchain>>>,
}

impl Toolchains {
    /// Toolchains kept under `dir`.
    pub fn new(dir: &Path) -> Toolchains {
        let _ = std::fs::create_dir_all(dir);
        Toolchains {
            dir: dir.to_owned(),
            shipped: Shipped::new(&dir.join("shipped")),
            ready: Mutex::new(HashMap::new()),
        }
    }

    /// The toolchain for `compiler` whose driver has digest `digest`, preparing it on first
    /// use. Blocking: call from a blocking context. Preparation happens under the lock, so
    /// jobs arriving together wait for one preparation instead of racing to write the
    /// template that the others' job roots link to.
    pub fn get(&self, compiler: &CompilerRef) -> Result<Arc<Toolchain>, ToolchainError> {
        let key = (compiler.path.clone(), compiler.digest);
        let mut ready = self.lock();
        if let Some(t) = ready.get(&key) {
            return Ok(t.clone());
        }
        let t = match self.shipped.find(compiler)? {
            Some(t) => t,
            None => prepare(compiler, &self.dir)?,
        };
        let t = Arc::new(t);
        ready.insert(key, t.clone());
        Ok(t)
    }

    /// Whether the shipped bundle `bundle` is unpacked here.
    pub fn has_bundle(&self, bundle: &Digest) -> bool {
        self.shipped.has(bundle)
    }

    /// Makes the host's bundle `bundle` (unpacked here already when `bytes` is `None`)
    /// `compiler`'s toolchain, replacing what the worker had for it. Blocking; the bundle is
    /// checked and unpacked without holding the lock.
    pub fn install(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
        bytes: Option<&[u8]>,
    ) -> Result<Arc<Toolchain>, ToolchainError> {
        let t = match bytes {
            Some(b) => self.shipped.install(compiler, bundle, b)?,
            None => self.shipped.adopt(compiler, bundle)?,
        };
        let t = Arc::new(t);
        tracing::info!(compiler = compiler.path, %bundle, files = t.nodes.len(), "shipped toolchain installed");
        self.lock()
            .insert((compiler.path.clone(), compiler.digest), t.clone());
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Digest), Arc<Toolchain>>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn prepare(host: &CompilerRef, dir: &Path) -> Result<Toolchain, ToolchainError> {
    let (host_compiler, want) = (host.path.as_str(), &host.digest);
    let compiler = host_compiler;
    let io = |source| ToolchainError::Io {
        path: compiler.to_owned(),
        source,
    };
    let mut walker = PathWalker::new();
    let native = match walker
        .resolve(Path::new(compiler), Path::new("/"))
        .map_err(io)?
    {
        Resolved::File(p) => {
            let ours = Digest::of(&std::fs::read(&p).map_err(io)?);
            (ours == *want).then_some(p).ok_or((ours, compiler))
        }
        _ => Err((Digest([0; 32]), compiler)),
    };
    // Not the host's driver: another build of the same compiler for the same target?
    let (driver, runs_as, mode) = match native {
        Ok(p) => (p, compiler.to_owned(), Mode::Native),
        Err((ours, _)) => {
            walker = PathWalker::new();
            let Some((cand, mode)) = equivalent_compiler(host) else {
                return Err(if ours == Digest([0; 32]) {
                    ToolchainError::Missing(compiler.to_owned())
                } else {
                    ToolchainError::Differs {
                        path: compiler.to_owned(),
                        ours,
                        theirs: *want,
                    }
                });
            };
            let Resolved::File(real) = walker.resolve(&cand, Path::new("/")).map_err(io)? else {
                return Err(ToolchainError::Missing(compiler.to_owned()));
            };
            (real, cand.to_string_lossy().into_owned(), mode)
        }
    };
    let compiler = runs_as.as_str();
    toolchain::add_parts(&mut walker, compiler, &driver).map_err(io)?;
    let mut nodes = walker.into_nodes();
    // Files whose template copy comes from elsewhere than their own path.
    let mut sources: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    if mode != Mode::Native {
        // The other driver answers at the host's path (argv[0] and the driver's own
        // prefix logic see the host's name; it finds its parts by its configured prefix).
        let host_path = PathBuf::from(host_compiler);
        nodes.insert(host_path.clone(), Node::File);
        sources.insert(host_path, driver.clone());
    }
    if let Mode::CrossGcc { .. } = mode {
        // The assembler's path holds the shim; the real assembler moves to REAL_AS.
        if let Some(real_as) = sub_program(compiler, "as").and_then(|p| p.canonicalize().ok()) {
            let shim = std::env::current_exe().map_err(io)?;
            sources.insert(real_as.clone(), shim.clone());
            nodes.insert(PathBuf::from("/.offload"), Node::Dir);
            nodes.insert(PathBuf::from(REAL_AS), Node::File);
            sources.insert(PathBuf::from(REAL_AS), real_as);
            let mut w2 = PathWalker::new();
            for lib in shared_libraries(&shim) {
                w2.resolve(&lib, Path::new("/")).map_err(io)?;
            }
            for (p, n) in w2.into_nodes() {
                nodes.entry(p).or_insert(n);
            }
        }
    }
    // The template is named after its contents' list, so a worker of another version (with
    // another list) never reuses an incomplete template.
    let listing: String = sources
        .iter()
        .map(|(p, src)| format!("{}<-{}\n", p.display(), src.display()))
        .chain(
            nodes
                .iter()
                .map(|(p, n)| format!("{}\0{n:?}\n", p.display())),
        )
        .collect();
    let template = dir.join(Digest::of(listing.as_bytes()).to_hex());
    if !template.exists() {
        // Copy into a fresh directory and rename it into place: a template, once visible,
        // is complete and never written again (job roots hard-link its files).
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(dir)
            .map_err(io)?;
        for (path, node) in &nodes {
            if *node == Node::File {
                let dst = staging.path().join(path.strip_prefix("/").unwrap_or(path));
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::copy(sources.get(path).unwrap_or(path), &dst).map_err(io)?;
            }
        }
        std::fs::rename(staging.keep(), &template).map_err(io)?;
    }
    // What the probe proved stays proved while these files, and the worker that sets up
    // their job roots, stay as they are.
    let mut stamp = listing.into_bytes();
    if let Ok(meta) = std::env::current_exe().and_then(std::fs::metadata) {
        stamp.extend(format!("worker:{}:{}\n", meta.len(), meta.mtime()).bytes());
    }
    for (path, node) in &nodes {
        if *node == Node::File {
            let meta = std::fs::metadata(sources.get(path).unwrap_or(path)).map_err(io)?;
            stamp.extend(format!("{}:{}:{}\n", path.display(), meta.len(), meta.mtime()).bytes());
        }
    }
    tracing::info!(compiler, files = nodes.len(), ?mode, "toolchain prepared");
    Ok(Toolchain {
        template,
        nodes,
        mode,
        runs_as: runs_as.clone(),
        fingerprint: Digest::of(&stamp),
    })
}

/// Another compiler on this worker that claims to be the host's, and how it would run.
/// gcc: the same `-dumpfullversion -dumpmachine`, named `TARGET-NAME-MAJOR` or
/// `TARGET-NAME` after the host's driver name (`cc` counts as gcc, `c++` as g++). clang:
/// the same `-dumpversion` and the same `.ident` when it targets the host's machine, named
/// `clang-MAJOR` or `clang` (`clang++` likewise). The probe then proves it equal, or the
/// host keeps its compiles.
fn equivalent_compiler(host: &CompilerRef) -> Option<(PathBuf, Mode)> {
    let mut words = host.version.split_whitespace();
    let (full, target) = (words.next()?, words.next()?);
    let major = full.split('.').next()?;
    let base = Path::new(&host.path).file_name()?.to_str()?;
    // gcc-12, x86_64-linux-gnu-g++-12, clang++-14 → gcc, g++, clang++
    let base = base.strip_prefix(&format!("{target}-")).unwrap_or(base);
    let base = base.strip_suffix(&format!("-{major}")).unwrap_or(base);
    let (names, clang) = match base {
        "cc" | "gcc" => (
            vec![format!("{target}-gcc-{major}"), format!("{target}-gcc")],
            false,
        ),
        "c++" | "g++" => (
            vec![format!("{target}-g++-{major}"), format!("{target}-g++")],
            false,
        ),
        "clang" | "clang++" => (vec![format!("{base}-{major}"), base.to_owned()], true),
        _ => return None,
    };
    // Each -dump option is a command of its own: the driver stops at the first.
    let ask = |p: &Path, opt: &str| {
        Command::new(p)
            .arg(opt)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    names
        .iter()
        .flat_map(|n| PROGRAM_PATH.iter().map(move |d| Path::new(d).join(n)))
        .filter(|p| p.is_file())
        .find_map(|p| {
            if clang {
                let ident =
                    toolchain::assembly_ident(&p, &[&format!("--target={target}")]).ok()??;
                (ask(&p, "-dumpversion") == full && ident == host.ident)
                    .then_some((p, Mode::CrossClangCc1))
            } else {
                (ask(&p, "-dumpfullversion") == full && ask(&p, "-dumpmachine") == target)
                    .then(|| toolchain::assembly_ident(&p, &[]).ok().flatten())
                    .flatten()
                    .map(|ident| (p, Mode::CrossGcc { ident }))
            }
        })
}
