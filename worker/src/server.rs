//! The accept loop and the per-connection protocol handler.
//!
//! Each connection runs jobs one after another; a semaphore bounds how many compile at
//! once across all connections. A connection's error is logged and ends that connection
//! only; a job's infrastructure failure is answered with `JobRejected` so the host compiles
//! locally.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use offload_shared::Digest;
use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::payload;
use offload_shared::protocol::{
    CompilerRef, FrameError, JobDone, JobRejected, JobRequest, Limits, Message, NeedBlobs,
    NeedToolchain, OutputFile, PROTOCOL_NAME, PROTOCOL_VERSION, ProtocolError, ToolchainInfo,
    ToolchainKind, ToolchainOffer, Welcome,
};
use offload_shared::tree::EntryKind;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::jobroot::{JobRoot, JobUser};
use crate::sandbox::{self, RunSpec};
use crate::shipped::Owned;
use crate::store::Store;
use crate::toolchain::{Mode, Toolchain, ToolchainError, Toolchains};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Jobs run at once.
    pub slots: u32,
    /// Where the store, toolchains and job roots live.
    pub work_dir: PathBuf,
    /// Name shown to hosts.
    pub name: String,
    /// Who compiles run as (the worker must be root to switch): slot N's jobs run as
    /// these ids plus N.
    pub job_user: Option<JobUser>,
    /// Most bytes the file store keeps (least recently used files go first).
    pub store_max_bytes: u64,
}

/// An environment: (name, value) pairs.
type Env = Vec<(String, String)>;

/// The program, command and environment a job runs with. The host's own compiler runs the
/// job's command unchanged. A cross gcc searches the host's include directories (`-isystem
/// DIR…` at the end, after the command's own `-isystem`s; not recorded in objects), and its
/// assembler's shim rewrites its `.ident` to the host's. Another clang runs the compiler
/// proper with the arguments the host's driver chose. The probe proves the result equal.
fn job_command(job: &JobRequest, mode: &Mode) -> Result<(String, Vec<String>, Env), String> {
    let program = job.compiler.path.clone();
    // The worker's clang sits at the host compiler's path in the job root; argv[0] is only
    // a name to `clang -cc1`, which runs no other program. Native (or shipped) clang gets a
    // -cc1 command for a job resolved against the host's CPU (`-march=native`).
    let cc1 = !job.cc1_argv.is_empty();
    match mode {
        Mode::CrossClangCc1 | Mode::Native | Mode::Shipped if cc1 => {
            if job.cc1_argv.get(1).map(String::as_str) != Some("-cc1") {
                return Err("a -cc1 command must start with the program and -cc1".into());
            }
            Ok((program, job.cc1_argv.clone(), job.env.clone()))
        }
        Mode::CrossClangCc1 => Err("this worker runs another build of clang: the job must carry the host driver's -cc1 command".into()),
        Mode::Native | Mode::Shipped => Ok((program, job.argv.clone(), job.env.clone())),
        Mode::CrossGcc { .. } if cc1 => Err("a gcc job cannot carry a -cc1 command".into()),
        Mode::CrossGcc { ident } => Ok(cross_gcc_command(job, ident, program)?),
    }
}

/// A cross gcc's command: the host's include directories and `.ident`.
fn cross_gcc_command(
    job: &JobRequest,
    ident: &str,
    program: String,
) -> Result<(String, Vec<String>, Env), String> {
    let has = |flag: &str| job.argv.iter().skip(1).any(|a| a == flag);
    if has("-nostdinc++") || has("-frecord-gcc-switches") {
        return Err(
            "a cross compiler cannot reproduce -nostdinc++ or -frecord-gcc-switches".into(),
        );
    }
    let mut argv = job.argv.clone();
    // The host's own directories as -isystem, after the command's own: searched before the
    // cross compiler's, which hold nothing in a job root (headers come from the host). Not
    // -nostdinc: that would also drop gcc's implicit <stdc-predef.h>.
    if !has("-nostdinc") {
        for d in &job.system_include_dirs {
            argv.push("-isystem".into());
            argv.push(d.clone());
        }
    }
    let mut env = job.env.clone();
    env.push(("OFFLOAD_AS_REAL".into(), crate::toolchain::REAL_AS.into()));
    env.push(("OFFLOAD_IDENT_FROM".into(), ident.to_owned()));
    env.push(("OFFLOAD_IDENT_TO".into(), job.compiler.ident.clone()));
    Ok((program, argv, env))
}

