//! The peers this side has paired with, pinned by their whole public key: a worker's paired
//! hosts, a host's paired workers (with the address each was last reached at).
//!
//! Kept as JSON in `DIR/paired-hosts.json` or `DIR/paired-workers.json`, mode 0600, written
//! whole (a temporary file, then a rename) under a lock so two processes never lose each
//! other's change. A missing file is an empty store; a corrupt one is an error, and is left
//! as it is for a person to look at.
//!
//! ```json
//! {"version": 1, "peers": [{"key": "<64 hex>", "fingerprint": "<26 base32>",
//!   "name": "mac-mini", "paired_at": 1767225600, "last_address": "192.0.2.7:7700"}]}
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::{self, Existing, FileError};
use crate::identity::{Fingerprint, PublicKey};

/// The pin file's format version.
const FORMAT_VERSION: u32 = 1;
/// The largest pin file read: a million peers would fit.
const MAX_FILE: usize = 256 << 20;

/// Which peers a store holds, and so its file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A worker's store: the hosts allowed to run jobs on it.
    Hosts,
    /// A host's store: the workers it sends jobs to.
    Workers,
}

impl PeerRole {
    pub fn file_name(self) -> &'static str {
        match self {
            PeerRole::Hosts => "paired-hosts.json",
            PeerRole::Workers => "paired-workers.json",
        }
    }
}

/// One paired peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned key: a later connection is this peer iff its handshake proves this key.
    pub key: PublicKey,
    /// A name for people (the peer's host name, or what the user called it).
    pub name: String,
    /// When it was paired, in seconds since the Unix epoch.
    pub paired_at: u64,
    /// Where it was last reached (`host:port`): kept for the workers a host pairs with.
    pub last_address: Option<String>,
}

impl Pin {
    /// A pin made now.
    pub fn new(key: PublicKey, name: impl Into<String>) -> Self {
        let paired_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Pin {
            key,
            name: name.into(),
            paired_at,
            last_address: None,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint()
    }
}

/// A pin store that cannot be used, or a peer that is not in it.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is corrupt ({reason}); it was left untouched: fix or remove it")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} has format version {version}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// The peer proved a key that is not pinned: it was never paired, or was revoked.
    #[error("peer {0} is not paired")]
    UnknownPeer(Fingerprint),
}

/// The file's layout. The fingerprint is there for people reading the file, and checked.
#[derive(Serialize, Deserialize)]
struct PinFile {
    version: u32,
    peers: Vec<StoredPin>,
}

#[derive(Serialize, Deserialize)]
struct StoredPin {
    key: PublicKey,
    fingerprint: Fingerprint,
    name: String,
    paired_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_address: Option<String>,
}

/// The paired peers of one side, as last read or written by this process.
#[derive(Debug)]
pub struct PinStore {
    path: PathBuf,
    pins: Vec<Pin>,
}

impl PinStore {
    /// Opens `DIR/ROLE-FILE` ([`PeerRole::file_name`]); a missing file is an empty store.
    pub fn open(dir: &Path, role: PeerRole) -> Result<Self, PinError> {
        Self::open_file(dir.join(role.file_name()))
    }

