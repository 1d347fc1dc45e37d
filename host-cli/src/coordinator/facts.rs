//! The build-wide facts every job consults, each established once per build: the digest
//! and content flags of each input file (per version), each compiler's identity,
//! fingerprint and built-in search directories, whether it honours `SOURCE_DATE_EPOCH`,
//! and the dependency scans worth reusing. Jobs only read through it; nothing here knows
//! about jobs or workers.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use offload_shared::Digest;
use offload_shared::protocol::CompilerRef;

use super::content::{self, ContentFlags};
use super::fingerprint::{self, Fingerprint};
use super::oncemap::OnceMap;
use super::scancache::ScanCache;
use super::{builtin, sde};

/// What is known of an input file's bytes.
#[derive(Debug, Clone)]
pub struct FileInfo {
    key: (i64, i64, u64, u64, u64),
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Any execute bit.
    pub executable: bool,
    /// What its text says.
    pub flags: Arc<ContentFlags>,
}

/// What the compiler searches by itself: its include directories, and files its driver
/// probes (clang's GCC installation).
#[derive(Debug, Default)]
pub struct Builtins {
    /// Include directories, in search order.
    pub dirs: Vec<PathBuf>,
    /// Files the driver probes to choose them.
    pub probes: Vec<PathBuf>,
}

/// Built-ins by (compiler, C++?).
type BuiltinDirs = HashMap<(String, bool), Arc<Builtins>>;

/// Caches shared by every job of a build.
#[derive(Debug, Default)]
pub struct Caches {
    files: Mutex<HashMap<PathBuf, FileInfo>>,
    builtins: Mutex<BuiltinDirs>,
    compilers: Mutex<HashMap<String, CompilerRef>>,
    fingerprints: OnceMap<(String, bool), Result<Arc<Fingerprint>, String>>,
    /// Dependency scans, reused while none of the files they found changed.
    pub scans: ScanCache,
    honours_sde: Mutex<HashMap<String, bool>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    /// The digest and content facts of the file at `path`, hashed once per version.
    pub fn file(&self, path: &std::path::Path) -> std::io::Result<FileInfo> {
        let meta = std::fs::metadata(path)?;
        let key = (
            meta.mtime(),
            meta.mtime_nsec(),
            meta.size(),
            meta.ino(),
            meta.dev(),
        );
        if let Some(info) = lock(&self.files).get(path)
            && info.key == key
        {
            return Ok(info.clone());
        }
        let bytes = std::fs::read(path)?;
        let info = FileInfo {
            key,
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            executable: meta.mode() & 0o111 != 0,
            flags: Arc::new(content::scan(&bytes)),
        };
        lock(&self.files).insert(path.to_owned(), info.clone());
        Ok(info)
    }

    /// The host's compiler at `path`, identified once per build.
    pub async fn compiler(&self, path: &str) -> Result<CompilerRef, String> {
        if let Some(c) = lock(&self.compilers).get(path) {
            return Ok(c.clone());
        }
        let real = std::fs::canonicalize(path).map_err(|e| format!("compiler {path}: {e}"))?;
        let bytes = tokio::fs::read(&real)
            .await
            .map_err(|e| format!("compiler {path}: {e}"))?;
        // Each -dump option is a command of its own: the driver stops at the first.
        let mut version = Vec::new();
        // clang answers -dumpversion only.
        for opts in [&["-dumpfullversion", "-dumpversion"][..], &["-dumpmachine"]] {
            for opt in opts {
                let out = tokio::process::Command::new(path)
                    .arg(opt)
                    .output()
                    .await
                    .map_err(|e| format!("compiler {path}: {e}"))?;
                let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !answer.is_empty() {
                    version.push(answer);
                    break;
                }
            }
        }
        let driver = PathBuf::from(path);
        let ident = tokio::task::spawn_blocking(move || {
            offload_shared::toolchain::assembly_ident(&driver, &[])
        })
        .await
        .map_err(|e| format!("compiler {path}: {e}"))?
        .map_err(|e| format!("compiler {path}: {e}"))?;
        let c = CompilerRef {
            path: path.to_owned(),
            digest: Digest::of(&bytes),
            ident: ident.unwrap_or_default(),
            version: version.join(" "),
        };
        lock(&self.compilers).insert(path.to_owned(), c.clone());
        Ok(c)
    }

    /// The fingerprint of `compiler` for C or C++, computed once per build.
    pub async fn fingerprint(&self, compiler: &str, cxx: bool) -> Result<Arc<Fingerprint>, String> {
        let key = (compiler.to_owned(), cxx);
        self.fingerprints
            .get_or_init(key, || async {
                let ours = self.compiler(compiler).await?;
                let dirs: Vec<String> = self
                    .builtins(compiler, cxx)
                    .await
                    .dirs
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect();
                tokio::task::spawn_blocking(move || {
                    Arc::new(fingerprint::compute(&ours, cxx, &dirs))
                })
                .await
                .map_err(|e| format!("fingerprinting {compiler}: {e}"))
            })
            .await
    }

    /// Whether `compiler` takes `__DATE__` and `__TIME__` from `SOURCE_DATE_EPOCH` (clang 14
    /// does not: it uses the wall clock), checked once per build by preprocessing them.
    /// Blocking.
    pub fn honours_source_date_epoch(&self, compiler: &str) -> bool {
        if let Some(&known) = lock(&self.honours_sde).get(compiler) {
            return known;
        }
        let honours = sde::honoured(compiler);
        if !honours {
            tracing::info!(
                compiler,
                "ignores SOURCE_DATE_EPOCH: __DATE__/__TIME__ stay local"
            );
        }
        lock(&self.honours_sde).insert(compiler.to_owned(), honours);
        honours
    }

    /// The compiler's built-in include directories for C or C++, asked once per build.
    pub async fn builtins(&self, compiler: &str, cxx: bool) -> Arc<Builtins> {
        let key = (compiler.to_owned(), cxx);
        if let Some(b) = lock(&self.builtins).get(&key) {
            return b.clone();
        }
        let out = tokio::process::Command::new(compiler)
            .args(["-x", if cxx { "c++" } else { "c" }, "-E", "-v", "/dev/null"])
            .env("LC_ALL", "C")
            .stdout(std::process::Stdio::null())
            .output()
            .await;
        let dirs = Arc::new(out.map_or_else(
            |_| Builtins::default(),
            |o| {
                let text = String::from_utf8_lossy(&o.stderr);
                Builtins {
                    dirs: builtin::parse_search_list(&text),
                    probes: builtin::clang_gcc_probe(&text).into_iter().collect(),
                }
            },
        ));
        lock(&self.builtins).insert(key, dirs.clone());
        dirs
    }
}
