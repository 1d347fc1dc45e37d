//! `offload worker`: serve paired hosts, or manage the worker's pairings through its
//! control socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use offload_secure::{Fingerprint, Identity, KeyStore, PeerRole, PinStore};
use offload_worker::control::{self, ControlReply, ControlRequest};
use offload_worker::jobroot::JobUser;
use offload_worker::pairing::Pairings;

/// `offload worker …`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Where the worker keeps its key, its paired hosts and its control socket
    /// [default: /var/lib/offload-worker as root, else ~/.config/offload/worker].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List pairing requests waiting for you and the paired hosts.
    Pairings,
    /// Pair with the host whose request shows CODE (compare it with the code the host shows).
    Allow {
        /// The six-digit code.
        code: String,
    },
    /// Refuse the pairing request showing CODE.
    Deny {
        /// The six-digit code.
        code: String,
    },
    /// Unpair a host (by fingerprint or name): it runs nothing here any more.
    Revoke {
        /// The host's fingerprint or name.
        host: String,
    },
    /// Stop lending this machine's cores: new jobs are refused, running ones stop within
    /// the give-back grace, and hosts run them elsewhere.
    Pause,
    /// Lend again (when the idle policy allows).
    Resume,
    /// Whether the worker lends its cores now, and why.
    Status,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7420")]
    listen: SocketAddr,
    /// Jobs to run at once [default: the CPUs this process may use].
    #[arg(long)]
    slots: Option<u32>,
    /// Where the file store, toolchains and job roots live.
    #[arg(long, default_value = "/var/tmp/offload-worker")]
    work_dir: PathBuf,
    /// Most bytes the worker's file store keeps, in MiB (least recently used files go first).
    #[arg(long, default_value_t = 10240)]
    store_max_mib: u64,
    /// Write the bound address and the worker's fingerprint (a line each) to this file
    /// once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// UID:GID that compiles of slot 0 run as; slot N's run as UID+N:GID+N [default:
    /// 1900000000:1900000000 when started as root, outside a user namespace].
    #[arg(long, value_parser = parse_user)]
    job_user: Option<JobUser>,
    /// The worker's key, an existing 0600 file [default: worker.key in the state
    /// directory, made on first use]. A container is handed its key this way.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// A host (its key fingerprint) allowed without pairing, because its key was handed
    /// over another way; repeat for several.
    #[arg(long = "trust-host", value_name = "FINGERPRINT")]
    trust_hosts: Vec<Fingerprint>,
    /// Do not announce the worker on the LAN (mDNS).
    #[arg(long)]
    no_advertise: bool,
    #[command(flatten)]
    limits: WorkerLimits,
    #[command(flatten)]
    lend: LendArgs,
}

/// When the worker lends its cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LendWhen {
    /// When the machine is idle: no input for a while or the screen locked, on mains
    /// power, not hot, other work light on the worker's CPUs.
    Idle,
    /// Always (but for the owner's pause): for a machine that only serves, and for a
    /// worker beside a host on one machine, whose compiles would make it busy.
    Always,
}

/// The idle policy's switch and thresholds.
#[derive(Debug, clap::Args)]
struct LendArgs {
    /// When to lend this machine's cores.
    #[arg(long, value_enum, default_value_t = LendWhen::Idle)]
    lend: LendWhen,
    /// The idle policy's settings, a JSON file (fields left out keep their defaults):
    /// idle_after_secs, idle_when_locked, require_ac, lend_in_low_power, max_thermal,
    /// max_other_load, max_memory_pressure, busy_samples, resume_after_secs, period_ms.
    #[arg(long, value_name = "FILE")]
    idle_settings: Option<PathBuf>,
    /// Idle once no input came for this long [default: 300, or the settings file's].
    #[arg(long)]
    idle_after_secs: Option<u64>,
    /// Most share (0 to 1) of the worker's CPUs that other work may use while it lends
    /// [default: 0.25, or the settings file's].
    #[arg(long)]
    max_other_load: Option<f64>,
}

