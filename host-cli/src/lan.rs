//! Workers found on the LAN during a build: a browser's events become workers joining and
//! leaving the coordinator. Only paired workers are used (a worker's mDNS id is its key's
//! fingerprint, and the handshake must prove that key); the others are noted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use offload_discovery::{BrowseEvent, BrowseOptions, Browser};
use offload_secure::Fingerprint;
use offload_shared::protocol::PROTOCOL_VERSION;

use crate::auth::HostAuth;
use crate::coordinator::Coordinator;
use crate::coordinator::executor::WorkerId;
use crate::coordinator::remote::{Worker, WorkerSpec};

/// How long a build first listens for workers before it decides it has none.
pub const FIRST_LOOK: Duration = Duration::from_millis(400);

/// A browser, started; `None` (with a warning) if mDNS cannot run here.
pub fn start() -> Option<Browser> {
    match Browser::start(BrowseOptions::default()) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!("not looking for workers on the LAN: {e}");
            None
        }
    }
}

/// The paired, compatible workers `browser` knows now, as worker specs.
pub fn usable_now(browser: &Browser, auth: &HostAuth) -> Vec<WorkerSpec> {
    browser
        .workers()
        .iter()
        .filter_map(|w| usable(w, auth))
        .collect()
}

fn usable(w: &offload_discovery::Worker, auth: &HostAuth) -> Option<WorkerSpec> {
    if w.ad.protocol != PROTOCOL_VERSION {
        return None;
    }
    let fp: Fingerprint = w.ad.id.as_str().parse().ok()?;
    let paired = auth.paired().iter().any(|p| p.fingerprint() == fp);
    if !paired {
        tracing::debug!(
            worker = w.ad.id.as_str(),
            name = w.ad.name,
            "found an unpaired worker: `offload pair` it to use it"
        );
        return None;
    }
    let addr = w.addrs.first()?;
    Some(WorkerSpec {
        addr: addr.to_string(),
        expect: Some(fp),
    })
}

/// Follows `browser` until it stops: paired workers that appear join the build, workers
/// that leave are removed. Workers whose address is in `known` (given on the command line
/// or in the config file) are left alone.
pub async fn follow(
    browser: &Browser,
    coord: Arc<Coordinator>,
    auth: Arc<HostAuth>,
    known: Vec<String>,
) {
    let mut rx = browser.subscribe();
    // Each joined worker's id, by its key's fingerprint, and the address it was joined at.
    let mut joined: HashMap<String, WorkerId> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            BrowseEvent::Added(w) | BrowseEvent::Updated(w) => {
                let id = w.ad.id.as_str().to_owned();
                let Some(spec) = usable(&w, &auth) else {
                    continue;
                };
                let wid = WorkerId::new(&spec.addr);
                // An update that changes the preferred address (one resolved later, an
                // IPv4 address after a link-local one, a new DHCP lease) moves the worker.
                match joined.get(&id) {
                    Some(old) if *old == wid => {
                        coord.set_lending(old, w.ad.donating);
                        continue;
                    }
                    Some(old) => {
                        tracing::info!(worker = %old, to = spec.addr, "moved on the LAN");
                        coord.remove_worker(old);
                    }
                    None => {}
                }
                if known.contains(&spec.addr) {
                    continue;
                }
                let exec = Worker::new(spec.addr.clone(), auth.clone(), spec.expect);
                joined.insert(id, wid.clone());
                tracing::info!(worker = spec.addr, name = w.ad.name, "found on the LAN");
                coord.add_worker(Arc::new(exec)).await;
                if !w.ad.donating {
                    coord.set_lending(&wid, false);
                }
            }
            BrowseEvent::Removed { id, cause } => {
                if let Some(wid) = joined.remove(id.as_str()) {
                    tracing::info!(worker = %wid, ?cause, "left the LAN");
                    coord.remove_worker(&wid);
                }
            }
        }
    }
}
