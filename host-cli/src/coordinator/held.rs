//! A remote result held back: its outputs not yet written, so that the coordinator can
//! compare it with a local compile (`--verify`) or race one against it (speculation)
//! before anything reaches the build tree.

use std::collections::HashSet;
use std::path::PathBuf;

use offload_shared::protocol::ExitStatus;

use super::executor::WorkerId;

/// A remote result held back for comparison.
#[derive(Debug)]
pub struct Held {
    /// The worker that ran it.
    pub worker: WorkerId,
    /// Its label, for the report.
    pub label: String,
    /// The compiler path, as the request named it.
    pub compiler: String,
    /// The command the worker ran (argv[0] first) and its directory.
    pub argv: Vec<String>,
    /// The directory it ran in.
    pub cwd: String,
    /// `COLUMNS`, if the remote run was given one for a terminal's width.
    pub columns: Option<String>,
    /// The translation unit, for the report.
    pub source: String,
    /// The remote result.
    pub result: Compiled,
    /// Real paths of the directories outputs may be written to.
    pub writable: HashSet<PathBuf>,
    /// Real paths of every input file (never overwritten).
    pub inputs: HashSet<PathBuf>,
    /// The wrapper's umask, for the outputs' modes.
    pub umask: u32,
}

/// A compile's whole result: status, streams, and every output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Output files by path, in the remote result's order.
    pub files: Vec<(String, Vec<u8>)>,
}
