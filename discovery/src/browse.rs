//! The host's side: the live set of workers on the LAN, and its changes as events.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::SERVICE_TYPE;
use crate::ad::{WorkerAd, WorkerId};
use crate::net::{self, Error, NetOptions};
use crate::txt::{self, AdError};

/// The most mDNS instances of `_offload._tcp` tracked at once (valid or not): a LAN
/// peer announcing thousands of them costs memory up to this, no more.
pub const MAX_INSTANCES: usize = 1024;

/// How to browse.
#[derive(Clone, Debug)]
pub struct BrowseOptions {
    /// Interfaces and address families to listen on.
    pub net: NetOptions,
    /// After [`Browser::mark_dead`]: how long mDNS waits for the worker to answer a
    /// query (RFC 6762 §10.4) before flushing it. A worker that answers comes back
    /// (as [`BrowseEvent::Added`]) about a second after that.
    pub verify_timeout: Duration,
}

impl Default for BrowseOptions {
    fn default() -> BrowseOptions {
        BrowseOptions {
            net: NetOptions::default(),
            verify_timeout: Duration::from_secs(3),
        }
    }
}

/// A worker found on the LAN.
#[derive(Clone, Debug)]
pub struct Worker {
    /// What it announces (its port included).
    pub ad: WorkerAd,
    /// Where to reach it: every address it announced on every interface it was seen
    /// on, with its port; IPv4 first, then IPv6, link-local IPv6 last (with the scope
    /// of the interface it was seen on, ready to connect to).
    pub addrs: Vec<SocketAddr>,
    /// The mDNS instance it announces itself as.
    pub instance: String,
    /// When this browser first saw it (since it was last removed).
    pub first_seen: Instant,
    /// When mDNS last told something new about it (an announcement that changed
    /// something). Not a heartbeat: mDNS refreshes that change nothing are not
    /// reported, and liveness is the connection's business.
    pub last_seen: Instant,
}

impl Worker {
    /// Its id.
    pub fn id(&self) -> &WorkerId {
        &self.ad.id
    }

    /// Whether it is the same worker as `other` in all that is announced (instants
    /// aside).
    fn same_as(&self, other: &Worker) -> bool {
        self.ad == other.ad && self.addrs == other.addrs && self.instance == other.instance
    }
}

/// Why a worker left the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveCause {
    /// mDNS said so: it sent a goodbye (seen within about a second), or its records
    /// expired (up to 2 minutes after it fell silent), or a verification query after
    /// [`Browser::mark_dead`] went unanswered.
    Gone,
    /// [`Browser::mark_dead`].
    MarkedDead,
    /// It now announces a record this browser cannot read (logged as a warning).
    Unreadable,
}

/// A change in the set of workers.
#[derive(Clone, Debug)]
pub enum BrowseEvent {
    /// A worker appeared (or came back).
    Added(Worker),
    /// A worker's ad or addresses changed; this is the new state.
    Updated(Worker),
    /// A worker left.
    Removed {
        /// Its id.
        id: WorkerId,
        /// Why.
        cause: RemoveCause,
    },
}

/// One mDNS instance of our service type, as last resolved.
struct Instance {
    /// When it was first seen: of two instances claiming one id, the older is used.
    order: u64,
    worker: Worker,
    /// Set by `mark_dead`: out of the set until this instant, or until mDNS reports
    /// something new about it.
    dead_until: Option<Instant>,
}

struct State {
    instances: HashMap<String, Instance>,
    /// The set as the subscribers know it: derived from `instances` after every change.
    workers: BTreeMap<WorkerId, Worker>,
    /// Instances whose record was refused, with the error (to warn once per change).
    refused: HashMap<String, AdError>,
    subscribers: Vec<UnboundedSender<BrowseEvent>>,
    next_order: u64,
}

