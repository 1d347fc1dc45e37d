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

/// `offload workers`.
pub async fn list(wait: Duration, auth: Arc<HostAuth>) -> anyhow::Result<i32> {
    let found = tokio::task::spawn_blocking(move || browse(wait)).await?;
    let paired = auth.paired();
    let mut rows: Vec<(String, String, String, String, String, bool)> = Vec::new();
    let is_paired = |id: &str| paired.iter().any(|p| p.fingerprint().to_string() == id);
    for w in &found {
        let addr = w.addrs.first().map(|a| a.to_string()).unwrap_or_default();
        let slots = format!("{}/{}", w.ad.free_slots, w.ad.slots);
        rows.push((
            w.ad.id.as_str().to_owned(),
            w.ad.name.clone(),
            addr,
            w.ad.arch.as_str().to_owned(),
            slots,
            is_paired(w.ad.id.as_str()),
        ));
    }
    let settings = config::load(&config::dir()?)?;
    let mut others: Vec<String> = settings.workers;
    others.extend(paired.iter().filter_map(|p| p.last_address.clone()));
    others.retain(|a| !rows.iter().any(|r| &r.2 == a));
    others.sort();
    others.dedup();
    for addr in others {
        let spec: WorkerSpec = match addr.parse() {
            Ok(s) => s,
            Err(e) => {
                rows.push((String::new(), e, addr, String::new(), String::new(), false));
                continue;
            }
        };
        let w = Worker::new(spec.addr.clone(), auth.clone(), spec.expect);
        let (id, name, arch, slots) = match w.greet().await {
            Ok(g) => (
                w.key()
                    .map(|k| k.fingerprint().to_string())
                    .unwrap_or_default(),
                g.name,
                w.arch().unwrap_or_default(),
                g.slots.to_string(),
            ),
            Err(e) => (
                w.key()
                    .map(|k| k.fingerprint().to_string())
                    .unwrap_or_default(),
                format!("({e})"),
                String::new(),
                String::new(),
            ),
        };
        let p = is_paired(&id);
        rows.push((id, name, spec.addr, arch, slots, p));
    }
    if rows.is_empty() {
        println!("no worker found on the LAN, configured or paired");
        return Ok(0);
    }
    println!(
        "{:<27} {:<20} {:<24} {:<8} {:<6} paired",
        "id", "name", "address", "arch", "slots"
    );
    for (id, name, addr, arch, slots, paired) in rows {
        let paired = if paired { "yes" } else { "no" };
        println!("{id:<27} {name:<20} {addr:<24} {arch:<8} {slots:<6} {paired}");
    }
    Ok(0)
}
