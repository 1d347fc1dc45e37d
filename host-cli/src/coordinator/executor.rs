//! What the coordinator needs from a place that runs compiles: a LAN worker speaking
//! offload's own protocol ([`super::remote::Worker`]) today, a Remote Execution API
//! cluster later. The coordinator knows backends only through [`Executor`] and names them
//! by [`WorkerId`], so they can join and leave while a build runs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use offload_shared::protocol::{CompilerRef, ToolchainInfo};

use super::prepare::Prepared;
use super::remote::{RemoteError, RemoteResult};
use super::ship::Bundle;

/// A boxed future, so that [`Executor`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's identity within a build: the fingerprint of its key once it is paired, its
/// address before. Stable for as long as the backend is the same machine.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// The id `text`.
    pub fn new(text: &str) -> WorkerId {
        WorkerId(Arc::from(text))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", self.0)
    }
}

/// What a backend says of itself when first reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Its name, for messages.
    pub name: String,
    /// Compiles it runs at once.
    pub slots: usize,
}

/// A place that runs compiles.
pub trait Executor: Send + Sync + fmt::Debug {
    /// Its identity.
    fn id(&self) -> &WorkerId;

    /// How messages name it after the word "worker": its address.
    fn label(&self) -> String;

    /// The name it gave when it was greeted (empty before).
    fn name(&self) -> String;

    /// Its architecture (`std::env::consts::ARCH` there), once known; `None` for a
    /// backend that never takes this host's toolchain.
    fn arch(&self) -> Option<String>;

    /// Reaches it and learns its name and slots.
    fn greet(&self) -> BoxFuture<'_, Result<Greeting, RemoteError>>;

    /// How it would run `compiler`.
    fn toolchain<'a>(
        &'a self,
        compiler: &'a CompilerRef,
    ) -> BoxFuture<'a, Result<ToolchainInfo, RemoteError>>;

    /// Offers this host's toolchain for `compiler`; gives its new answer and the bytes
    /// sent. Only backends with an [`Executor::arch`] are asked.
    fn ship<'a>(
        &'a self,
        compiler: &'a CompilerRef,
        bundle: Arc<Bundle>,
    ) -> BoxFuture<'a, Result<(ToolchainInfo, u64), RemoteError>>;

    /// Runs one prepared job.
    fn run<'a>(&'a self, job: &'a Prepared) -> BoxFuture<'a, Result<RemoteResult, RemoteError>>;

    /// Compressed bytes sent to it and received from it so far.
    fn traffic(&self) -> (u64, u64);
}
