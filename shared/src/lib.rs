//! What the offload host and worker share: the wire protocol, content digests and the
//! model of the file tree a job runs in.
//!
//! This crate is an **API boundary**: everything that crosses the network is defined here
//! and nowhere else, including the toolchain bundle's format ([`bundle`]) and the list of
//! a compiler's files that both sides use ([`toolchain`]), which asks the compiler and
//! `ldd`.
#![deny(missing_docs)]

#[cfg(feature = "compress")]
pub mod bundle;
pub mod digest;
pub mod ident;
pub mod protocol;
pub mod toolchain;
pub mod tree;
pub mod walk;

pub use digest::Digest;
