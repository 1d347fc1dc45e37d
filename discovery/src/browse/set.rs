//! The live set of workers, from what mDNS reports: pure bookkeeping (no sockets, the
//! time passed in), so that every rule is tested without a network.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::ad::{WorkerAd, WorkerId};
use crate::txt::{self, AdError};

/// The most mDNS instances of `_offload._tcp` tracked at once (valid or not): a LAN
/// peer announcing thousands of them costs memory up to this, no more.
pub const MAX_INSTANCES: usize = 1024;

/// How long a new browse has to bring back an instance mDNS removed during a
/// `mark_dead` hold (see [`Set::recheck`]).
pub(crate) const REBROWSE_GRACE: Duration = Duration::from_millis(1500);

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
    /// When this browser first saw it (since it was last out of the set).
    pub first_seen: Instant,
    /// When mDNS last reported it (an announcement that changed something: its
    /// state, its addresses, or only its announcement counter). Not a heartbeat: mDNS
    /// refreshes that change nothing are not reported, and liveness is the
    /// connection's business.
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
        self.ad == other.ad
            && self.addrs == other.addrs
            && self.instance.eq_ignore_ascii_case(&other.instance)
    }
}

/// Why a worker left the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveCause {
    /// mDNS said so: it sent a goodbye (seen within about a second), or its records
    /// expired (up to 2 minutes after it fell silent), or a verification query after
    /// [`crate::Browser::mark_dead`] went unanswered.
    Gone,
    /// [`crate::Browser::mark_dead`].
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

/// An mDNS instance as resolved: what the set is told.
pub(crate) struct Seen<'a> {
    pub(crate) fullname: &'a str,
    pub(crate) port: u16,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) txt: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// One mDNS instance of our service type, as last resolved.
struct Instance {
    /// When it was first seen: of two instances claiming one id, the older is used.
    order: u64,
    worker: Worker,
    /// Set by `mark_dead`: out of the set until then, unless it restarts.
    dead: Option<Dead>,
    /// mDNS removed it while `dead` was in force: kept until then, so that the same
    /// worker showing up again during the hold stays out too.
    gone: bool,
}

/// A `mark_dead` in force.
#[derive(Clone, Copy)]
struct Dead {
    until: Instant,
    /// The worker's epoch when it was marked: another one means it restarted.
    epoch: u64,
    /// Whether mDNS's cache was asked again for it (see [`Set::recheck`]).
    asked_again: bool,
}

/// The set, and who follows it.
#[derive(Default)]
pub(crate) struct Set {
    instances: HashMap<String, Instance>,
    /// The set as the subscribers know it: derived from `instances` after every change.
    workers: BTreeMap<WorkerId, Worker>,
    /// Instances whose record was refused, with the error (to warn once per change).
    refused: HashMap<String, AdError>,
    subscribers: Vec<UnboundedSender<BrowseEvent>>,
    next_order: u64,
}

impl Set {
    /// The workers in the set, by id.
    pub(crate) fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    pub(crate) fn get(&self, id: &WorkerId) -> Option<&Worker> {
        self.workers.get(id)
    }

    /// Adds a subscriber, first telling it the set as it is.
    pub(crate) fn subscribe(&mut self, tx: UnboundedSender<BrowseEvent>) {
        for w in self.workers.values() {
            let _ = tx.send(BrowseEvent::Added(w.clone()));
        }
        self.subscribers.push(tx);
    }

    pub(crate) fn unsubscribe_all(&mut self) {
        self.subscribers.clear();
    }

