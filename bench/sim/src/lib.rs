//! A simulation of hosts and workers on one LAN, in one process: the real scheduler of
//! the coordinator ([`offload_host::coordinator::sched`], with its speed estimates) on
//! each virtual host, the real fair slots ([`offload_worker::fair`]) on each virtual
//! worker, compiles as sleeps on a paused clock.
//!
//! - [`scenario`]: the table of scenarios and the seeded jobs and machines they make.
//! - [`host`]: a host's build (`make -jN`) driving its scheduler as the coordinator does.
//! - [`worker`]: a worker's fair slots and compiles.
//! - [`metrics`]: throughput against the ideal, latencies, fairness, utilisation.
//! - [`sim`]: runs a scenario; [`report`]: the Markdown table.

pub mod host;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod worker;
