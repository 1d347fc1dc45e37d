//! The worker's shared state and its accept loop.
//!
//! The accept loop takes a place under the connection cap before it accepts (so a flood
//! waits in the kernel's backlog, costing the worker nothing), admits the connection under
//! its peer's quota ([`crate::quota`]) and serves it ([`crate::conn`]). On shutdown it
//! drains: no new connection or job, running jobs get [`Config::drain`] to finish, then are
//! stopped, and it returns when every connection has ended.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use offload_secure::Identity;
use offload_shared::protocol::frame::write_frame;
use offload_shared::protocol::{FrameError, Limits, Message, ProtocolError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::conn::{self, Drain, Timeouts, Who};
use crate::donation::Donation;
use crate::fair::FairSlots;
use crate::idle::Lend;
use crate::jobroot::JobUser;
use crate::pairing::Pairings;
use crate::quota::{PeerId, QuotaLimits, Quotas};
use crate::sandbox;
use crate::spare::Spares;
use crate::store::Store;
use crate::toolchain::Toolchains;

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
    /// Most connections served at once, from all peers.
    pub max_connections: usize,
    /// What one peer may hold; `None` for the defaults of [`QuotaLimits::for_slots`].
    pub quotas: Option<QuotaLimits>,
    /// Connection time limits.
    pub timeouts: Timeouts,
    /// How long running jobs may finish once the worker is told to stop.
    pub drain: Duration,
    /// How long running jobs may finish once the worker stops lending (its owner is
    /// back): with the policy's sampling, the cores are free within 2 s.
    pub give_back_grace: Duration,
    /// When it lends: always (the default here, for tests and embedding), or when the idle
    /// policy allows it (the CLI's default).
    pub lend: Lend,
}

impl Config {
    /// Settings with the default limits.
    pub fn new(slots: u32, work_dir: PathBuf, name: String) -> Config {
        Config {
            slots,
            work_dir,
            name,
            job_user: None,
            store_max_bytes: 4 << 30,
            max_connections: 256,
            quotas: None,
            timeouts: Timeouts::default(),
            drain: Duration::from_secs(8),
            give_back_grace: Duration::from_millis(1000),
            lend: Lend::Always,
        }
    }
}

/// A running worker's shared state.
pub struct Worker {
    pub(crate) config: Config,
    pub(crate) store: Arc<Store>,
    pub(crate) toolchains: Toolchains,
    /// The worker's slots, shared fairly between hosts.
    pub(crate) slots: Arc<FairSlots<PeerId>>,
    /// Slot numbers not in use: a job runs as the job user's ids plus its slot's number.
    pub(crate) free_users: std::sync::Mutex<Vec<u32>>,
    pub(crate) next_root: AtomicU64,
    /// Roots holding a toolchain's part, made ahead of its next job.
    pub(crate) spares: Arc<Spares>,
    pub(crate) quotas: Arc<Quotas>,
    connections: Arc<Semaphore>,
    drain: watch::Sender<Drain>,
    /// Its long-term key: hosts pin it at pairing.
    identity: Identity,
    /// Which hosts may run jobs; the requests waiting for the owner.
    pub(crate) pairings: Arc<Pairings>,
    /// Whether it lends its cores now.
    pub(crate) donation: Arc<Donation>,
    /// The idle policy feeding it, while the worker lives (none with `--lend always`).
    _idle: Option<offload_idle::Monitor>,
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The work directory could not be prepared.
    #[error("preparing the work directory {path}: {source}")]
    WorkDir {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The idle policy could not start.
    #[error("starting the idle policy: {0}")]
    Idle(#[from] offload_idle::monitor::MonitorError),
    /// Per-job roots need `chroot`.
    #[error(
        "the worker must run as root (or as root in its container) to give each job its own root"
    )]
    NotRoot,
}

/// The handshake, then the connection's protocol, under its peer's quota.
impl Worker {
    async fn connection(self: &Arc<Self>, stream: tokio::net::TcpStream, addr: SocketAddr) {
        let admitted = self.quotas.admit(PeerId::Addr(addr.ip()));
        // Even a refused peer gets the handshake, so that the refusal it reads is
        // authenticated and clear (the connection cap bounds what this costs).
        let limit = self.config.timeouts.handshake;
        let secured = tokio::time::timeout(limit, offload_secure::respond(stream, &self.identity));
        let (stream, session) = match secured.await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::info!(%addr, "secure handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(%addr, "no secure handshake within {limit:?}");
                return;
            }
        };
        let (r, mut w) = tokio::io::split(stream);
        let mut guard = match admitted {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(%addr, "connection refused: {e}");
                let msg = Message::Error(ProtocolError {
                    message: e.to_string(),
                });
                let write = async {
                    write_frame(&mut w, &msg, &[], Limits::DEFAULT).await?;
                    w.shutdown().await.map_err(FrameError::from)
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                return;
            }
        };
        guard.identify(PeerId::Key(*session.remote.fingerprint().as_bytes()));
        let who = Who::Host {
            key: session.remote,
            code: session.code,
            address: addr.to_string(),
        };
        match conn::serve(self, guard, who, r, w, self.drain_signal()).await {
            Ok(()) => tracing::debug!(%addr, "connection closed"),
            Err(e) if e.is_ordinary() => tracing::debug!(%addr, "connection ended: {e}"),
            Err(e) => tracing::warn!(%addr, "connection ended: {e}"),
        }
    }
}

