//! `offload pair`, `offload workers`: what the user sees of pairing and discovery.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use offload_discovery::{BrowseOptions, Browser};
use offload_host::auth::HostAuth;
use offload_host::coordinator::executor::Executor;
use offload_host::coordinator::remote::{Worker, WorkerSpec};
use offload_host::{config, pair};

/// The workers found on the LAN within `wait`.
fn browse(wait: Duration) -> Vec<offload_discovery::Worker> {
    match Browser::start(BrowseOptions::default()) {
        Ok(b) => {
            std::thread::sleep(wait);
            let found = b.workers();
            b.stop();
            found
        }
        Err(e) => {
            eprintln!("offload: cannot look for workers on the LAN: {e}");
            Vec::new()
        }
    }
}

/// `HOST:PORT` of `worker`: itself if it is one, else the LAN worker with that
/// fingerprint or name.
fn resolve(worker: &str) -> anyhow::Result<String> {
    if worker.parse::<WorkerSpec>().is_ok() {
        return Ok(worker.to_owned());
    }
    let found = browse(Duration::from_secs(3));
    let matching: Vec<_> = found
        .iter()
        .filter(|w| w.ad.id.as_str() == worker || w.ad.name == worker)
        .collect();
    match &matching[..] {
        [w] => match w.addrs.first() {
            Some(a) => Ok(a.to_string()),
            None => bail!("worker {worker} announces no address"),
        },
        [] => bail!("no worker {worker} found on the LAN (give HOST:PORT)"),
        _ => bail!("several workers are named {worker}: give its fingerprint or HOST:PORT"),
    }
}

/// Reads y/n from the terminal, off the async threads.
async fn ask_yes() -> bool {
    tokio::task::spawn_blocking(|| {
        print!("Does the worker show this code? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        matches!(line.trim(), "y" | "Y" | "yes")
    })
    .await
    .unwrap_or(false)
}

/// `offload pair WORKER [--yes]`.
pub async fn pair(worker: &str, yes: bool, auth: Arc<HostAuth>) -> anyhow::Result<i32> {
    if !yes && !std::io::stdin().is_terminal() {
        bail!("confirming the code needs a terminal (or --yes, once you compared it)");
    }
    let addr = resolve(worker)?;
    let show = |fp: &offload_secure::Fingerprint, code: &str| {
        println!("Worker {fp} at {addr}");
        println!("Pairing code: {code}");
        println!(
            "On the worker, check that it shows this code and allow it: `offload worker allow {code}` (or in the menu-bar app)."
        );
    };
    let confirm = async move {
        if yes {
            // Pending forever: only the worker's answer ends the wait.
            true
        } else {
            ask_yes().await
        }
    };
    match pair::pair(&addr, &auth, show, confirm).await {
        Ok(p) if p.already => println!("paired with {} again ({})", p.name, p.key.fingerprint()),
        Ok(p) => println!("paired with {} ({})", p.name, p.key.fingerprint()),
        Err(e) => bail!("{e}"),
    }
    Ok(0)
}

/// The end of an error message, for a table cell.
fn short(e: &str) -> String {
    let tail = e.rsplit(": ").next().unwrap_or(e);
    tail.chars().take(40).collect()
}

/// Whether a secure handshake with `addr` completes (the worker is there and speaks
/// this protocol), within a second.
async fn reachable(addr: &str, auth: &HostAuth) -> bool {
    let dial = offload_host::coordinator::remote::dial(addr, auth.identity());
    matches!(
        tokio::time::timeout(Duration::from_secs(1), dial).await,
        Ok(Ok(_))
    )
}

/// One line of `offload workers`.
struct Row {
    id: String,
    name: String,
    addr: String,
    arch: String,
    slots: String,
    paired: bool,
    reachable: bool,
}

/// `offload workers`.
pub async fn list(wait: Duration, auth: Arc<HostAuth>) -> anyhow::Result<i32> {
    let found = tokio::task::spawn_blocking(move || browse(wait)).await?;
    let paired = auth.paired();
    let is_paired = |id: &str| paired.iter().any(|p| p.fingerprint().to_string() == id);
    let mut rows: Vec<Row> = Vec::new();
    for w in &found {
        let addr = w.addrs.first().map(|a| a.to_string()).unwrap_or_default();
        rows.push(Row {
            id: w.ad.id.as_str().to_owned(),
            name: w.ad.name.clone(),
            reachable: reachable(&addr, &auth).await,
            addr,
            arch: w.ad.arch.as_str().to_owned(),
            slots: format!("{}/{}", w.ad.free_slots, w.ad.slots),
            paired: is_paired(w.ad.id.as_str()),
        });
    }
    let settings = config::load(&config::dir()?)?;
    let mut others: Vec<String> = settings.workers;
    others.extend(paired.iter().filter_map(|p| p.last_address.clone()));
    others.retain(|a| !rows.iter().any(|r| &r.addr == a));
    others.sort();
    others.dedup();
    for addr in others {
        let spec: WorkerSpec = match addr.parse() {
            Ok(s) => s,
            Err(e) => {
                rows.push(Row {
                    id: String::new(),
                    name: e,
                    addr,
                    arch: String::new(),
                    slots: String::new(),
                    paired: false,
                    reachable: false,
                });
                continue;
            }
        };
        let w = Worker::new(spec.addr.clone(), auth.clone(), spec.expect);
        let greeted = w.greet().await;
        // The key it proved, else the one pinned for its address.
        let pinned = paired
            .iter()
            .find(|p| p.last_address.as_deref() == Some(spec.addr.as_str()))
            .map(|p| p.fingerprint().to_string());
        let id = w
            .key()
            .map(|k| k.fingerprint().to_string())
            .or(pinned)
            .unwrap_or_default();
        let row = match greeted {
            Ok(g) => Row {
                paired: is_paired(&id),
                id,
                name: g.name,
                addr: spec.addr,
                arch: w.arch().unwrap_or_default(),
                slots: g.slots.to_string(),
                reachable: true,
            },
            Err(e) => Row {
                paired: is_paired(&id),
                reachable: w.key().is_some(),
                id,
                name: format!("(unreachable: {})", short(&e.to_string())),
                addr: spec.addr,
                arch: String::new(),
                slots: String::new(),
            },
        };
        rows.push(row);
    }
    if rows.is_empty() {
        println!("no worker found on the LAN, configured or paired");
        return Ok(0);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "{:<27} {:<20} {:<24} {:<8} {:<6} {:<7} reachable",
        "id", "name", "address", "arch", "slots", "paired"
    );
    for r in rows {
        println!(
            "{:<27} {:<20} {:<24} {:<8} {:<6} {:<7} {}",
            r.id,
            r.name,
            r.addr,
            r.arch,
            r.slots,
            yes(r.paired),
            yes(r.reachable)
        );
    }
    Ok(0)
}
