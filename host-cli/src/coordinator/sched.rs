//! Decides where the next compile runs: on a worker's free compile slot, else on a free
//! local slot, else queued on a worker behind its running jobs (so that a worker never
//! waits for the host to prepare its next job), else it waits.
//!
//! Waiting jobs are served largest first (by an estimate of their cost): with a build
//! command that offers many jobs at once (`make -j16`), the long compiles start early and
//! the build does not end with one machine compiling its biggest file while the other idles.
//!
//! Workers are named by [`WorkerId`] and may be added and removed at any time. A
//! [`Grant`] gives its slot back when it is dropped, whatever ended the job (a cancelled
//! future included), so no path can leak a slot; a grant of a removed worker gives back
//! nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::executor::WorkerId;

/// Where a job may run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// On this host.
    Local,
    /// On this worker.
    Remote(WorkerId),
}

/// A slot held until dropped.
#[derive(Debug)]
pub struct Grant {
    place: Place,
    state: Option<Arc<Mutex<State>>>,
}

impl Grant {
    /// Where the job runs.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Gives the slot back under an already held lock (when the grant could not be handed
    /// over).
    fn give_back_locked(mut self, s: &mut State) {
        self.state = None;
        give_back(s, &self.place);
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let mut s = lock(&state);
            give_back(&mut s, &self.place);
            dispatch(&mut s, &state);
        }
    }
}

#[derive(Debug)]
struct WorkerSlots {
    slots: usize,
    queue: usize,
    in_flight: usize,
    down_until: Option<Instant>,
    backoff: Duration,
    /// The pause is because it gave its cores back, not because it failed.
    not_lending: bool,
    /// Its measured seconds per unit of cost (transfers included), once known.
    speed: Option<f64>,
}

impl WorkerSlots {
    /// How many times this host's time a job takes there, once both are measured.
    fn slowness(&self, local: Option<f64>) -> Option<f64> {
        match (self.speed, local) {
            (Some(w), Some(l)) if l > 0.0 => Some(w / l),
            _ => None,
        }
    }

    /// Much slower than this host (by measurement): it gets jobs only into free slots,
    /// never a queue, and never before a free local slot.
    fn slow(&self, local: Option<f64>) -> bool {
        self.slowness(local).is_some_and(|r| r > SLOW_FACTOR)
    }

    /// Whether a job that would otherwise wait behind `ahead` others for one of
    /// `local_slots` busy local slots ends sooner here. Here it ends after its time there;
    /// on this host after the wait (`ahead / local_slots` job times, plus half of one
    /// for the running jobs to end) and its own time, `ahead / local_slots + 1.5` local
    /// job times in all (jobs taken as alike: the waiting list is sorted by cost).
    fn ends_sooner_than_waiting(
        &self,
        local: Option<f64>,
        ahead: usize,
        local_slots: usize,
    ) -> bool {
        match self.slowness(local) {
            Some(r) => r < ahead as f64 / local_slots.max(1) as f64 + SLOW_FACTOR,
            None => true,
        }
    }
}

#[derive(Debug)]
struct Waiter {
    cost: u64,
    seq: u64,
    remote_ok: bool,
    /// Workers this job must not go to (they failed its compiler's probe).
    exclude: Vec<WorkerId>,
    tx: oneshot::Sender<Grant>,
}

#[derive(Debug)]
struct State {
    local_free: usize,
    /// This host's slots in all.
    local_slots: usize,
    workers: BTreeMap<WorkerId, WorkerSlots>,
    waiting: Vec<Waiter>,
    seq: u64,
    /// This host's measured seconds per unit of cost, once known.
    local_speed: Option<f64>,
    /// Jobs that may go remote go to a worker only (`--remote-only`), whatever its speed.
    remote_only: bool,
}

/// The scheduler.
#[derive(Debug)]
pub struct Scheduler {
    state: Arc<Mutex<State>>,
}

