//! The messages of the wire protocol. These are the only serialised types that cross the
//! network; every struct refuses unknown fields.

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::tree::TreeEntry;

/// The protocol's name, sent in [`Hello`].
pub const PROTOCOL_NAME: &str = "offload";
/// This build's protocol version. Peers with another version refuse each other.
pub const PROTOCOL_VERSION: u32 = 7;

/// Every message, tagged by `type` with its fields under `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Message {
    /// Host → worker, first frame.
    Hello(Hello),
    /// Worker → host, answer to [`Hello`].
    Welcome(Welcome),
    /// Host → worker: how would you run this compiler? Asked once per compiler, before
    /// the toolchain probe.
    ToolchainQuery(CompilerRef),
    /// Worker → host: the answer to [`Message::ToolchainQuery`], to
    /// [`Message::ToolchainOffer`] (when it needs no bytes or refuses them) and to
    /// [`Message::ToolchainBundle`].
    ToolchainInfo(ToolchainInfo),
    /// Host → worker: a bundle of the host's own toolchain for a compiler the worker
    /// answered [`ToolchainKind::Unavailable`] for (same architecture only).
    ToolchainOffer(ToolchainOffer),
    /// Worker → host: send the offered bundle's bytes.
    NeedToolchain(NeedToolchain),
    /// Host → worker: the offered bundle; its bytes (a zstd-compressed tar, see
    /// `offload_shared::bundle`) are the payload.
    ToolchainBundle(ToolchainBundle),
    /// Host → worker: run this compile.
    Job(Box<JobRequest>),
    /// Worker → host: send these blobs before the job can run.
    NeedBlobs(NeedBlobs),
    /// Host → worker: the blobs asked for; their bytes are the payload.
    Blobs(Blobs),
    /// Worker → host: the compile ran; stdout, stderr and outputs are the payload.
    JobDone(JobDone),
    /// Worker → host: the job was not run (no matching compiler, bad tree, full disk…).
    /// The host compiles locally.
    JobRejected(JobRejected),
    /// Worker → host: the worker does not lend its cores now (its owner is back, it is
    /// paused…), so the job was not run, or was stopped; the host runs it elsewhere and
    /// sends this worker nothing until it lends again (its announcement says when).
    NotDonating(NotDonating),
    /// Host → worker, while a job runs: stop it (its result is no longer wanted). The
    /// worker answers the job with [`Message::JobRejected`]; a cancel for a job that is
    /// not running is ignored.
    Cancel(Cancel),
    /// Host → worker, instead of [`Message::Hello`], from a host the worker has not paired
    /// with: ask its owner to allow this host (both sides show the handshake's pairing
    /// code). The worker answers [`Message::PairResult`] once its owner decided (or the
    /// request timed out); a refusal closes the connection.
    PairRequest(PairRequest),
    /// Worker → host: the owner's answer to [`Message::PairRequest`]; after an accepted
    /// one, and a [`Message::PairConfirm`], the final answer (the host is pinned).
    PairResult(PairResult),
    /// Host → worker, after an accepted [`Message::PairResult`]: whether the host's user
    /// confirmed the code too. Only then does the worker pin the host (and answer a final
    /// [`Message::PairResult`]); a host that closes instead pins nothing on either side.
    PairConfirm(PairConfirm),
    /// Either side: a protocol error; the connection closes after it.
    Error(ProtocolError),
}

/// Opens a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always [`PROTOCOL_NAME`].
    pub protocol: String,
    /// The host's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Free text naming the host, for logs.
    pub client: String,
}

/// Accepts a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The worker's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Free text naming the worker, for logs.
    pub worker: String,
    /// How many jobs the worker runs at once.
    pub slots: u32,
    /// The worker's architecture as Rust names it (`std::env::consts::ARCH`: `x86_64`,
    /// `aarch64`): a host ships its toolchain only to workers of its own.
    pub arch: String,
}

/// The compiler a job must run with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompilerRef {
    /// Absolute path of the compiler driver as the host runs it.
    pub path: String,
    /// Digest of the driver binary after resolving links.
    pub digest: Digest,
    /// `-dumpfullversion` and `-dumpmachine`, e.g. `12.2.0 x86_64-linux-gnu`: a worker
    /// without this exact driver may use another compiler of this version for this target.
    pub version: String,
    /// The text of the `.ident` directive this compiler writes into assembly (and so into
    /// the objects' `.comment`), e.g. `GCC: (Debian 12.2.0-14+deb12u1) 12.2.0`.
    pub ident: String,
}

/// How a worker runs a host's compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolchainKind {
    /// The very same driver (same digest): jobs run unchanged.
    Native,
    /// Another build of the same gcc for the same target (a cross compiler on another
    /// architecture): jobs run with the host's include directories and the host's `.ident`.
    CrossGcc,
    /// Another build of the same clang that also targets the host's architecture: jobs run
    /// the compiler proper (`clang -cc1`) with the arguments the host's own driver chose,
    /// sent as [`JobRequest::cc1_argv`].
    CrossClangCc1,
    /// The host's own toolchain, shipped as a bundle ([`Message::ToolchainOffer`]) and kept
    /// by the worker: jobs run unchanged, as with [`ToolchainKind::Native`]. The answer's
    /// fingerprint is the bundle's digest.
    Shipped,
    /// The worker cannot run this compiler.
    Unavailable,
}

