//! Helpers for offload's end-to-end tests.
//!
//! Every test builds something twice at the same absolute path under the host's `/tmp`:
//! once plainly, once through `offload build` against a worker that runs in its own network
//! and mount namespace (with a private `/tmp`, so it sees none of the test's files), and then
//! compares exit status, stdout, stderr and every file of the two trees byte for byte.
//!
//! - [`paths`]: the `offload` binary, the repository, `shared/`, per-test directories;
//! - [`cmd`]: running commands with a clean environment and a hang guard, and the parser of
//!   `offload build`'s summary line;
//! - [`compare`]: tree snapshots and readable reports of differences;
//! - [`netns`]: [`netns::NetnsWorker`], a worker in namespaces of its own;
//! - [`projects`]: third-party C sources fetched by cargo, and the Makefiles written for them;
//! - [`twice`]: the plain-then-offload run and its comparison;
//! - [`soak`]: many small jobs against one restarted worker, its RSS and descriptors sampled.

pub mod attacks;
pub mod cmd;
pub mod compare;
pub mod container;
pub mod cpulimit;
pub mod keys;
pub mod liar;
pub mod logs;
pub mod netns;
pub mod paths;
pub mod peer;
pub mod procs;
pub mod projects;
pub mod soak;
pub mod twice;

pub use cmd::Summary;
pub use netns::{Lan, NetnsWorker};
pub use paths::offload_bin;
pub use twice::{Twice, run_twice};