impl LendArgs {
    fn lend(&self) -> anyhow::Result<offload_worker::idle::Lend> {
        use offload_worker::idle::Lend;
        if self.lend == LendWhen::Always {
            return Ok(Lend::Always);
        }
        let mut s = match &self.idle_settings {
            Some(p) => offload_idle::Settings::from_file(p)?,
            None => offload_idle::Settings::default(),
        };
        if let Some(v) = self.idle_after_secs {
            s.idle_after_secs = v;
        }
        if let Some(v) = self.max_other_load {
            s.max_other_load = v;
        }
        s.check()?;
        Ok(Lend::Idle(s))
    }
}

/// How much a worker gives peers, and for how long.
#[derive(Debug, clap::Args)]
struct WorkerLimits {
    /// Most connections served at once, from all hosts (more wait to be accepted).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Most connections one host may hold [default: twice the slots, plus 8].
    #[arg(long)]
    connections_per_host: Option<usize>,
    /// Jobs of one host compiling at once [default: all slots].
    #[arg(long)]
    slots_per_host: Option<usize>,
    /// Seconds a new connection has to say hello.
    #[arg(long, default_value_t = 10)]
    handshake_secs: u64,
    /// Seconds a connection may stay quiet between jobs.
    #[arg(long, default_value_t = 300)]
    idle_secs: u64,
    /// Seconds a frame may take once it started (plus time at 256 KiB/s for its length).
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
    /// On SIGTERM or Ctrl-C, seconds running jobs get to finish before they are stopped.
    #[arg(long, default_value_t = 8)]
    drain_secs: u64,
    /// When the machine stops being idle (or lending is paused), milliseconds running
    /// jobs get to finish before they are stopped and handed back.
    #[arg(long, default_value_t = 1000)]
    give_back_ms: u64,
}

impl WorkerLimits {
    fn apply(&self, config: &mut offload_worker::Config) {
        use std::time::Duration;
        config.max_connections = self.max_connections.max(1);
        let mut q = offload_worker::quota::QuotaLimits::for_slots(
            config.slots as usize,
            offload_worker::server::max_frame(),
        );
        if let Some(n) = self.connections_per_host {
            q.connections_per_peer = n.max(1);
        }
        if let Some(n) = self.slots_per_host {
            q.slots_per_peer = n.max(1);
        }
        config.quotas = Some(q);
        config.timeouts = offload_worker::conn::Timeouts {
            handshake: Duration::from_secs(self.handshake_secs.max(1)),
            idle: Duration::from_secs(self.idle_secs.max(1)),
            stall: Duration::from_secs(self.stall_secs.max(1)),
        };
        config.drain = Duration::from_secs(self.drain_secs);
        config.give_back_grace = Duration::from_millis(self.give_back_ms);
    }
}

fn parse_user(s: &str) -> Result<JobUser, String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    Ok(JobUser {
        uid: u.parse().map_err(|_| "bad UID")?,
        gid: g.parse().map_err(|_| "bad GID")?,
    })
}

/// What to announce for a worker listening on `listen`: only addresses it answers on. A
/// specific address is announced alone; `0.0.0.0` announces the IPv4 addresses of every
/// interface (not IPv6 ones, where nothing listens); `[::]` both families.
fn advertise_options(listen: std::net::SocketAddr) -> offload_discovery::AdvertiseOptions {
    use offload_discovery::{AdvertiseOptions, NetOptions};
    let ip = listen.ip();
    if !ip.is_unspecified() {
        return AdvertiseOptions {
            addresses: Some(vec![ip]),
            ..AdvertiseOptions::default()
        };
    }
    AdvertiseOptions {
        net: NetOptions {
            no_ipv6: ip.is_ipv4(),
            ..NetOptions::default()
        },
        ..AdvertiseOptions::default()
    }
}

