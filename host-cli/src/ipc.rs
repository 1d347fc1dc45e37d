//! Messages between a compiler wrapper and the coordinator inside `offload build`, over a
//! Unix socket, in the frames of `offload_shared::protocol::frame`. Host-local: they never
//! cross the network.

use offload_shared::protocol::ExitStatus;
use serde::{Deserialize, Serialize};

/// Wrapper → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "body",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Request {
    /// Decide about this compile (and run it remotely if possible).
    Compile(CompileRequest),
    /// This command must run locally (the wrapper could not even describe it); grant a
    /// local slot.
    LocalSlot {
        /// Why, for the summary.
        reason: String,
    },
}

/// One compiler invocation as the wrapper saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileRequest {
    /// Absolute path of the real compiler.
    pub compiler: String,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// Working directory (as `getcwd` gives it).
    pub cwd: String,
    /// The whole environment of the wrapper.
    pub env: Vec<(String, String)>,
    /// The wrapper's umask, for the modes of files written for it.
    pub umask: u32,
    /// The wrapper's standard error is a terminal (gcc then colours its diagnostics).
    pub stderr_tty: bool,
    /// The width of the terminal on standard input, if it is one (gcc fits its source
    /// excerpts to it).
    pub stdin_columns: Option<u16>,
}

/// Coordinator → wrapper.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "body",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Reply {
    /// Run the compiler yourself; keep the connection open until it has exited (the slot is
    /// held while it is open).
    RunLocal {
        /// Why, for logs.
        reason: String,
        /// Niceness to add before running: local compiles yield the CPU to the work that
        /// keeps the workers busy (dependency scans, the build tool).
        nice: i32,
    },
    /// The compile ran remotely; its output files are written. The payload is stdout then
    /// stderr.
    Finished {
        /// How the compiler ended.
        status: ExitStatus,
        /// Bytes of stdout at the start of the payload.
        stdout_len: u64,
    },
}
