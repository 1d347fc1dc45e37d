//! The worker's slots, shared fairly between the hosts that want them.
//!
//! Each host (a tenant: its key once the handshake proved it) queues its jobs in a queue of
//! its own. A slot that comes free goes to the waiting tenant running the fewest jobs here
//! now, the longest-waiting of those on a tie, and never to one already holding its cap.
//! So two hosts that keep the worker busy get half each, whatever number of jobs each
//! sends, and a host that sends one job now and then gets a slot at the next free one
//! instead of queueing behind a big build's backlog. Arrival order (FIFO, as a plain
//! semaphore gives) would hand a host a share in proportion to its queue.
//!
//! Every grant is a [`FairPermit`], given back when dropped; a waiter that gives up (its
//! job is cancelled) leaves its place in the queue, and a grant nobody received goes on
//! to the next waiter.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The slots have been closed: the worker is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the worker is stopping")]
pub struct Closed;

/// Who a slot is for: anything that names a host.
pub trait TenantId: Eq + Hash + Clone + std::fmt::Debug {}
impl<T: Eq + Hash + Clone + std::fmt::Debug> TenantId for T {}

/// Slots shared by tenants of type `T`.
#[derive(Debug)]
pub struct FairSlots<T: TenantId> {
    inner: Mutex<Inner<T>>,
    per_tenant: usize,
}

#[derive(Debug)]
struct Inner<T: TenantId> {
    free: usize,
    closed: bool,
    next_ticket: u64,
    tenants: HashMap<T, Tenant<T>>,
}

#[derive(Debug)]
struct Tenant<T: TenantId> {
    running: usize,
    waiting: VecDeque<(u64, oneshot::Sender<FairPermit<T>>)>,
}

/// One slot, held by one tenant's job; given back when dropped.
#[derive(Debug)]
pub struct FairPermit<T: TenantId> {
    slots: Arc<FairSlots<T>>,
    tenant: T,
}

impl<T: TenantId> FairSlots<T> {
    /// `total` slots, of which one tenant may hold at most `per_tenant` at once.
    pub fn new(total: usize, per_tenant: usize) -> Arc<FairSlots<T>> {
        Arc::new(FairSlots {
            inner: Mutex::new(Inner {
                free: total,
                closed: false,
                next_ticket: 0,
                tenants: HashMap::new(),
            }),
            per_tenant: per_tenant.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `tenant`, once the fair order reaches it.
    pub async fn acquire(self: &Arc<Self>, tenant: T) -> Result<FairPermit<T>, Closed> {
        let rx = {
            let mut inner = self.lock();
            if inner.closed {
                return Err(Closed);
            }
            let (tx, rx) = oneshot::channel();
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner
                .tenants
                .entry(tenant)
                .or_insert_with(|| Tenant {
                    running: 0,
                    waiting: VecDeque::new(),
                })
                .waiting
                .push_back((ticket, tx));
            let undelivered = self.dispatch(&mut inner);
            drop(inner);
            drop(undelivered);
            rx
        };
        // A dropped sender: closed (or the grant went to a waiter that gave up meanwhile,
        // which cannot be this one, since it is still waiting here).
        rx.await.map_err(|_| Closed)
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.lock().free
    }

    /// Jobs `tenant` is running and waiting to run.
    pub fn usage(&self, tenant: &T) -> (usize, usize) {
        let inner = self.lock();
        inner.tenants.get(tenant).map_or((0, 0), |t| {
            let waiting = t.waiting.iter().filter(|(_, tx)| !tx.is_closed()).count();
            (t.running, waiting)
        })
    }

    /// No more grants: every waiter gets [`Closed`]; permits held stay valid until dropped.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for t in inner.tenants.values_mut() {
            t.waiting.clear();
        }
        inner.tenants.retain(|_, t| t.running > 0);
    }

    /// Hands free slots to waiters in the fair order. Returns the grants that found their
    /// waiter gone, to be dropped (given back) once the lock is released.
    fn dispatch(self: &Arc<Self>, inner: &mut Inner<T>) -> Vec<FairPermit<T>> {
        let mut undelivered = Vec::new();
        while inner.free > 0 && !inner.closed {
            let per_tenant = self.per_tenant;
            let pick = inner
                .tenants
                .iter_mut()
                .filter_map(|(id, t)| {
                    while t.waiting.front().is_some_and(|(_, tx)| tx.is_closed()) {
                        t.waiting.pop_front();
                    }
                    let (ticket, _) = t.waiting.front()?;
                    (t.running < per_tenant).then_some((t.running, *ticket, id.clone()))
                })
                .min_by_key(|(running, ticket, _)| (*running, *ticket));
            let Some((_, _, id)) = pick else { break };
            let Some(t) = inner.tenants.get_mut(&id) else {
                break;
            };
            let Some((_, tx)) = t.waiting.pop_front() else {
                break;
            };
            t.running += 1;
            inner.free -= 1;
            let permit = FairPermit {
                slots: self.clone(),
                tenant: id,
            };
            if let Err(permit) = tx.send(permit) {
                // Gave up between the check and now: given back after the lock.
                undelivered.push(permit);
            }
        }
        inner
            .tenants
            .retain(|_, t| t.running > 0 || !t.waiting.is_empty());
        undelivered
    }
}

impl<T: TenantId> FairPermit<T> {
    /// Whose slot this is.
    pub fn tenant(&self) -> &T {
        &self.tenant
    }
}

impl<T: TenantId> Drop for FairPermit<T> {
    fn drop(&mut self) {
        let slots = self.slots.clone();
        let mut inner = slots.lock();
        inner.free += 1;
        if let Some(t) = inner.tenants.get_mut(&self.tenant) {
            t.running = t.running.saturating_sub(1);
        }
        let undelivered = slots.dispatch(&mut inner);
        drop(inner);
        drop(undelivered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whose permits `waiters` got, in turn, each dropped at once.
    async fn order_of(
        waiters: Vec<tokio::task::JoinHandle<FairPermit<&'static str>>>,
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        for w in waiters {
            let p = w.await.expect("waiter");
            out.push(*p.tenant());
        }
        out
    }

    fn spawn_waiter(
        slots: &Arc<FairSlots<&'static str>>,
        who: &'static str,
    ) -> tokio::task::JoinHandle<FairPermit<&'static str>> {
        let s = slots.clone();
        tokio::spawn(async move { s.acquire(who).await.expect("open") })
    }

    /// Lets spawned waiters reach their queue.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_free_slot_goes_to_the_tenant_running_fewest() {
        let slots = FairSlots::new(2, 2);
        // Host a holds both slots and queues three more; b queues one after them.
        let a1 = slots.acquire("a").await.unwrap();
        let a2 = slots.acquire("a").await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(("a", spawn_waiter(&slots, "a")));
            settle().await;
        }
        let b = spawn_waiter(&slots, "b");
        settle().await;
        assert_eq!(slots.usage(&"a"), (2, 3));
        drop(a1);
        // b runs nothing and a runs one: b's job goes first, though it came last.
        let pb = b.await.unwrap();
        assert_eq!(*pb.tenant(), "b");
        drop(a2);
        let next = waiting.remove(0).1.await.unwrap();
        assert_eq!(*next.tenant(), "a");
        assert_eq!(slots.available(), 0);
        drop((pb, next));
        let rest: Vec<_> = waiting.into_iter().map(|(_, w)| w).collect();
        assert_eq!(order_of(rest).await, vec!["a", "a"]);
        assert_eq!(slots.available(), 2);
    }

