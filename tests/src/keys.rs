//! The keys of the tests' host and workers. Every `offload` the tests run uses one host
//! identity, in [`host_dir`] (`OFFLOAD_CONFIG_DIR`, set by [`crate::cmd::clean_env`]); each
//! worker gets a key file of its own and trusts that host (`--trust-host`), and hosts name
//! each worker with its fingerprint (`FINGERPRINT@HOST:PORT`): real handshakes with pinned
//! keys, without the interactive pairing that `tests/tests/pairing.rs` covers.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use offload_secure::{Fingerprint, Identity, KeyStore};

use crate::paths::TEST_ROOT;

/// Where network-namespace workers' key files are made: outside `/tmp`, which each worker's
/// mount namespace replaces with a private one.
pub const WORKER_KEYS: &str = "/var/tmp/offload-e2e-keys";

/// The tests' host config directory.
pub fn host_dir() -> PathBuf {
    PathBuf::from(TEST_ROOT).join("host-config")
}

/// The tests' host identity (made on first use; shared by concurrent test processes).
pub fn host_identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        let dir = host_dir();
        std::fs::create_dir_all(&dir).expect("creating the host config directory");
        KeyStore::new(&dir, "host")
            .load_or_create()
            .expect("the tests' host key")
            .identity
    })
}

/// The tests' host fingerprint, for `--trust-host`.
pub fn host_fingerprint() -> Fingerprint {
    host_identity().fingerprint()
}

/// A fresh identity written to `path` (replacing what is there); its fingerprint.
pub fn new_key_file(path: &Path) -> Fingerprint {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(path);
    let id = Identity::generate().expect("a random key");
    id.write_new_file(path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    id.fingerprint()
}

/// A second host identity (its own config directory, for `OFFLOAD_CONFIG_DIR`), for tests
/// of workers shared by several hosts: the directory and the key's fingerprint.
pub fn second_host() -> (PathBuf, Fingerprint) {
    static ID: OnceLock<(PathBuf, Fingerprint)> = OnceLock::new();
    ID.get_or_init(|| {
        let dir = PathBuf::from(TEST_ROOT).join("host2-config");
        std::fs::create_dir_all(&dir).expect("creating the second host's config directory");
        let id = KeyStore::new(&dir, "host")
            .load_or_create()
            .expect("the second host's key")
            .identity;
        (dir, id.fingerprint())
    })
    .clone()
}
