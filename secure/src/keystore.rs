//! Where an [`Identity`] lives: the OS keyring (macOS keychain, Linux secret service) when
//! asked for and present, else a 0600 key file; or a key file given explicitly.
//!
//! A key file holds the 32-byte secret key as 64 hex digits and a newline. It must belong
//! to the user and allow group and others nothing, or it is refused
//! ([`FileError::Insecure`], [`FileError::NotOwned`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::{fmt, io};

use zeroize::Zeroizing;

use crate::files::{self, Existing, FileError};
use crate::identity::{Identity, KEY_LEN, RandomError};

/// The keyring service name the keys are stored under.
pub const KEYRING_SERVICE: &str = "offload";

/// A key could not be loaded, created or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is not a key file (64 hex digits): {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    /// The keyring exists but failed, or holds something that is not a key. Not a reason to
    /// fall back to a file: that would quietly give this machine a new identity.
    #[error("keyring entry {service}/{account}: {source}")]
    Keyring {
        service: String,
        account: String,
        source: keyring::Error,
    },
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Where a loaded identity was found or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Keyring { service: String, account: String },
    File(PathBuf),
}

impl fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLocation::Keyring { service, account } => {
                write!(f, "the OS keyring ({service}/{account})")
            }
            KeyLocation::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What [`KeyStore::load_or_create`] returns.
#[derive(Debug)]
pub struct LoadedIdentity {
    pub identity: Identity,
    pub location: KeyLocation,
    /// True when there was no key and this call made one.
    pub created: bool,
}

/// Where an identity named `name` (say "host" or "worker") is kept: `DIR/NAME.key`, and,
/// when [`with_keyring`](KeyStore::with_keyring) is on, the keyring entry
/// `offload`/`NAME` first.
///
/// The keyring is off by default: reaching it can block on D-Bus (Linux) or on a keychain
/// prompt (macOS), which tests and headless workers do not want. Keyring calls are blocking:
/// call [`load_or_create`](KeyStore::load_or_create) before the async runtime or in
/// `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    name: String,
    keyring: bool,
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        KeyStore {
            dir: dir.into(),
            name: name.to_owned(),
            keyring: false,
        }
    }

    /// Use the OS keyring when it has a service; the key file remains the fallback.
    pub fn with_keyring(mut self, on: bool) -> Self {
        self.keyring = on;
        self
    }

    /// The key file's path: `DIR/NAME.key`.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }

    /// The identity, made and stored on first use.
    ///
    /// With the keyring on: the keyring's entry if it has one; else an existing key file
    /// (a key made while no keyring was reachable stays this machine's identity, and is not
    /// moved); else a new key in the keyring. When the keyring has no service at all (a
    /// headless Linux), the key file, said once in the logs. A keyring that is there but
    /// fails is an error, not a fallback.
    pub fn load_or_create(&self) -> Result<LoadedIdentity, KeyError> {
        if self.keyring {
            match keyring_entry(&self.name) {
                Ok(entry) => return self.load_or_create_in_keyring(&entry),
                Err(reason) => warn_no_keyring(&reason, &self.key_file()),
            }
        }
        self.load_or_create_file()
    }

    fn load_or_create_file(&self) -> Result<LoadedIdentity, KeyError> {
        let path = self.key_file();
        let location = KeyLocation::File(path.clone());
        if let Some(identity) = read_key_file(&path)? {
            return Ok(LoadedIdentity {
                identity,
                location,
                created: false,
            });
        }
        let identity = Identity::generate()?;
        match write_key_file(&path, &identity) {
            Ok(()) => {
                tracing::info!(key = %identity.fingerprint(), file = %path.display(), "made a new identity");
                Ok(LoadedIdentity {
                    identity,
                    location,
                    created: true,
                })
            }
            // Another process made it first: use theirs.
            Err(KeyError::File(FileError::Io { source, .. }))
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                let identity = Identity::from_file(&path)?;
                Ok(LoadedIdentity {
                    identity,
                    location,
                    created: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn load_or_create_in_keyring(
        &self,
        entry: &keyring::Entry,
    ) -> Result<LoadedIdentity, KeyError> {
        let location = KeyLocation::Keyring {
            service: KEYRING_SERVICE.to_owned(),
            account: self.name.clone(),
        };
        let failed = |source| KeyError::Keyring {
            service: KEYRING_SERVICE.to_owned(),
            account: self.name.clone(),
            source,
        };
        match entry.get_secret() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let secret: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    failed(keyring::Error::Invalid(
                        "secret".into(),
                        format!("{} bytes, not a {KEY_LEN}-byte key", bytes.len()),
                    ))
                })?;
                let identity = Identity::from_secret_bytes(Zeroizing::new(secret));
                Ok(LoadedIdentity {
                    identity,
                    location,
                    created: false,
                })
            }
            Err(keyring::Error::NoEntry) => {
                if let Some(identity) = read_key_file(&self.key_file())? {
                    let location = KeyLocation::File(self.key_file());
                    return Ok(LoadedIdentity {
                        identity,
                        location,
                        created: false,
                    });
                }
                let identity = Identity::generate()?;
                entry.set_secret(identity.secret_bytes()).map_err(failed)?;
                tracing::info!(key = %identity.fingerprint(), "made a new identity in the OS keyring");
                Ok(LoadedIdentity {
                    identity,
                    location,
                    created: true,
                })
            }
            Err(e) => Err(failed(e)),
        }
    }
}