/// The answer for a compiler the worker cannot run.
fn unavailable(compiler: &CompilerRef, why: String) -> ToolchainInfo {
    ToolchainInfo {
        path: compiler.path.clone(),
        kind: ToolchainKind::Unavailable,
        detail: why,
        fingerprint: Digest([0; 32]),
    }
}

/// The answer for a toolchain the host shipped: its fingerprint is the bundle's digest.
fn shipped_info(compiler: &CompilerRef, tc: &Toolchain) -> ToolchainInfo {
    ToolchainInfo {
        path: compiler.path.clone(),
        kind: tc.mode.kind(),
        detail: format!("shipped bundle {}", tc.fingerprint),
        fingerprint: tc.fingerprint,
    }
}

/// Largest toolchain bundle accepted (compressed; gcc 12 with cc1plus is ~30 MB).
const MAX_BUNDLE_BYTES: u64 = 256 << 20;

/// Most bytes a job's blobs or outputs may add up to.
const MAX_JOB_BYTES: u64 = 1 << 30;
/// Longest compile accepted.
const MAX_TIMEOUT_SECS: u32 = 3600;

/// A running worker's shared state.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    store: Arc<Store>,
    toolchains: Toolchains,
    slots: Semaphore,
    /// Slot numbers not in use: a job runs as the job user's ids plus its slot's number.
    free_users: std::sync::Mutex<Vec<u32>>,
    next_root: AtomicU64,
}

/// A slot's number, taken while its job runs and given back when dropped (so a cancelled
/// job cannot leak it).
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

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The work directory is unusable.
    #[error("work directory {path}: {source}")]
    WorkDir {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Per-job roots need `chroot`.
    #[error(
        "the worker must run as root (or as root in its container) to give each job its own root"
    )]
    NotRoot,
}

