//! The worker's compilers, prepared for per-job roots.
//!
//! A job names the compiler by the host's path, the digest of its driver binary, its
//! version and target. The worker serves it with a compiler of its own ([`Inventory`]: the
//! host's very driver when one is at the host's path with the host's digest, else another
//! build of the same compiler, a cross compiler), or with the bundle that host shipped on
//! this connection ([`crate::shipped`]), which never shadows the worker's own driver and
//! never serves another connection. A worker compiler's driver, its sub-programs (cc1,
//! cc1plus, as), their shared libraries and the few data files they read are copied into a
//! template directory once; each job root gets hard links to the template, at the same
//! absolute paths, through the same symbolic links. Headers are never part of a toolchain:
//! they come from the host with the job.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ToolchainInfo, ToolchainKind};
use offload_shared::toolchain::{self, shared_libraries, sub_program};
use offload_shared::walk::{Node, PathWalker, Resolved};

use crate::inventory::{Inventory, Match, Own};
use crate::shipped::{Owned, Shipped};

/// Why a compiler cannot be used. The messages name only what the host sent: never a
/// path or digest of the worker's.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// No compiler here is the host's, or another build of it.
    #[error("no compiler equivalent to {0} on this worker")]
    Missing(String),
    /// A shipped bundle that cannot be used.
    #[error(transparent)]
    Bundle(#[from] offload_shared::bundle::BundleError),
    /// A shipped bundle larger than the worker takes.
    #[error("its toolchain bundle of {size} bytes exceeds this worker's limit of {limit} bytes")]
    BundleTooLarge {
        /// The offered size.
        size: u64,
        /// The limit.
        limit: u64,
    },
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
    /// Job-root paths whose file is the template's copy of another path: the worker's
    /// driver at the host compiler's path.
    pub aliases: BTreeMap<PathBuf, PathBuf>,
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

impl ToolchainError {
    /// The answer to a query for `compiler` that failed so.
    pub fn info(&self, compiler: &CompilerRef) -> ToolchainInfo {
        ToolchainInfo {
            path: compiler.path.clone(),
            kind: ToolchainKind::Unavailable,
            detail: self.to_string(),
            fingerprint: Digest([0; 32]),
        }
    }
}

impl Toolchain {
    /// The answer to a query for `compiler` that this toolchain serves: a shipped one's
    /// fingerprint is its bundle's digest, and no answer names the worker's paths beyond
    /// its own compiler's.
    pub fn info(&self, compiler: &CompilerRef) -> ToolchainInfo {
        let detail = match self.mode {
            Mode::Shipped => format!("shipped bundle {}", self.fingerprint),
            _ => self.runs_as.clone(),
        };
        ToolchainInfo {
            path: compiler.path.clone(),
            kind: self.mode.kind(),
            detail,
            fingerprint: self.fingerprint,
        }
    }

    /// Where the template's copy of the file at `path` is.
    pub fn source_of(&self, path: &Path) -> PathBuf {
        let path = self.aliases.get(path).map_or(path, PathBuf::as_path);
        self.template.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// Most toolchains prepared at once: each is a template of tens of megabytes, and the
/// worker's own compilers are few.
const MAX_PREPARED: usize = 64;

/// A toolchain being prepared or prepared: jobs asking for the same one wait for one
/// preparation (on its own lock, not the whole set's).
type Slot = Arc<Mutex<Option<Arc<Toolchain>>>>;

/// The worker's toolchains: its own compilers, prepared on first use, and the bundles hosts
/// shipped.
#[derive(Debug)]
pub struct Toolchains {
    dir: PathBuf,
    shipped: Shipped,
    inventory: Inventory,
    ready: Mutex<HashMap<(PathBuf, Match, String), Slot>>,
}

impl Toolchains {
    /// Toolchains kept under `dir`, for the compilers found in [`PROGRAM_PATH`].
    pub fn new(dir: &Path) -> Toolchains {
        Toolchains::with_inventory(dir, Inventory::scan())
    }

    /// Toolchains kept under `dir`, for the compilers of `inventory`.
    pub fn with_inventory(dir: &Path, inventory: Inventory) -> Toolchains {
        let _ = std::fs::create_dir_all(dir);
        Toolchains {
            dir: dir.to_owned(),
            shipped: Shipped::new(&dir.join("shipped")),
            inventory,
            ready: Mutex::new(HashMap::new()),
        }
    }

    /// The names of the compilers the worker found itself (`gcc-12`, `clang-14`,
    /// `x86_64-linux-gnu-gcc-12`…), sorted, for its announcement.
    pub fn offered(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inventory
            .all()
            .iter()
            .filter_map(|c| c.path.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The toolchain for the host's `compiler`: the worker's own driver when it is the
    /// host's (a shipped bundle never shadows it), else one that this connection shipped
    /// (`mine`), else another build of the same compiler. Blocking: call from a blocking
    /// context. Nothing here opens or runs a path the host named: the host's strings are
    /// only compared with what the worker found itself.
    pub fn get(
        &self,
        compiler: &CompilerRef,
        mine: &Owned,
    ) -> Result<Arc<Toolchain>, ToolchainError> {
        let found = self.inventory.find(compiler);
        if let Some((own, Match::Native)) = &found {
            return self.prepared(own, &Match::Native, compiler);
        }
        if let Some(tc) = mine.get(compiler) {
            return Ok(tc);
        }
        match &found {
            Some((own, m)) => self.prepared(own, m, compiler),
            None => Err(ToolchainError::Missing(compiler.path.clone())),
        }
    }

    fn prepared(
        &self,
        own: &Own,
        m: &Match,
        host: &CompilerRef,
    ) -> Result<Arc<Toolchain>, ToolchainError> {
        let key = (own.path.clone(), m.clone(), host.path.clone());
        let slot = {
            let mut ready = self.lock();
            // Preparing again is cheap (the templates stay on disk); jobs holding a
            // toolchain keep it.
            if !ready.contains_key(&key) && ready.len() >= MAX_PREPARED {
                ready.clear();
            }
            ready.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = Arc::new(prepare(own, m, host, &self.dir)?);
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Whether the shipped bundle `bundle` is unpacked here.
    pub fn has_bundle(&self, bundle: &Digest) -> bool {
        self.shipped.has(bundle)
    }

    /// Checks and installs the host's bundle `bundle` (unpacked here already when `bytes`
    /// is `None`) as `compiler`'s toolchain for this connection alone (`mine`). Blocking.
    pub fn install(
        &self,
        compiler: &CompilerRef,
        bundle: &Digest,
        bytes: Option<&[u8]>,
        mine: &mut Owned,
    ) -> Result<Arc<Toolchain>, ToolchainError> {
        let t = match bytes {
            Some(b) => self.shipped.install(compiler, bundle, b)?,
            None => self.shipped.adopt(compiler, bundle)?,
        };
        let t = Arc::new(t);
        tracing::info!(compiler = compiler.path, %bundle, files = t.nodes.len(), "shipped toolchain installed for its connection");
        mine.insert(compiler, t.clone());
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, Match, String), Slot>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn prepare(
    own: &Own,
    m: &Match,
    host: &CompilerRef,
    dir: &Path,
) -> Result<Toolchain, ToolchainError> {
    let io = |source| ToolchainError::Io {
        path: host.path.clone(),
        source,
    };
    let facts = own
        .facts()
        .ok_or_else(|| ToolchainError::Missing(host.path.clone()))?;
    let runs_as = own.path.to_string_lossy().into_owned();
    let mode = match m {
        Match::Native => Mode::Native,
        Match::CrossGcc(ident) => Mode::CrossGcc {
            ident: ident.clone(),
        },
        Match::CrossClang => Mode::CrossClangCc1,
    };
    let driver = facts.real.clone();
    let host_compiler = host.path.as_str();
    let mut walker = PathWalker::new();
    // The worker's own path to its driver, links and all.
    if !matches!(
        walker.resolve(&own.path, Path::new("/")).map_err(io)?,
        Resolved::File(_)
    ) {
        return Err(ToolchainError::Missing(host.path.clone()));
    }
    let compiler = runs_as.as_str();
    toolchain::add_parts(&mut walker, compiler, &driver).map_err(io)?;
    let mut nodes = walker.into_nodes();
    // Files whose template copy comes from elsewhere than their own path.
    let mut sources: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
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
    // The other driver answers at the host's path, in job roots only (argv[0] and the
    // driver's own prefix logic see the host's name; it finds its parts by its configured
    // prefix). The template, shared by every host path, does not hold it.
    let mut aliases = BTreeMap::new();
    if mode != Mode::Native {
        let host_path = PathBuf::from(host_compiler);
        let below_a_link = host_path
            .ancestors()
            .skip(1)
            .any(|a| matches!(nodes.get(a), Some(Node::Symlink(_) | Node::File)));
        if !offload_shared::tree::is_normal_absolute(host_compiler) || below_a_link {
            return Err(ToolchainError::Missing(host.path.clone()));
        }
        nodes.insert(host_path.clone(), Node::File);
        aliases.insert(host_path, driver.clone());
    }
    tracing::info!(compiler, files = nodes.len(), ?mode, "toolchain prepared");
    Ok(Toolchain {
        template,
        nodes,
        mode,
        runs_as: runs_as.clone(),
        fingerprint: Digest::of(&stamp),
        aliases,
    })
}
