//! Decides where the next compile runs: on a worker's free compile slot, else on a free
//! local slot, else queued on a worker behind its running jobs (so that a worker never
//! waits for the host to prepare its next job), else it waits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

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
struct State {
    local_free: usize,
    workers: Vec<WorkerSlots>,
}

/// The scheduler. Grants are released with [`Scheduler::release`].
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
    changed: Notify,
}

/// The first pause after a worker fails; it doubles on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Scheduler {
    /// `local` slots on this host; no workers yet.
    pub fn new(local: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State {
                local_free: local,
                workers: Vec::new(),
            }),
            changed: Notify::new(),
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
        drop(s);
        self.changed.notify_waiters();
        s_len(&self.lock()) - 1
    }

    /// Sets a worker's slot count (from its Welcome).
    pub fn set_slots(&self, n: usize, slots: usize) {
        if let Some(w) = self.lock().workers.get_mut(n) {
            w.slots = slots.max(1);
        }
        self.changed.notify_waiters();
    }

    /// Waits for a grant. With `remote_ok` false only a local slot is granted.
    pub async fn acquire(&self, remote_ok: bool) -> Grant {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_acquire(remote_ok) {
                return g;
            }
            // A worker coming back from its pause does not notify: look again then.
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    fn try_acquire(&self, remote_ok: bool) -> Option<Grant> {
        let mut s = self.lock();
        let now = Instant::now();
        if remote_ok && let Some(n) = pick(&s.workers, now, |w| w.in_flight < w.slots) {
            s.workers[n].in_flight += 1;
            return Some(Grant::Remote(n));
        }
        if s.local_free > 0 {
            s.local_free -= 1;
            return Some(Grant::Local);
        }
        if remote_ok && let Some(n) = pick(&s.workers, now, |w| w.in_flight < w.slots + w.queue) {
            s.workers[n].in_flight += 1;
            return Some(Grant::Remote(n));
        }
        None
    }

    /// Returns a grant.
    pub fn release(&self, g: Grant) {
        {
            let mut s = self.lock();
            match g {
                Grant::Local => s.local_free += 1,
                Grant::Remote(n) => {
                    if let Some(w) = s.workers.get_mut(n) {
                        w.in_flight = w.in_flight.saturating_sub(1);
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Records that worker `n` failed: no new jobs for it for a while (doubling).
    pub fn worker_failed(&self, n: usize) {
        let mut s = self.lock();
        if let Some(w) = s.workers.get_mut(n) {
            w.down_until = Some(Instant::now() + w.backoff);
            w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Records that worker `n` completed a job: its pause resets.
    pub fn worker_ok(&self, n: usize) {
        if let Some(w) = self.lock().workers.get_mut(n) {
            w.down_until = None;
            w.backoff = FIRST_BACKOFF;
        }
    }
}

fn s_len(s: &State) -> usize {
    s.workers.len()
}

/// The usable worker with the fewest jobs in flight that passes `ok`.
fn pick(workers: &[WorkerSlots], now: Instant, ok: impl Fn(&WorkerSlots) -> bool) -> Option<usize> {
    workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.down_until.is_none_or(|t| t <= now) && ok(w))
        .min_by_key(|(_, w)| w.in_flight * 1000 / w.slots.max(1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remote_slot_then_local_then_queue() {
        let s = Scheduler::new(1);
        let w = s.add_worker(1, 1);
        assert_eq!(s.acquire(true).await, Grant::Remote(w));
        assert_eq!(s.acquire(true).await, Grant::Local);
        assert_eq!(s.acquire(true).await, Grant::Remote(w));
        assert_eq!(s.try_acquire(true), None);
        assert_eq!(s.try_acquire(false), None);
        s.release(Grant::Local);
        assert_eq!(s.acquire(false).await, Grant::Local);
        s.release(Grant::Remote(w));
        s.release(Grant::Remote(w));
        assert_eq!(s.acquire(true).await, Grant::Remote(w));
    }

    #[tokio::test]
    async fn failed_worker_is_paused() {
        let s = Scheduler::new(1);
        let w = s.add_worker(2, 0);
        s.worker_failed(w);
        assert_eq!(s.acquire(true).await, Grant::Local);
        assert_eq!(s.try_acquire(true), None);
        s.worker_ok(w);
        assert_eq!(s.acquire(true).await, Grant::Remote(w));
    }

    #[tokio::test]
    async fn waiters_wake_on_release() {
        let s = std::sync::Arc::new(Scheduler::new(1));
        assert_eq!(s.acquire(false).await, Grant::Local);
        let s2 = s.clone();
        let t = tokio::spawn(async move { s2.acquire(false).await });
        tokio::task::yield_now().await;
        s.release(Grant::Local);
        assert_eq!(t.await.unwrap(), Grant::Local);
    }
}
