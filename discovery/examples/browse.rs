//! Prints the offload workers found on the LAN, and their changes, as they come.
//!
//! ```text
//! cargo run -p offload-discovery --example browse -- [--interface NAME]... [--no-ipv6] [--for SECONDS]
//! ```
//!
//! `OFFLOAD_LOG` sets the log filter (default `warn`: ignored announcements show).

use std::time::{Duration, Instant};

use offload_discovery::{BrowseEvent, BrowseOptions, Browser, InterfaceSel, Worker};

fn line(w: &Worker) -> String {
    let ad = &w.ad;
    let donating = if ad.donating {
        "donating"
    } else {
        "not donating"
    };
    let cut = if ad.compilers_truncated { ", …" } else { "" };
    let compilers: Vec<&str> = ad.compilers.iter().map(|c| c.as_str()).collect();
    let addrs: Vec<String> = w.addrs.iter().map(ToString::to_string).collect();
    format!(
        "{} {:?} {} {}/{} free, {donating} ({}), protocol {}, compilers [{}{cut}], at {}",
        ad.id,
        ad.name,
        ad.arch,
        ad.free_slots,
        ad.slots,
        ad.reason,
        ad.protocol,
        compilers.join(", "),
        addrs.join(" "),
    )
}

fn usage() -> ! {
    eprintln!("usage: browse [--interface NAME]... [--no-ipv6] [--for SECONDS]");
    std::process::exit(2)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut opts = BrowseOptions::default();
    let mut until: Option<Instant> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--interface" => match args.next() {
                Some(name) => opts.net.interfaces.push(InterfaceSel::Name(name)),
                None => usage(),
            },
            "--no-ipv6" => opts.net.no_ipv6 = true,
            "--for" => match args.next().and_then(|s| s.parse::<u64>().ok()) {
                Some(secs) => until = Some(Instant::now() + Duration::from_secs(secs)),
                None => usage(),
            },
            _ => usage(),
        }
    }
    let browser = match Browser::start(opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("browse: {e}");
            std::process::exit(1);
        }
    };
    let mut events = browser.subscribe();
    let start = Instant::now();
    loop {
        let event = match events.try_recv() {
            Ok(ev) => ev,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                if until.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        };
        let t = start.elapsed().as_secs_f64();
        match event {
            BrowseEvent::Added(w) => println!("{t:8.3}s + {}", line(&w)),
            BrowseEvent::Updated(w) => println!("{t:8.3}s ~ {}", line(&w)),
            BrowseEvent::Removed { id, cause } => println!("{t:8.3}s - {id} ({cause:?})"),
        }
    }
    println!("{} worker(s):", browser.workers().len());
    for w in browser.workers() {
        println!("  {}", line(&w));
    }
}
