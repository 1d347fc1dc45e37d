//! Decides where the next compile runs: on a worker's free compile slot, else on a free
//! local slot, else queued on a worker behind its running jobs (so that a worker never
//! waits for the host to prepare its next job), else it waits.
//!
//! Waiting jobs are served largest first (by an estimate of their cost): with a build
//! command that offers many jobs at once (`make -j16`), the long compiles start early and
//! the build does not end with one machine compiling its biggest file while the other idles.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Where a job may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// On this host.
    Local,
    /// On worker number `n`.
    Remote(usize),
}

#[derive(Debug)]
struct WorkerSlots {
    slots: usize,
    queue: usize,
    in_flight: usize,
    down_until: Option<Instant>,
    backoff: Duration,
}

#[derive(Debug)]
struct Waiter {
    cost: u64,
    seq: u64,
    remote_ok: bool,
    /// Workers this job must not go to (they failed its compiler's probe).
    exclude: Vec<usize>,
    tx: oneshot::Sender<Grant>,
}

#[derive(Debug)]
struct State {
    local_free: usize,
    workers: Vec<WorkerSlots>,
    waiting: Vec<Waiter>,
    seq: u64,
}

/// The scheduler. Grants are released with [`Scheduler::release`].
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
}

/// The first pause after a worker fails; it doubles on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a waiting job looks again (a paused worker coming back does not notify).
const RECHECK: Duration = Duration::from_millis(250);

impl Scheduler {
    /// `local` slots on this host; no workers yet.
    pub fn new(local: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State {
                local_free: local,
                workers: Vec::new(),
                waiting: Vec::new(),
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a worker with `slots` compile slots and room for `queue` more jobs waiting on
    /// it; returns its number.
    pub fn add_worker(&self, slots: usize, queue: usize) -> usize {
        let mut s = self.lock();
        s.workers.push(WorkerSlots {
            slots,
            queue,
            in_flight: 0,
            down_until: None,
            backoff: FIRST_BACKOFF,
        });
        let n = s.workers.len() - 1;
        dispatch(&mut s);
        n
    }

    /// Sets a worker's slot count (from its Welcome).
    pub fn set_slots(&self, n: usize, slots: usize) {
        let mut s = self.lock();
        if let Some(w) = s.workers.get_mut(n) {
            w.slots = slots.max(1);
        }
        dispatch(&mut s);
    }

    /// Waits for a grant. With `remote_ok` false only a local slot is granted. Among
    /// waiting jobs, the one with the highest `cost` is served first.
    pub async fn acquire(&self, remote_ok: bool, cost: u64) -> Grant {
        self.acquire_excluding(remote_ok, cost, Vec::new()).await
    }

    /// [`Scheduler::acquire`], never granting the workers in `exclude`.
    pub async fn acquire_excluding(
        &self,
        remote_ok: bool,
        cost: u64,
        exclude: Vec<usize>,
    ) -> Grant {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut s = self.lock();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                cost,
                seq,
                remote_ok,
                exclude,
                tx,
            });
            dispatch(&mut s);
        }
        loop {
            match tokio::time::timeout(RECHECK, &mut rx).await {
                Ok(Ok(g)) => return g,
                // The sender lives in `waiting` until it is used; a dropped sender cannot
                // happen, but waiting for a local slot is always safe.
                Ok(Err(_)) => return Box::pin(self.acquire(false, cost)).await,
                Err(_) => dispatch(&mut self.lock()),
            }
        }
    }

    /// Returns a grant.
    pub fn release(&self, g: Grant) {
        let mut s = self.lock();
        give_back(&mut s, g);
        dispatch(&mut s);
    }

    /// Records that worker `n` failed: no new jobs for it for a while (doubling).
    pub fn worker_failed(&self, n: usize) {
        let mut s = self.lock();
        if let Some(w) = s.workers.get_mut(n) {
            w.down_until = Some(Instant::now() + w.backoff);
            w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
        }
        dispatch(&mut s);
    }

    /// Records that worker `n` completed a job: its pause resets.
    pub fn worker_ok(&self, n: usize) {
        let mut s = self.lock();
        if let Some(w) = s.workers.get_mut(n) {
            w.down_until = None;
            w.backoff = FIRST_BACKOFF;
        }
        dispatch(&mut s);
    }
}

