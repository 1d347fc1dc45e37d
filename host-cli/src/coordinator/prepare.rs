//! Turns a compile that may run remotely into a job: finds every file it reads (the
//! dependency scan), the directories it searches and writes, and the links on the way to
//! each, hashes the files, and refuses — with a reason — whatever the worker could not
//! reproduce exactly.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, JobRequest};

use super::content::{self, ContentFlags};
use super::fingerprint::{self, Fingerprint};
use super::oncemap::OnceMap;
use super::scancache::{ScanCache, ScanKey};
use super::tree::build_tree;
use super::{builtin, depfile, envpolicy, sde, terminal};
use crate::classify::{Compile, Language};
use crate::ipc::CompileRequest;

/// A job ready to send, and what is needed to answer the worker.
#[derive(Debug)]
pub struct Prepared {
    /// The request.
    pub job: JobRequest,
    /// Where each input's bytes are on this host.
    pub blobs: HashMap<Digest, PathBuf>,
    /// Real paths of the directories outputs may be written to.
    pub writable: HashSet<PathBuf>,
    /// Real paths of every input file.
    pub inputs: HashSet<PathBuf>,
    /// The dependency scan was reused from an earlier identical compile.
    pub scan_reused: bool,
}

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
    scans: ScanCache,
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

/// Whether this host has the named locale (else the compiler falls back to C).
fn host_has_locale(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: newlocale/freelocale are thread-safe and do not touch the global locale.
    unsafe {
        let l = libc::newlocale(libc::LC_ALL_MASK, c.as_ptr(), std::ptr::null_mut());
        if l.is_null() {
            return false;
        }
        libc::freelocale(l);
        true
    }
}

/// Runs the dependency scan and builds the job, or says why it must run locally.
pub async fn prepare(
    req: &CompileRequest,
    compile: &Compile,
    rsp_files: &[PathBuf],
    caches: &Arc<Caches>,
    job_id: u64,
    timeout_secs: u32,
) -> Result<Prepared, String> {
    // The compile writes into what is there; a remote result would replace it.
    let output = std::path::Path::new(&req.cwd).join(&compile.output);
    if let Some(what) = super::outputs::not_replaceable(&output) {
        return Err(format!("the output {} is {what}", output.display()));
    }
    let mut env = envpolicy::remote_env(&req.env, &host_has_locale)?;
    let terminal = terminal::adapt(req, &mut env)?;
    let compiler = caches.compiler(&req.compiler).await?;
    let cxx = matches!(compile.language, Language::Cxx | Language::PreprocessedCxx);
    let builtins = caches.builtins(&req.compiler, cxx).await;

    let key = ScanKey {
        compiler: req.compiler.clone(),
        args: compile.scan_args.clone(),
        cwd: req.cwd.clone(),
        env: req
            .env
            .iter()
            .filter(|(k, _)| envpolicy::rule(k).is_some())
            .cloned()
            .collect(),
    };
    let cached = caches.scans.get(&key);
    // Anything changed within the second before the scan may race with it.
    let racy_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            let d = d.saturating_sub(std::time::Duration::from_secs(1));
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        });
    let deps = match &cached {
        Some(deps) => deps.clone(),
        None => scan(req, compile).await?,
    };

    let req = req.clone();
    let compile = compile.clone();
    let rsp_files = rsp_files.to_vec();
    let caches = caches.clone();
    tracing::debug!(job_id, "scan done");
    let want_witnesses = cached.is_none();
    tokio::task::spawn_blocking(move || {
        let t = build_tree(
            &req,
            &compile,
            &rsp_files,
            &deps,
            &builtins,
            &caches,
            want_witnesses,
        )?;
        if let Some(w) = t
            .witnesses
            .as_ref()
            .filter(|w| w.all_older_than(racy_after))
        {
            caches.scans.insert(key, deps.clone(), w.clone());
        }
        Ok::<_, String>(t).map(|t| Prepared {
            job: JobRequest {
                job_id,
                compiler,
                argv: std::iter::once(req.compiler.clone())
                    .chain(terminal.extra_args.iter().map(|a| a.to_string()))
                    .chain(req.args.iter().cloned())
                    .collect(),
                cwd: req.cwd.clone(),
                env,
                tree: t.tree,
                system_include_dirs: builtins
                    .dirs
                    .iter()
                    .filter_map(|d| d.to_str().map(str::to_owned))
                    .collect(),
                cc1_argv: Vec::new(),
                timeout_secs,
            },
            blobs: t.blobs,
            writable: t.writable,
            inputs: t.inputs,
            scan_reused: !want_witnesses,
        })
    })
    .await
    .map_err(|e| format!("preparing the job: {e}"))?
}

/// Runs the dependency scan: the compile's own flags with `-M`, in its directory and
/// environment. A failing scan means the compile fails too: it then runs locally, where it
/// reports its error.
async fn scan(req: &CompileRequest, compile: &Compile) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new(&req.compiler)
        .args(&compile.scan_args)
        .arg("-M")
        .current_dir(&req.cwd)
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("dependency scan: {e}"))?;
    if !out.status.success() {
        return Err("the dependency scan failed (the compile reports the error)".into());
    }
    Ok(depfile::prerequisites(&String::from_utf8_lossy(
        &out.stdout,
    )))
}
