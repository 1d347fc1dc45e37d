//! Turns a compile that may run remotely into a job: finds every file it reads (the
//! dependency scan), the directories it searches and writes, and the links on the way to
//! each, hashes the files, and refuses — with a reason — whatever the worker could not
//! reproduce exactly.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use offload_shared::Digest;
use offload_shared::protocol::JobRequest;

use super::facts::Caches;
use super::scancache::ScanKey;
use super::tree::build_tree;
use super::{depfile, envpolicy, terminal};
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