impl State {
    /// Recomputes the worker of `id` from the instances claiming it, and tells the
    /// subscribers what changed; `cause` is what a removal is reported as.
    fn refresh(&mut self, id: &WorkerId, cause: RemoveCause) {
        let now = Instant::now();
        let best = self
            .instances
            .values()
            .filter(|i| i.worker.ad.id == *id && i.dead_until.is_none_or(|t| t <= now))
            .min_by_key(|i| i.order)
            .map(|i| i.worker.clone());
        let event = match (self.workers.get(id), best) {
            (None, None) => None,
            (Some(_), None) => {
                self.workers.remove(id);
                Some(BrowseEvent::Removed {
                    id: id.clone(),
                    cause,
                })
            }
            (None, Some(mut w)) => {
                w.first_seen = now;
                self.workers.insert(id.clone(), w.clone());
                Some(BrowseEvent::Added(w))
            }
            (Some(old), Some(mut w)) => {
                w.first_seen = old.first_seen;
                let changed = !old.same_as(&w);
                self.workers.insert(id.clone(), w.clone());
                changed.then_some(BrowseEvent::Updated(w))
            }
        };
        if let Some(ev) = event {
            tracing::debug!("discovery: {ev:?}");
            self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
        }
    }

    fn resolved(&mut self, svc: &ResolvedService) {
        let key = svc.fullname.to_lowercase();
        let ad = match txt::decode_mdns(&svc.txt_properties, svc.port) {
            Ok(ad) => ad,
            Err(e) => {
                if self.refused.get(&key) != Some(&e) {
                    tracing::warn!(
                        instance = %svc.fullname,
                        "ignoring an _offload._tcp announcement: {e}"
                    );
                    if self.refused.len() < MAX_INSTANCES || self.refused.contains_key(&key) {
                        self.refused.insert(key.clone(), e);
                    }
                }
                if let Some(old) = self.instances.remove(&key) {
                    self.refresh(&old.worker.ad.id, RemoveCause::Unreadable);
                }
                return;
            }
        };
        self.refused.remove(&key);
        let now = Instant::now();
        let worker = Worker {
            addrs: socket_addrs(&svc.addresses, ad.port),
            ad,
            instance: svc.fullname.clone(),
            first_seen: now,
            last_seen: now,
        };
        let id = worker.ad.id.clone();
        let old_id = match self.instances.get_mut(&key) {
            Some(inst) => {
                let old_id = inst.worker.ad.id.clone();
                inst.worker = worker;
                // Something new from it: alive after all.
                inst.dead_until = None;
                Some(old_id)
            }
            None => {
                if self.instances.len() >= MAX_INSTANCES {
                    tracing::warn!(
                        instance = %svc.fullname,
                        "ignoring an _offload._tcp announcement: {MAX_INSTANCES} instances are tracked already"
                    );
                    return;
                }
                let order = self.next_order;
                self.next_order += 1;
                self.instances.insert(
                    key,
                    Instance {
                        order,
                        worker,
                        dead_until: None,
                    },
                );
                None
            }
        };
        if let Some(old_id) = old_id.filter(|o| *o != id) {
            // The instance now claims another id: the old one may be gone.
            self.refresh(&old_id, RemoveCause::Gone);
        }
        self.refresh(&id, RemoveCause::Gone);
    }

    fn removed(&mut self, fullname: &str) {
        let key = fullname.to_lowercase();
        self.refused.remove(&key);
        if let Some(inst) = self.instances.remove(&key) {
            self.refresh(&inst.worker.ad.id, RemoveCause::Gone);
        }
    }

    /// Brings back instances whose `mark_dead` verification passed without mDNS
    /// flushing them: they answered.
    fn recheck(&mut self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for inst in self.instances.values_mut() {
            match inst.dead_until {
                Some(t) if t <= now => {
                    inst.dead_until = None;
                    due.push(inst.worker.ad.id.clone());
                }
                Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
                None => {}
            }
        }
        for id in due {
            tracing::info!(%id, "worker marked dead still answers mDNS: back in the set");
            self.refresh(&id, RemoveCause::Gone);
        }
        next
    }
}

