//! offload's end-to-end tests: one binary (`cargo test -p offload-e2e --release`, after
//! `cargo build --release -p offload`), run as root.
//!
//! Every test compares a plain build with the same build through `offload build` at the same
//! absolute path under the host's `/tmp` (see `offload_e2e::twice`), against a worker in its
//! own network and mount namespaces, and asserts from offload's summary line that the compiles
//! did run remotely (or locally, where that is the point).
//!
//! - `builds`: real third-party C (Lua, zstd, SQLite) through make, gcc/g++/clang, -O0/-O2, ±-g;
//! - `cases`: single compiler calls, one per classifier row, diagnostics and exit statuses;
//! - `harness`: the shared fidelity harness (`shared/fidelity/run.py`) under `offload build`;
//! - `faults`: a worker killed mid-build, malformed frames, no worker, an unreachable worker;
//! - `ship`: the host's toolchain shipped to a worker without it;
//! - `lending`: a worker whose owner takes its cores back mid-build;
//! - `idle`: a worker with `--lend idle` pinned to a CPU that other work loads;
//! - `verify`: `--verify` against an honest worker and a lying one;
//! - `soak`: many small jobs against a worker restarted between them; RSS and descriptors flat.

mod builds;
mod cases;
mod cross;
mod faults;
mod harness;
mod hostile;
mod hostile_conn;
mod hostile_container;
mod hostile_job;
mod hostile_toolchain;
mod hostile_tree;
mod idle;
mod lending;
mod pairing;
mod parallel;
mod probe;
mod rescan;
mod sharing;
mod ship;
mod soak;
mod terminal;
mod verify;

/// `--worker ADDR -j 1`: the host's own slot count is 1 so that compiles go to the worker.
fn via(worker: &offload_e2e::NetnsWorker) -> Vec<String> {
    vec![
        "--worker".into(),
        worker.worker_arg(),
        "-j".into(),
        "1".into(),
    ]
}

/// [`via`] with `--remote-only`: every compile that can go remote waits for the worker,
/// whatever this host measures of its speed, for tests that check every result came
/// from it.
fn via_all_remote(worker: &offload_e2e::NetnsWorker) -> Vec<String> {
    let mut args = via(worker);
    args.push("--remote-only".into());
    args
}
