//! The host's settings file and directory. The directory (`$OFFLOAD_CONFIG_DIR`, else the
//! platform's config directory: `~/.config/offload` on Linux) holds `config.toml`, this
//! host's key and the workers it paired with. `config.toml` names static workers, for
//! networks where multicast does not pass, and whether to look for workers at all:
//!
//! ```toml
//! workers = ["10.0.0.7:7420", "build-box.lan:7420"]
//! discover = true
//! ```
//!
//! A missing file means the defaults; a file that does not parse is an error naming the
//! file and the line, never silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable that overrides the config directory.
pub const ENV_CONFIG_DIR: &str = "OFFLOAD_CONFIG_DIR";

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No home directory to put the config directory in, and no `$OFFLOAD_CONFIG_DIR`.
    #[error("no config directory: set {ENV_CONFIG_DIR} or HOME")]
    NoDirectory,
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: toml::de::Error,
    },
}

/// What `config.toml` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Workers to use besides those found (`HOST:PORT`).
    pub workers: Vec<String>,
    /// Whether to look for workers on the LAN (mDNS).
    pub discover: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: Vec::new(),
            discover: true,
        }
    }
}

/// The config directory (not created).
pub fn dir() -> Result<PathBuf, ConfigError> {
    if let Some(d) = std::env::var_os(ENV_CONFIG_DIR).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    directories::ProjectDirs::from("", "", "offload")
        .map(|p| p.config_dir().to_owned())
        .ok_or(ConfigError::NoDirectory)
}

/// Reads `DIR/config.toml`; defaults if it does not exist.
pub fn load(dir: &Path) -> Result<Settings, ConfigError> {
    let path = dir.join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    parse(&text).map_err(|source| ConfigError::Parse { path, source })
}

fn parse(text: &str) -> Result<Settings, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_or_say_where_they_do_not() {
        let cases: &[(&str, Option<Settings>)] = &[
            ("", Some(Settings::default())),
            (
                "workers = [\"a:1\", \"b:2\"]\n",
                Some(Settings {
                    workers: vec!["a:1".into(), "b:2".into()],
                    discover: true,
                }),
            ),
            (
                "discover = false\n",
                Some(Settings {
                    workers: vec![],
                    discover: false,
                }),
            ),
            ("workers = \"a:1\"\n", None),
            ("wrokers = []\n", None),
            ("discover = \n", None),
        ];
        for (text, want) in cases {
            let got = parse(text);
            match want {
                Some(w) => assert_eq!(got.as_ref().ok(), Some(w), "{text:?}: {got:?}"),
                None => assert!(got.is_err(), "{text:?} parsed: {got:?}"),
            }
        }
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_a_bad_one_names_itself() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(d.path()).ok(), Some(Settings::default()));
        std::fs::write(d.path().join("config.toml"), "workers = [1]\n").expect("write");
        let e = load(d.path()).expect_err("must not parse");
        assert!(e.to_string().contains("config.toml"), "{e}");
    }
}