/// `addresses` with `port`, in order of preference: IPv4, IPv6, link-local IPv6 (scoped).
fn socket_addrs(addresses: &std::collections::HashSet<ScopedIp>, port: u16) -> Vec<SocketAddr> {
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
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    verify_timeout: Duration,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent across a panic in a subscriber's send (there is none
    // that can panic): go on with it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Browser {
    /// Starts browsing.
    pub fn start(opts: BrowseOptions) -> Result<Browser, Error> {
        let daemon = net::start_daemon(&opts.net, "browse", None)?;
        let events = match daemon.browse(SERVICE_TYPE) {
            Ok(rx) => rx,
            Err(e) => {
                net::shutdown(&daemon, Duration::from_secs(1));
                return Err(Error::mdns(e));
            }
        };
        let state = Arc::new(Mutex::new(State {
            instances: HashMap::new(),
            workers: BTreeMap::new(),
            refused: HashMap::new(),
            subscribers: Vec::new(),
            next_order: 0,
        }));
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("offload-browse".into())
            .spawn(move || {
                let mut next_check: Option<Instant> = None;
                loop {
                    let wait = next_check
                        .map_or(Duration::from_secs(1), |t| {
                            t.saturating_duration_since(Instant::now())
                        })
                        .min(Duration::from_secs(1));
                    match events.recv_timeout(wait) {
                        Ok(ServiceEvent::ServiceResolved(svc)) => lock(&st).resolved(&svc),
                        Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                            lock(&st).removed(&fullname);
                        }
                        Ok(ServiceEvent::SearchStopped(_)) => break,
                        Ok(other) => tracing::trace!("mDNS browse: {other:?}"),
                        Err(mdns_sd::RecvTimeoutError::Timeout) => {}
                        Err(mdns_sd::RecvTimeoutError::Disconnected) => break,
                    }
                    next_check = lock(&st).recheck(Instant::now());
                }
                tracing::debug!("mDNS browsing ended");
            });
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
            verify_timeout: opts.verify_timeout,
        })
    }

    /// The workers in the set now, by id.
    pub fn workers(&self) -> Vec<Worker> {
        lock(&self.state).workers.values().cloned().collect()
    }

    /// The worker `id`, if it is in the set.
    pub fn get(&self, id: &WorkerId) -> Option<Worker> {
        lock(&self.state).workers.get(id).cloned()
    }

    /// A channel of the set's changes, starting with an [`BrowseEvent::Added`] for each
    /// worker already in it (so nothing falls between a snapshot and the events). Any
    /// number of subscribers; one whose receiver is dropped is forgotten. The channel
    /// closes when the browser stops.
    pub fn subscribe(&self) -> UnboundedReceiver<BrowseEvent> {
        let (tx, rx) = unbounded_channel();
        let mut st = lock(&self.state);
        for w in st.workers.values() {
            let _ = tx.send(BrowseEvent::Added(w.clone()));
        }
        st.subscribers.push(tx);
        rx
    }

    /// For the host, when its connection to `id` died: takes the worker out of the set
    /// at once ([`RemoveCause::MarkedDead`]) and asks mDNS to verify it (RFC 6762
    /// §10.4). If it does not answer within [`BrowseOptions::verify_timeout`], mDNS
    /// flushes it and it stays out; if it answers, or announces anything new, it comes
    /// back as [`BrowseEvent::Added`]: its responder runs, so the host may retry. Returns
    /// whether `id` was in the set.
    pub fn mark_dead(&self, id: &WorkerId) -> bool {
        let until = Instant::now() + self.verify_timeout + Duration::from_secs(1);
        let mut st = lock(&self.state);
        let was = st.workers.contains_key(id);
        let mut names = Vec::new();
        for inst in st.instances.values_mut() {
            if inst.worker.ad.id == *id {
                inst.dead_until = Some(until);
                names.push(inst.worker.instance.clone());
            }
        }
        st.refresh(id, RemoveCause::MarkedDead);
        drop(st);
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
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        net::shutdown(&self.daemon, Duration::from_secs(1));
        if thread.join().is_err() {
            tracing::warn!("the mDNS browse thread panicked");
        }
        lock(&self.state).subscribers.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.halt();
    }
}
