//! The offload host: intercepts a build's compiler calls and runs each remotely or locally.
//!
//! - [`build`]: `offload build`: masquerade links, the coordinator, the build command.
//! - [`wrapper`]: what runs as `gcc` inside the build.
//! - [`coordinator`]: decides and carries out each compile.
//! - [`classify`]: the argument tables (pure, no IO).
//! - [`status`]: `offload status`: compilers, workers, probe results.
pub mod auth;
pub mod build;
pub mod cachedir;
pub use offload_classify as classify;
pub mod compilers;
pub mod config;
pub mod coordinator;
pub mod ipc;
pub mod jobserver;
pub mod lan;
pub mod pair;
pub mod parallel;
pub mod status;
pub mod wrapper;
