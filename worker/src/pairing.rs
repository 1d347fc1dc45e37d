//! Which hosts may use this worker, and the pairing requests waiting for its owner.
//!
//! A host is paired when its key is pinned in `STATE/paired-hosts.json` (kept by
//! `offload_secure::PinStore`) or was given with `--trust-host FINGERPRINT` (a key the owner
//! handed over out of band: `offload build`'s own local worker, a container started by the
//! menu-bar app). Anyone else who completes the handshake may only ask to pair: the request
//! waits, with the code both sides show, until the owner allows or denies it through the
//! control API (`crate::control`), the host leaves, or [`REQUEST_TIMEOUT`] passes. An
//! allowed request pins its host only once the host's user confirmed the code too
//! ([`Request::complete`]): a "no" on either side pins nothing on either. At most
//! [`MAX_PENDING`] requests wait at once, so a LAN peer cannot flood the owner's list.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use offload_secure::{Fingerprint, PairingCode, Pin, PinError, PinStore, PublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How long a pairing request waits for the owner.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Most pairing requests waiting at once.
pub const MAX_PENDING: usize = 8;

/// Why a pairing step failed.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// No request waits with this code.
    #[error("no pairing request waits with code {0}")]
    NoSuchCode(String),
    /// Two requests wait with this code (one of them is not the host you see): deny both
    /// and pair again.
    #[error("{0} pairing requests wait with code {1}: deny them and pair again")]
    Ambiguous(usize, String),
    /// No paired host has this fingerprint or name.
    #[error("no paired host is named {0}")]
    NoSuchHost(String),
    /// Several paired hosts have this name.
    #[error("several paired hosts are named {0}: give its fingerprint")]
    AmbiguousHost(String),
    /// A host given with `--trust-host` cannot be revoked from here.
    #[error("host {0} is trusted by the worker's command line (--trust-host), not by pairing")]
    Trusted(String),
    /// Too many requests wait already.
    #[error("too many pairing requests are waiting ({MAX_PENDING}): try again later")]
    Busy,
    /// The request is gone or was not allowed: nothing to complete.
    #[error("the pairing request was not allowed")]
    Withdrawn,
    /// The store of paired hosts could not be read or written.
    #[error(transparent)]
    Pins(#[from] PinError),
}

/// The owner's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Paired.
    Allowed,
    /// Refused.
    Denied,
}

/// A request as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    /// The code the host shows.
    pub code: String,
    /// The host's key fingerprint.
    pub host: String,
    /// The name it gave.
    pub name: String,
    /// Where it connects from.
    pub address: String,
    /// Seconds it has waited.
    pub waiting_secs: u64,
    /// The owner allowed it; the host's confirmation is awaited.
    pub allowed: bool,
}

/// A paired host as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedView {
    /// The host's key fingerprint.
    pub host: String,
    /// Its name.
    pub name: String,
    /// When it was paired (seconds since the epoch); `None` for `--trust-host`.
    pub paired_at: Option<u64>,
}

struct Pending {
    id: u64,
    code: PairingCode,
    key: PublicKey,
    name: String,
    address: String,
    since: Instant,
    answer: Option<oneshot::Sender<Decision>>,
}

struct State {
    pins: PinStore,
    /// The pin file's identity (modified time, size, inode) when `pins` last read it.
    read_as: Option<(std::time::SystemTime, u64, u64)>,
    pending: Vec<Pending>,
    next_id: u64,
}

/// The worker's pairings.
pub struct Pairings {
    trusted: Vec<Fingerprint>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Pairings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairings")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// A waiting request; dropping it (the host left) withdraws it.
pub struct Request<'a> {
    pairings: &'a Pairings,
    id: u64,
    answer: oneshot::Receiver<Decision>,
}

impl Request<'_> {
    /// The owner's decision; `Denied` if the request timed out or the worker stops
    /// listening for it.
    pub async fn decision(&mut self) -> Decision {
        match tokio::time::timeout(REQUEST_TIMEOUT, &mut self.answer).await {
            Ok(Ok(d)) => d,
            _ => Decision::Denied,
        }
    }

    /// Pins the host of an allowed request, once the host confirmed the code too.
    pub fn complete(self) -> Result<(), PairingError> {
        let mut s = self.pairings.lock();
        let Some(p) = s.pending.iter().find(|p| p.id == self.id) else {
            return Err(PairingError::Withdrawn);
        };
        if p.answer.is_some() {
            return Err(PairingError::Withdrawn);
        }
        let (key, name) = (p.key, p.name.clone());
        s.pins.reload()?;
        s.pins.add(Pin::new(key, name.clone()))?;
        tracing::info!(host = %key.fingerprint(), name, "paired");
        Ok(())
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.pairings.lock().pending.retain(|p| p.id != self.id);
    }
}

