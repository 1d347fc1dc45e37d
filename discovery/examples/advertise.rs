//! Advertises a made-up worker until interrupted, changing its free slots every few
//! seconds: the other half of `browse`, for manual checks (e.g. against
//! `dns-sd -B _offload._tcp` on a Mac, or `avahi-browse -r _offload._tcp`).
//!
//! ```text
//! cargo run -p offload-discovery --example advertise -- [ID] [NAME] [PORT]
//! ```

use std::time::Duration;

use offload_discovery::{AdvertiseOptions, Advertiser, Compiler, WorkerAd, WorkerId};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "example-worker-key".into());
    let name = args.next().unwrap_or_else(|| "example worker".into());
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(7420);
    let id = match WorkerId::new(id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("advertise: {e}");
            std::process::exit(2);
        }
    };
    let mut ad = WorkerAd::new(4, id, name, 8, port);
    ad.compilers = ["gcc-12", "g++-12"]
        .iter()
        .filter_map(|c| Compiler::new(*c).ok())
        .collect();
    let mut adv = match Advertiser::start(ad.clone(), AdvertiseOptions::default()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("advertise: {e}");
            std::process::exit(1);
        }
    };
    println!("advertising {} as {}", ad.id, adv.instance());
    loop {
        std::thread::sleep(Duration::from_secs(5));
        ad.free_slots = if ad.free_slots == 0 {
            ad.slots
        } else {
            ad.free_slots - 1
        };
        match adv.update(ad.clone()) {
            Ok(_) => println!("free slots: {}", ad.free_slots),
            Err(e) => eprintln!("advertise: {e}"),
        }
    }
}
