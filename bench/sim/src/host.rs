//! A virtual host: the real [`Scheduler`] and [`Speeds`] of the coordinator, driven as
//! the coordinator drives them, by a build that keeps at most `-jN` jobs outstanding.
//!
//! Each job follows the coordinator's path: `attempt` asks the scheduler
//! (`acquire_excluding(true, cost, [])`); a local grant compiles here (`run_local`: the
//! slot is given back, then the local speed is recorded); a remote grant goes to `race`:
//! the worker alone until the job is past its patience ([`Speeds::patience`]), looking for
//! a spare local slot every [`LOOK_AGAIN`]; with one, the job runs here too and the first
//! to finish wins, the other is stopped. A finished remote job records the worker's speed
//! (its whole time, the worker's queue and the network included) before its grant is
//! given back. Nothing here decides a placement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offload_host::coordinator::executor::WorkerId;
use offload_host::coordinator::sched::{Grant, Place, Scheduler};
use offload_host::coordinator::speed::{LOOK_AGAIN, Speeds};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::scenario::{HostSpec, Job};
use crate::worker::VirtualWorker;

/// Jobs queued on a worker beyond its slots (`offload build`'s `queue_per_worker`).
pub const QUEUE_PER_WORKER: usize = 1;

/// Where a job's result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// A local slot.
    Local,
    /// Worker number `n`.
    Remote(usize),
    /// A local second run that finished before the worker.
    Speculated,
}

/// One finished job.
#[derive(Debug, Clone, Copy)]
pub struct JobRecord {
    /// The host's index.
    pub host: usize,
    /// When the build offered it (`make` started the compiler), from the simulation's start.
    pub submitted: Duration,
    /// When its result was there.
    pub finished: Duration,
    /// Its work, in reference seconds.
    pub work: f64,
    /// Where its result came from.
    pub ran: Ran,
}

/// What a host's local slots did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalUse {
    /// Slot-seconds of compiles that counted.
    pub done: f64,
    /// Slot-seconds of second runs the worker won.
    pub stopped: f64,
    /// Second runs started.
    pub speculated: usize,
}

/// One host.
#[derive(Debug)]
pub struct VirtualHost {
    index: usize,
    spec: HostSpec,
    sched: Scheduler,
    speeds: Speeds,
    workers: Arc<Vec<VirtualWorker>>,
    by_id: HashMap<WorkerId, usize>,
    net: Duration,
    t0: Instant,
    local: Mutex<LocalUse>,
}

/// The id of worker number `n`.
pub fn worker_id(n: usize) -> WorkerId {
    WorkerId::new(&format!("w{n:02}"))
}

impl VirtualHost {
    /// Host `index` with every worker known, as after the coordinator has greeted each
    /// (`add_worker` with one slot, then with the slots its greeting gives).
    pub fn new(
        index: usize,
        spec: HostSpec,
        workers: Arc<Vec<VirtualWorker>>,
        net: Duration,
        t0: Instant,
    ) -> VirtualHost {
        let sched = Scheduler::new(spec.local_slots.max(1));
        let mut by_id = HashMap::new();
        for (n, w) in workers.iter().enumerate() {
            let id = worker_id(n);
            sched.add_worker(id.clone(), 1, QUEUE_PER_WORKER);
            sched.add_worker(id.clone(), w.spec.slots, QUEUE_PER_WORKER);
            by_id.insert(id, n);
        }
        VirtualHost {
            index,
            spec,
            sched,
            speeds: Speeds::default(),
            workers,
            by_id,
            net,
            t0,
            local: Mutex::new(LocalUse::default()),
        }
    }

