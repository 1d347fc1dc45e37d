//! One reading of the machine's inputs. Each is `None` where the backend cannot tell
//! (no input devices, no logind, no power supply information…); the engine counts an
//! unknown input as allowing lending.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How hot the machine runs (the levels of macOS's `NSProcessInfoThermalState`; on Linux
/// from the thermal zones' distance to their hot or critical trip points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Thermal {
    /// Cool.
    Nominal,
    /// Warm, not throttling.
    Fair,
    /// Near throttling: lending makes it worse.
    Serious,
    /// Throttling.
    Critical,
}

/// The inputs at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Time since the last keyboard or pointer input.
    pub input_idle: Option<Duration>,
    /// Whether the screen is locked.
    pub screen_locked: Option<bool>,
    /// Whether the machine runs on mains power (a machine without batteries does).
    pub on_ac: Option<bool>,
    /// Whether the owner asked for low-power mode.
    pub low_power: Option<bool>,
    /// How hot it runs.
    pub thermal: Option<Thermal>,
    /// The share (0 to 1) of the CPUs the worker may run on that everything but the
    /// worker and its jobs used since the previous sample.
    pub other_load: Option<f64>,
    /// Memory pressure: the share of time (0 to 100) some task stalled on memory over the
    /// last 10 s (Linux PSI `some avg10`).
    pub memory_pressure: Option<f64>,
}
