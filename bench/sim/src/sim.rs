//! Runs a scenario: every host's build and every worker on one thread, on a paused clock
//! that jumps to the next timer whenever every task waits, so that minutes of builds take
//! a moment and a run is the same each time.

use std::sync::Arc;

use tokio::time::Instant;

use crate::host::VirtualHost;
use crate::metrics::{Summary, summarise};
use crate::scenario::Scenario;
use crate::worker::VirtualWorker;

/// Runs `s` to its end.
pub fn run(s: &Scenario) -> Summary {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(simulate(s))
}

async fn simulate(s: &Scenario) -> Summary {
    let workers: Arc<Vec<VirtualWorker>> = Arc::new(
        s.workers
            .iter()
            .map(|w| VirtualWorker::new(*w, s.hosts.len()))
            .collect(),
    );
    let t0 = Instant::now();
    let hosts: Vec<Arc<VirtualHost>> = s
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Arc::new(VirtualHost::new(i, h.clone(), workers.clone(), s.net, t0)))
        .collect();
    let builds: Vec<_> = hosts
        .iter()
        .map(|h| tokio::spawn(h.clone().build()))
        .collect();
    let mut records = Vec::new();
    for b in builds {
        records.extend(b.await.expect("a build task"));
    }
    let spent: Vec<_> = workers.iter().map(VirtualWorker::spent).collect();
    let locals: Vec<_> = hosts.iter().map(|h| h.local_use()).collect();
    summarise(s, &records, &spent, &locals)
}
