//! `offload status`: this host's compilers (their fingerprints), the workers (given on the
//! command line, or known from earlier probes) with how each would run each compiler, and
//! whether a kept probe result still holds for their toolchains as they are now.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use offload_shared::protocol::ToolchainKind;

use crate::auth::HostAuth;
use crate::compilers;
use crate::coordinator::facts::Caches;
use crate::coordinator::fingerprint::Fingerprint;
use crate::coordinator::probe;
use crate::coordinator::probecache::{self, Entry, ProbeCache};
use crate::coordinator::remote::{Worker, WorkerSpec};

/// The compilers looked for on PATH, with the language their probe uses.
const COMPILERS: &[(&str, bool)] = &[
    ("gcc", false),
    ("g++", true),
    ("clang", false),
    ("clang++", true),
];

/// Builds the report. `workers` adds to the workers known from kept probe results.
pub async fn report(workers: &[WorkerSpec], auth: Arc<HostAuth>, cache: &ProbeCache) -> String {
    let caches = Caches::default();
    let mut out = String::new();
    let self_exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut fps: Vec<Arc<Fingerprint>> = Vec::new();
    let _ = writeln!(out, "Host compilers:");
    for (name, cxx) in COMPILERS {
        let Some(found) = compilers::find_real(name.as_ref(), &path, None, &self_exe) else {
            let _ = writeln!(out, "  {name}: not found on PATH");
            continue;
        };
        let found = found.to_string_lossy().into_owned();
        match caches.fingerprint(&found, *cxx).await {
            Ok(fp) => {
                let _ = writeln!(out, "  {name}: {}", fp.summary());
                fps.push(fp);
            }
            Err(e) => {
                let _ = writeln!(out, "  {name}: {e}");
            }
        }
    }

    let kept = cache.entries();
    let mut addrs: BTreeSet<String> = workers.iter().map(|w| w.addr.clone()).collect();
    addrs.extend(kept.iter().map(|e| e.worker.clone()));
    addrs.extend(auth.paired().into_iter().filter_map(|p| p.last_address));
    let _ = writeln!(out, "\nWorkers:");
    if addrs.is_empty() {
        let _ = writeln!(
            out,
            "  none given (--worker HOST:PORT) and none probed before"
        );
    }
    for addr in &addrs {
        let expect = workers
            .iter()
            .find(|w| &w.addr == addr)
            .and_then(|w| w.expect);
        let w = Worker::new(addr.clone(), auth.clone(), expect);
        match w.hello().await {
            Ok(welcome) => {
                let _ = writeln!(
                    out,
                    "  {addr}: {} ({} slots)",
                    welcome.worker, welcome.slots
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {addr}: unreachable ({e})");
                for e in kept.iter().filter(|e| &e.worker == addr) {
                    let _ = writeln!(out, "    {}", describe_kept(e, None));
                }
                continue;
            }
        }
        for fp in &fps {
            let c = &fp.compiler;
            let lang = if fp.cxx { "C++" } else { "C" };
            let info = match w.toolchain(c).await {
                Ok(i) => i,
                Err(e) => {
                    let _ = writeln!(out, "    {} [{lang}]: {e}", c.path);
                    continue;
                }
            };
            if info.kind == ToolchainKind::Unavailable {
                let _ = writeln!(
                    out,
                    "    {} [{lang}]: cannot run it: {}",
                    c.path, info.detail
                );
                continue;
            }
            let host = probe::key(fp);
            let kept_now = cache.lookup(addr, &c.path, fp.cxx, &host, &info.fingerprint);
            let verdict = match &kept_now {
                Some(e) => describe_kept(e, Some(true)),
                None => match kept
                    .iter()
                    .find(|e| &e.worker == addr && e.compiler == c.path && e.cxx == fp.cxx)
                {
                    Some(e) => describe_kept(e, Some(false)),
                    None => "not probed yet (the next build probes it)".into(),
                },
            };
            let _ = writeln!(
                out,
                "    {} [{lang}]: {:?} with {}; {verdict}",
                c.path, info.kind, info.detail
            );
        }
    }
    if let Some(dir) = crate::cachedir::offload_cache_dir() {
        let _ = writeln!(
            out,
            "\nProbe results are kept in {}",
            Path::new(&dir).join("probes.json").display()
        );
    }
    out
}

/// One kept result; `current` says whether it matches the toolchains as they are now.
fn describe_kept(e: &Entry, current: Option<bool>) -> String {
    let result = if e.passed {
        "probe passed".to_owned()
    } else {
        format!("probe failed: {}", e.detail)
    };
    let age = probecache::now().saturating_sub(e.when);
    let when = match age {
        0..120 => format!("{age} s ago"),
        120..7200 => format!("{} min ago", age / 60),
        7200..172_800 => format!("{} h ago", age / 3600),
        _ => format!("{} days ago", age / 86_400),
    };
    let lang = if e.cxx { "C++" } else { "C" };
    match current {
        Some(true) => format!("{result} {when}, still valid"),
        Some(false) => format!(
            "{result} {when} for other toolchains (changed since: the next build probes again)"
        ),
        None => format!("{} [{lang}]: {result} {when} ({})", e.compiler, e.how),
    }
}