/// The first pause after a worker fails; it doubles on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a worker that gave its cores back waits before it is tried again, unless its
/// announcement says it lends again first.
pub const NOT_LENDING_RECHECK: Duration = Duration::from_secs(30);
/// A worker this many times slower than the host per unit of cost counts as slow.
const SLOW_FACTOR: f64 = 1.5;
/// How often a waiting job looks again (a paused worker coming back does not notify).
const RECHECK: Duration = Duration::from_millis(250);

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scheduler {
    /// `local` slots on this host; no workers yet.
    pub fn new(local: usize) -> Scheduler {
        Scheduler {
            state: Arc::new(Mutex::new(State {
                local_free: local,
                local_slots: local,
                workers: BTreeMap::new(),
                waiting: Vec::new(),
                seq: 0,
                local_speed: None,
                remote_only: false,
            })),
        }
    }

    /// Runs `f` on the state, then grants what has become possible.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = lock(&self.state);
        f(&mut s);
        dispatch(&mut s, &self.state);
    }

    /// Adds worker `id` with `slots` compile slots and room for `queue` more jobs waiting
    /// on it (or updates them if it is known).
    pub fn add_worker(&self, id: WorkerId, slots: usize, queue: usize) {
        self.update(|s| {
            let w = s.workers.entry(id).or_insert(WorkerSlots {
                slots: 1,
                queue,
                in_flight: 0,
                down_until: None,
                backoff: FIRST_BACKOFF,
                not_lending: false,
                speed: None,
            });
            w.slots = slots.max(1);
            w.queue = queue;
        });
    }

    /// Removes worker `id`: it gets no new job; the grants it holds give back nothing.
    pub fn remove_worker(&self, id: &WorkerId) {
        self.update(|s| {
            s.workers.remove(id);
        });
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
        exclude: Vec<WorkerId>,
    ) -> Grant {
        let (tx, mut rx) = oneshot::channel();
        self.update(|s| {
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                cost,
                seq,
                remote_ok,
                exclude,
                tx,
            });
        });
        loop {
            match tokio::time::timeout(RECHECK, &mut rx).await {
                Ok(Ok(g)) => return g,
                // The sender lives in `waiting` until it is used; a dropped sender cannot
                // happen, but waiting for a local slot is always safe.
                Ok(Err(_)) => return Box::pin(self.acquire(false, cost)).await,
                Err(_) => self.update(|_| {}),
            }
        }
    }

    /// Records that worker `id` failed: no new jobs for it for a while, doubling with each
    /// failure after a pause. The pause it started, or `None` if one was running already.
    pub fn worker_failed(&self, id: &WorkerId) -> Option<Duration> {
        let mut started = None;
        self.update(|s| {
            let now = Instant::now();
            if let Some(w) = s.workers.get_mut(id)
                && w.down_until.is_none_or(|t| t <= now)
            {
                // The jobs that were running there fail together: one pause, not one
                // doubling per job.
                w.down_until = Some(now + w.backoff);
                started = Some(w.backoff);
                w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
            }
        });
        started
    }

    /// Records that worker `id` does not lend its cores now: no jobs for it until it is
    /// seen lending again ([`Scheduler::worker_ok`], from its announcement) or, for a
    /// worker that is not announced, until [`NOT_LENDING_RECHECK`] has passed.
    pub fn worker_not_lending(&self, id: &WorkerId) {
        self.update(|s| {
            if let Some(w) = s.workers.get_mut(id) {
                w.down_until = Some(Instant::now() + NOT_LENDING_RECHECK);
                w.not_lending = true;
            }
        });
    }

    /// Records that worker `id` says it lends again: a pause for not lending ends (one
    /// for failing does not).
    pub fn worker_lends(&self, id: &WorkerId) {
        self.update(|s| {
            if let Some(w) = s.workers.get_mut(id)
                && w.not_lending
            {
                w.not_lending = false;
                w.down_until = None;
            }
        });
    }

    /// Records measured speeds (seconds per unit of cost) of this host and of a worker.
    pub fn set_speed(&self, place: &Place, secs_per_unit: f64) {
        self.update(|s| match place {
            Place::Local => s.local_speed = Some(secs_per_unit),
            Place::Remote(id) => {
                if let Some(w) = s.workers.get_mut(id) {
                    w.speed = Some(secs_per_unit);
                }
            }
        });
    }

    /// A local slot now, for a speculative second run, if one is free and no waiting job
    /// could use it: speculation never delays a job that has not started.
    pub fn try_local_spare(&self) -> Option<Grant> {
        let mut s = lock(&self.state);
        if s.local_free == 0 || !s.waiting.is_empty() {
            return None;
        }
        s.local_free -= 1;
        Some(Grant {
            place: Place::Local,
            state: Some(self.state.clone()),
        })
    }

    /// Sends every job that may go remote to a worker, waiting for one, never here
    /// (while any worker is known): for checking workers.
    pub fn set_remote_only(&self, on: bool) {
        self.update(|s| s.remote_only = on);
    }

    /// Jobs that can run or wait usefully now: this host's slots, and each usable
    /// worker's slots and queue places (what a build tool's parallelism should be).
    pub fn capacity(&self) -> usize {
        let s = lock(&self.state);
        let now = Instant::now();
        s.local_slots
            + s.workers
                .values()
                .filter(|w| w.down_until.is_none_or(|t| t <= now))
                .map(|w| w.slots + w.queue)
                .sum::<usize>()
    }

    /// Records that worker `id` completed a job: its pause resets.
    pub fn worker_ok(&self, id: &WorkerId) {
        self.update(|s| {
            if let Some(w) = s.workers.get_mut(id) {
                w.down_until = None;
                w.backoff = FIRST_BACKOFF;
                w.not_lending = false;
            }
        });
    }
}

