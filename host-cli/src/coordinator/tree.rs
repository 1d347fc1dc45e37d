//! The tree of one job: every directory the compile may search or write, every file it
//! reads, and every link on the way to them, at this host's absolute paths; and the
//! refusals that make a compile local because the worker could not reproduce it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use offload_shared::Digest;
use offload_shared::tree::{EntryKind, TreeEntry};
use offload_shared::walk::{Node, PathWalker, Resolved};

use super::envpolicy;
use super::facts::{Builtins, Caches};
use super::scancache::Witnesses;
use crate::classify::{Compile, Language};
use crate::ipc::CompileRequest;

/// The tree of a job and the host-side facts about it.
pub struct TreeParts {
    /// The entries, parents first.
    pub tree: Vec<TreeEntry>,
    /// Where each file's bytes are.
    pub blobs: HashMap<Digest, PathBuf>,
    /// Real paths of the directories outputs may go to.
    pub writable: HashSet<PathBuf>,
    /// Real paths of every input file.
    pub inputs: HashSet<PathBuf>,
    /// What proves the scan still valid later; `None` when not asked for or not possible.
    pub witnesses: Option<Witnesses>,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// What the inputs' texts require.
#[derive(Default)]
struct ContentNeeds {
    /// Names probed with `__has_include`, and included names that may be missing from the
    /// scan's list (`#pragma once` aliases): their candidates are shipped when they exist.
    probes: Vec<String>,
    /// Every included or probed name (for the scan cache's witnesses).
    names: Vec<String>,
    /// No include is computed by a macro.
    cacheable: bool,
}

/// Builds the job's tree, or says why the compile must run locally.
pub fn build_tree(
    req: &CompileRequest,
    compile: &Compile,
    rsp_files: &[PathBuf],
    deps: &[String],
    builtins: &Builtins,
    caches: &Caches,
    want_witnesses: bool,
) -> Result<TreeParts, String> {
    let cwd = PathBuf::from(&req.cwd);
    let mut w = PathWalker::new();
    let writable = writable_dirs(&mut w, req, compile, &cwd)?;
    let search = search_dirs(req, compile, builtins, &cwd);
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
    let needs = content_needs(req, compile, &inputs, deps, caches)?;
    // Directories a quoted include is looked up in first: those of the including files.
    let mut dirs: Vec<PathBuf> = deps
        .iter()
        .filter_map(|d| cwd.join(d).parent().map(Path::to_owned))
        .chain(search.iter().cloned())
        .collect();
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    let witnesses = (want_witnesses && needs.cacheable).then(|| {
        let mut wit = Witnesses::default();
        for dep in deps {
            wit.record(cwd.join(dep));
        }
        for d in &dirs {
            for name in &needs.names {
                wit.record(d.join(name));
            }
        }
        wit
    });
    for name in &needs.probes {
        for d in &dirs {
            w.resolve(&d.join(name), &cwd)
                .map_err(|e| io("probe", d, e))?;
        }
    }
    check_output(compile, &cwd, &inputs)?;
    let (tree, blobs) = entries(&w, &writable, &mut inputs, caches)?;
    Ok(TreeParts {
        tree,
        blobs,
        writable,
        inputs,
        witnesses,
    })
}

/// The working directory and the output directories, resolved and marked writable (and
/// PWD, whose links gcc may follow to name the compile directory).
fn writable_dirs(
    w: &mut PathWalker,
    req: &CompileRequest,
    compile: &Compile,
    cwd: &Path,
) -> Result<HashSet<PathBuf>, String> {
    let mut writable = HashSet::new();
    match w
        .resolve(cwd, Path::new("/"))
        .map_err(|e| io("cwd", cwd, e))?
    {
        Resolved::Dir(d) => {
            writable.insert(d);
        }
        _ => return Err("the working directory is not a directory".into()),
    }
    if let Some(pwd) = envpolicy::get(&req.env, "PWD") {
        w.resolve(Path::new(pwd), cwd)
            .map_err(|e| io("PWD", Path::new(pwd), e))?;
    }
    for d in &compile.output_dirs {
        match w
            .resolve(d, cwd)
            .map_err(|e| io("output directory", d, e))?
        {
            Resolved::Dir(real) => {
                writable.insert(real);
            }
            _ => return Err(format!("output directory {} does not exist", d.display())),
        }
    }
    Ok(writable)
}

/// Every directory the preprocessor may search: the command line's, the CPATH family's and
/// the compiler's own, so that the worker sees the same directories exist.
fn search_dirs(
    req: &CompileRequest,
    compile: &Compile,
    builtins: &Builtins,
    cwd: &Path,
) -> Vec<PathBuf> {
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
        if let Some(v) = envpolicy::get(&req.env, var) {
            search.extend(v.split(':').map(|d| {
                if d.is_empty() {
                    cwd.to_owned()
                } else {
                    cwd.join(d)
                }
            }));
        }
    }
    search.extend(builtins.dirs.iter().cloned());
    search
}