/// Announces the worker on the LAN; a failure is a warning (hosts can still name it).
fn advertise(
    fingerprint: &Fingerprint,
    name: &str,
    slots: u32,
    listen: std::net::SocketAddr,
    compilers: Vec<String>,
) -> Option<offload_discovery::Advertiser> {
    use offload_discovery::{Advertiser, Compiler, WorkerAd, WorkerId};
    let port = listen.port();
    let id = match WorkerId::new(fingerprint.to_string()) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!("not announced on the LAN: {e}");
            return None;
        }
    };
    let slots = u16::try_from(slots).unwrap_or(u16::MAX);
    let mut ad = WorkerAd::new(
        offload_shared::protocol::PROTOCOL_VERSION,
        id,
        name,
        slots,
        port,
    );
    // Names the TXT record cannot carry are left out (the list is a hint; hosts ask the
    // worker itself how it runs each compiler).
    ad.compilers = compilers
        .into_iter()
        .filter_map(|c| Compiler::new(c).ok())
        .collect();
    match Advertiser::start(ad, advertise_options(listen)) {
        Ok(a) => {
            tracing::info!("announced on the LAN as {}", a.instance());
            Some(a)
        }
        Err(e) => {
            tracing::warn!("not announced on the LAN: {e}");
            None
        }
    }
}

/// Keeps the announcement's free slots current (checked every 500 ms, announced only when
/// they change) until `stop`; then says goodbye.
async fn follow_state(
    mut adv: offload_discovery::Advertiser,
    worker: Arc<offload_worker::Worker>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    // A change of lending is announced at once, not at the next tick.
    let mut lending = worker.donation().subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = lending.changed() => {}
            _ = &mut stop => break,
        }
        let mut ad = adv.ad().clone();
        ad.free_slots = u16::try_from(worker.free_slots())
            .unwrap_or(u16::MAX)
            .min(ad.slots);
        let now = worker.donation().current();
        ad.donating = now.donating;
        ad.reason = offload_discovery::Reason::parse(&now.why)
            .unwrap_or_else(|_| offload_discovery::Reason::Other("other".into()));
        if let Err(e) = adv.update(ad) {
            tracing::debug!("cannot update the announcement: {e}");
        }
    }
    match tokio::task::spawn_blocking(move || adv.stop()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("goodbye: {e}"),
        Err(e) => tracing::debug!("goodbye: {e}"),
    }
}

/// The state directory: given, or the default for this user.
fn state_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d);
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/lib/offload-worker"));
    }
    Ok(offload_host::config::dir()?.join("worker"))
}

/// Runs `offload worker …`.
pub async fn run(args: WorkerArgs) -> anyhow::Result<i32> {
    let dir = state_dir(args.state_dir)?;
    match args.action {
        None => serve(args.serve, &dir).await,
        Some(action) => manage(action, &dir).await,
    }
}

async fn manage(action: Action, dir: &Path) -> anyhow::Result<i32> {
    let req = match action {
        Action::Pairings => ControlRequest::Pairings {},
        Action::Allow { code } => ControlRequest::Allow { code },
        Action::Deny { code } => ControlRequest::Deny { code },
        Action::Revoke { host } => ControlRequest::Revoke { host },
        Action::Pause => ControlRequest::Pause {},
        Action::Resume => ControlRequest::Resume {},
        Action::Status => ControlRequest::Status {},
    };
    let path = dir.join(control::SOCKET_NAME);
    let reply = control::call(&path, &req)
        .await
        .with_context(|| "is the worker running (with this --state-dir)?")?;
    match reply {
        ControlReply::Pairings { pending, paired } => {
            if pending.is_empty() {
                println!("no pairing request is waiting");
            }
            for p in &pending {
                if p.allowed {
                    println!(
                        "allowed  code {}  host {} ({}) from {}: waiting for its user to confirm the code",
                        p.code, p.name, p.host, p.address
                    );
                } else {
                    println!(
                        "request  code {}  host {} ({}) from {}, waiting {} s: `offload worker allow {}`",
                        p.code, p.name, p.host, p.address, p.waiting_secs, p.code
                    );
                }
            }
            for p in &paired {
                println!("paired   host {} ({})", p.name, p.host);
            }
        }
        ControlReply::Decided { request } => {
            println!(
                "answered the request of {} ({})",
                request.name, request.host
            );
        }
        ControlReply::Revoked { host } => println!("unpaired {} ({})", host.name, host.host),
        ControlReply::Lending {
            donating,
            why,
            since_secs,
        } => println!(
            "{} ({why}) for {since_secs} s",
            if donating { "lending" } else { "not lending" }
        ),
        ControlReply::Error { message } => bail!("{message}"),
    }
    Ok(0)
}

