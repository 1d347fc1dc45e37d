//! The host's side: the live set of workers on the LAN, and its changes as events.

mod set;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{Receiver, RecvTimeoutError, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::SERVICE_TYPE;
use crate::ad::WorkerId;
use crate::net::{self, Error, NetOptions};
pub use set::{BrowseEvent, MAX_INSTANCES, RemoveCause, Worker};
use set::{Seen, Set};

/// How to browse.
#[derive(Clone, Debug)]
pub struct BrowseOptions {
    /// Interfaces and address families to listen on.
    pub net: NetOptions,
    /// After [`Browser::mark_dead`]: how long mDNS waits for the worker to answer a
    /// query (RFC 6762 §10.4) before flushing it.
    pub verify_timeout: Duration,
    /// After [`Browser::mark_dead`]: how long the worker stays out at least (and at
    /// least `verify_timeout` and a second), unless it restarts (a new
    /// [`crate::WorkerAd::epoch`]). Then, if mDNS still has it (it answered), it comes back as
    /// [`BrowseEvent::Added`]: the host's retries are this far apart.
    pub dead_hold: Duration,
}

impl Default for BrowseOptions {
    fn default() -> BrowseOptions {
        BrowseOptions {
            net: NetOptions::default(),
            verify_timeout: Duration::from_secs(3),
            dead_hold: Duration::from_secs(5),
        }
    }
}

/// `addresses` with `port`, in order of preference: IPv4, IPv6, link-local IPv6 (scoped).
fn socket_addrs(addresses: &HashSet<ScopedIp>, port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = addresses
        .iter()
        .filter_map(|a| match a {
            ScopedIp::V4(v4) => Some(SocketAddr::new(IpAddr::V4(*v4.addr()), port)),
            ScopedIp::V6(v6) => {
                let ip = *v6.addr();
                let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                let scope = if link_local { v6.scope_id().index } else { 0 };
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
            }
            _ => None,
        })
        .collect();
    let rank = |a: &SocketAddr| match a {
        SocketAddr::V4(_) => 0,
        SocketAddr::V6(v6) if v6.scope_id() == 0 => 1,
        SocketAddr::V6(_) => 2,
    };
    out.sort_by_key(|a| (rank(a), *a));
    out.dedup();
    out
}

/// The browse thread: applies mDNS's events to the set until the browser stops.
fn follow(
    daemon: &ServiceDaemon,
    mut events: Receiver<ServiceEvent>,
    st: &Mutex<Set>,
    stopping: &AtomicBool,
) {
    let mut next_check: Option<Instant> = None;
    loop {
        let wait = next_check
            .map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_secs(1));
        let ended = match events.recv_timeout(wait) {
            Ok(ev) => !apply(ev, st),
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if ended {
            if stopping.load(Ordering::Relaxed) {
                break;
            }
            // mdns-sd ends a subscription whose channel is full; the daemon may still run.
            tracing::warn!("mDNS browsing ended unexpectedly; browsing again");
            std::thread::sleep(Duration::from_secs(1));
            match daemon.browse(SERVICE_TYPE) {
                Ok(fresh) => events = fresh,
                Err(e) => {
                    tracing::warn!("mDNS browse again: {e}; the set stays as it is");
                    break;
                }
            }
            continue;
        }
        let (next, rebrowse) = lock(st).recheck(Instant::now());
        next_check = next;
        if rebrowse {
            match daemon.browse(SERVICE_TYPE) {
                Ok(fresh) => {
                    // mdns-sd drops the old channel for the new one: what was sent to
                    // the old one first still counts.
                    let deadline = Instant::now() + Duration::from_secs(1);
                    while let Ok(ev) = events.recv_deadline(deadline) {
                        if !apply(ev, st) {
                            break;
                        }
                    }
                    events = fresh;
                }
                Err(e) => tracing::warn!("mDNS browse again: {e}"),
            }
        }
    }
    tracing::debug!("mDNS browsing ended");
}

/// Applies one event of mDNS to the set; false when browsing stopped.
fn apply(ev: ServiceEvent, st: &Mutex<Set>) -> bool {
    match ev {
        ServiceEvent::ServiceResolved(svc) => {
            tracing::trace!("mDNS resolved {svc:?}");
            lock(st).resolved(&seen(&svc), Instant::now());
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            tracing::trace!("mDNS removed {fullname}");
            lock(st).removed(&fullname, Instant::now());
        }
        ServiceEvent::SearchStopped(_) => return false,
        other => tracing::trace!("mDNS browse: {other:?}"),
    }
    true
}

/// What the set needs of a resolved instance.
fn seen(svc: &ResolvedService) -> Seen<'_> {
    Seen {
        fullname: &svc.fullname,
        port: svc.port,
        addrs: socket_addrs(&svc.addresses, svc.port),
        txt: svc
            .txt_properties
            .iter()
            .map(|p| (p.key(), p.val()))
            .collect(),
    }
}

