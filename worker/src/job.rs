//! Running one job whose blobs are all in the store: admission, its toolchain, its root,
//! the sandboxed compile and the harvest of its outputs.
//!
//! A job holds, while it runs, one of its peer's slots, one of the worker's, the uid of
//! that slot and its root on disk; each is a guard, so a job whose future is dropped (the
//! peer left, cancelled, or the worker is stopping) gives all of them back and its sandbox
//! is killed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use offload_shared::protocol::{JobDone, JobRequest, OutputFile, payload};

use crate::command::CommandError;
use crate::harvest::HarvestError;
use crate::jobroot::{JobRoot, JobUser, RootError};
use crate::quota::PeerGuard;
use crate::sandbox::{self, RunError, RunSpec};
use crate::server::Worker;
use crate::shipped::Owned;
use crate::spare::Spares;
use crate::store::{Store, StoreError};
use crate::toolchain::{Toolchain, ToolchainError};
use offload_classify::admit::Refusal;

/// Most bytes a job's blobs or outputs may add up to.
pub const MAX_JOB_BYTES: u64 = 1 << 30;

/// Why a job did not run to a result. Each becomes a `JobRejected`; [`JobError::for_peer`]
/// is its text, which never names a path of the worker's.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Not a command a host would send remote.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No usable compiler.
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    /// The job's root could not be made.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The mode cannot run this job.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The sandbox or the compile failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The outputs could not be returned.
    #[error(transparent)]
    Harvest(#[from] HarvestError),
    /// The job's blobs could not be stored (a digest mismatch, a full disk).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The host cancelled it.
    #[error("cancelled by the host")]
    Cancelled,
    /// The worker is stopping.
    #[error("the worker is stopping")]
    Stopping,
    /// A blocking step panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl JobError {
    /// The reason sent to the host: what was refused, without the worker's paths.
    pub fn for_peer(&self) -> String {
        match self {
            JobError::Root(RootError::Io { source, .. }) => {
                format!("the worker cannot build the job's root: {source}")
            }
            JobError::Harvest(HarvestError::Io { dir, source }) => {
                format!("reading the outputs in {dir}: {}", source.kind())
            }
            JobError::Store(StoreError::Io { source, .. }) => {
                format!("the worker cannot store the job's files: {}", source.kind())
            }
            other => other.to_string(),
        }
    }
}

/// A job root removed (off the async threads) when dropped, whatever ended the job: the
/// conn drops it once the reply is sent. A spare root for the job's toolchain is made
/// first, on the same blocking thread, for the next job.
pub(crate) struct RootGuard {
    root: Option<JobRoot>,
    store: Arc<Store>,
    /// The toolchain to make a spare root for, and whether with the charset modules.
    spare: Option<(Arc<Spares>, Arc<Toolchain>, bool)>,
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let Some(root) = self.root.take() else {
            return;
        };
        let store = self.store.clone();
        let spare = self.spare.take();
        let remove = move || {
            if let Some((spares, tc, charsets)) = spare {
                spares.replenish(&tc, charsets);
            }
            let path = root.root.clone();
            if let Err(e) = root.remove() {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
            store.evict();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// A slot's number, taken while its job runs and given back when dropped.
struct SlotUser<'a> {
    n: u32,
    free: &'a std::sync::Mutex<Vec<u32>>,
}

impl<'a> SlotUser<'a> {
    /// A free slot number (the caller holds a slot permit, so one is free).
    fn take(free: &'a std::sync::Mutex<Vec<u32>>) -> SlotUser<'a> {
        let n = free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or(0);
        SlotUser { n, free }
    }
}

impl Drop for SlotUser<'_> {
    fn drop(&mut self) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.n);
    }
}

/// Longest compile accepted, whatever the host asks for.
pub const MAX_TIMEOUT_SECS: u32 = 3600;

