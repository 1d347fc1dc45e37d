//! The offload wire protocol.
//!
//! A connection carries frames ([`frame`]): a JSON header naming a [`Message`] plus an
//! optional binary payload (zstd-compressed blobs, see [`payload`]). A connection starts
//! with [`Message::Hello`] from the host and [`Message::Welcome`] from the worker, which
//! fixes the protocol version. Then one job at a time:
//!
//! ```text
//! host  -> Job            (command, cwd, env, the tree of inputs by digest)
//! worker-> NeedBlobs      (digests its store lacks; may be empty)
//! host  -> Blobs          (payload: those files' bytes)
//! worker-> JobDone        (status, stdout, stderr and output files in the payload)
//!        | JobRejected    (the worker cannot run it: the host compiles locally)
//!        | NotDonating    (the worker gave its cores back: the job runs elsewhere)
//! ```
//! Before a compiler's first job the host asks how the worker runs it; a worker of the
//! host's architecture that cannot may be sent the host's own toolchain:
//!
//! ```text
//! host  -> ToolchainQuery (compiler path, driver digest, version, .ident)
//! worker-> ToolchainInfo  (native, cross, shipped, or unavailable)
//! host  -> ToolchainOffer (compiler, bundle digest and size)      only if unavailable
//! worker-> NeedToolchain  (send it)  | ToolchainInfo (already kept, or refused)
//! host  -> ToolchainBundle (payload: the tar.zst)
//! worker-> ToolchainInfo  (shipped, or unavailable with the reason)
//! ```
//! Frames are written to any `AsyncRead + AsyncWrite` (or blocking `Read + Write`) stream,
//! so an authenticated, encrypted transport can wrap the same bytes.

pub mod frame;
pub mod message;
#[cfg(feature = "compress")]
pub mod payload;

pub use frame::{FrameError, Limits};
pub use message::*;
