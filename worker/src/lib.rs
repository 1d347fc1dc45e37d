//! The offload worker: accepts compile jobs over TCP, runs each in a root of its own that
//! holds only the job's inputs and the worker's matching compiler, and returns every output.
//!
//! Layers, each a module: [`server`] accepts connections under a cap and drains on
//! shutdown; [`conn`] speaks the protocol on one connection, with its limits and timeouts;
//! [`quota`] accounts what each peer holds and [`fair`] shares the slots between hosts; [`job`] runs one job: [`admission`] decides
//! whether it runs at all, [`toolchain`] (with [`inventory`] and [`shipped`]) gives it a
//! compiler, [`command`] its command, [`jobroot`] its root (from a [`spare`] one when
//! there is one), [`sandbox`] confines it and [`harvest`] collects its outputs; [`store`]
//! keeps received files by digest; [`donation`] says whether the worker lends now, fed by
//! the owner's pause ([`control`]) and the idle policy ([`idle`]).

pub mod admission;
pub mod asshim;
pub mod command;
pub mod conn;
pub mod control;
pub mod donation;
pub mod fair;
pub mod harvest;
pub mod idle;
pub mod inventory;
pub mod job;
pub mod jobroot;
pub mod pairing;
pub mod quota;
pub mod sandbox;
pub mod server;
pub mod shipped;
pub mod spare;
pub mod store;
pub mod toolchain;

pub use server::{Config, Worker};