/// Browses `_offload._tcp` and keeps the live set of workers: id → [`Worker`].
///
/// A thread of its own follows mDNS (through `mdns-sd`, no async runtime needed); the
/// set is read with [`Browser::workers`] and followed with [`Browser::subscribe`], whose
/// events come over a **tokio** unbounded channel (`recv().await` in the host;
/// `blocking_recv` outside a runtime). A worker that says goodbye leaves the set about
/// a second later; one that vanishes silently leaves when its records expire (up to two
/// minutes), or at once when the host, which checks liveness over its connection, calls
/// [`Browser::mark_dead`]. Records that cannot be read are ignored with a warning.
pub struct Browser {
    daemon: ServiceDaemon,
    state: Arc<Mutex<Set>>,
    thread: Option<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    verify_timeout: Duration,
    dead_hold: Duration,
}

fn lock(state: &Mutex<Set>) -> MutexGuard<'_, Set> {
    // The state stays consistent across a panic in a subscriber's send (there is none
    // that can panic): go on with it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Browser {
    /// Starts browsing.
    pub fn start(opts: BrowseOptions) -> Result<Browser, Error> {
        let daemon = net::start_daemon(&opts.net, "browse")?;
        let events = match daemon.browse(SERVICE_TYPE) {
            Ok(rx) => rx,
            Err(e) => {
                net::shutdown(&daemon, Duration::from_secs(1));
                return Err(Error::mdns(e));
            }
        };
        let state = Arc::new(Mutex::new(Set::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (st, d, stop) = (state.clone(), daemon.clone(), stopping.clone());
        let thread = std::thread::Builder::new()
            .name("offload-browse".into())
            .spawn(move || follow(&d, events, &st, &stop));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                net::shutdown(&daemon, Duration::from_secs(1));
                return Err(Error::Mdns(format!("cannot start a thread: {e}")));
            }
        };
        Ok(Browser {
            daemon,
            state,
            thread: Some(thread),
            stopping,
            verify_timeout: opts.verify_timeout,
            dead_hold: opts.dead_hold,
        })
    }

    /// The workers in the set now, by id.
    pub fn workers(&self) -> Vec<Worker> {
        lock(&self.state).workers().cloned().collect()
    }

    /// The worker `id`, if it is in the set.
    pub fn get(&self, id: &WorkerId) -> Option<Worker> {
        lock(&self.state).get(id).cloned()
    }

    /// A channel of the set's changes, starting with an [`BrowseEvent::Added`] for each
    /// worker already in it (so nothing falls between a snapshot and the events). Any
    /// number of subscribers; one whose receiver is dropped is forgotten, one that does
    /// not read keeps every event queued (the channel is unbounded: the set is at most
    /// [`MAX_INSTANCES`] workers, but their changes are not). The channel closes when the
    /// browser stops.
    pub fn subscribe(&self) -> UnboundedReceiver<BrowseEvent> {
        let (tx, rx) = unbounded_channel();
        lock(&self.state).subscribe(tx);
        rx
    }

    /// For the host, when its connection to `id` died: takes the worker out of the set
    /// at once ([`RemoveCause::MarkedDead`]) and asks mDNS to verify it (RFC 6762
    /// §10.4). If it does not answer within [`BrowseOptions::verify_timeout`], mDNS
    /// flushes it and it stays out until it announces itself again. If it answers (its
    /// responder runs, whatever happened to the connection), it comes back as
    /// [`BrowseEvent::Added`] after [`BrowseOptions::dead_hold`], so the host may retry;
    /// if it restarts (a new epoch), at once. Returns whether `id` was in the set.
    pub fn mark_dead(&self, id: &WorkerId) -> bool {
        let hold = self
            .dead_hold
            .max(self.verify_timeout + Duration::from_secs(1));
        let now = Instant::now();
        let (was, names) = lock(&self.state).mark_dead(id, now + hold, now);
        for name in names {
            if let Err(e) = self.daemon.verify(name, self.verify_timeout) {
                tracing::debug!(%id, "mDNS verify: {e}");
            }
        }
        was
    }

    /// Stops browsing: the subscribers' channels close.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        net::shutdown(&self.daemon, Duration::from_secs(1));
        if thread.join().is_err() {
            tracing::warn!("the mDNS browse thread panicked");
        }
        lock(&self.state).unsubscribe_all();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.halt();
    }
}