/// Reads what the inputs' texts require, refusing what the worker could not reproduce.
fn content_needs(
    req: &CompileRequest,
    compile: &Compile,
    inputs: &HashSet<PathBuf>,
    deps: &[String],
    caches: &Caches,
) -> Result<ContentNeeds, String> {
    let sde = envpolicy::get(&req.env, "SOURCE_DATE_EPOCH").is_some();
    let asm = matches!(compile.language, Language::AsmCpp);
    let mut needs = ContentNeeds {
        cacheable: true,
        ..ContentNeeds::default()
    };
    let mut once = false;
    for real in inputs {
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
        if f.date_time && !caches.honours_source_date_epoch(&req.compiler) {
            return Err(format!(
                "{} uses __DATE__/__TIME__ and {} ignores SOURCE_DATE_EPOCH",
                real.display(),
                req.compiler
            ));
        }
        if f.incbin || (asm && f.asm_include) {
            return Err(format!("{} makes the assembler read files", real.display()));
        }
        if f.has_include_computed {
            return Err(format!("{} has a computed __has_include", real.display()));
        }
        needs
            .probes
            .extend(f.has_include.iter().map(|h| h.name.clone()));
        once |= f.pragma_once;
        needs.cacheable &= !f.include_computed;
        needs.names.extend(
            f.includes
                .iter()
                .chain(&f.has_include)
                .map(|h| h.name.clone()),
        );
    }
    needs.names.sort();
    needs.names.dedup();
    if once {
        // gcc lists a `#pragma once` header reached under a second name (a link) only
        // once, so the second name would be missing remotely: probe every included name
        // that no listed dependency ends with.
        let unlisted = needs.names.iter().filter(|name| {
            !deps
                .iter()
                .any(|d| d == *name || d.ends_with(&format!("/{name}")))
        });
        needs.probes.extend(unlisted.cloned());
    }
    needs.probes.sort();
    needs.probes.dedup();
    Ok(needs)
}

/// Refuses outputs offload cannot write as gcc would.
fn check_output(compile: &Compile, cwd: &Path, inputs: &HashSet<PathBuf>) -> Result<(), String> {
    let out = cwd.join(&compile.output);
    // gcc writes through a link at the output's path; offload would replace the link.
    if std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "output {} is a symbolic link",
            compile.output.display()
        ));
    }
    // An output that is also an input would be written into the worker's store.
    if let Ok(real) = std::fs::canonicalize(&out)
        && inputs.contains(&real)
    {
        return Err(format!(
            "output {} is also an input",
            compile.output.display()
        ));
    }
    Ok(())
}

/// The walker's nodes as tree entries, hashing every file (and counting it an input).
fn entries(
    w: &PathWalker,
    writable: &HashSet<PathBuf>,
    inputs: &mut HashSet<PathBuf>,
    caches: &Caches,
) -> Result<(Vec<TreeEntry>, HashMap<Digest, PathBuf>), String> {
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
    Ok((tree, blobs))
}