fn give_back(s: &mut State, g: Grant) {
    match g {
        Grant::Local => s.local_free += 1,
        Grant::Remote(n) => {
            if let Some(w) = s.workers.get_mut(n) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Grants what can be granted, most costly waiter first.
fn dispatch(s: &mut State) {
    s.waiting
        .sort_by(|a, b| b.cost.cmp(&a.cost).then(a.seq.cmp(&b.seq)));
    let now = Instant::now();
    let mut i = 0;
    while i < s.waiting.len() {
        let w = &s.waiting[i];
        let (remote_ok, exclude) = (w.remote_ok, std::mem::take(&mut s.waiting[i].exclude));
        let granted = try_grant(s, remote_ok, &exclude, now);
        s.waiting[i].exclude = exclude;
        let Some(g) = granted else {
            i += 1;
            continue;
        };
        let w = s.waiting.remove(i);
        if let Err(g) = w.tx.send(g) {
            // The job went away while waiting.
            give_back(s, g);
        }
    }
}

fn try_grant(s: &mut State, remote_ok: bool, exclude: &[usize], now: Instant) -> Option<Grant> {
    if remote_ok && let Some(n) = pick(&s.workers, exclude, now, |w| w.in_flight < w.slots) {
        s.workers[n].in_flight += 1;
        return Some(Grant::Remote(n));
    }
    if s.local_free > 0 {
        s.local_free -= 1;
        return Some(Grant::Local);
    }
    if remote_ok
        && let Some(n) = pick(&s.workers, exclude, now, |w| {
            w.in_flight < w.slots + w.queue
        })
    {
        s.workers[n].in_flight += 1;
        return Some(Grant::Remote(n));
    }
    None
}

/// The usable worker with the fewest jobs in flight per slot that passes `ok`.
fn pick(
    workers: &[WorkerSlots],
    exclude: &[usize],
    now: Instant,
    ok: impl Fn(&WorkerSlots) -> bool,
) -> Option<usize> {
    workers
        .iter()
        .enumerate()
        .filter(|(i, w)| !exclude.contains(i) && w.down_until.is_none_or(|t| t <= now) && ok(w))
        .min_by_key(|(_, w)| w.in_flight * 1000 / w.slots.max(1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn try_now(s: &Scheduler, remote_ok: bool) -> Option<Grant> {
        try_grant(&mut s.lock(), remote_ok, &[], Instant::now())
    }

    #[tokio::test]
    async fn remote_slot_then_local_then_queue() {
        let s = Scheduler::new(1);
        let w = s.add_worker(1, 1);
        assert_eq!(s.acquire(true, 0).await, Grant::Remote(w));
        assert_eq!(s.acquire(true, 0).await, Grant::Local);
        assert_eq!(s.acquire(true, 0).await, Grant::Remote(w));
        assert_eq!(try_now(&s, true), None);
        assert_eq!(try_now(&s, false), None);
        s.release(Grant::Local);
        assert_eq!(s.acquire(false, 0).await, Grant::Local);
        s.release(Grant::Remote(w));
        s.release(Grant::Remote(w));
        assert_eq!(s.acquire(true, 0).await, Grant::Remote(w));
    }

    #[tokio::test]
    async fn failed_worker_is_paused() {
        let s = Scheduler::new(1);
        let w = s.add_worker(2, 0);
        s.worker_failed(w);
        assert_eq!(s.acquire(true, 0).await, Grant::Local);
        assert_eq!(try_now(&s, true), None);
        s.worker_ok(w);
        assert_eq!(s.acquire(true, 0).await, Grant::Remote(w));
    }

    #[tokio::test]
    async fn excluded_workers_are_never_granted() {
        let s = Scheduler::new(1);
        let a = s.add_worker(1, 0);
        let b = s.add_worker(1, 0);
        assert_eq!(
            s.acquire_excluding(true, 0, vec![a]).await,
            Grant::Remote(b)
        );
        assert_eq!(s.acquire_excluding(true, 0, vec![a]).await, Grant::Local);
        assert_eq!(s.acquire(true, 0).await, Grant::Remote(a));
    }

    #[tokio::test]
    async fn largest_waiting_job_goes_first() {
        let s = Arc::new(Scheduler::new(1));
        assert_eq!(s.acquire(false, 0).await, Grant::Local);
        let mut tasks = Vec::new();
        for cost in [10u64, 500, 40] {
            let s2 = s.clone();
            tasks.push(tokio::spawn(async move {
                let g = s2.acquire(false, cost).await;
                (cost, g)
            }));
            tokio::task::yield_now().await;
        }
        // All three wait; each release serves the most costly one left.
        let mut order = Vec::new();
        for _ in 0..3 {
            s.release(Grant::Local);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let done: Vec<usize> = tasks
                .iter()
                .enumerate()
                .filter(|(i, t)| t.is_finished() && !order.contains(i))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(done.len(), 1, "one job per released slot");
            order.push(done[0]);
        }
        assert_eq!(order, vec![1, 2, 0]);
    }
}