/// The keyring entry for `name`, or why there is no keyring to use.
fn keyring_entry(name: &str) -> Result<keyring::Entry, String> {
    if let Err(e) = keyring::Entry::store_status() {
        return Err(e.to_string());
    }
    keyring::Entry::new(KEYRING_SERVICE, name).map_err(|e| e.to_string())
}

fn warn_no_keyring(reason: &str, file: &Path) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(%reason, file = %file.display(), "no OS keyring here: the key is kept in a file (mode 0600)");
    }
}

/// The largest key file read (64 hex digits and some whitespace).
const MAX_KEY_FILE: usize = 256;

fn read_key_file(path: &Path) -> Result<Option<Identity>, KeyError> {
    let Some(bytes) = files::read_private(path, MAX_KEY_FILE)? else {
        return Ok(None);
    };
    let bytes = Zeroizing::new(bytes);
    let corrupt = |reason| KeyError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| corrupt("not text"))?
        .trim();
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(text, secret.as_mut_slice()).map_err(|_| corrupt("not 64 hex digits"))?;
    Ok(Some(Identity::from_secret_bytes(secret)))
}

/// Writes a new key file for `identity` (mode 0600, directory 0700); an existing file is
/// kept and the call fails with `AlreadyExists`.
fn write_key_file(path: &Path, identity: &Identity) -> Result<(), KeyError> {
    let mut text = Zeroizing::new(hex::encode(identity.secret_bytes()));
    text.push('\n');
    files::write_private(path, text.as_bytes(), Existing::Keep)?;
    Ok(())
}

impl Identity {
    /// Loads a key file given explicitly (`--key-file`, a key handed to a container). A
    /// missing file is an error here, not a reason to make a key.
    pub fn from_file(path: &Path) -> Result<Identity, KeyError> {
        read_key_file(path)?.ok_or_else(|| {
            KeyError::File(FileError::Io {
                path: path.to_owned(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
        })
    }

    /// Writes this identity to a new key file (mode 0600), to hand to a container or
    /// another machine; refuses to overwrite an existing file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, self)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_then_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path().join("config"), "worker");
        let first = store.load_or_create().unwrap();
        assert!(first.created);
        assert_eq!(
            first.location,
            KeyLocation::File(tmp.path().join("config/worker.key"))
        );
        let mode = fs::metadata(store.key_file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = store.load_or_create().unwrap();
        assert!(!second.created);
        assert_eq!(second.identity.public(), first.identity.public());
        let explicit = Identity::from_file(&store.key_file()).unwrap();
        assert_eq!(explicit.public(), first.identity.public());
    }

    #[test]
    fn a_readable_key_file_is_refused_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path(), "host");
        let made = store.load_or_create().unwrap();
        fs::set_permissions(store.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load_or_create().unwrap_err();
        assert!(
            matches!(err, KeyError::File(FileError::Insecure { mode: 0o644, .. })),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(store.key_file(), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            store.load_or_create().unwrap().identity.public(),
            made.identity.public()
        );
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path(), "host");
        files::write_private(&store.key_file(), b"not a key\n", Existing::Replace).unwrap();
        let err = store.load_or_create().unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(store.key_file()).unwrap(), b"not a key\n");
        files::write_private(&store.key_file(), &[b'a'; 300], Existing::Replace).unwrap();
        let err = store.load_or_create().unwrap_err();
        assert!(
            matches!(err, KeyError::File(FileError::TooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_key_file_round_trips_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("handed.key");
        assert!(matches!(
            Identity::from_file(&path),
            Err(KeyError::File(FileError::Io { .. }))
        ));
        let id = Identity::generate().unwrap();
        id.write_new_file(&path).unwrap();
        assert!(
            id.write_new_file(&path).is_err(),
            "an existing key file is never overwritten"
        );
        assert_eq!(Identity::from_file(&path).unwrap().public(), id.public());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode(id.secret_bytes())));
    }
}