    /// Runs the build: from its start time, `make -jN` keeps at most N jobs outstanding,
    /// offered in the build's order. Every job's record, in the order they finished.
    pub async fn build(self: Arc<Self>) -> Vec<JobRecord> {
        tokio::time::sleep_until(self.t0 + self.spec.start).await;
        let limit = Arc::new(Semaphore::new(self.spec.jobs_limit.max(1)));
        let mut running = JoinSet::new();
        let mut done = Vec::with_capacity(self.spec.jobs.len());
        for job in self.spec.jobs.clone() {
            let Ok(token) = limit.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            running.spawn(async move {
                let r = me.job(job).await;
                drop(token);
                r
            });
            while let Some(Ok(r)) = running.try_join_next() {
                done.push(r);
            }
        }
        while let Some(r) = running.join_next().await {
            if let Ok(r) = r {
                done.push(r);
            }
        }
        done
    }

    /// What its local slots did.
    pub fn local_use(&self) -> LocalUse {
        *self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn local_secs(&self, job: &Job) -> Duration {
        Duration::from_secs_f64(job.work / self.spec.speed)
    }

    /// One compile, as the coordinator's `attempt`.
    async fn job(&self, job: Job) -> JobRecord {
        let submitted = self.now();
        let grant = self
            .sched
            .acquire_excluding(true, job.cost, Vec::new())
            .await;
        let ran = match grant.place().clone() {
            Place::Local => {
                self.run_local(grant, &job).await;
                Ran::Local
            }
            Place::Remote(id) => {
                let n = self.by_id[&id];
                self.race(n, grant, &job).await
            }
        };
        JobRecord {
            host: self.index,
            submitted,
            finished: self.now(),
            work: job.work,
            ran,
        }
    }

    /// The coordinator's `run_local`: the compile holds the slot; the slot is given back,
    /// then the local speed is recorded.
    async fn run_local(&self, grant: Grant, job: &Job) {
        let started = Instant::now();
        tokio::time::sleep(self.local_secs(job)).await;
        drop(grant);
        self.local_done(job, started.elapsed(), true);
    }

    /// A local compile of `took` ended; `counted` if its result is the build's.
    fn local_done(&self, job: &Job, took: Duration, counted: bool) {
        {
            let mut l = self.local.lock().unwrap_or_else(|p| p.into_inner());
            if counted {
                l.done += took.as_secs_f64();
            } else {
                l.stopped += took.as_secs_f64();
            }
        }
        if counted {
            let v = self.speeds.record(&Place::Local, job.cost, took);
            self.sched.set_speed(&Place::Local, v);
        }
    }

    /// The coordinator's `race` on worker `n`.
    async fn race(&self, n: usize, grant: Grant, job: &Job) -> Ran {
        let place = grant.place().clone();
        let started = Instant::now();
        let patience = self.speeds.patience(&place, job.cost);
        let mut fetch = Box::pin(self.workers[n].run(self.index, job.work, self.net));
        let spare = loop {
            let wait = patience.saturating_sub(started.elapsed()).max(LOOK_AGAIN);
            tokio::select! {
                // Biased: when both are ready at one instant the result is taken, and the
                // simulation is the same run after run.
                biased;
                () = &mut fetch => return self.remote_ended(&place, job, started, n),
                () = tokio::time::sleep(wait) => {}
            }
            if started.elapsed() < patience {
                continue;
            }
            if let Some(spare) = self.sched.try_local_spare() {
                break spare;
            }
        };
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .speculated += 1;
        let local_started = Instant::now();
        tokio::select! {
            biased;
            () = &mut fetch => {
                // The worker won: the local run stops.
                drop(spare);
                self.local_done(job, local_started.elapsed(), false);
                self.remote_ended(&place, job, started, n)
            }
            () = tokio::time::sleep(self.local_secs(job)) => {
                // Here first: the worker's job is dropped with its connection.
                drop(fetch);
                drop(grant);
                drop(spare);
                self.local_done(job, local_started.elapsed(), true);
                Ran::Speculated
            }
        }
    }

    /// The coordinator's `remote_ended` for a success: the worker's speed, measured from
    /// the grant to the result.
    fn remote_ended(&self, place: &Place, job: &Job, started: Instant, n: usize) -> Ran {
        let v = self.speeds.record(place, job.cost, started.elapsed());
        self.sched.set_speed(place, v);
        Ran::Remote(n)
    }
}
