//! This host's identity and the workers it paired with, in the config directory: its key
//! (`host.key`, or the OS keyring when a session bus is there) and `paired-workers.json`.
//! A worker is used only if its handshake proves a pinned key, or the key whose
//! fingerprint the user gave with the address (`--worker FINGERPRINT@HOST:PORT`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use offload_secure::{
    Fingerprint, Identity, KeyError, KeyStore, PeerRole, Pin, PinError, PinStore, PublicKey,
};

/// Why this host's identity or pins could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key could not be read or made.
    #[error("this host's key: {0}")]
    Key(#[from] KeyError),
    /// The paired workers could not be read or written.
    #[error("the paired workers: {0}")]
    Pins(#[from] PinError),
    /// The config directory could not be made.
    #[error("creating {path}: {source}")]
    Dir {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a worker's handshake is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Its key is not pinned.
    #[error("worker {0} is not paired with this host: run `offload pair` first")]
    NotPaired(Fingerprint),
    /// Its key is not the one named with its address.
    #[error(
        "the worker proved key {proved}, not {expected}, the key it was announced or named with"
    )]
    WrongKey {
        /// What it proved.
        proved: Fingerprint,
        /// What the user named.
        expected: Fingerprint,
    },
}

/// The host's identity and pins.
#[derive(Debug)]
pub struct HostAuth {
    identity: Identity,
    pins: Mutex<PinStore>,
}

impl HostAuth {
    /// Loads (or, the first time, makes) this host's key in `dir`, and its pins. Blocking
    /// (a keyring may be asked).
    pub fn load(dir: &Path) -> Result<HostAuth, AuthError> {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let keyring = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
        let identity = KeyStore::new(dir, "host")
            .with_keyring(keyring)
            .load_or_create()?
            .identity;
        let pins = PinStore::open(dir, PeerRole::Workers)?;
        Ok(HostAuth {
            identity,
            pins: Mutex::new(pins),
        })
    }

    /// An identity and pins made by the caller (tests, a build's own local worker).
    pub fn new(identity: Identity, pins: PinStore) -> HostAuth {
        HostAuth {
            identity,
            pins: Mutex::new(pins),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinStore> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This host's key.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether a worker that proved `key` may get jobs: it is the one named with its
    /// address, or, when none was named, a pinned one.
    pub fn check(&self, key: &PublicKey, expected: Option<&Fingerprint>) -> Result<(), Untrusted> {
        let proved = key.fingerprint();
        if let Some(expected) = expected {
            return if *expected == proved {
                Ok(())
            } else {
                Err(Untrusted::WrongKey {
                    proved,
                    expected: *expected,
                })
            };
        }
        let mut pins = self.lock();
        if let Err(e) = pins.reload() {
            tracing::warn!("cannot read the paired workers: {e}");
        }
        match pins.get(key) {
            Some(_) => Ok(()),
            None => Err(Untrusted::NotPaired(proved)),
        }
    }

    /// Pins a worker after pairing.
    pub fn pin(&self, key: PublicKey, name: &str, address: &str) -> Result<(), PinError> {
        let mut pins = self.lock();
        pins.reload()?;
        let mut pin = Pin::new(key, name);
        pin.last_address = Some(address.to_owned());
        pins.add(pin)?;
        Ok(())
    }

    /// Unpins the worker with this fingerprint or name; the pin removed, if any.
    pub fn unpin(&self, worker: &str) -> Result<Option<Pin>, PinError> {
        let mut pins = self.lock();
        pins.reload()?;
        let pin = match worker.parse::<Fingerprint>() {
            Ok(fp) => pins.get_by_fingerprint(&fp).cloned(),
            Err(_) => pins.list().iter().find(|p| p.name == worker).cloned(),
        };
        match pin {
            Some(p) => Ok(pins.remove(&p.fingerprint())?),
            None => Ok(None),
        }
    }

    /// The paired workers.
    pub fn paired(&self) -> Vec<Pin> {
        let mut pins = self.lock();
        if let Err(e) = pins.reload() {
            tracing::warn!("cannot read the paired workers: {e}");
        }
        pins.list().to_vec()
    }

    /// Records where a paired worker was reached.
    pub fn seen_at(&self, key: &PublicKey, address: &str) {
        let mut pins = self.lock();
        if let Err(e) = pins.set_last_address(key, address) {
            tracing::debug!("cannot record the worker's address: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        *Identity::generate().expect("random").public()
    }

    #[test]
    fn only_a_pinned_or_named_key_is_accepted() {
        let d = tempfile::tempdir().expect("tempdir");
        let auth = HostAuth::load(d.path()).expect("auth");
        let (pinned, named, stranger) = (key(), key(), key());
        auth.pin(pinned, "mac", "10.0.0.7:7420").expect("pin");
        assert_eq!(auth.check(&pinned, None), Ok(()));
        assert_eq!(
            auth.check(&stranger, None),
            Err(Untrusted::NotPaired(stranger.fingerprint()))
        );
        assert_eq!(auth.check(&named, Some(&named.fingerprint())), Ok(()));
        // An announcement (or an address) naming one key, answered by another: refused,
        // even when the other is pinned.
        assert_eq!(
            auth.check(&pinned, Some(&named.fingerprint())),
            Err(Untrusted::WrongKey {
                proved: pinned.fingerprint(),
                expected: named.fingerprint(),
            })
        );
        // Another process sees the pin; unpinning by name forgets it.
        let again = HostAuth::load(d.path()).expect("auth");
        assert_eq!(again.check(&pinned, None), Ok(()));
        assert!(again.unpin("mac").expect("unpin").is_some());
        assert!(auth.check(&pinned, None).is_err());
        // The host's own key is made once and kept.
        assert_eq!(
            HostAuth::load(d.path())
                .expect("auth")
                .identity()
                .fingerprint(),
            auth.identity().fingerprint()
        );
    }
}
