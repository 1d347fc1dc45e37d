//! The policy's thresholds, with defaults a user would accept; read from a JSON file (any
//! field left out keeps its default) or set one by one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sample::Thermal;

/// The thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Idle once no input came for this long (seconds).
    pub idle_after_secs: u64,
    /// A locked screen counts as idle however recent the last input.
    pub idle_when_locked: bool,
    /// Lend only on mains power.
    pub require_ac: bool,
    /// Lend in low-power mode too.
    pub lend_in_low_power: bool,
    /// The hottest state lending goes on in (`serious` and `critical` stop it by default).
    pub max_thermal: Thermal,
    /// Most share (0 to 1) of the worker's CPUs other work may use while it lends.
    pub max_other_load: f64,
    /// Most memory pressure (PSI `some avg10`, 0 to 100) while it lends.
    pub max_memory_pressure: f64,
    /// Consecutive samples over a load or memory threshold that make the machine busy
    /// (input, lock, power and heat act at once).
    pub busy_samples: u32,
    /// How long every input must allow lending before a busy machine lends again
    /// (seconds).
    pub resume_after_secs: u64,
    /// Time between samples (milliseconds).
    pub period_ms: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            idle_after_secs: 300,
            idle_when_locked: true,
            require_ac: true,
            lend_in_low_power: false,
            max_thermal: Thermal::Fair,
            max_other_load: 0.25,
            max_memory_pressure: 20.0,
            busy_samples: 2,
            resume_after_secs: 10,
            period_ms: 500,
        }
    }
}

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("idle policy settings {path}: {source}")]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid settings.
    #[error("idle policy settings {path}: {source}")]
    Parse {
        /// Which.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A value is out of range.
    #[error("idle policy settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// The settings in the JSON file at `path`, checked.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let s: Settings = serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.to_owned(),
            source,
        })?;
        s.check()?;
        Ok(s)
    }

    /// Whether every value is in range.
    pub fn check(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Invalid(m));
        if !(0.0..=1.0).contains(&self.max_other_load) {
            return bad(format!(
                "max_other_load is a share from 0 to 1, not {}",
                self.max_other_load
            ));
        }
        if !(0.0..=100.0).contains(&self.max_memory_pressure) {
            return bad(format!(
                "max_memory_pressure is from 0 to 100, not {}",
                self.max_memory_pressure
            ));
        }
        if !(50..=5000).contains(&self.period_ms) {
            return bad(format!(
                "period_ms is from 50 to 5000 (the cores are given back within 2 s), not {}",
                self.period_ms
            ));
        }
        if self.busy_samples == 0 {
            return bad("busy_samples is at least 1".into());
        }
        Ok(())
    }

    /// [`Settings::idle_after_secs`].
    pub fn idle_after(&self) -> Duration {
        Duration::from_secs(self.idle_after_secs)
    }

    /// [`Settings::resume_after_secs`].
    pub fn resume_after(&self) -> Duration {
        Duration::from_secs(self.resume_after_secs)
    }

    /// [`Settings::period_ms`].
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("idle.json");
        std::fs::write(&p, r#"{"idle_after_secs": 60, "max_thermal": "serious"}"#).expect("write");
        let s = Settings::from_file(&p).expect("settings");
        assert_eq!(s.idle_after(), Duration::from_secs(60));
        assert_eq!(s.max_thermal, Thermal::Serious);
        assert_eq!(s.max_other_load, 0.25);
        assert_eq!(s.period(), Duration::from_millis(500));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("idle.json");
        for text in [
            r#"{"idle_after": 60}"#,
            r#"{"max_other_load": 25}"#,
            r#"{"period_ms": 10000}"#,
            r#"{"busy_samples": 0}"#,
            "not json",
        ] {
            std::fs::write(&p, text).expect("write");
            assert!(Settings::from_file(&p).is_err(), "{text}");
        }
        assert!(matches!(
            Settings::from_file(&d.path().join("absent.json")),
            Err(SettingsError::Read { .. })
        ));
        assert!(Settings::default().check().is_ok());
    }
}
