//! The coordinator inside `offload build`: receives every intercepted compiler call over a
//! Unix socket, classifies it, and runs it remotely or grants it a local slot. Any failure
//! of the remote path ends in a local compile: the build never fails because of offload.

pub mod builtin;
pub mod cc1;
pub use offload_classify::env as envpolicy;
pub mod content;
pub mod depfile;
mod execute;
pub mod executor;
pub mod facts;
pub mod fingerprint;
pub mod held;
pub mod localrun;
pub mod oncemap;
pub mod outputs;
pub mod prepare;
pub mod probe;
pub mod probecache;
mod race;
pub mod registry;
pub mod remote;
pub mod scancache;
pub mod sched;
pub mod sde;
pub mod ship;
pub mod speed;
pub mod stats;
pub mod terminal;
mod toolchains;
pub mod tree;
pub mod verify;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::{ExitStatus, Limits, ToolchainInfo};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::classify::{self, Classification};
use crate::ipc::{CompileRequest, Reply, Request};
use executor::{Executor, WorkerId};
use facts::Caches;
use oncemap::OnceMap;
use registry::Registry;
use remote::Worker;
use sched::{Grant, Place, Scheduler};
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
    /// Fraction of remote results checked against a local compile (`--verify`).
    pub verify_rate: f64,
    /// Every job that may go remote waits for a worker; none runs here, none is raced
    /// here (`--remote-only`, for checking workers). A failed one still falls back.
    pub remote_only: bool,
}

/// The coordinator's state.
#[derive(Debug)]
pub struct Coordinator {
    config: Config,
    sched: Scheduler,
    workers: Registry,
    caches: Arc<Caches>,
    /// Counters for the summary.
    pub stats: Stats,
    next_job: AtomicU64,
    /// Toolchain probe results by (worker, compiler path, C++?).
    probes: OnceMap<(WorkerId, String, bool), Result<(), String>>,
    /// Workers' toolchain answers by (worker, compiler path).
    toolchains: OnceMap<(WorkerId, String), Result<ToolchainInfo, String>>,
    probe_cache: probecache::ProbeCache,
    bundles: ship::Bundles,
    /// `--verify`: the sample, and the workers a mismatch took out.
    pub verify: verify::Verify,
    /// Measured speeds of this host and of the workers.
    speeds: speed::Speeds,
}

impl Coordinator {
    /// A coordinator for these workers, reached with this host's `auth`; each is greeted
    /// once to learn its slot count, and one that does not answer starts paused.
    pub async fn new(
        config: Config,
        workers: &[remote::WorkerSpec],
        auth: Arc<crate::auth::HostAuth>,
        probe_cache: probecache::ProbeCache,
    ) -> Arc<Coordinator> {
        let sched = Scheduler::new(config.local_slots.max(1));
        sched.set_remote_only(config.remote_only);
        let coord = Arc::new(Coordinator {
            sched,
            verify: verify::Verify::new(config.verify_rate),
            config,
            workers: Registry::default(),
            caches: Arc::new(Caches::default()),
            stats: Stats::default(),
            next_job: AtomicU64::new(1),
            probes: OnceMap::default(),
            toolchains: OnceMap::default(),
            probe_cache,
            bundles: ship::Bundles::default(),
            speeds: speed::Speeds::default(),
        });
        for w in workers {
            let exec = Worker::new(w.addr.clone(), auth.clone(), w.expect);
            coord.add_worker(Arc::new(exec)).await;
        }
        coord
    }

    /// Adds a backend, during the build too: it is greeted to learn its slots, and one
    /// that does not answer starts paused.
    pub async fn add_worker(&self, exec: Arc<dyn Executor>) {
        let id = exec.id().clone();
        self.workers.insert(exec.clone());
        self.sched
            .add_worker(id.clone(), 1, self.config.queue_per_worker);
        match exec.greet().await {
            Ok(g) => {
                tracing::info!(
                    worker = exec.label(),
                    slots = g.slots,
                    name = g.name,
                    "worker ready"
                );
                self.sched
                    .add_worker(id, g.slots, self.config.queue_per_worker);
            }
            Err(e) => {
                self.stats
                    .warn(format!("{e}; compiled locally until it answered"));
                self.sched.worker_failed(&id);
            }
        }
    }

