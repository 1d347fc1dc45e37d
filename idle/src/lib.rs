//! The worker's idle policy: whether this machine may lend its cores now.
//!
//! One engine, platform backends. A backend ([`linux`], [`macos`]) reads the machine's
//! inputs into a [`Sample`] (each input unknown where it cannot tell); the [`Engine`]
//! judges samples against the [`Settings`] with hysteresis into a [`Verdict`] (`Idle`, or
//! `Busy` with [`Reason`]s); the [`Monitor`] samples a [`Source`] every period on a thread
//! of its own and publishes the verdicts on a watch channel.
//!
//! Unknown inputs never make a machine busy: a headless server with no input devices, no
//! logind, no batteries and no thermal zones is idle unless something else loads its CPUs.

pub mod engine;
pub mod monitor;
pub mod sample;
pub mod settings;
pub mod source;
pub mod why;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "macos")]
pub mod macos;

pub use engine::{Engine, Verdict};
pub use monitor::Monitor;
pub use sample::{Sample, Thermal};
pub use settings::{Settings, SettingsError};
pub use source::{OwnJobs, Source, system_source};
pub use why::Reason;
