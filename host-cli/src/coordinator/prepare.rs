//! Turns a compile that may run remotely into a job: finds every file it reads (the
//! dependency scan), the directories it searches and writes, and the links on the way to
//! each, hashes the files, and refuses — with a reason — whatever the worker could not
//! reproduce exactly.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, JobRequest};
use offload_shared::tree::{EntryKind, TreeEntry};
use offload_shared::walk::{Node, PathWalker, Resolved};

use super::content::{self, ContentFlags};
use super::scancache::{ScanCache, ScanKey, Witnesses};
use super::{builtin, depfile, envpolicy};
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

#[derive(Debug, Clone)]
struct FileInfo {
    key: (i64, i64, u64, u64, u64),
    digest: Digest,
    size: u64,
    executable: bool,
    flags: Arc<ContentFlags>,
}

/// What the compiler searches by itself: its include directories, and files its driver
/// probes (clang's GCC installation).
#[derive(Debug, Default)]
struct Builtins {
    dirs: Vec<PathBuf>,
    probes: Vec<PathBuf>,
}

/// Built-ins by (compiler, C++?).
type BuiltinDirs = HashMap<(String, bool), Arc<Builtins>>;

/// Caches shared by every job of a build.
#[derive(Debug, Default)]
pub struct Caches {
    files: Mutex<HashMap<PathBuf, FileInfo>>,
    builtins: Mutex<BuiltinDirs>,
    compilers: Mutex<HashMap<String, CompilerRef>>,
    scans: ScanCache,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    fn file(&self, path: &Path) -> std::io::Result<FileInfo> {
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

    async fn compiler(&self, path: &str) -> Result<CompilerRef, String> {
        if let Some(c) = lock(&self.compilers).get(path) {
            return Ok(c.clone());
        }
        let real = std::fs::canonicalize(path).map_err(|e| format!("compiler {path}: {e}"))?;
        let bytes = tokio::fs::read(&real)
            .await
            .map_err(|e| format!("compiler {path}: {e}"))?;
        let out = tokio::process::Command::new(path)
            .args(["-dumpfullversion", "-dumpmachine"])
            .output()
            .await
            .map_err(|e| format!("compiler {path}: {e}"))?;
        let c = CompilerRef {
            path: path.to_owned(),
            digest: Digest::of(&bytes),
            version: String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        };
        lock(&self.compilers).insert(path.to_owned(), c.clone());
        Ok(c)
    }

    async fn builtins(&self, compiler: &str, cxx: bool) -> Arc<Builtins> {
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

fn env_get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
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
    let env = envpolicy::remote_env(&req.env, &host_has_locale)?;
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
                    .chain(req.args.iter().cloned())
                    .collect(),
                cwd: req.cwd.clone(),
                env,
                tree: t.tree,
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

/// The tree of a job and the host-side facts about it.
struct TreeParts {
    tree: Vec<TreeEntry>,
    blobs: HashMap<Digest, PathBuf>,
    writable: HashSet<PathBuf>,
    inputs: HashSet<PathBuf>,
    /// What proves the scan still valid later; `None` when not asked for or not possible.
    witnesses: Option<Witnesses>,
}

fn build_tree(
    req: &CompileRequest,
    compile: &Compile,
    rsp_files: &[PathBuf],
    deps: &[String],
    builtins: &Builtins,
    caches: &Caches,
    want_witnesses: bool,
) -> Result<TreeParts, String> {
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    let cwd = PathBuf::from(&req.cwd);
    let mut w = PathWalker::new();
    let mut writable = HashSet::new();
    match w
        .resolve(&cwd, Path::new("/"))
        .map_err(|e| io("cwd", &cwd, e))?
    {
        Resolved::Dir(d) => {
            writable.insert(d);
        }
        _ => return Err("the working directory is not a directory".into()),
    }
    if let Some(pwd) = env_get(&req.env, "PWD") {
        w.resolve(Path::new(pwd), &cwd)
            .map_err(|e| io("PWD", Path::new(pwd), e))?;
    }
    for d in &compile.output_dirs {
        match w
            .resolve(d, &cwd)
            .map_err(|e| io("output directory", d, e))?
        {
            Resolved::Dir(real) => {
                writable.insert(real);
            }
            _ => return Err(format!("output directory {} does not exist", d.display())),
        }
    }

    // Every directory the preprocessor may search, so that the worker sees the same
    // directories exist (and `__has_include` probes find the same files).
    let mut search: Vec<PathBuf> = compile
        .include_dirs
        .iter()
        .map(|(_, d)| cwd.join(d))
        .collect();
    let path_vars: &[&str] =
        if matches!(compile.language, Language::Cxx | Language::PreprocessedCxx) {
            &["CPATH", "CPLUS_INCLUDE_PATH"]
        } else {
            &["CPATH", "C_INCLUDE_PATH"]
        };
    for var in path_vars {
        if let Some(v) = env_get(&req.env, var) {
            search.extend(v.split(':').map(|d| {
                if d.is_empty() {
                    cwd.clone()
                } else {
                    cwd.join(d)
                }
            }));
        }
    }
    search.extend(builtins.dirs.iter().cloned());
    for d in &search {
        w.resolve(d, &cwd)
            .map_err(|e| io("include directory", d, e))?;
    }
    for p in &builtins.probes {
        w.resolve(p, &cwd).map_err(|e| io("compiler probe", p, e))?;
    }

    let mut inputs = HashSet::new();
    for dep in deps
        .iter()
        .map(PathBuf::from)
        .chain(rsp_files.iter().cloned())
    {
        match w.resolve(&dep, &cwd).map_err(|e| io("input", &dep, e))? {
            Resolved::File(real) => {
                inputs.insert(real);
            }
            _ => return Err(format!("input {} is not a regular file", dep.display())),
        }
        let gch = cwd.join(format!("{}.gch", dep.display()));
        if std::fs::symlink_metadata(&gch).is_ok() {
            return Err(format!("a precompiled header {} exists", gch.display()));
        }
    }
    let sde = env_get(&req.env, "SOURCE_DATE_EPOCH").is_some();
    let asm = matches!(compile.language, Language::AsmCpp);
    let mut probes: Vec<(String, bool)> = Vec::new();
    let mut once = false;
    let mut includes: Vec<String> = Vec::new();
    let mut cacheable = want_witnesses;
    for real in &inputs {
        let info = caches.file(real).map_err(|e| io("input", real, e))?;
        let f = &info.flags;
        if f.timestamp {
            return Err(format!("{} uses __TIMESTAMP__", real.display()));
        }
        if f.date_time && !sde {
            return Err(format!(
                "{} uses __DATE__/__TIME__ without SOURCE_DATE_EPOCH",
                real.display()
            ));
        }
        if f.incbin
            || (asm
                && memchr::memmem::find(&std::fs::read(real).unwrap_or_default(), b".include")
                    .is_some())
        {
            return Err(format!("{} makes the assembler read files", real.display()));
        }
        if f.has_include_computed {
            return Err(format!("{} has a computed __has_include", real.display()));
        }
        probes.extend(f.has_include.iter().map(|h| (h.name.clone(), h.quoted)));
        once |= f.pragma_once;
        cacheable &= !f.include_computed;
        includes.extend(f.includes.iter().map(|h| h.name.clone()));
        includes.extend(f.has_include.iter().map(|h| h.name.clone()));
    }
    let witnesses = cacheable.then(|| {
        let mut w = Witnesses::default();
        for dep in deps {
            w.record(cwd.join(dep));
        }
        let mut names: Vec<&String> = includes.iter().collect();
        names.sort();
        names.dedup();
        let mut dirs: Vec<PathBuf> = deps
            .iter()
            .filter_map(|d| cwd.join(d).parent().map(Path::to_owned))
            .chain(search.iter().cloned())
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            for name in &names {
                w.record(d.join(name));
            }
        }
        w
    });
    if once {
        // gcc lists a `#pragma once` header reached under a second name (a link) only
        // once, so the second name would be missing remotely: probe every included name
        // that no listed dependency ends with.
        probes.extend(
            includes
                .into_iter()
                .filter(|name| {
                    !deps
                        .iter()
                        .any(|d| d == name || d.ends_with(&format!("/{name}")))
                })
                .map(|name| (name, true)),
        );
    }
    if !probes.is_empty() {
        let mut dirs: Vec<PathBuf> = deps
            .iter()
            .filter_map(|d| cwd.join(d).parent().map(Path::to_owned))
            .collect();
        dirs.extend(search.iter().cloned());
        let mut seen = HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        probes.sort();
        probes.dedup();
        for (name, _) in &probes {
            for d in &dirs {
                w.resolve(&d.join(name), &cwd)
                    .map_err(|e| io("probe", d, e))?;
            }
        }
    }

    // gcc writes through a link at the output's path; offload would replace the link.
    if std::fs::symlink_metadata(cwd.join(&compile.output))
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(format!(
            "output {} is a symbolic link",
            compile.output.display()
        ));
    }
    // An output that is also an input would be written into the worker's store.
    if let Ok(real) = std::fs::canonicalize(cwd.join(&compile.output))
        && inputs.contains(&real)
    {
        return Err(format!(
            "output {} is also an input",
            compile.output.display()
        ));
    }

    let mut tree = Vec::with_capacity(w.nodes().len());
    let mut blobs = HashMap::new();
    for (path, node) in w.nodes() {
        let Some(p) = path.to_str() else {
            return Err(format!("path {} is not UTF-8", path.display()));
        };
        let kind = match node {
            Node::Dir => EntryKind::Dir {
                writable: writable.contains(path),
            },
            Node::Symlink(t) => EntryKind::Symlink {
                target: t
                    .to_str()
                    .ok_or_else(|| format!("link target {} is not UTF-8", t.display()))?
                    .to_owned(),
            },
            Node::File => {
                let info = caches.file(path).map_err(|e| io("input", path, e))?;
                blobs.insert(info.digest, path.clone());
                inputs.insert(path.clone());
                EntryKind::File {
                    digest: info.digest,
                    size: info.size,
                    executable: info.executable,
                }
            }
        };
        tree.push(TreeEntry {
            path: p.to_owned(),
            kind,
        });
    }
    Ok(TreeParts {
        tree,
        blobs,
        writable,
        inputs,
        witnesses,
    })
}