fn give_back(s: &mut State, place: &Place) {
    match place {
        Place::Local => s.local_free += 1,
        Place::Remote(id) => {
            if let Some(w) = s.workers.get_mut(id) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Grants what can be granted, most costly waiter first.
fn dispatch(s: &mut State, state: &Arc<Mutex<State>>) {
    s.waiting
        .sort_by(|a, b| b.cost.cmp(&a.cost).then(a.seq.cmp(&b.seq)));
    let now = Instant::now();
    let mut i = 0;
    while i < s.waiting.len() {
        let exclude = std::mem::take(&mut s.waiting[i].exclude);
        // Every waiter before this one is still waiting: `i` jobs are ahead of it.
        let granted = try_grant(s, s.waiting[i].remote_ok, &exclude, now, i);
        s.waiting[i].exclude = exclude;
        let Some(place) = granted else {
            i += 1;
            continue;
        };
        let w = s.waiting.remove(i);
        let grant = Grant {
            place,
            state: Some(state.clone()),
        };
        if let Err(g) = w.tx.send(grant) {
            // The job went away while waiting.
            g.give_back_locked(s);
        }
    }
}

fn try_grant(
    s: &mut State,
    remote_ok: bool,
    exclude: &[WorkerId],
    now: Instant,
    ahead: usize,
) -> Option<Place> {
    let (local, local_slots) = (s.local_speed, s.local_slots);
    let take = |s: &mut State, fits: &dyn Fn(&WorkerSlots) -> bool| {
        let id = pick(&s.workers, exclude, now, fits)?;
        let w = s.workers.get_mut(&id)?;
        w.in_flight += 1;
        Some(Place::Remote(id))
    };
    // Checking workers: a job waits for one, here only when none is usable at all.
    let usable = |s: &State| pick(&s.workers, exclude, now, &|_| true).is_some();
    if remote_ok && s.remote_only && usable(s) {
        return take(s, &|w| w.in_flight < w.slots + w.queue);
    }
    // A free slot of a worker that is not much slower than this host first (this host
    // has scans to run), then a free local slot, then a slow worker's free slot if the
    // job ends sooner there than waiting here, then a queue place behind a worker's
    // running jobs.
    if remote_ok && let Some(p) = take(s, &|w| w.in_flight < w.slots && !w.slow(local)) {
        return Some(p);
    }
    if s.local_free > 0 {
        s.local_free -= 1;
        return Some(Place::Local);
    }
    if remote_ok {
        let slow_ok = |w: &WorkerSlots| {
            w.in_flight < w.slots && w.ends_sooner_than_waiting(local, ahead, local_slots)
        };
        if let Some(p) = take(s, &slow_ok) {
            return Some(p);
        }
        return take(s, &|w| w.in_flight < w.slots + w.queue && !w.slow(local));
    }
    None
}

/// The usable worker that passes `ok` where a job should end soonest: the fewest jobs in
/// flight per slot, weighed by its measured seconds per unit (a worker not measured yet
/// counts as fast as the fastest measured one).
fn pick(
    workers: &BTreeMap<WorkerId, WorkerSlots>,
    exclude: &[WorkerId],
    now: Instant,
    ok: &dyn Fn(&WorkerSlots) -> bool,
) -> Option<WorkerId> {
    let fastest = workers
        .values()
        .filter_map(|w| w.speed)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
    workers
        .iter()
        .filter(|(id, w)| !exclude.contains(id) && w.down_until.is_none_or(|t| t <= now) && ok(w))
        .map(|(id, w)| {
            let secs = w.speed.or(fastest).unwrap_or(1.0);
            let load = (w.in_flight + 1) as f64 / w.slots.max(1) as f64;
            (id, load * secs)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, _)| id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_now(s: &Scheduler, remote_ok: bool) -> Option<Place> {
        try_grant(&mut lock(&s.state), remote_ok, &[], Instant::now(), 0)
    }

    fn id(name: &str) -> WorkerId {
        WorkerId::new(name)
    }

    fn remote(name: &str) -> Place {
        Place::Remote(id(name))
    }

    #[tokio::test]
    async fn remote_slot_then_local_then_queue() {
        let s = Scheduler::new(1);
        s.add_worker(id("w"), 1, 1);
        let a = s.acquire(true, 0).await;
        assert_eq!(a.place(), &remote("w"));
        let l = s.acquire(true, 0).await;
        assert_eq!(l.place(), &Place::Local);
        let b = s.acquire(true, 0).await;
        assert_eq!(b.place(), &remote("w"));
        assert_eq!(try_now(&s, true), None);
        assert_eq!(try_now(&s, false), None);
        drop(l);
        assert_eq!(s.acquire(false, 0).await.place(), &Place::Local);
        drop((a, b));
        assert_eq!(s.acquire(true, 0).await.place(), &remote("w"));
    }

    #[tokio::test]
    async fn failed_worker_is_paused() {
        let s = Scheduler::new(1);
        s.add_worker(id("w"), 2, 0);
        assert_eq!(s.worker_failed(&id("w")), Some(FIRST_BACKOFF));
        // Its other jobs failing at once do not lengthen the pause.
        assert_eq!(s.worker_failed(&id("w")), None);
        let l = s.acquire(true, 0).await;
        assert_eq!(l.place(), &Place::Local);
        assert_eq!(try_now(&s, true), None);
        s.worker_ok(&id("w"));
        assert_eq!(s.acquire(true, 0).await.place(), &remote("w"));
    }

    #[tokio::test]
    async fn a_worker_that_gave_back_waits_until_it_lends_again() {
        let s = Scheduler::new(0);
        s.add_worker(id("w"), 1, 0);
        s.worker_not_lending(&id("w"));
        assert_eq!(try_now(&s, true), None);
        // Its announcement says it lends again.
        s.worker_lends(&id("w"));
        assert_eq!(try_now(&s, true), Some(remote("w")));
        // A failing worker's pause is not ended by an announcement.
        s.add_worker(id("f"), 1, 0);
        s.worker_failed(&id("f"));
        s.worker_lends(&id("f"));
        assert_eq!(try_now(&s, true), None);
    }

    #[tokio::test]
    async fn a_slow_worker_comes_after_a_free_local_slot_and_gets_no_queue() {
        let s = Scheduler::new(1);
        s.add_worker(id("slow"), 1, 2);
        s.set_speed(&Place::Local, 1.0);
        s.set_speed(&remote("slow"), 10.0);
        assert_eq!(try_now(&s, true), Some(Place::Local));
        // Ten times slower: a job waiting for the one local slot behind nobody ends
        // sooner here (after 1.5 local job times) than there.
        assert_eq!(try_now(&s, true), None);
        // Behind 20 others (21.5 job times) it ends sooner there.
        let ahead = |n| try_grant(&mut lock(&s.state), true, &[], Instant::now(), n);
        assert_eq!(ahead(8), None);
        assert_eq!(ahead(20), Some(remote("slow")));
        // No queue place behind its running job.
        assert_eq!(ahead(100), None);
    }

    #[tokio::test]
    async fn free_slots_of_faster_workers_go_first() {
        let s = Scheduler::new(0);
        s.add_worker(id("a"), 4, 0);
        s.add_worker(id("b"), 4, 0);
        // Measured: b ends a job in less than a third of a's time.
        s.set_speed(&remote("a"), 3.5);
        s.set_speed(&remote("b"), 1.0);
        // b takes jobs until its load outweighs its speed: 1/4, 2/4, 3/4 of 1.0 against
        // 1/4 of 3.5; then a.
        let places: Vec<Place> = (0..4).filter_map(|_| try_now(&s, true)).collect();
        assert_eq!(
            places,
            vec![remote("b"), remote("b"), remote("b"), remote("a")]
        );
        // Unmeasured workers count as fast as the fastest measured one.
        s.add_worker(id("new"), 4, 0);
        assert_eq!(try_now(&s, true), Some(remote("new")));
    }

    #[test]
    fn remote_only_waits_for_a_worker_of_any_speed() {
        let s = Scheduler::new(1);
        s.set_remote_only(true);
        // No worker at all: here.
        assert_eq!(try_now(&s, true), Some(Place::Local));
        s.add_worker(id("slow"), 1, 1);
        s.set_speed(&Place::Local, 1.0);
        s.set_speed(&remote("slow"), 10.0);
        assert_eq!(try_now(&s, true), Some(remote("slow")));
        assert_eq!(
            try_now(&s, true),
            Some(remote("slow")),
            "its queue place too"
        );
        assert_eq!(
            try_now(&s, true),
            None,
            "never here while a worker is known"
        );
        assert_eq!(
            try_now(&s, false),
            None,
            "the local slot went to the first job"
        );
    }

    #[tokio::test]
    async fn a_spare_local_slot_is_only_taken_when_no_job_waits() {
        let s = Arc::new(Scheduler::new(1));
        let spare = s.try_local_spare().expect("a spare slot");
        assert!(s.try_local_spare().is_none());
        drop(spare);
        let held = s.acquire(false, 0).await;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.acquire(false, 0).await });
        while lock(&s.state).waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(held);
        // The freed slot went to the waiting job, not to speculation.
        assert!(s.try_local_spare().is_none());
        drop(waiter.await.expect("join"));
        assert!(s.try_local_spare().is_some());
    }

    #[tokio::test]
    async fn excluded_workers_are_never_granted() {
        let s = Scheduler::new(1);
        s.add_worker(id("a"), 1, 0);
        s.add_worker(id("b"), 1, 0);
        let b = s.acquire_excluding(true, 0, vec![id("a")]).await;
        assert_eq!(b.place(), &remote("b"));
        let l = s.acquire_excluding(true, 0, vec![id("a")]).await;
        assert_eq!(l.place(), &Place::Local);
        assert_eq!(s.acquire(true, 0).await.place(), &remote("a"));
    }

    #[tokio::test]
    async fn workers_join_and_leave_while_jobs_wait() {
        let s = Arc::new(Scheduler::new(1));
        let l = s.acquire(true, 0).await;
        assert_eq!(l.place(), &Place::Local);
        // A job waits; a worker joining serves it.
        let s2 = s.clone();
        let waiting = tokio::spawn(async move { s2.acquire(true, 0).await });
        tokio::task::yield_now().await;
        s.add_worker(id("new"), 1, 0);
        let g = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("granted when the worker joined")
            .expect("task");
        assert_eq!(g.place(), &remote("new"));
        // It leaves with the job still running: the grant gives back nothing, and no
        // new job goes there.
        s.remove_worker(&id("new"));
        drop(g);
        assert_eq!(try_now(&s, true), None);
        drop(l);
        assert_eq!(try_now(&s, true), Some(Place::Local));
    }

    #[tokio::test]
    async fn a_cancelled_acquire_leaks_no_slot() {
        let s = Arc::new(Scheduler::new(1));
        s.add_worker(id("w"), 1, 0);
        let held = s.acquire(true, 0).await;
        let local = s.acquire(true, 0).await;
        // Waits, then is cancelled (its future dropped) before and after it is granted.
        let s2 = s.clone();
        let t = tokio::spawn(async move { s2.acquire(true, 0).await });
        tokio::task::yield_now().await;
        t.abort();
        let _ = t.await;
        drop(held);
        drop(local);
        // Both slots are free again: one remote, one local.
        let a = s.acquire(true, 0).await;
        let b = s.acquire(true, 0).await;
        let mut places = vec![a.place().clone(), b.place().clone()];
        places.sort_by_key(|p| format!("{p:?}"));
        assert_eq!(places, vec![Place::Local, remote("w")]);
    }

    #[tokio::test]
    async fn largest_waiting_job_goes_first() {
        let s = Arc::new(Scheduler::new(1));
        let first = s.acquire(false, 0).await;
        let mut tasks = Vec::new();
        for cost in [10u64, 500, 40] {
            let s2 = s.clone();
            tasks.push(tokio::spawn(async move { s2.acquire(false, cost).await }));
            tokio::task::yield_now().await;
        }
        // All three wait; each release serves the most costly one left.
        let mut order = Vec::new();
        let mut held = Some(first);
        for _ in 0..3 {
            drop(held.take());
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut done = Vec::new();
            for (i, t) in tasks.iter_mut().enumerate() {
                if t.is_finished() && !order.contains(&i) {
                    done.push(i);
                    held = Some(t.await.expect("task"));
                }
            }
            assert_eq!(done.len(), 1, "one job per released slot");
            order.push(done[0]);
        }
        assert_eq!(order, vec![1, 2, 0]);
    }
}
