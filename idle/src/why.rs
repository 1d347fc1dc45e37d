//! Why a machine is busy: reason kinds and their short stable tokens, the ones the worker
//! shows in `offload worker status`, its log and its announcement (`Lending::no(token)`).

use serde::{Deserialize, Serialize};

/// The token for a machine that may lend.
pub const IDLE: &str = "idle";

/// Why the machine is busy. The order is the priority: the first reason of a busy
/// verdict is the one the worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The owner is using the machine: recent input, screen unlocked.
    BusyOwner,
    /// It runs on battery.
    OnBattery,
    /// The owner asked for low-power mode.
    LowPower,
    /// It runs hot (serious or critical).
    Thermal,
    /// Other work loads the CPUs the worker may use.
    BusyCpu,
    /// Memory is under pressure.
    MemoryPressure,
}

impl Reason {
    /// Every reason, in priority order.
    pub const ALL: [Reason; 6] = [
        Reason::BusyOwner,
        Reason::OnBattery,
        Reason::LowPower,
        Reason::Thermal,
        Reason::BusyCpu,
        Reason::MemoryPressure,
    ];

    /// Its token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::BusyOwner => "busy-owner",
            Reason::OnBattery => "on-battery",
            Reason::LowPower => "low-power",
            Reason::Thermal => "thermal",
            Reason::BusyCpu => "busy-cpu",
            Reason::MemoryPressure => "memory-pressure",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_distinct_and_single_words() {
        let tokens: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            tokens,
            [
                "busy-owner",
                "on-battery",
                "low-power",
                "thermal",
                "busy-cpu",
                "memory-pressure"
            ]
        );
        for t in tokens.iter().chain([&IDLE]) {
            assert!(
                t.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{t}"
            );
        }
        let mut sorted = Reason::ALL;
        sorted.sort();
        assert_eq!(sorted, Reason::ALL, "ALL is the priority order");
    }
}