/// Largest frame a peer may send (header and payload).
pub fn max_frame() -> usize {
    conn::MAX_HEADER as usize + Limits::DEFAULT.max_payload as usize
}

impl Worker {
    /// Prepares the work directory. The worker proves `identity` to every host and serves
    /// those `pairings` allows.
    pub fn new(
        config: Config,
        identity: Identity,
        pairings: Arc<Pairings>,
    ) -> Result<Arc<Worker>, StartError> {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return Err(StartError::NotRoot);
        }
        let wd = |source| StartError::WorkDir {
            path: config.work_dir.clone(),
            source,
        };
        // Job roots and spare roots a killed worker left.
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
        let quotas = Quotas::new(
            config
                .quotas
                .unwrap_or_else(|| QuotaLimits::for_slots(config.slots as usize, max_frame())),
        );
        let donation = Arc::new(Donation::new(crate::idle::initial(&config.lend)));
        let own = crate::idle::own_jobs(config.job_user, config.slots);
        let idle = crate::idle::start(&config.lend, donation.clone(), own)?;
        Ok(Arc::new(Worker {
            slots: FairSlots::new(config.slots as usize, quotas.limits().slots_per_peer),
            free_users: std::sync::Mutex::new((0..config.slots).rev().collect()),
            store: Arc::new(store),
            toolchains,
            next_root: AtomicU64::new(0),
            spares: Arc::new(Spares::new(
                jobs,
                config.slots as usize,
                2 * config.slots as usize,
            )),
            quotas,
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            drain: watch::Sender::new(Drain::Serving),
            identity,
            pairings,
            donation,
            _idle: idle,
            config,
        }))
    }

    /// The worker's key fingerprint: its id in hosts' lists and in its mDNS record.
    pub fn fingerprint(&self) -> offload_secure::Fingerprint {
        self.identity.fingerprint()
    }

    /// Slots not running a job now.
    pub fn free_slots(&self) -> usize {
        self.slots.available()
    }

    /// The compilers it found itself, for its announcement.
    pub fn compilers(&self) -> Vec<String> {
        self.toolchains.offered()
    }

    /// The pairings (for the control API).
    pub fn pairings(&self) -> &Arc<Pairings> {
        &self.pairings
    }

    /// Whether it lends its cores (for the control API, the idle policy, the
    /// announcement).
    pub fn donation(&self) -> &Arc<Donation> {
        &self.donation
    }

    /// The connection time limits.
    pub fn timeouts(&self) -> Timeouts {
        self.config.timeouts
    }

    /// Follows whether the worker serves or drains.
    pub fn drain_signal(&self) -> watch::Receiver<Drain> {
        self.drain.subscribe()
    }

    /// Accepts connections until `shutdown` completes, then drains: returns once every
    /// connection has ended (running jobs finish within [`Config::drain`] or are stopped).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(10);
        let mut tasks = JoinSet::new();
        loop {
            // A place under the cap first: past it, connections wait in the backlog.
            let place = tokio::select! {
                p = self.connections.clone().acquire_owned() => p,
                () = &mut shutdown => break,
            };
            let Ok(place) = place else { break };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut shutdown => break,
            };
            // Reap finished connections as we go.
            while tasks.try_join_next().is_some() {}
            let (stream, addr) = match accepted {
                Ok(x) => {
                    backoff = Duration::from_millis(10);
                    x
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tasks.spawn(async move {
                let _place = place;
                me.connection(stream, addr).await;
            });
        }
        drop(listener);
        let until = tokio::time::Instant::now() + self.config.drain;
        self.drain.send_replace(Drain::Draining { until });
        let running = tasks.len();
        if running > 0 {
            tracing::info!(
                connections = running,
                "stopping: running jobs get {:?} to finish",
                self.config.drain
            );
        }
        // Connections end by themselves once their job is done or stopped; past a margin
        // for the replies, they are cut.
        let margin = Duration::from_secs(2);
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(until + margin, all).await.is_err() {
            tracing::warn!("connections still open after draining: closing them");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.slots.close();
        let spares = self.spares.clone();
        let _ = tokio::task::spawn_blocking(move || spares.close()).await;
    }
}
