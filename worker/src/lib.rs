//! The offload worker: accepts compile jobs over TCP, runs each in a root of its own that
//! holds only the job's inputs and the worker's matching compiler, and returns every output.
//!
//! Layers, each a module: [`store`] keeps received files by digest; [`toolchain`] prepares
//! the worker's compilers; [`jobroot`] builds and harvests a job's root; [`sandbox`] runs
//! the compiler inside it; [`server`] speaks the protocol.

pub mod admission;
pub mod asshim;
pub mod harvest;
pub mod inventory;
pub mod jobroot;
pub mod sandbox;
pub mod server;
pub mod shipped;
pub mod store;
pub mod toolchain;

pub use server::{Config, Worker};
