//! The offload host: intercepts a build's compiler calls and runs them remotely or locally.
pub mod classify;
