//! `cargo run --release -p offload-sim [SEED]`: every scenario of the table, as a
//! Markdown table.

use offload_sim::{report, scenario, sim};

fn main() {
    let seed = match std::env::args().nth(1) {
        None => 1,
        Some(s) => match s.parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("usage: offload-sim [SEED]  (a number; default 1)");
                std::process::exit(2);
            }
        },
    };
    println!("Seed {seed}.\n");
    for p in scenario::SCENARIOS {
        println!("- {}: {}", p.name, p.about);
    }
    println!("\n{}", report::HEADER);
    for p in scenario::SCENARIOS {
        let started = std::time::Instant::now();
        let s = sim::run(&p.scenario(seed));
        println!("{}", report::row(&s));
        eprintln!(
            "{}: {:.1} s of real time",
            p.name,
            started.elapsed().as_secs_f64()
        );
    }
}