/// The worker's key: the given file (which must exist: a worker that made itself a new
/// key would not be the one its hosts paired with), or the state directory's, made on
/// first use.
fn identity(key_file: Option<&Path>, dir: &Path) -> anyhow::Result<Identity> {
    match key_file {
        Some(p) => Identity::from_file(p).with_context(|| format!("the key file {}", p.display())),
        None => Ok(KeyStore::new(dir, "worker").load_or_create()?.identity),
    }
}

async fn serve(a: ServeArgs, dir: &Path) -> anyhow::Result<i32> {
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    let in_userns = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| !m.split_whitespace().eq(["0", "0", "4294967295"]))
        .unwrap_or(false);
    // A range no distribution or subordinate-id default uses.
    let job_user = a.job_user.or((root && !in_userns).then_some(JobUser {
        uid: 1_900_000_000,
        gid: 1_900_000_000,
    }));
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    let slots = a.slots.unwrap_or_else(|| crate::cpus() as u32).max(1);
    let mut config = offload_worker::Config::new(slots, a.work_dir, name.clone());
    config.job_user = job_user;
    config.store_max_bytes = a.store_max_mib.saturating_mul(1 << 20);
    a.limits.apply(&mut config);
    config.lend = a.lend.lend()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let identity = identity(a.key_file.as_deref(), dir)?;
    let fingerprint = identity.fingerprint();
    let pins = PinStore::open(dir, PeerRole::Hosts)?;
    let pairings = Arc::new(Pairings::new(pins, a.trust_hosts));
    let worker = offload_worker::Worker::new(config, identity, pairings.clone())?;
    let _control = control::listen(dir, pairings, worker.donation().clone())?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    if let Some(p) = a.port_file {
        tracing::info!(%fingerprint, "listening on {addr}");
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{addr}\n{fingerprint}\n"))?;
        std::fs::rename(&tmp, &p)?;
    } else {
        eprintln!("offload worker {fingerprint} listening on {addr}");
    }
    // SIGTERM (`docker stop`, systemd) and Ctrl-C both drain.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
    };
    let advertiser = if a.no_advertise {
        None
    } else {
        advertise(&fingerprint, &name, slots, addr, worker.compilers())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let announcing = advertiser.map(|adv| tokio::spawn(follow_state(adv, worker.clone(), stopped)));
    worker.serve(listener, shutdown).await;
    // The goodbye: hosts drop the worker at once.
    let _ = stop.send(());
    if let Some(task) = announcing {
        let _ = task.await;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::advertise_options;

    #[test]
    fn only_addresses_the_worker_listens_on_are_announced() {
        let specific = advertise_options("10.0.0.5:7420".parse().expect("addr"));
        assert_eq!(
            specific.addresses,
            Some(vec!["10.0.0.5".parse().expect("ip")])
        );
        let any_v4 = advertise_options("0.0.0.0:7420".parse().expect("addr"));
        assert!(any_v4.addresses.is_none() && any_v4.net.no_ipv6 && !any_v4.net.no_ipv4);
        let any = advertise_options("[::]:7420".parse().expect("addr"));
        assert!(any.addresses.is_none() && !any.net.no_ipv6 && !any.net.no_ipv4);
    }
}
