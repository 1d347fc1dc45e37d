//! The coordinator inside `offload build`: receives every intercepted compiler call over a
//! Unix socket, classifies it, and runs it remotely or grants it a local slot. Any failure
//! of the remote path ends in a local compile: the build never fails because of offload.

pub mod builtin;
pub mod cc1;
pub use offload_classify::env as envpolicy;
pub mod content;
pub mod depfile;
pub mod facts;
pub mod fingerprint;
pub mod oncemap;
pub mod outputs;
pub mod prepare;
pub mod probe;
pub mod probecache;
pub mod remote;
pub mod scancache;
pub mod sched;
pub mod sde;
pub mod ship;
pub mod stats;
pub mod terminal;
pub mod tree;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::{ExitStatus, Limits, ToolchainInfo, ToolchainKind};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::classify::{self, Classification};
use crate::ipc::{CompileRequest, Reply, Request};
use facts::Caches;
use oncemap::OnceMap;
use remote::Worker;
use sched::{Grant, Scheduler};
use stats::Stats;

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Compiles run on this host at once.
    pub local_slots: usize,
    /// Jobs queued on a worker beyond its slots, so it never waits for the host.
    pub queue_per_worker: usize,
    /// Wall-clock limit of one remote compile.
    pub timeout_secs: u32,
    /// Niceness added to local compiles.
    pub local_nice: i32,
    /// A private directory of this host's for the toolchain probes.
    pub scratch: PathBuf,
}

/// The coordinator's state.
#[derive(Debug)]
pub struct Coordinator {
    config: Config,
    sched: Scheduler,
    workers: Vec<Arc<Worker>>,
    caches: Arc<Caches>,
    /// Counters for the summary.
    pub stats: Stats,
    next_job: AtomicU64,
    /// Toolchain probe results by (worker, compiler path, C++?).
    probes: OnceMap<(usize, String, bool), Result<(), String>>,
    /// Workers' toolchain answers by (worker, compiler path).
    toolchains: OnceMap<(usize, String), Result<ToolchainInfo, String>>,
    probe_cache: probecache::ProbeCache,
    bundles: ship::Bundles,
}

impl Coordinator {
    /// A coordinator for these workers (`host:port`); each is greeted once to learn its
    /// slot count, and one that does not answer starts paused.
    pub async fn new(
        config: Config,
        addrs: &[String],
        probe_cache: probecache::ProbeCache,
    ) -> Arc<Coordinator> {
        let sched = Scheduler::new(config.local_slots.max(1));
        let stats = Stats::default();
        let mut workers = Vec::new();
        for addr in addrs {
            let w = Arc::new(Worker::new(addr.clone()));
            let n = sched.add_worker(1, config.queue_per_worker);
            match w.hello().await {
                Ok(welcome) => {
                    tracing::info!(
                        worker = addr,
                        slots = welcome.slots,
                        name = welcome.worker,
                        "worker ready"
                    );
                    sched.set_slots(n, welcome.slots as usize);
                }
                Err(e) => {
                    stats.warn(format!("{e}; compiled locally until it answered"));
                    sched.worker_failed(n);
                }
            }
            workers.push(w);
        }
        Arc::new(Coordinator {
            config,
            sched,
            workers,
            caches: Arc::new(Caches::default()),
            stats,
            next_job: AtomicU64::new(1),
            probes: OnceMap::default(),
            toolchains: OnceMap::default(),
            probe_cache,
            bundles: ship::Bundles::default(),
        })
    }

    /// Total compressed bytes sent to and received from workers.
    pub fn traffic(&self) -> (u64, u64) {
        self.workers.iter().fold((0, 0), |(s, r), w| {
            (
                s + w.sent.load(Ordering::Relaxed),
                r + w.received.load(Ordering::Relaxed),
            )
        })
    }