/// The worker's answer to a toolchain query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainInfo {
    /// The host's compiler path, as asked.
    pub path: String,
    /// How jobs for it would run.
    pub kind: ToolchainKind,
    /// What runs them (the worker's compiler path), or why none can.
    pub detail: String,
    /// Identifies the worker's toolchain files (paths, sizes, modification times): a probe
    /// result stays valid while the host's compiler and this stay the same.
    pub fingerprint: Digest,
}

/// A toolchain bundle the host can send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainOffer {
    /// The compiler it holds (the driver at `compiler.path` has `compiler.digest`).
    pub compiler: CompilerRef,
    /// SHA-256 of the bundle's bytes.
    pub bundle: Digest,
    /// Its size in bytes (compressed, as sent).
    pub size: u64,
}

/// Asks for the bytes of an offered bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedToolchain {
    /// The offered bundle's digest.
    pub bundle: Digest,
}

/// Announces a bundle's bytes as the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainBundle {
    /// The bundle's digest, as offered.
    pub bundle: Digest,
}

/// A compile to run at the host's paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Chosen by the host; echoed in the answer.
    pub job_id: u64,
    /// Which compiler.
    pub compiler: CompilerRef,
    /// The full argument vector; `argv[0]` is what the process sees as its name.
    pub argv: Vec<String>,
    /// Working directory (absolute; part of `tree`).
    pub cwd: String,
    /// The environment of the compile, complete.
    pub env: Vec<(String, String)>,
    /// Everything the compile may read, and the directories it may write to.
    pub tree: Vec<TreeEntry>,
    /// The host compiler's own include directories for this job's language, in search
    /// order: a worker whose compiler searches others (a cross compiler) searches these.
    pub system_include_dirs: Vec<String>,
    /// For a worker that answered [`ToolchainKind::CrossClangCc1`]: the compiler proper's
    /// command as the host's driver builds it (`clang -###`), starting with the program and
    /// `-cc1`. Empty otherwise.
    pub cc1_argv: Vec<String>,
    /// Wall-clock limit for the compile.
    pub timeout_secs: u32,
}

/// Blobs the worker lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedBlobs {
    /// The job this is for.
    pub job_id: u64,
    /// Each at most once.
    pub digests: Vec<Digest>,
}

/// Announces the payload of blob bytes, concatenated in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blobs {
    /// The job this is for.
    pub job_id: u64,
    /// Digest and size of each blob, in payload order.
    pub blobs: Vec<(Digest, u64)>,
}

/// How the compiler process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// A file the compile created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Absolute path on the host.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// The compile ran. The payload holds stdout, stderr and each output file, concatenated
/// in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDone {
    /// The job.
    pub job_id: u64,
    /// How the compiler ended.
    pub status: ExitStatus,
    /// Bytes of standard output.
    pub stdout_len: u64,
    /// Bytes of standard error.
    pub stderr_len: u64,
    /// Files created, in payload order after stdout and stderr.
    pub outputs: Vec<OutputFile>,
    /// Milliseconds the compiler ran on the worker.
    pub compile_ms: u64,
}

/// The job was not run; the host compiles it locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRejected {
    /// The job.
    pub job_id: u64,
    /// Why, for the host's log.
    pub reason: String,
}

/// A job not run, or stopped, because the worker gave its cores back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotDonating {
    /// The job.
    pub job_id: u64,
    /// Why the worker does not lend now (a token: `busy-owner`, `paused-by-user`, …).
    pub why: String,
}

/// Stop a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// The job.
    pub job_id: u64,
}

/// Asks to pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The host's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// A name for the worker's owner to recognise the host by (its host name).
    pub host: String,
}

/// The answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairResult {
    /// Whether the worker's owner allowed the host (the first answer) or the host is now
    /// pinned on the worker (the final one).
    pub accepted: bool,
    /// The worker's name, for the host's list of paired workers.
    pub worker: String,
    /// Why not, when not.
    pub reason: String,
}

/// The host's user's answer to the pairing code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfirm {
    /// Whether the user confirmed that both sides show the same code.
    pub confirmed: bool,
}

/// A protocol error; the sender closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolError {
    /// What went wrong.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_tagged_and_strict() {
        let m = Message::NeedBlobs(NeedBlobs {
            job_id: 7,
            digests: vec![],
        });
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"type":"need_blobs","body":{"job_id":7,"digests":[]}}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&s).unwrap(), m);
        for bad in [
            r#"{"type":"need_blobs","body":{"job_id":7,"digests":[],"x":1}}"#,
            r#"{"type":"no_such","body":{}}"#,
            r#"{"type":"need_blobs"}"#,
        ] {
            assert!(serde_json::from_str::<Message>(bad).is_err(), "{bad}");
        }
    }
}