    #[tokio::test]
    async fn ties_go_to_the_longest_waiting() {
        let slots = FairSlots::new(1, 1);
        let held = slots.acquire("x").await.unwrap();
        let c = spawn_waiter(&slots, "c");
        settle().await;
        let d = spawn_waiter(&slots, "d");
        settle().await;
        drop(held);
        let first = c.await.unwrap();
        assert_eq!(*first.tenant(), "c");
        drop(first);
        assert_eq!(*d.await.unwrap().tenant(), "d");
    }

    #[tokio::test]
    async fn a_tenant_never_holds_more_than_its_cap() {
        let slots = FairSlots::new(3, 2);
        let _a1 = slots.acquire("a").await.unwrap();
        let _a2 = slots.acquire("a").await.unwrap();
        let a3 = spawn_waiter(&slots, "a");
        settle().await;
        assert_eq!(slots.available(), 1, "the third slot stays free for others");
        assert!(!a3.is_finished());
        let b = slots.acquire("b").await.expect("another tenant gets it");
        drop(b);
        drop(_a1);
        assert_eq!(*a3.await.unwrap().tenant(), "a");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_queue_and_loses_no_slot() {
        let slots = FairSlots::new(1, 1);
        let held = slots.acquire("a").await.unwrap();
        let gave_up = spawn_waiter(&slots, "b");
        settle().await;
        let later = spawn_waiter(&slots, "c");
        settle().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        let p = tokio::time::timeout(Duration::from_secs(1), later)
            .await
            .expect("the slot reaches the next waiter")
            .unwrap();
        assert_eq!(*p.tenant(), "c");
        drop(p);
        assert_eq!(slots.available(), 1);
        assert_eq!(slots.usage(&"b"), (0, 0));
    }

    #[tokio::test]
    async fn closing_ends_every_wait_and_refuses_new_ones() {
        let slots: Arc<FairSlots<&str>> = FairSlots::new(1, 1);
        let held = slots.acquire("a").await.unwrap();
        let s = slots.clone();
        let waiting = tokio::spawn(async move { s.acquire("b").await.map(|_| ()) });
        settle().await;
        slots.close();
        assert_eq!(waiting.await.unwrap(), Err(Closed));
        assert_eq!(slots.acquire("c").await.map(|_| ()), Err(Closed));
        drop(held);
        assert_eq!(slots.available(), 1);
    }

    /// Two tenants keeping every slot busy share them evenly, whatever each queues.
    #[tokio::test(start_paused = true)]
    async fn two_busy_tenants_get_half_each() {
        let slots = FairSlots::new(4, 4);
        let done = Arc::new(Mutex::new(HashMap::<&str, u32>::new()));
        let mut tasks = Vec::new();
        // a keeps 12 jobs queued, b keeps 3: each job holds a slot for 10 ms.
        for (who, depth) in [("a", 12), ("b", 3)] {
            for _ in 0..depth {
                let (s, done) = (slots.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let end = tokio::time::Instant::now() + Duration::from_secs(10);
                    while tokio::time::Instant::now() < end {
                        let p = s.acquire(who).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        drop(p);
                        *done.lock().unwrap().entry(who).or_default() += 1;
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let done = done.lock().unwrap();
        let (a, b) = (done["a"] as f64, done["b"] as f64);
        let share = b / (a + b);
        assert!(
            (0.45..=0.55).contains(&share),
            "b got {share:.2} of the jobs (a {a}, b {b})"
        );
    }
}
