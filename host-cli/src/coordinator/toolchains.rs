//! What the coordinator learns of each backend's toolchains, once per build: how it runs
//! each compiler (after shipping this host's toolchain when it needs it), and whether it
//! passed the toolchain probe for it (reused from earlier builds through the probe cache).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use offload_shared::protocol::{ToolchainInfo, ToolchainKind};

use super::executor::{Executor, WorkerId};
use super::{Coordinator, probe, probecache, ship};
use crate::ipc::CompileRequest;

impl Coordinator {
    /// Proves, once per worker and compiler, that the worker's compiles equal this host's:
    /// see [`probe`].
    pub(super) async fn probe(
        &self,
        exec: &Arc<dyn Executor>,
        req: &CompileRequest,
        cxx: bool,
    ) -> Result<(), String> {
        let key = (exec.id().clone(), req.compiler.clone(), cxx);
        self.probes.get_or_init(key, || async {
            let addr = &exec.label();
            let id = exec.id().as_str();
            let info = match self.toolchain(exec, &req.compiler).await {
                Ok(info) if info.kind != ToolchainKind::Unavailable => info,
                Ok(info) => {
                    self.stats.warn(format!(
                        "worker {addr} cannot run {}: {}; its compiles of it ran locally",
                        req.compiler, info.detail
                    ));
                    return Err(format!("worker {addr} cannot run {}", req.compiler));
                }
                Err(e) => return Err(e),
            };
            let fp = self.caches.fingerprint(&req.compiler, cxx).await?;
            let host = probe::key(&fp);
            if let Some(e) =
                self.probe_cache
                    .lookup(id, &req.compiler, cxx, &host, &info.fingerprint)
            {
                self.stats.probes_reused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(worker = addr, compiler = req.compiler, cxx, passed = e.passed, "probe result reused");
                if e.passed {
                    return Ok(());
                }
                self.stats.warn(format!(
                    "worker {addr} failed the toolchain probe for {} (in an earlier build, with the same toolchains): {}; its compiles of it ran locally",
                    req.compiler, e.detail
                ));
                return Err(format!("worker {addr} failed the toolchain probe: {}", e.detail));
            }
            self.stats.probes_run.fetch_add(1, Ordering::Relaxed);
            let dir = self
                .config
                .scratch
                .join(format!("probe-{}", self.next_job.fetch_add(1, Ordering::Relaxed)));
            let result = probe::run(self, exec, req, cxx, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            let entry = probecache::Entry {
                worker: id.to_owned(),
                worker_name: exec.name(),
                compiler: req.compiler.clone(),
                cxx,
                host,
                theirs: info.fingerprint,
                how: format!("{:?} ({})", info.kind, info.detail),
                passed: result.is_ok(),
                detail: result.clone().err().unwrap_or_default(),
                when: probecache::now(),
                summary: fp.summary(),
            };
            if let Err(e) = self.probe_cache.record(entry) {
                tracing::warn!("cannot save the probe result: {e}");
            }
            match &result {
                Ok(()) => tracing::info!(worker = addr, compiler = req.compiler, "toolchain probe passed"),
                Err(e) => self.stats.warn(format!(
                    "worker {addr} failed the toolchain probe for {}: {e}; its compiles of it ran locally",
                    req.compiler
                )),
            }
            result.map_err(|e| format!("worker {addr} failed the toolchain probe: {e}"))
        })
        .await
    }

    /// How `exec` runs `compiler`, asked once per build; a worker of this host's
    /// architecture that cannot run it gets this host's toolchain first (see [`ship`]).
    async fn toolchain(
        &self,
        exec: &Arc<dyn Executor>,
        compiler: &str,
    ) -> Result<ToolchainInfo, String> {
        let key = (exec.id().clone(), compiler.to_owned());
        self.toolchains.get_or_init(key, || async {
            let ours = self.caches.compiler(compiler).await?;
            let info = exec.toolchain(&ours).await.map_err(|e| e.to_string())?;
            tracing::info!(worker = exec.label(), compiler, kind = ?info.kind, detail = info.detail, "toolchain");
            Ok(ship::if_needed(exec.as_ref(), &self.bundles, &self.stats, &ours, info).await)
        })
        .await
    }

    /// How worker `id` runs `compiler`, if it has been asked.
    pub(super) fn kind_of(&self, id: &WorkerId, compiler: &str) -> Option<ToolchainKind> {
        let answer = self.toolchains.get(&(id.clone(), compiler.to_owned()))?;
        answer.ok().map(|i| i.kind)
    }
}