impl Pairings {
    /// Pairings kept in `pins`, plus the hosts in `trusted`.
    pub fn new(pins: PinStore, trusted: Vec<Fingerprint>) -> Pairings {
        Pairings {
            trusted,
            state: Mutex::new(State {
                pins,
                read_as: None,
                pending: Vec::new(),
                next_id: 1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the host with `key` may run jobs here (the store is read again, so a
    /// pairing made or revoked by another process counts at once).
    pub fn is_paired(&self, key: &PublicKey) -> bool {
        if self.trusted.contains(&key.fingerprint()) {
            return true;
        }
        let mut s = self.lock();
        // Asked on every frame: the file is read again only when it changed (a pairing
        // made or revoked here or by another process), not parsed per frame.
        let now = std::fs::metadata(s.pins.path()).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt;
            Some((m.modified().ok()?, m.len(), m.ino()))
        });
        if now.is_none() || now != s.read_as {
            match s.pins.reload() {
                Ok(()) => s.read_as = now,
                Err(e) => tracing::warn!("cannot read the paired hosts: {e}"),
            }
        }
        s.pins.get(key).is_some()
    }

    /// Files a request from the host with `key` (its handshake's `code`).
    pub fn request(
        &self,
        key: PublicKey,
        code: PairingCode,
        name: &str,
        address: &str,
    ) -> Result<Request<'_>, PairingError> {
        let mut s = self.lock();
        if s.pending.len() >= MAX_PENDING {
            return Err(PairingError::Busy);
        }
        let (tx, rx) = oneshot::channel();
        let id = s.next_id;
        s.next_id += 1;
        let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        tracing::info!(code = %code, host = %key.fingerprint(), name, address, "pairing requested");
        s.pending.push(Pending {
            id,
            code,
            key,
            name,
            address: address.to_owned(),
            since: Instant::now(),
            answer: Some(tx),
        });
        Ok(Request {
            pairings: self,
            id,
            answer: rx,
        })
    }

    /// Answers the one request waiting with `code` (its host is pinned once it confirms).
    pub fn decide(&self, code: &str, decision: Decision) -> Result<PendingView, PairingError> {
        let mut s = self.lock();
        let matching: Vec<usize> = s
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.answer.is_some() && p.code.to_string() == code.trim())
            .map(|(i, _)| i)
            .collect();
        let i = match matching[..] {
            [i] => i,
            [] => return Err(PairingError::NoSuchCode(code.trim().to_owned())),
            _ => {
                return Err(PairingError::Ambiguous(
                    matching.len(),
                    code.trim().to_owned(),
                ));
            }
        };
        let p = &mut s.pending[i];
        if let Some(tx) = p.answer.take() {
            let _ = tx.send(decision);
        }
        let view = view_of(p);
        tracing::info!(code, host = view.host, ?decision, "pairing decided");
        Ok(view)
    }

    /// Unpairs the host with this fingerprint or name.
    pub fn revoke(&self, host: &str) -> Result<PairedView, PairingError> {
        let host = host.trim();
        if let Ok(fp) = host.parse::<Fingerprint>()
            && self.trusted.contains(&fp)
        {
            return Err(PairingError::Trusted(host.to_owned()));
        }
        let mut s = self.lock();
        s.pins.reload()?;
        let by_fp = host
            .parse::<Fingerprint>()
            .ok()
            .and_then(|fp| s.pins.get_by_fingerprint(&fp).cloned());
        let pin = match by_fp {
            Some(p) => p,
            None => {
                let named: Vec<Pin> = s
                    .pins
                    .list()
                    .iter()
                    .filter(|p| p.name == host)
                    .cloned()
                    .collect();
                match &named[..] {
                    [p] => p.clone(),
                    [] => return Err(PairingError::NoSuchHost(host.to_owned())),
                    _ => return Err(PairingError::AmbiguousHost(host.to_owned())),
                }
            }
        };
        s.pins.remove(&pin.fingerprint())?;
        tracing::info!(host = %pin.fingerprint(), name = pin.name, "pairing revoked");
        Ok(PairedView {
            host: pin.fingerprint().to_string(),
            name: pin.name,
            paired_at: Some(pin.paired_at),
        })
    }

    /// The waiting requests and the paired hosts.
    pub fn list(&self) -> (Vec<PendingView>, Vec<PairedView>) {
        let mut s = self.lock();
        if let Err(e) = s.pins.reload() {
            tracing::warn!("cannot read the paired hosts: {e}");
        }
        let pending = s.pending.iter().map(view_of).collect();
        let mut paired: Vec<PairedView> = self
            .trusted
            .iter()
            .map(|fp| PairedView {
                host: fp.to_string(),
                name: "(--trust-host)".into(),
                paired_at: None,
            })
            .collect();
        paired.extend(s.pins.list().iter().map(|p| PairedView {
            host: p.fingerprint().to_string(),
            name: p.name.clone(),
            paired_at: Some(p.paired_at),
        }));
        (pending, paired)
    }
}

fn view_of(p: &Pending) -> PendingView {
    PendingView {
        code: p.code.to_string(),
        host: p.key.fingerprint().to_string(),
        name: p.name.clone(),
        address: p.address.clone(),
        waiting_secs: p.since.elapsed().as_secs(),
        allowed: p.answer.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_secure::{Identity, PeerRole};

    fn key() -> PublicKey {
        *Identity::generate().expect("random").public()
    }

    fn code(s: &str) -> PairingCode {
        s.parse().expect("a code")
    }

    fn pairings(dir: &std::path::Path, trusted: Vec<Fingerprint>) -> Pairings {
        Pairings::new(PinStore::open(dir, PeerRole::Hosts).expect("pins"), trusted)
    }

    #[tokio::test]
    async fn allowing_a_code_pins_its_host_and_answers_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = pairings(d.path(), vec![]);
        let host = key();
        assert!(!p.is_paired(&host));
        let mut req = p
            .request(host, code("042917"), "laptop", "10.0.0.2:5000")
            .expect("request");
        let (pending, _) = p.list();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].code, "042917");
        assert_eq!(pending[0].host, host.fingerprint().to_string());
        p.decide(" 042917 ", Decision::Allowed).expect("allowed");
        assert_eq!(req.decision().await, Decision::Allowed);
        // Allowed, not yet paired: the host's user has not confirmed the code.
        assert!(!p.is_paired(&host));
        let (pending, _) = p.list();
        assert!(pending[0].allowed, "{pending:?}");
        assert!(
            matches!(
                p.decide("042917", Decision::Denied),
                Err(PairingError::NoSuchCode(_))
            ),
            "a decided request is decided again"
        );
        req.complete().expect("complete");
        assert!(p.is_paired(&host));
        assert!(p.list().0.is_empty(), "a completed request stays listed");
        // Pinned on disk: another process (a restarted worker) sees it.
        assert!(pairings(d.path(), vec![]).is_paired(&host));
        let revoked = p.revoke("laptop").expect("revoke by name");
        assert_eq!(revoked.host, host.fingerprint().to_string());
        assert!(!p.is_paired(&host));
    }

    /// The owner allowed, the host's user did not confirm (it left): nothing is pinned.
    #[tokio::test]
    async fn an_allowed_request_the_host_leaves_pins_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = pairings(d.path(), vec![]);
        let host = key();
        let mut req = p
            .request(host, code("123456"), "laptop", "10.0.0.2:5000")
            .expect("request");
        p.decide("123456", Decision::Allowed).expect("allowed");
        assert_eq!(req.decision().await, Decision::Allowed);
        drop(req);
        assert!(!p.is_paired(&host));
        assert!(p.list().0.is_empty());
        assert!(p.list().1.is_empty());
    }

    #[tokio::test]
    async fn denied_withdrawn_unknown_and_ambiguous_codes() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = pairings(d.path(), vec![]);
        let host = key();
        let mut req = p.request(host, code("111111"), "a", "x").expect("request");
        p.decide("111111", Decision::Denied).expect("denied");
        assert_eq!(req.decision().await, Decision::Denied);
        assert!(!p.is_paired(&host));
        drop(req);
        // The host left: its request is gone.
        let req = p.request(key(), code("222222"), "b", "x").expect("request");
        drop(req);
        assert!(matches!(
            p.decide("222222", Decision::Allowed),
            Err(PairingError::NoSuchCode(_))
        ));
        // Two requests show one code: neither can be allowed by it.
        let (a, b) = (key(), key());
        let _r1 = p.request(a, code("333333"), "c", "x").expect("request");
        let _r2 = p.request(b, code("333333"), "d", "x").expect("request");
        assert!(matches!(
            p.decide("333333", Decision::Allowed),
            Err(PairingError::Ambiguous(2, _))
        ));
        assert!(!p.is_paired(&a) && !p.is_paired(&b));
    }

    #[test]
    fn requests_are_capped_and_trusted_hosts_are_not_revocable() {
        let d = tempfile::tempdir().expect("tempdir");
        let trusted = key();
        let p = pairings(d.path(), vec![trusted.fingerprint()]);
        assert!(p.is_paired(&trusted));
        let held: Vec<Request<'_>> = (0..MAX_PENDING)
            .map(|i| {
                p.request(key(), code(&format!("{i:06}")), "flood", "x")
                    .expect("under the cap")
            })
            .collect();
        assert!(matches!(
            p.request(key(), code("999999"), "one more", "x"),
            Err(PairingError::Busy)
        ));
        drop(held);
        assert!(p.request(key(), code("999999"), "now", "x").is_ok());
        assert!(matches!(
            p.revoke(&trusted.fingerprint().to_string()),
            Err(PairingError::Trusted(_))
        ));
        assert!(matches!(
            p.revoke("nobody"),
            Err(PairingError::NoSuchHost(_))
        ));
    }
}