impl Worker {
    /// Prepares the work directory.
    pub fn new(config: Config) -> Result<Arc<Worker>, StartError> {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return Err(StartError::NotRoot);
        }
        let wd = |source| StartError::WorkDir {
            path: config.work_dir.clone(),
            source,
        };
        let jobs = config.work_dir.join("jobs");
        if jobs.exists() {
            std::fs::remove_dir_all(&jobs).map_err(wd)?;
        }
        std::fs::create_dir_all(&jobs).map_err(wd)?;
        let store =
            Store::open(&config.work_dir.join("store"), config.store_max_bytes).map_err(wd)?;
        let toolchains = Toolchains::new(&config.work_dir.join("toolchains"));
        // Probed (and logged) now rather than on the first job.
        let _ = sandbox::layers();
        Ok(Arc::new(Worker {
            slots: Semaphore::new(config.slots as usize),
            free_users: std::sync::Mutex::new((0..config.slots).rev().collect()),
            store: Arc::new(store),
            toolchains,
            next_root: AtomicU64::new(0),
            config,
        }))
    }

    /// Accepts connections until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut shutdown => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    let _ = stream.set_nodelay(true);
                    let me = self.clone();
                    tokio::spawn(async move {
                        let (r, w) = stream.into_split();
                        if let Err(e) = me.connection(r, w).await {
                            tracing::warn!(%peer, "connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Speaks the protocol on one connection.
    pub async fn connection<R, W>(&self, r: R, w: W) -> Result<(), FrameError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut r = BufReader::new(r);
        let mut w = BufWriter::new(w);
        let lim = Limits::DEFAULT;
        let Some((hello, _)) = read_frame::<_, Message>(&mut r, lim).await? else {
            return Ok(());
        };
        match hello {
            Message::Hello(h) if h.protocol == PROTOCOL_NAME && h.version == PROTOCOL_VERSION => {
                tracing::debug!(client = h.client, "hello");
            }
            other => {
                let message = match other {
                    Message::Hello(h) => format!(
                        "protocol {} version {} is not supported (this worker speaks {PROTOCOL_NAME} {PROTOCOL_VERSION})",
                        h.protocol, h.version
                    ),
                    _ => "expected hello".to_owned(),
                };
                let reply = Message::Error(ProtocolError {
                    message: message.clone(),
                });
                write_frame(&mut w, &reply, &[], lim).await?;
                return Err(FrameError::Malformed(message));
            }
        }
        let welcome = Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            worker: self.config.name.clone(),
            slots: self.config.slots,
            arch: std::env::consts::ARCH.to_owned(),
        });
        write_frame(&mut w, &welcome, &[], lim).await?;
        // The toolchains this connection shipped: they serve its jobs alone.
        let mut mine = Owned::default();
        loop {
            let Some((msg, _)) = read_frame::<_, Message>(&mut r, lim).await? else {
                return Ok(());
            };
            let job = match msg {
                Message::Job(job) => job,
                Message::ToolchainQuery(compiler) => {
                    let info = self.toolchain_info(compiler, &mine);
                    write_frame(&mut w, &Message::ToolchainInfo(info), &[], lim).await?;
                    continue;
                }
                Message::ToolchainOffer(offer) => {
                    self.offered(offer, &mut mine, &mut r, &mut w).await?;
                    continue;
                }
                _ => {
                    let message = "expected a job, a toolchain query or offer".to_owned();
                    write_frame(
                        &mut w,
                        &Message::Error(ProtocolError {
                            message: message.clone(),
                        }),
                        &[],
                        lim,
                    )
                    .await?;
                    return Err(FrameError::Malformed(message));
                }
            };
            self.job(*job, &mine, &mut r, &mut w).await?;
        }
    }

    /// Prepares the toolchain for `compiler` (if it can) and says how it would run.
    fn toolchain_info(&self, compiler: CompilerRef, mine: &Owned) -> ToolchainInfo {
        let got = tokio::task::block_in_place(|| self.toolchains.get(&compiler, mine));
        match got {
            Ok(tc) if tc.mode == Mode::Shipped => shipped_info(&compiler, &tc),
            Ok(tc) => ToolchainInfo {
                path: compiler.path,
                kind: tc.mode.kind(),
                detail: tc.runs_as.clone(),
                fingerprint: tc.fingerprint,
            },
            Err(e) => unavailable(&compiler, e.to_string()),
        }
    }

    /// Answers the host's offer of its toolchain: takes a bundle it keeps already, asks for
    /// the bytes of one it lacks (refusing oversized ones), and answers with the
    /// toolchain it then has, or why not.
    async fn offered<R, W>(
        &self,
        offer: ToolchainOffer,
        mine: &mut Owned,
        r: &mut R,
        w: &mut W,
    ) -> Result<(), FrameError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let lim = Limits::DEFAULT;
        let (compiler, bundle) = (&offer.compiler, offer.bundle);
        let answer = |result: Result<Arc<Toolchain>, ToolchainError>| -> Message {
            Message::ToolchainInfo(match result {
                Ok(tc) => shipped_info(compiler, &tc),
                Err(e) => {
                    tracing::warn!(compiler = compiler.path, %bundle, "shipped toolchain refused: {e}");
                    unavailable(compiler, e.to_string())
                }
            })
        };
        if self.toolchains.has_bundle(&bundle) {
            let got = tokio::task::block_in_place(|| {
                self.toolchains.install(compiler, &bundle, None, mine)
            });
            return write_frame(w, &answer(got), &[], lim).await;
        }
        let max = MAX_BUNDLE_BYTES.min(lim.max_payload.into());
        if offer.size > max {
            let why = format!(
                "its toolchain bundle of {} bytes exceeds this worker's limit of {max} bytes",
                offer.size
            );
            tracing::warn!(compiler = compiler.path, %bundle, "{why}");
            return write_frame(
                w,
                &Message::ToolchainInfo(unavailable(compiler, why)),
                &[],
                lim,
            )
            .await;
        }
        let need = Message::NeedToolchain(NeedToolchain { bundle });
        write_frame(w, &need, &[], lim).await?;
        // Exactly the offered size: a larger payload is refused before it is read.
        let bundle_lim = Limits {
            max_payload: u32::try_from(offer.size).unwrap_or(u32::MAX),
            ..lim
        };
        let t0 = std::time::Instant::now();
        let (msg, bytes) = match read_frame::<_, Message>(r, bundle_lim).await {
            Ok(Some(x)) => x,
            Ok(None) => return Err(FrameError::Truncated),
            Err(e) => {
                let message = format!("toolchain bundle refused: {e}");
                let reply = Message::Error(ProtocolError { message });
                let _ = write_frame(w, &reply, &[], lim).await;
                return Err(e);
            }
        };
        match msg {
            Message::ToolchainBundle(b)
                if b.bundle == bundle && bytes.len() as u64 == offer.size => {}
            _ => {
                let message = "expected the offered toolchain bundle".to_owned();
                let reply = Message::Error(ProtocolError {
                    message: message.clone(),
                });
                write_frame(w, &reply, &[], lim).await?;
                return Err(FrameError::Malformed(message));
            }
        }
        let received_ms = t0.elapsed().as_millis() as u64;
        let got = tokio::task::block_in_place(|| {
            self.toolchains
                .install(compiler, &bundle, Some(&bytes), mine)
        });
        tracing::info!(
            compiler = compiler.path,
            %bundle,
            bytes = bytes.len(),
            received_ms,
            unpacked_ms = t0.elapsed().as_millis() as u64 - received_ms,
            ok = got.is_ok(),
            "toolchain bundle received"
        );
        write_frame(w, &answer(got), &[], lim).await
    }

    async fn job<R, W>(
        &self,
        job: JobRequest,
        mine: &Owned,
        r: &mut R,
        w: &mut W,
    ) -> Result<(), FrameError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let lim = Limits::DEFAULT;
        let id = job.job_id;
        let reject = |reason: String| {
            tracing::info!(job = id, "rejected: {reason}");
            Message::JobRejected(JobRejected { job_id: id, reason })
        };
        // Which blobs are missing.
        let mut seen = HashSet::new();
        let mut missing: Vec<Digest> = Vec::new();
        for e in &job.tree {
            if let EntryKind::File { digest, .. } = &e.kind
                && seen.insert(*digest)
                && !self.store.has(digest)
            {
                missing.push(*digest);
            }
        }
        // The job's blobs become the most recently used: eviction takes others first.
        self.store.touch(seen.iter().copied());
        let need = Message::NeedBlobs(NeedBlobs {
            job_id: id,
            digests: missing.clone(),
        });
        write_frame(w, &need, &[], lim).await?;
        if !missing.is_empty() {
            let Some((msg, bytes)) = read_frame::<_, Message>(r, lim).await? else {
                return Err(FrameError::Truncated);
            };
            let Message::Blobs(b) = msg else {
                return Err(FrameError::Malformed("expected blobs".into()));
            };
            let asked: HashSet<&Digest> = missing.iter().collect();
            if b.job_id != id
                || b.blobs.len() != missing.len()
                || !b.blobs.iter().all(|(d, _)| asked.contains(d))
            {
                return Err(FrameError::Malformed(
                    "blobs do not match the request".into(),
                ));
            }
            let sizes: Vec<u64> = b.blobs.iter().map(|(_, s)| *s).collect();
            let parts = match payload::unpack(&bytes, &sizes, MAX_JOB_BYTES) {
                Ok(p) => p,
                Err(e) => return Err(FrameError::Malformed(e.to_string())),
            };
            let put = tokio::task::block_in_place(|| {
                let put = b
                    .blobs
                    .iter()
                    .zip(parts)
                    .try_for_each(|((d, _), bytes)| self.store.put(d, &bytes));
                // On every path, so that a refused job leaves the store within its budget.
                self.store.evict();
                put
            });
            if let Err(e) = put {
                return write_frame(w, &reject(e.to_string()), &[], lim).await;
            }
        }
        let Ok(permit) = self.slots.acquire().await else {
            return write_frame(w, &reject("worker shutting down".into()), &[], lim).await;
        };
        // Each slot compiles as a user of its own: a job's processes cannot signal, trace
        // or count against another job's.
        let slot = SlotUser::take(&self.free_users);
        let user = self.config.job_user.map(|base| JobUser {
            uid: base.uid.saturating_add(slot.n),
            gid: base.gid.saturating_add(slot.n),
        });
        let result = self.run_job(job, mine, user).await;
        drop(slot);
        drop(permit);
        let (reply, payload) = match result {
            Ok((done, payload)) => (Message::JobDone(done), payload),
            Err(reason) => (reject(reason), Vec::new()),
        };
        write_frame(w, &reply, &payload, lim).await
    }

    /// Runs a job whose blobs are all in the store.
    async fn run_job(
        &self,
        job: JobRequest,
        mine: &Owned,
        user: Option<JobUser>,
    ) -> Result<(JobDone, Vec<u8>), String> {
        crate::admission::check(&job, &self.store).map_err(|e| e.to_string())?;
        let n = self.next_root.fetch_add(1, Ordering::Relaxed);
        let root_dir = self.config.work_dir.join("jobs").join(n.to_string());
        let job = Arc::new(job);
        let t0 = std::time::Instant::now();
        let root = {
            let job = job.clone();
            let (toolchains, store) = (&self.toolchains, &self.store);
            // Blocking file-system work; the worker's thread pool has room for it.
            tokio::task::block_in_place(move || {
                let tc = toolchains
                    .get(&job.compiler, mine)
                    .map_err(|e| e.to_string())?;
                let charsets = offload_shared::toolchain::needs_charsets(&job.argv);
                let root = JobRoot::create(&root_dir, &tc, &job.tree, store, user, charsets)
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((root, tc.mode.clone()))
            })
        };
        let (root, mode) = match root {
            Ok(r) => r,
            Err(e) => {
                let _ =
                    std::fs::remove_dir_all(self.config.work_dir.join("jobs").join(n.to_string()));
                return Err(e);
            }
        };
        let t1 = std::time::Instant::now();
        let result = match job_command(&job, &mode) {
            Ok((program, argv, env)) => {
                self.compile_in(&root, &job, &program, &argv, &env, user)
                    .await
            }
            Err(e) => Err(e),
        };
        tracing::debug!(
            job = job.job_id,
            root_us = (t1 - t0).as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "job timings"
        );
        let root_path = root.root.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = root.remove() {
                tracing::warn!("cannot remove {}: {e}", root_path.display());
            }
            store.evict();
        });
        result
    }

    async fn compile_in(
        &self,
        root: &JobRoot,
        job: &JobRequest,
        program: &str,
        argv: &[String],
        env: &[(String, String)],
        user: Option<JobUser>,
    ) -> Result<(JobDone, Vec<u8>), String> {
        let timeout = Duration::from_secs(job.timeout_secs.clamp(1, MAX_TIMEOUT_SECS).into());
        let outcome = sandbox::run(RunSpec {
            root: &root.root,
            argv,
            program,
            cwd: &job.cwd,
            env,
            user,
            timeout,
        })
        .await
        .map_err(|e| e.to_string())?;
        let files = tokio::task::block_in_place(|| root.outputs(MAX_JOB_BYTES))
            .map_err(|e| e.to_string())?;
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
}
