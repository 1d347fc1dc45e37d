//! Running one compile on a backend: the job is prepared (scan, tree, digests), sent,
//! and its outputs written here — or the reason it must run locally is given. A remote
//! compile that fails is never the build's answer: it is compiled again locally.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use offload_shared::protocol::{ExitStatus, ToolchainKind};

use super::executor::Executor;
use super::remote::RemoteError;
use super::{Coordinator, Outcome, cc1, envpolicy, outputs, prepare, verify};
use crate::classify;
use crate::ipc::CompileRequest;

impl Coordinator {
    /// Runs one compile on `exec` (whose slot the caller holds) and writes its outputs —
    /// or, with `hold`, gives the successful result back unwritten ([`Outcome::Held`]),
    /// for the caller to verify, race or write ([`Coordinator::deliver`]).
    pub(super) async fn remote(
        &self,
        exec: &Arc<dyn Executor>,
        req: &CompileRequest,
        compile: &classify::Compile,
        rsp_files: &[PathBuf],
        hold: bool,
    ) -> Outcome {
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let prepared = prepare::prepare(
            req,
            compile,
            rsp_files,
            &self.caches,
            job_id,
            self.config.timeout_secs,
        )
        .await;
        let mut prepared = match prepared {
            Ok(p) => p,
            Err(reason) => {
                tracing::debug!(job_id, "local: {reason}");
                return Outcome::Local(reason);
            }
        };
        if compile.host_cpu
            || self.kind_of(exec.id(), &req.compiler) == Some(ToolchainKind::CrossClangCc1)
        {
            let job = &prepared.job;
            let args = job.argv.get(1..).unwrap_or_default();
            match cc1::command(&req.compiler, args, &job.cwd, &job.env).await {
                Ok(cmd) => prepared.job.cc1_argv = cmd,
                Err(reason) => return Outcome::Local(reason),
            }
        }
        if prepared.scan_reused {
            self.stats.scans_reused.fetch_add(1, Ordering::Relaxed);
        }
        let id = exec.id();
        tracing::debug!(job_id, source = %compile.source.display(), "sent to {}", exec.label());
        let result = exec.run(&prepared).await;
        tracing::debug!(job_id, "remote result");
        let res = match result {
            Ok(res) => {
                self.sched.worker_ok(id);
                res
            }
            Err(RemoteError::NotLending { why, .. }) => {
                self.sched.worker_not_lending(id);
                tracing::info!(worker = exec.label(), why, "the worker gave its cores back");
                return Outcome::Elsewhere(format!("the worker gave its cores back ({why})"));
            }
            Err(e) => {
                if e.blames_worker()
                    && let Some(pause) = self.sched.worker_failed(id)
                {
                    tracing::info!(
                        worker = exec.label(),
                        pause_s = pause.as_secs(),
                        "worker failed, its jobs run elsewhere: {e}"
                    );
                }
                tracing::debug!(
                    job_id,
                    blames_worker = e.blames_worker(),
                    "falling back: {e}"
                );
                return Outcome::FellBack(e.to_string());
            }
        };
        // A remote compile that fails is compiled again here, and the build sees that
        // result: a worker can fail where this host would not (a missing conversion module,
        // a resource limit), and only the local compile's failure is the build's own. A
        // failure that looks like the worker's fault (a signal, a missing file, a crash)
        // also pauses the worker.
        if res.done.status != ExitStatus::Code(0) {
            let infrastructure = match res.done.status {
                ExitStatus::Signal(_) => true,
                ExitStatus::Code(_) => outputs::looks_like_infrastructure(&res.stderr),
            };
            tracing::debug!(
                job_id,
                infrastructure,
                stderr = %String::from_utf8_lossy(&res.stderr),
                "remote compile failed; compiling locally"
            );
            if infrastructure && let Some(pause) = self.sched.worker_failed(id) {
                tracing::info!(
                    worker = exec.label(),
                    pause_s = pause.as_secs(),
                    "the worker's compiler crashed or missed a file"
                );
            }
            return Outcome::FellBack(if infrastructure {
                "the remote compiler crashed or missed a file".into()
            } else {
                "the remote compile failed (the local compile's result counts)".into()
            });
        }
        let files: Vec<(String, Vec<u8>)> = res
            .done
            .outputs
            .iter()
            .map(|o| o.path.clone())
            .zip(res.files)
            .collect();
        let job = prepared.job;
        let held = verify::Held {
            worker: id.clone(),
            label: exec.label(),
            compiler: req.compiler.clone(),
            columns: envpolicy::get(&job.env, "COLUMNS").map(str::to_owned),
            argv: job.argv,
            cwd: job.cwd,
            source: compile.source.display().to_string(),
            result: verify::Compiled {
                status: res.done.status,
                stdout: res.stdout,
                stderr: res.stderr,
                files,
            },
            writable: prepared.writable,
            inputs: prepared.inputs,
            umask: req.umask,
        };
        if hold {
            return Outcome::Held(Box::new(held));
        }
        self.deliver(held)
    }

    /// Writes a held remote result's outputs: the compile is done (or, if they cannot be
    /// written, it runs locally).
    pub(super) fn deliver(&self, held: verify::Held) -> Outcome {
        let written = tokio::task::block_in_place(|| {
            outputs::write(&held.result.files, &held.writable, &held.inputs, held.umask)
        });
        // Writing here failed (an output directory gone, a full disk): not the worker's
        // fault; the local compile meets the same condition and reports it.
        if let Err(e) = written {
            self.stats.warn(e.clone());
            return Outcome::FellBack(e);
        }
        let res = held.result;
        Outcome::Done {
            status: res.status,
            stdout: res.stdout,
            stderr: res.stderr,
        }
    }
}
