//! What the offload host and worker share: the wire protocol, content digests and the
//! model of the file tree a job runs in.
//!
//! This crate is an **API boundary**: everything that crosses the network is defined here
//! and nowhere else. It does no process or file-system work of its own.
#![deny(missing_docs)]

pub mod digest;
pub mod ident;
pub mod protocol;
pub mod tree;
pub mod walk;

pub use digest::Digest;
