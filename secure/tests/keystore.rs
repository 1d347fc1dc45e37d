//! The keyring path for real: asked to use the OS keyring, a machine without a secret
//! service (headless Linux, CI) falls back to the key file at once; one with a keyring
//! stores the key there. Its own process, so the keyring is set up here and only here.
//!
//! CI has no secret service, so it runs the fallback. The keyring branch was checked by hand
//! against gnome-keyring over D-Bus (Debian: `gnome-keyring`, `dbus`):
//!
//! ```text
//! HOME=$(mktemp -d) XDG_RUNTIME_DIR=$HOME dbus-run-session -- sh -c \
//!   'echo -n pw | gnome-keyring-daemon --unlock --components=secrets; sleep 1;
//!    cargo test -p offload-secure --test keystore -- --nocapture'
//! ```

use std::time::{Duration, Instant};

use offload_secure::{KEYRING_SERVICE, KeyLocation, KeyStore};

#[test]
fn the_keyring_or_the_file_fallback_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("test-{}", std::process::id());
    let store = KeyStore::new(tmp.path(), &name).with_keyring(true);
    let started = Instant::now();
    let first = store.load_or_create().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the keyring blocked"
    );
    assert!(first.created);
    let second = store.load_or_create().unwrap();
    assert!(!second.created);
    assert_eq!(first.identity.public(), second.identity.public());
    assert_eq!(first.location, second.location);
    eprintln!("the key was kept in {}", first.location);
    match &first.location {
        KeyLocation::File(path) => {
            // No secret service here: the fallback, a 0600 file.
            eprintln!("(no keyring: {:?})", keyring::Entry::store_status());
            assert!(keyring::Entry::store_status().is_err());
            assert_eq!(*path, store.key_file());
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        KeyLocation::Keyring { service, account } => {
            assert_eq!(
                (service.as_str(), account.as_str()),
                (KEYRING_SERVICE, name.as_str())
            );
            assert!(!store.key_file().exists(), "a keyring key leaves no file");
            keyring::Entry::new(KEYRING_SERVICE, &name)
                .unwrap()
                .delete_credential()
                .unwrap();
        }
    }
}