    /// Follows a worker's announced lending state: one that gave its cores back gets no
    /// jobs until it lends again.
    pub fn set_lending(&self, id: &WorkerId, lending: bool) {
        if lending {
            self.sched.worker_lends(id);
        } else {
            self.sched.worker_not_lending(id);
        }
    }

    /// Removes a backend that is gone: no new job goes there; jobs running there end
    /// as its connections do, and fall back.
    pub fn remove_worker(&self, id: &WorkerId) {
        self.sched.remove_worker(id);
        if let Some(exec) = self.workers.remove(id) {
            tracing::info!(worker = exec.label(), "worker removed");
        }
    }

    /// Jobs that can run or usefully wait now, here and on live workers.
    pub fn capacity(&self) -> usize {
        self.sched.capacity()
    }

    /// Total compressed bytes sent to and received from workers.
    pub fn traffic(&self) -> (u64, u64) {
        self.workers.all().iter().fold((0, 0), |(s, r), w| {
            let (sent, received) = w.traffic();
            (s + sent, r + received)
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
        let mut cost = None;
        let mut outcome = match &req {
            Request::LocalSlot { reason } => Outcome::Local(reason.clone()),
            Request::Compile(req) => self.attempt(req, &mut cost).await,
        };
        let (grant, reason) = loop {
            match outcome {
                // Not expected here (`attempt` delivers what it holds), but never lost.
                Outcome::Held(held) => outcome = self.deliver(*held),
                Outcome::RanHere {
                    status,
                    stdout,
                    stderr,
                    reason,
                } => {
                    self.stats.local_because(&reason);
                    return self.answer(&mut w, status, stdout, &stderr).await;
                }
                Outcome::Done {
                    status,
                    stdout,
                    stderr,
                } => {
                    self.stats.remote.fetch_add(1, Ordering::Relaxed);
                    return self.answer(&mut w, status, stdout, &stderr).await;
                }
                Outcome::LocalGranted(grant, reason) => {
                    self.stats.local_because(&reason);
                    break (grant, reason);
                }
                Outcome::Local(reason) => {
                    self.stats.local_because(&reason);
                    break (self.sched.acquire(false, u64::MAX).await, reason);
                }
                // `attempt` places it again; should one reach here, it runs locally.
                Outcome::FellBack(reason) | Outcome::Elsewhere(reason) => {
                    self.stats.fell_back_because(&reason);
                    break (self.sched.acquire(false, u64::MAX).await, reason);
                }
                Outcome::Verify(held) => {
                    self.stats.remote.fetch_add(1, Ordering::Relaxed);
                    let grant = self.sched.acquire(false, u64::MAX).await;
                    let Request::Compile(req) = &req else {
                        return;
                    };
                    match verify::compile_here(&held, &req.env, self.config.local_nice).await {
                        Ok(local) => {
                            self.verify
                                .record(&held, verify::difference(&held.result, &local));
                            drop(grant);
                            return self
                                .answer(&mut w, local.status, local.stdout, &local.stderr)
                                .await;
                        }
                        // The wrapper compiles itself, as for any local compile.
                        Err(e) => break (grant, format!("cannot verify here: {e}")),
                    }
                }
            }
        };
        self.run_local(grant, &reason, cost, r, w).await;
    }

    /// Answers a wrapper with a finished compile: its status, then stdout and stderr.
    async fn answer(
        &self,
        w: &mut OwnedWriteHalf,
        status: offload_shared::protocol::ExitStatus,
        mut stdout: Vec<u8>,
        stderr: &[u8],
    ) {
        let reply = Reply::Finished {
            status,
            stdout_len: stdout.len() as u64,
        };
        stdout.extend_from_slice(stderr);
        if let Err(e) = write_frame(w, &reply, &stdout, Limits::DEFAULT).await {
            self.stats
                .warn(format!("cannot answer a compiler wrapper: {e}"));
        }
    }

    /// Decides about one compile and, if it can, runs it on a worker. Sets `cost_out` to
    /// its estimated cost once known (for the measured local speed).
    async fn attempt(&self, req: &CompileRequest, cost_out: &mut Option<u64>) -> Outcome {
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
        *cost_out = Some(cost);
        let cxx = matches!(
            compile.language,
            classify::Language::Cxx | classify::Language::PreprocessedCxx
        );
        // Workers that failed this compiler's probe are skipped; the last failure is the
        // reason if no other worker and no local slot is left.
        let mut failed_probe = Vec::new();
        // Workers whose result for this compiler failed verification get none of its jobs.
        let banned = self.verify.banned_for(&req.compiler);
        // Workers that gave this job back (they stopped lending) are not asked again.
        let mut gave_back: Vec<WorkerId> = Vec::new();
        loop {
            let (grant, exec) = loop {
                let mut exclude = failed_probe.clone();
                exclude.extend(banned.iter().cloned());
                exclude.extend(gave_back.iter().cloned());
                let grant = self.sched.acquire_excluding(true, cost, exclude).await;
                let id = match grant.place() {
                    Place::Remote(id) => id.clone(),
                    Place::Local => {
                        let why = if !gave_back.is_empty() {
                            "the worker gave its cores back"
                        } else if !failed_probe.is_empty() {
                            "the free workers failed the toolchain probe"
                        } else if !banned.is_empty() {
                            "the free workers failed verification for this compiler"
                        } else {
                            "a host slot was free before a worker slot"
                        };
                        return Outcome::LocalGranted(grant, why.into());
                    }
                };
                // A worker removed since it was granted is skipped like one that failed.
                let probed = match self.workers.get(&id) {
                    Some(exec) => self.probe(&exec, req, cxx).await.map(|()| exec),
                    None => Err("the worker is gone".into()),
                };
                match probed {
                    Ok(exec) => break (grant, exec),
                    Err(_) => failed_probe.push(id),
                }
            };
            let outcome = self
                .race(&exec, grant, req, &compile, &rsp_files, cost)
                .await;
            let outcome = match outcome {
                Outcome::Held(held) if self.verify.sample() => Outcome::Verify(held),
                Outcome::Held(held) => self.deliver(*held),
                o => o,
            };
            match outcome {
                Outcome::Elsewhere(_) => gave_back.push(exec.id().clone()),
                other => return other,
            }
        }
    }

    /// Tells the wrapper to compile itself and holds `grant` until it has finished (its
    /// connection closes when the compiler exits).
    async fn run_local(
        &self,
        grant: Grant,
        reason: &str,
        cost: Option<u64>,
        mut r: OwnedReadHalf,
        mut w: OwnedWriteHalf,
    ) {
        let started = std::time::Instant::now();
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
        drop(grant);
        if let Some(cost) = cost {
            let v = self.speeds.record(&Place::Local, cost, started.elapsed());
            self.sched.set_speed(&Place::Local, v);
        }
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
    LocalGranted(Grant, String),
    /// The remote attempt failed; it runs locally.
    FellBack(String),
    /// The worker gave the job back without running it to the end (it stopped lending):
    /// the job is placed again, on another worker or here.
    Elsewhere(String),
    /// The compile ran remotely and is to be verified: it runs here too, and the local
    /// result is the build's.
    Verify(Box<verify::Held>),
    /// The compile ran remotely; its result is held back, unwritten (see
    /// [`Coordinator::deliver`]).
    Held(Box<verify::Held>),
    /// The coordinator compiled it here (a second run that finished before the worker's):
    /// its outputs are written.
    RanHere {
        /// How the compiler ended.
        status: ExitStatus,
        /// Its standard output.
        stdout: Vec<u8>,
        /// Its standard error.
        stderr: Vec<u8>,
        /// Why, for the summary.
        reason: String,
    },
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