impl Worker {
    /// Runs `job` once its peer and the worker have a slot free. Its root is left in
    /// `finished` (removed when that is dropped: after the reply), or removed on the way
    /// out if the job ends otherwise.
    pub(crate) async fn run_job(
        &self,
        job: JobRequest,
        mine: &Owned,
        peer: &PeerGuard,
        finished: &mut Option<RootGuard>,
    ) -> Result<(JobDone, Vec<u8>), JobError> {
        crate::admission::check(&job, &self.store)?;
        // In the peer's own queue, served fairly against the other hosts'.
        let _slot = self
            .slots
            .acquire(peer.peer())
            .await
            .map_err(|_| JobError::Stopping)?;
        // Each slot compiles as a user of its own: a job's processes cannot signal, trace
        // or count against another job's.
        let slot = SlotUser::take(&self.free_users);
        let user = self.config.job_user.map(|base| JobUser {
            uid: base.uid.saturating_add(slot.n),
            gid: base.gid.saturating_add(slot.n),
        });
        let n = self.next_root.fetch_add(1, Ordering::Relaxed);
        let mut root_dir = self.config.work_dir.join("jobs").join(n.to_string());
        let job = Arc::new(job);
        let t0 = Instant::now();
        let mut from_spare = false;
        let prepared = {
            let (job, store, toolchains) = (job.clone(), self.store.clone(), &self.toolchains);
            let spares = &self.spares;
            let (dir, from_spare) = (&mut root_dir, &mut from_spare);
            // Blocking file-system work; the worker's thread pool has room for it.
            tokio::task::block_in_place(move || {
                let tc = toolchains.get(&job.compiler, mine)?;
                let charsets = offload_shared::toolchain::needs_charsets(&job.argv);
                let root = match spares.take(&tc, charsets) {
                    Some(spare) => {
                        spare.path().clone_into(dir);
                        *from_spare = true;
                        JobRoot::create_in(spare, &job.tree, &store, user)?
                    }
                    None => JobRoot::create(dir, &tc, &job.tree, &store, user, charsets)?,
                };
                Ok::<_, JobError>((root, tc, charsets))
            })
        };
        let (root, tc, charsets) = match prepared {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root_dir);
                return Err(e);
            }
        };
        let mode = tc.mode.clone();
        let root = finished.insert(RootGuard {
            root: Some(root),
            store: self.store.clone(),
            spare: Some((self.spares.clone(), tc, charsets)),
        });
        let t1 = Instant::now();
        let command = mode.command(&job)?;
        let result = compile_in(root.root.as_ref(), &job, &command, user).await;
        tracing::debug!(
            job = job.job_id,
            root_us = (t1 - t0).as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            spare = from_spare,
            "job timings"
        );
        result
    }
}

/// Compiles in a made root and collects the outputs.
async fn compile_in(
    root: Option<&JobRoot>,
    job: &JobRequest,
    command: &crate::command::Command,
    user: Option<JobUser>,
) -> Result<(JobDone, Vec<u8>), JobError> {
    let root = root.ok_or_else(|| JobError::Internal("job root gone".into()))?;
    let timeout = Duration::from_secs(job.timeout_secs.clamp(1, MAX_TIMEOUT_SECS).into());
    let outcome = sandbox::run(RunSpec {
        root: &root.root,
        argv: &command.argv,
        program: &command.program,
        cwd: &job.cwd,
        env: &command.env,
        user,
        timeout,
    })
    .await?;
    let files = tokio::task::block_in_place(|| root.outputs(MAX_JOB_BYTES))?;
    let outputs = files
        .iter()
        .map(|(p, b)| OutputFile {
            path: p.clone(),
            size: b.len() as u64,
        })
        .collect();
    let payload = payload::pack(
        [&outcome.stdout[..], &outcome.stderr[..]]
            .into_iter()
            .chain(files.iter().map(|(_, b)| &b[..])),
    );
    let done = JobDone {
        job_id: job.job_id,
        status: outcome.status,
        stdout_len: outcome.stdout.len() as u64,
        stderr_len: outcome.stderr.len() as u64,
        outputs,
        compile_ms: outcome.elapsed.as_millis() as u64,
    };
    tracing::debug!(job = job.job_id, ms = done.compile_ms, "compiled");
    Ok((done, payload))
}
