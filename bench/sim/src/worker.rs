//! A virtual worker: the real [`FairSlots`] of `offload-worker`, shared by the hosts as
//! the worker's connections share them, and a sleep for each compile. It counts what
//! each slot spent on each host's jobs, finished or stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use offload_worker::fair::FairSlots;
use tokio::time::Instant;

use crate::scenario::WorkerSpec;

/// Compute spent on one host's jobs, in slot-seconds of this worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spent {
    /// On jobs that finished here.
    pub done: f64,
    /// On jobs stopped before they finished (the host's local run won).
    pub stopped: f64,
}

/// One worker.
#[derive(Debug)]
pub struct VirtualWorker {
    /// Its slots and speed.
    pub spec: WorkerSpec,
    slots: Arc<FairSlots<usize>>,
    /// By host index.
    spent: Mutex<Vec<Spent>>,
}

/// Records a compile's time on its slot when dropped, whether it finished or not.
struct Busy<'a> {
    worker: &'a VirtualWorker,
    host: usize,
    since: Instant,
    finished: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let secs = self.since.elapsed().as_secs_f64();
        let mut spent = self.worker.spent.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut spent[self.host];
        if self.finished {
            s.done += secs;
        } else {
            s.stopped += secs;
        }
    }
}

impl VirtualWorker {
    /// A worker serving `hosts` hosts, each of which may use every slot (the worker's
    /// default per-host cap).
    pub fn new(spec: WorkerSpec, hosts: usize) -> VirtualWorker {
        VirtualWorker {
            spec,
            slots: FairSlots::new(spec.slots, spec.slots),
            spent: Mutex::new(vec![Spent::default(); hosts]),
        }
    }

    /// Runs a job of `work` reference seconds for `host`: it travels `net`, waits in the
    /// host's fair queue, compiles, and its result travels `net` back. Dropping the future
    /// stops it wherever it is (as a dropped connection does).
    pub async fn run(&self, host: usize, work: f64, net: Duration) {
        tokio::time::sleep(net).await;
        let Ok(slot) = self.slots.acquire(host).await else {
            // Never closed here.
            return;
        };
        let mut busy = Busy {
            worker: self,
            host,
            since: Instant::now(),
            finished: false,
        };
        tokio::time::sleep(Duration::from_secs_f64(work / self.spec.speed)).await;
        busy.finished = true;
        drop(busy);
        drop(slot);
        tokio::time::sleep(net).await;
    }

    /// What each host's jobs took here, by host index.
    pub fn spent(&self) -> Vec<Spent> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
