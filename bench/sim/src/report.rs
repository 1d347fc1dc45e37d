//! The report: one Markdown table row per run.

use crate::metrics::Summary;

/// The table's header.
pub const HEADER: &str = "| scenario | jobs | ideal s | makespan s | throughput | worst latency s | p99 s | median s | Jain (speedup) | speedup min-max | Jain (worker share) | worker use (min) | local use | local results | 2nd runs (won) | wasted |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// The row of `s`.
pub fn row(s: &Summary) -> String {
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.2} | {:.3} | {:.1}-{:.1} | {:.3} | {:.0}% ({:.0}%) | {:.0}% | {} | {} ({}) | {:.1}% |",
        s.name,
        s.jobs,
        s.ideal,
        s.makespan,
        s.throughput,
        s.worst_latency,
        s.p99_latency,
        s.median_latency,
        s.jain_speedup,
        s.speedups.0,
        s.speedups.1,
        s.jain_share,
        s.worker_use * 100.0,
        s.worker_use_min * 100.0,
        s.local_use * 100.0,
        s.local_jobs,
        s.speculated.0,
        s.speculated.1,
        s.wasted * 100.0,
    )
}