    /// Serves wrapper connections forever.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let (r, w) = stream.into_split();
                        me.handle(r, w).await;
                    });
                }
                Err(e) => {
                    self.stats.warn(format!("coordinator accept failed: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn handle(&self, mut r: OwnedReadHalf, mut w: OwnedWriteHalf) {
        let lim = Limits::DEFAULT;
        let req = match read_frame::<_, Request>(&mut r, lim).await {
            Ok(Some((req, _))) => req,
            Ok(None) => return,
            Err(e) => {
                self.stats
                    .warn(format!("bad request from a compiler wrapper: {e}"));
                return;
            }
        };
        tracing::debug!("request received");
        let outcome = match req {
            Request::LocalSlot { reason } => Outcome::Local(reason),
            Request::Compile(req) => self.attempt(&req).await,
        };
        let (grant, reason) = match outcome {
            Outcome::Done {
                status,
                stdout,
                stderr,
            } => {
                self.stats.remote.fetch_add(1, Ordering::Relaxed);
                let reply = Reply::Finished {
                    status,
                    stdout_len: stdout.len() as u64,
                };
                let mut payload = stdout;
                payload.extend_from_slice(&stderr);
                if let Err(e) = write_frame(&mut w, &reply, &payload, lim).await {
                    self.stats
                        .warn(format!("cannot answer a compiler wrapper: {e}"));
                }
                return;
            }
            Outcome::LocalGranted(reason) => {
                self.stats.local_because(&reason);
                (Grant::Local, reason)
            }
            Outcome::Local(reason) => {
                self.stats.local_because(&reason);
                (self.sched.acquire(false, u64::MAX).await, reason)
            }
            Outcome::FellBack(reason) => {
                self.stats.fell_back_because(&reason);
                (self.sched.acquire(false, u64::MAX).await, reason)
            }
        };
        self.run_local(grant, &reason, r, w).await;
    }

    /// Decides about one compile and, if it can, runs it on a worker.
    async fn attempt(&self, req: &CompileRequest) -> Outcome {
        let (args, rsp_files) = match expand(req) {
            Ok(x) => x,
            Err(reason) => return Outcome::Local(reason),
        };
        let name = Path::new(&req.compiler)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cc");
        let compile = match classify::classify(name, &args) {
            Classification::Remote(c) => c,
            Classification::Local(reason) => return Outcome::Local(reason.to_string()),
        };
        // The source's size estimates the compile's cost: the biggest waiting job goes first.
        let cost =
            std::fs::metadata(Path::new(&req.cwd).join(&compile.source)).map_or(0, |m| m.len());
        let cxx = matches!(
            compile.language,
            classify::Language::Cxx | classify::Language::PreprocessedCxx
        );
        // Workers that failed this compiler's probe are skipped; the last failure is the
        // reason if no other worker and no local slot is left.
        let mut failed_probe = Vec::new();
        let n = loop {
            match self
                .sched
                .acquire_excluding(true, cost, failed_probe.clone())
                .await
            {
                Grant::Local if failed_probe.is_empty() => {
                    return Outcome::LocalGranted(
                        "a host slot was free before a worker slot".into(),
                    );
                }
                Grant::Local => {
                    return Outcome::LocalGranted(
                        "the free workers failed the toolchain probe".into(),
                    );
                }
                Grant::Remote(n) => match self.probe(n, req, cxx).await {
                    Ok(()) => break n,
                    Err(_) => {
                        self.sched.release(Grant::Remote(n));
                        failed_probe.push(n);
                    }
                },
            }
        };
        let outcome = self.remote(n, req, &compile, &rsp_files).await;
        self.sched.release(Grant::Remote(n));
        outcome
    }

    /// Runs one compile on worker `n` (whose slot the caller holds) and writes its outputs.
    async fn remote(
        &self,
        n: usize,
        req: &CompileRequest,
        compile: &classify::Compile,
        rsp_files: &[PathBuf],
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
        if compile.host_cpu || self.kind_of(n, &req.compiler) == Some(ToolchainKind::CrossClangCc1)
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
        let worker = &self.workers[n];
        tracing::debug!(job_id, source = %compile.source.display(), "sent to {}", worker.addr);
        let result = worker.run(&prepared).await;
        tracing::debug!(job_id, "remote result");
        let res = match result {
            Ok(res) => {
                self.sched.worker_ok(n);
                res
            }
            Err(e) => {
                // Even a declined job pauses the worker: what made it decline (a full disk,
                // a toolchain it cannot set up) usually holds for the next job too.
                self.sched.worker_failed(n);
                tracing::debug!(job_id, "falling back: {e}");
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
            if infrastructure {
                self.sched.worker_failed(n);
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
        let written = {
            let (writable, inputs, umask) = (&prepared.writable, &prepared.inputs, req.umask);
            tokio::task::block_in_place(|| outputs::write(&files, writable, inputs, umask))
        };
        if let Err(e) = written {
            self.stats.warn(e.clone());
            self.sched.worker_failed(n);
            return Outcome::FellBack(e);
        }
        Outcome::Done {
            status: res.done.status,
            stdout: res.stdout,
            stderr: res.stderr,
        }
    }

    /// Proves, once per worker and compiler, that the worker's compiles equal this host's:
    /// see [`probe`].
    async fn probe(&self, n: usize, req: &CompileRequest, cxx: bool) -> Result<(), String> {
        let key = (n, req.compiler.clone(), cxx);
        self.probes.get_or_init(key, || async {
            let addr = &self.workers[n].addr;
            let info = match self.toolchain(n, &req.compiler).await {
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
                    .lookup(addr, &req.compiler, cxx, &host, &info.fingerprint)
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
                .join(format!("probe-{n}-{}", self.next_job.fetch_add(1, Ordering::Relaxed)));
            let result = probe::run(self, n, req, cxx, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            let entry = probecache::Entry {
                worker: addr.clone(),
                worker_name: self.workers[n].name(),
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

    /// How worker `n` runs `compiler`, asked once per build; a worker of this host's
    /// architecture that cannot run it gets this host's toolchain first (see [`ship`]).
    async fn toolchain(&self, n: usize, compiler: &str) -> Result<ToolchainInfo, String> {
        let key = (n, compiler.to_owned());
        self.toolchains.get_or_init(key, || async {
            let ours = self.caches.compiler(compiler).await?;
            let info = self.workers[n]
                .toolchain(&ours)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(worker = self.workers[n].addr, compiler, kind = ?info.kind, detail = info.detail, "toolchain");
            Ok(ship::if_needed(&self.workers[n], &self.bundles, &self.stats, &ours, info).await)
        })
        .await
    }

    /// How worker `n` runs `compiler`, if it has been asked.
    fn kind_of(&self, n: usize, compiler: &str) -> Option<ToolchainKind> {
        let answer = self.toolchains.get(&(n, compiler.to_owned()))?;
        answer.ok().map(|i| i.kind)
    }

    /// Tells the wrapper to compile itself and holds `grant` until it has finished (its
    /// connection closes when the compiler exits).
    async fn run_local(
        &self,
        grant: Grant,
        reason: &str,
        mut r: OwnedReadHalf,
        mut w: OwnedWriteHalf,
    ) {
        let reply = Reply::RunLocal {
            reason: reason.to_owned(),
            nice: self.config.local_nice,
        };
        tracing::debug!(reason, "local compile starts");
        if write_frame(&mut w, &reply, &[], Limits::DEFAULT)
            .await
            .is_ok()
        {
            let mut sink = [0u8; 64];
            while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        tracing::debug!("local compile ends");
        self.sched.release(grant);
    }
}

/// How a remote attempt ended.
#[derive(Debug)]
enum Outcome {
    /// The compile ran remotely; its outputs are written.
    Done {
        /// How the compiler ended.
        status: ExitStatus,
        /// Its standard output.
        stdout: Vec<u8>,
        /// Its standard error.
        stderr: Vec<u8>,
    },
    /// It must run locally; nothing was sent.
    Local(String),
    /// It runs locally on the local slot the scheduler granted.
    LocalGranted(String),
    /// The remote attempt failed; it runs locally.
    FellBack(String),
}

/// Expands response files (relative to the compile's directory).
fn expand(req: &CompileRequest) -> Result<(Vec<OsString>, Vec<PathBuf>), String> {
    let args: Vec<OsString> = req.args.iter().map(OsString::from).collect();
    if !req.args.iter().any(|a| a.starts_with('@')) {
        return Ok((args, Vec::new()));
    }
    let cwd = PathBuf::from(&req.cwd);
    let mut read = |p: &Path| std::fs::read(cwd.join(p));
    let (args, files) =
        classify::expand_response_files(&args, &mut read).map_err(|e| e.to_string())?;
    Ok((args, files.into_iter().map(|f| cwd.join(f)).collect()))
}