    /// Recomputes the worker of `id` from the instances claiming it, and tells the
    /// subscribers what changed; `cause` is what a removal is reported as.
    fn refresh(&mut self, id: &WorkerId, cause: RemoveCause, now: Instant) {
        let best = self
            .instances
            .values()
            .filter(|i| i.worker.ad.id == *id && !i.gone && i.dead.is_none_or(|d| d.until <= now))
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

    /// mDNS resolved an instance (new, or changed).
    pub(crate) fn resolved(&mut self, seen: &Seen<'_>, now: Instant) {
        let key = seen.fullname.to_lowercase();
        let ad = match txt::decode(seen.txt.iter().copied(), seen.port) {
            Ok(ad) => ad,
            Err(e) => {
                if self.refused.get(&key) != Some(&e) {
                    tracing::warn!(
                        instance = %seen.fullname,
                        "ignoring an _offload._tcp announcement: {e}"
                    );
                    if self.refused.len() < MAX_INSTANCES || self.refused.contains_key(&key) {
                        self.refused.insert(key.clone(), e);
                    }
                }
                if let Some(old) = self.instances.remove(&key) {
                    self.refresh(&old.worker.ad.id, RemoveCause::Unreadable, now);
                }
                return;
            }
        };
        self.refused.remove(&key);
        let worker = Worker {
            addrs: seen.addrs.clone(),
            ad,
            instance: seen.fullname.to_owned(),
            first_seen: now,
            last_seen: now,
        };
        let id = worker.ad.id.clone();
        let old_id = match self.instances.get_mut(&key) {
            Some(inst) => {
                let old_id = inst.worker.ad.id.clone();
                if inst.dead.is_some_and(|d| d.epoch != worker.ad.epoch) {
                    // Restarted: not the worker that was marked dead.
                    inst.dead = None;
                }
                inst.gone = false;
                inst.worker = worker;
                Some(old_id)
            }
            None => {
                if self.instances.len() >= MAX_INSTANCES {
                    tracing::warn!(
                        instance = %seen.fullname,
                        "ignoring an _offload._tcp announcement: {MAX_INSTANCES} instances are tracked already"
                    );
                    return;
                }
                let order = self.next_order;
                self.next_order += 1;
                let inst = Instance {
                    order,
                    worker,
                    dead: None,
                    gone: false,
                };
                self.instances.insert(key, inst);
                None
            }
        };
        if let Some(old_id) = old_id.filter(|o| *o != id) {
            // The instance now claims another id: the old one may be gone.
            self.refresh(&old_id, RemoveCause::Gone, now);
        }
        self.refresh(&id, RemoveCause::Gone, now);
    }

    /// mDNS removed an instance (goodbye, expiry, failed verification).
    pub(crate) fn removed(&mut self, fullname: &str, now: Instant) {
        let key = fullname.to_lowercase();
        self.refused.remove(&key);
        if let Some(inst) = self.instances.get_mut(&key)
            && inst.dead.is_some_and(|d| d.until > now)
        {
            inst.gone = true;
            return;
        }
        if let Some(inst) = self.instances.remove(&key) {
            self.refresh(&inst.worker.ad.id, RemoveCause::Gone, now);
        }
    }

    /// Takes `id` out of the set until `until`; returns whether it was in it, and the
    /// instances to verify.
    pub(crate) fn mark_dead(
        &mut self,
        id: &WorkerId,
        until: Instant,
        now: Instant,
    ) -> (bool, Vec<String>) {
        let was = self.workers.contains_key(id);
        let mut names = Vec::new();
        for inst in self.instances.values_mut() {
            if inst.worker.ad.id == *id {
                inst.dead = Some(Dead {
                    until,
                    epoch: inst.worker.ad.epoch,
                    asked_again: false,
                });
                names.push(inst.worker.instance.clone());
            }
        }
        self.refresh(id, RemoveCause::MarkedDead, now);
        (was, names)
    }

    /// Ends the `mark_dead` holds that are over: an instance mDNS still has is back in
    /// the set (it answered the verification). One that mDNS removed meanwhile may
    /// still be alive: mdns-sd reports an instance removed when its records change
    /// while it verifies them, and resolves it again only at its next browse query (up
    /// to an hour later). So the caller browses again (mdns-sd then reports all it has
    /// cached) and such an instance gets [`REBROWSE_GRACE`] to show up before it is
    /// forgotten. Returns when the next hold ends, and whether to browse again.
    pub(crate) fn recheck(&mut self, now: Instant) -> (Option<Instant>, bool) {
        let mut due = Vec::new();
        let mut rebrowse = false;
        let mut next: Option<Instant> = None;
        for inst in self.instances.values_mut() {
            let Some(d) = &mut inst.dead else { continue };
            if d.until > now {
                next = Some(next.map_or(d.until, |n| n.min(d.until)));
                continue;
            }
            if inst.gone && !d.asked_again {
                d.asked_again = true;
                d.until = now + REBROWSE_GRACE;
                next = Some(next.map_or(d.until, |n| n.min(d.until)));
                rebrowse = true;
                continue;
            }
            inst.dead = None;
            due.push((inst.worker.ad.id.clone(), inst.gone));
        }
        // Those mDNS removed and did not bring back are forgotten; the others are back.
        self.instances.retain(|_, i| !i.gone || i.dead.is_some());
        for (id, gone) in due {
            if !gone {
                tracing::info!(%id, "worker marked dead still answers mDNS: back in the set");
            }
            self.refresh(&id, RemoveCause::Gone, now);
        }
        (next, rebrowse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txt::encode;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    struct Rig {
        set: Set,
        rx: UnboundedReceiver<BrowseEvent>,
        t0: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            let mut set = Set::default();
            let (tx, rx) = unbounded_channel();
            set.subscribe(tx);
            Rig {
                set,
                rx,
                t0: Instant::now(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// mDNS resolved `fullname` announcing `ad` from `addr`, at `ms`.
        fn resolve(&mut self, fullname: &str, ad: &WorkerAd, addr: &str, ms: u64) {
            let props = encode(ad, 0).unwrap();
            let seen = Seen {
                fullname,
                port: ad.port,
                addrs: vec![addr.parse().unwrap()],
                txt: props
                    .iter()
                    .map(|(k, v)| (*k, Some(v.as_bytes())))
                    .collect(),
            };
            let now = self.at(ms);
            self.set.resolved(&seen, now);
        }

        fn events(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Ok(ev) = self.rx.try_recv() {
                out.push(match ev {
                    BrowseEvent::Added(w) => format!("+{} {}", w.ad.id, w.addrs[0]),
                    BrowseEvent::Updated(w) => {
                        format!("~{} {} free {}", w.ad.id, w.addrs[0], w.ad.free_slots)
                    }
                    BrowseEvent::Removed { id, cause } => format!("-{id} {cause:?}"),
                });
            }
            out
        }

        fn ids(&self) -> Vec<String> {
            self.set.workers().map(|w| w.ad.id.to_string()).collect()
        }
    }

    fn ad(id: &str) -> WorkerAd {
        let mut ad = WorkerAd::new(4, WorkerId::new(id).unwrap(), id, 4, 7420);
        ad.epoch = 1;
        ad
    }

    #[test]
    fn added_updated_removed() {
        let mut r = Rig::new();
        let mut a = ad("a");
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 0);
        // The same again changes nothing; mDNS names are case-insensitive.
        r.resolve("A._offload._tcp.local.", &a, "10.0.0.1:7420", 5);
        a.free_slots = 1;
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 10);
        r.set.removed("A._OFFLOAD._tcp.local.", r.at(20));
        r.set.removed("never-seen._offload._tcp.local.", r.at(20));
        assert_eq!(
            r.events(),
            ["+a 10.0.0.1:7420", "~a 10.0.0.1:7420 free 1", "-a Gone"]
        );
        assert!(r.ids().is_empty());
    }

    #[test]
    fn unreadable_records_are_ignored_and_remove_what_they_replace() {
        let mut r = Rig::new();
        let seen = |txt| Seen {
            fullname: "x._offload._tcp.local.",
            port: 7420,
            addrs: vec![],
            txt,
        };
        r.set
            .resolved(&seen(vec![("txtvers", Some(b"9"))]), r.at(0));
        assert!(r.events().is_empty());
        assert_eq!(r.set.refused.len(), 1);
        r.resolve("x._offload._tcp.local.", &ad("x"), "10.0.0.1:7420", 10);
        assert!(r.set.refused.is_empty());
        r.set.resolved(&seen(vec![("id", Some(b"x"))]), r.at(20));
        assert_eq!(r.events(), ["+x 10.0.0.1:7420", "-x Unreadable"]);
        r.set.removed("x._offload._tcp.local.", r.at(30));
        assert!(r.set.refused.is_empty());
    }

    #[test]
    fn one_id_two_instances_the_first_seen_wins() {
        let mut r = Rig::new();
        r.resolve("a._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 0);
        r.resolve(
            "forged._offload._tcp.local.",
            &ad("a"),
            "10.0.0.66:7420",
            10,
        );
        assert_eq!(r.events(), ["+a 10.0.0.1:7420"]);
        // The first leaves: the second takes over.
        r.set.removed("a._offload._tcp.local.", r.at(20));
        assert_eq!(r.events(), ["~a 10.0.0.66:7420 free 4"]);
        r.set.removed("forged._offload._tcp.local.", r.at(30));
        assert_eq!(r.events(), ["-a Gone"]);
    }

    #[test]
    fn an_instance_that_changes_its_id() {
        let mut r = Rig::new();
        r.resolve("i._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 0);
        r.resolve("i._offload._tcp.local.", &ad("b"), "10.0.0.1:7420", 10);
        assert_eq!(
            r.events(),
            ["+a 10.0.0.1:7420", "-a Gone", "+b 10.0.0.1:7420"]
        );
        assert_eq!(r.ids(), ["b"]);
    }

    #[test]
    fn instances_are_bounded() {
        let mut r = Rig::new();
        for i in 0..MAX_INSTANCES + 10 {
            let id = format!("w{i}");
            r.resolve(
                &format!("{id}._offload._tcp.local."),
                &ad(&id),
                "10.0.0.1:7420",
                0,
            );
        }
        assert_eq!(r.set.instances.len(), MAX_INSTANCES);
        assert_eq!(r.ids().len(), MAX_INSTANCES);
    }

    #[test]
    fn dead_stays_out_for_the_hold_then_comes_back_if_mdns_still_has_it() {
        let mut r = Rig::new();
        let mut a = ad("a");
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 0);
        let id = a.id.clone();
        let (was, names) = r.set.mark_dead(&id, r.at(5000), r.at(100));
        assert!(was);
        assert_eq!(names, ["a._offload._tcp.local."]);
        // It changes state meanwhile: still out.
        a.free_slots = 2;
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 200);
        assert_eq!(r.set.recheck(r.at(4999)), (Some(r.at(5000)), false));
        assert_eq!(r.events(), ["+a 10.0.0.1:7420", "-a MarkedDead"]);
        assert_eq!(r.set.recheck(r.at(5000)), (None, false));
        assert_eq!(r.events(), ["+a 10.0.0.1:7420"]);
        assert_eq!(r.set.get(&id).map(|w| w.ad.free_slots), Some(2));
        // Marking it dead again, or one that is not there, is harmless.
        assert!(r.set.mark_dead(&id, r.at(9000), r.at(6000)).0);
        assert!(!r.set.mark_dead(&id, r.at(9000), r.at(6000)).0);
        let ghost = WorkerId::new("ghost").unwrap();
        assert_eq!(
            r.set.mark_dead(&ghost, r.at(9000), r.at(6000)),
            (false, vec![])
        );
    }

    #[test]
    fn dead_and_flushed_by_mdns_is_forgotten_after_a_second_look() {
        let mut r = Rig::new();
        r.resolve("a._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 0);
        let id = ad("a").id;
        r.set.mark_dead(&id, r.at(5000), r.at(100));
        // Its verification fails: mDNS removes it.
        r.set.removed("a._offload._tcp.local.", r.at(3100));
        assert_eq!(r.set.instances.len(), 1, "kept for the hold");
        // At the end of the hold: browse again, and give it the grace.
        let grace_end = r.at(5000) + REBROWSE_GRACE;
        assert_eq!(r.set.recheck(r.at(5000)), (Some(grace_end), true));
        assert_eq!(r.set.recheck(grace_end), (None, false));
        assert!(r.set.instances.is_empty());
        assert_eq!(r.events(), ["+a 10.0.0.1:7420", "-a MarkedDead"]);
    }

    #[test]
    fn dead_flushed_but_alive_comes_back_with_the_second_look() {
        let mut r = Rig::new();
        r.resolve("a._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 0);
        let id = ad("a").id;
        r.set.mark_dead(&id, r.at(5000), r.at(100));
        // mdns-sd reports it removed although it answers (its records changed while
        // being verified); the browse at the end of the hold finds it in the cache.
        r.set.removed("a._offload._tcp.local.", r.at(150));
        assert!(r.set.recheck(r.at(5000)).1);
        r.resolve("a._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 5100);
        assert_eq!(
            r.events(),
            ["+a 10.0.0.1:7420", "-a MarkedDead"],
            "still held"
        );
        assert_eq!(r.set.recheck(r.at(5000) + REBROWSE_GRACE), (None, false));
        assert_eq!(r.events(), ["+a 10.0.0.1:7420"]);
    }

    #[test]
    fn dead_but_restarted_comes_back_at_once() {
        let mut r = Rig::new();
        let mut a = ad("a");
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 0);
        r.set.mark_dead(&a.id, r.at(5000), r.at(100));
        a.epoch = 2;
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 300);
        assert_eq!(
            r.events(),
            ["+a 10.0.0.1:7420", "-a MarkedDead", "+a 10.0.0.1:7420"]
        );
        // Also after mDNS removed it: the restarted worker's announcement is new.
        r.set.mark_dead(&a.id, r.at(9000), r.at(400));
        r.set.removed("a._offload._tcp.local.", r.at(500));
        a.epoch = 3;
        r.resolve("a._offload._tcp.local.", &a, "10.0.0.1:7420", 600);
        assert_eq!(r.events(), ["-a MarkedDead", "+a 10.0.0.1:7420"]);
    }

    #[test]
    fn a_dropped_subscriber_is_forgotten_and_late_ones_get_the_set() {
        let mut r = Rig::new();
        let (tx, rx) = unbounded_channel();
        r.set.subscribe(tx);
        drop(rx);
        r.resolve("a._offload._tcp.local.", &ad("a"), "10.0.0.1:7420", 0);
        assert_eq!(r.set.subscribers.len(), 1);
        let (tx, mut late) = unbounded_channel();
        r.set.subscribe(tx);
        assert!(matches!(late.try_recv(), Ok(BrowseEvent::Added(w)) if w.ad.id.as_str() == "a"));
        r.set.unsubscribe_all();
        assert!(late.try_recv().is_err());
    }
}