    /// Opens the store kept in `path`.
    pub fn open_file(path: impl Into<PathBuf>) -> Result<Self, PinError> {
        let path = path.into();
        let pins = read(&path)?;
        Ok(PinStore { path, pins })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rereads the file, for changes other processes made.
    pub fn reload(&mut self) -> Result<(), PinError> {
        self.pins = read(&self.path)?;
        Ok(())
    }

    /// Every pin, oldest pairing first.
    pub fn list(&self) -> &[Pin] {
        &self.pins
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Pin> {
        self.pins.iter().find(|p| p.key == *key)
    }

    pub fn get_by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<&Pin> {
        self.pins.iter().find(|p| p.fingerprint() == *fingerprint)
    }

    /// The pin of `key`, or [`PinError::UnknownPeer`]: the check after a handshake.
    pub fn require(&self, key: &PublicKey) -> Result<&Pin, PinError> {
        self.get(key)
            .ok_or_else(|| PinError::UnknownPeer(key.fingerprint()))
    }

    /// Pins a peer, replacing the pin of the same key if there is one (which it returns).
    pub fn add(&mut self, pin: Pin) -> Result<Option<Pin>, PinError> {
        self.modify(|pins| match pins.iter_mut().find(|p| p.key == pin.key) {
            Some(old) => Some(std::mem::replace(old, pin)),
            None => {
                pins.push(pin);
                None
            }
        })
    }

    /// Unpins the peer with this fingerprint; returns its pin, `None` if it was not pinned.
    pub fn remove(&mut self, fingerprint: &Fingerprint) -> Result<Option<Pin>, PinError> {
        self.modify(|pins| {
            let at = pins.iter().position(|p| p.fingerprint() == *fingerprint)?;
            Some(pins.remove(at))
        })
    }

    /// Records where a pinned peer was reached; false (and nothing written) if `key` is not
    /// pinned.
    pub fn set_last_address(&mut self, key: &PublicKey, address: &str) -> Result<bool, PinError> {
        if self
            .get(key)
            .is_some_and(|p| p.last_address.as_deref() == Some(address))
        {
            return Ok(true);
        }
        self.modify(|pins| {
            let Some(pin) = pins.iter_mut().find(|p| p.key == *key) else {
                return false;
            };
            pin.last_address = Some(address.to_owned());
            true
        })
    }

    /// Under the lock: rereads the file, applies `change`, writes the result if it differs.
    fn modify<R>(&mut self, change: impl FnOnce(&mut Vec<Pin>) -> R) -> Result<R, PinError> {
        let _lock = files::lock(&self.path)?;
        let mut pins = read(&self.path)?;
        let before = pins.clone();
        let result = change(&mut pins);
        if pins != before {
            write(&self.path, &pins)?;
        }
        self.pins = pins;
        Ok(result)
    }
}

fn read(path: &Path) -> Result<Vec<Pin>, PinError> {
    let Some(bytes) = files::read_private(path, MAX_FILE)? else {
        return Ok(Vec::new());
    };
    let corrupt = |reason: String| PinError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let file: PinFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(PinError::UnsupportedVersion {
            path: path.to_owned(),
            version: file.version,
        });
    }
    let mut pins: Vec<Pin> = Vec::with_capacity(file.peers.len());
    for p in file.peers {
        if p.key.fingerprint() != p.fingerprint {
            return Err(corrupt(format!(
                "fingerprint {} is not that of key {}",
                p.fingerprint, p.key
            )));
        }
        if pins.iter().any(|q| q.key == p.key) {
            return Err(corrupt(format!("key {} is pinned twice", p.key)));
        }
        pins.push(Pin {
            key: p.key,
            name: p.name,
            paired_at: p.paired_at,
            last_address: p.last_address,
        });
    }
    Ok(pins)
}

fn write(path: &Path, pins: &[Pin]) -> Result<(), PinError> {
    let file = PinFile {
        version: FORMAT_VERSION,
        peers: pins
            .iter()
            .map(|p| StoredPin {
                key: p.key,
                fingerprint: p.fingerprint(),
                name: p.name.clone(),
                paired_at: p.paired_at,
                last_address: p.last_address.clone(),
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| PinError::Corrupt {
        path: path.to_owned(),
        reason: format!("cannot serialize: {e}"),
    })?;
    json.push(b'\n');
    files::write_private(path, &json, Existing::Replace)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::Identity;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> PublicKey {
        *Identity::generate().unwrap().public()
    }

    #[test]
    fn missing_file_is_empty_and_changes_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PinStore::open(tmp.path(), PeerRole::Workers).unwrap();
        assert!(store.list().is_empty());
        assert!(!store.path().exists(), "opening writes nothing");
        let (a, b) = (key(), key());
        assert_eq!(store.add(Pin::new(a, "alpha")).unwrap(), None);
        store.add(Pin::new(b, "beta")).unwrap();
        assert!(store.set_last_address(&b, "127.0.0.1:7700").unwrap());
        assert!(!store.set_last_address(&key(), "127.0.0.1:1").unwrap());
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let again = PinStore::open(tmp.path(), PeerRole::Workers).unwrap();
        assert_eq!(again.list(), store.list());
        assert_eq!(again.get(&a).unwrap().name, "alpha");
        let beta = again.get_by_fingerprint(&b.fingerprint()).unwrap();
        assert_eq!(beta.last_address.as_deref(), Some("127.0.0.1:7700"));
        assert!(matches!(
            again.require(&key()),
            Err(PinError::UnknownPeer(_))
        ));
        assert!(
            PinStore::open(tmp.path(), PeerRole::Hosts)
                .unwrap()
                .list()
                .is_empty()
        );

        let old = store.add(Pin::new(a, "alpha again")).unwrap().unwrap();
        assert_eq!(old.name, "alpha");
        assert_eq!(store.list().len(), 2);
        assert_eq!(
            store.remove(&a.fingerprint()).unwrap().unwrap().name,
            "alpha again"
        );
        assert_eq!(store.remove(&a.fingerprint()).unwrap(), None);
        let reread = PinStore::open(tmp.path(), PeerRole::Workers).unwrap();
        assert_eq!(reread.list().len(), 1);
        assert_eq!(reread.list()[0].key, b);
    }

    #[test]
    fn a_change_that_changes_nothing_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PinStore::open(tmp.path(), PeerRole::Hosts).unwrap();
        assert_eq!(store.remove(&key().fingerprint()).unwrap(), None);
        assert!(!store.set_last_address(&key(), "127.0.0.1:1").unwrap());
        assert!(!store.path().exists());
    }

    #[test]
    fn two_handles_do_not_lose_each_others_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut one = PinStore::open(tmp.path(), PeerRole::Hosts).unwrap();
        let mut two = PinStore::open(tmp.path(), PeerRole::Hosts).unwrap();
        one.add(Pin::new(key(), "one")).unwrap();
        two.add(Pin::new(key(), "two")).unwrap();
        assert_eq!(two.list().len(), 2);
        one.reload().unwrap();
        assert_eq!(one.list(), two.list());
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(PeerRole::Hosts.file_name());
        let k = key();
        let cases = [
            ("not json".to_owned(), "corrupt"),
            (
                r#"{"version": 1, "peers": [{"key": "00"}]}"#.to_owned(),
                "corrupt",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{{"key":"{k}","fingerprint":"{}","name":"x","paired_at":0}}]}}"#,
                    key().fingerprint()
                ),
                "fingerprint",
            ),
            (
                r#"{"version": 2, "peers": []}"#.to_owned(),
                "format version 2",
            ),
        ];
        for (text, expect) in cases {
            files::write_private(&path, text.as_bytes(), Existing::Replace).unwrap();
            let err = PinStore::open(tmp.path(), PeerRole::Hosts).unwrap_err();
            assert!(err.to_string().contains(expect), "{text}: {err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text, "never rewritten");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = PinStore::open(tmp.path(), PeerRole::Hosts).unwrap_err();
        assert!(
            matches!(err, PinError::File(FileError::Insecure { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_store_that_became_corrupt_refuses_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = PinStore::open(tmp.path(), PeerRole::Workers).unwrap();
        store.add(Pin::new(key(), "a")).unwrap();
        files::write_private(store.path(), b"{", Existing::Replace).unwrap();
        assert!(matches!(
            store.add(Pin::new(key(), "b")),
            Err(PinError::Corrupt { .. })
        ));
        assert_eq!(fs::read(store.path()).unwrap(), b"{");
    }
}
