//! What one peer may hold of the worker: connections and bytes of frames in memory (its
//! slots are shared fairly in [`crate::fair`], under the cap set here).
//!
//! A peer is who connects. Connections are counted by address, the only thing known before
//! the handshake; once the handshake has proved a key, the connection counts as that key's
//! ([`PeerGuard::identify`]) for memory and slots, so a host is one peer whatever address
//! it comes from, and hosts behind one address (NAT) are not one. The connection cap across
//! all peers is taken before `accept` (in `server.rs`); the caps here are per peer, below
//! it, so one peer cannot fill the worker by itself. Every grant is a guard released by
//! drop: a connection that ends, a job that is cancelled, a frame that is dropped gives
//! back what it held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerId {
    /// A network address (the port left out: one host opens many connections).
    Addr(IpAddr),
    /// A long-term key's fingerprint, proved by the handshake.
    Key([u8; 16]),
    /// A connection made inside the worker's process (tests, local streams).
    Local,
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerId::Addr(a) => write!(f, "{a}"),
            PeerId::Key(k) => write!(f, "key:{}", hex::encode(k)),
            PeerId::Local => f.write_str("local"),
        }
    }
}

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct QuotaLimits {
    /// Connections one peer may hold at once.
    pub connections_per_peer: usize,
    /// Jobs of one peer compiling at once (enforced by [`crate::fair::FairSlots`]).
    pub slots_per_peer: usize,
    /// Bytes of frame payloads one peer may have in the worker's memory at once.
    pub bytes_per_peer: usize,
    /// Bytes of frame payloads all peers together may have in memory at once.
    pub bytes_total: usize,
}

impl QuotaLimits {
    /// Defaults for a worker with `slots` slots: a host may use every slot, open twice as
    /// many connections (one per job being prepared and one per job compiling) and have one
    /// largest frame in memory.
    pub fn for_slots(slots: usize, max_frame: usize) -> QuotaLimits {
        QuotaLimits {
            connections_per_peer: 2 * slots + 8,
            slots_per_peer: slots.max(1),
            bytes_per_peer: max_frame,
            bytes_total: max_frame.saturating_mul(2),
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The peer holds its share of connections.
    #[error("too many connections from this peer (the limit is {0})")]
    Connections(usize),
    /// One frame larger than a peer may ever hold.
    #[error("a frame of {len} bytes exceeds this peer's memory quota of {limit} bytes")]
    Bytes {
        /// The frame's payload length.
        len: usize,
        /// The quota.
        limit: usize,
    },
}

/// Per-peer accounting, shared by the worker's connections.
#[derive(Debug)]
pub struct Quotas {
    limits: QuotaLimits,
    total_bytes: Arc<Semaphore>,
    /// Connections per address.
    connections: Mutex<HashMap<PeerId, usize>>,
    /// Memory per peer (address or key), with the number of connections sharing it.
    budgets: Mutex<HashMap<PeerId, (usize, Arc<Semaphore>)>>,
}

/// One admitted connection's share: dropping it gives the connection back.
#[derive(Debug)]
pub struct PeerGuard {
    quotas: Arc<Quotas>,
    /// Where it came from: what its connection counts against.
    address: PeerId,
    /// Who it is: the address until the handshake proved a key.
    peer: PeerId,
    bytes: Arc<Semaphore>,
}

/// Memory held by one frame's payload, given back when dropped.
#[derive(Debug)]
pub struct FrameBudget {
    _peer: Option<OwnedSemaphorePermit>,
    _total: Option<OwnedSemaphorePermit>,
}

/// Semaphores count in u32 steps: payloads are counted in KiB, rounded up.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Quotas {
    /// Accounting under these limits.
    pub fn new(limits: QuotaLimits) -> Arc<Quotas> {
        Arc::new(Quotas {
            limits,
            total_bytes: Arc::new(Semaphore::new(kib(limits.bytes_total) as usize)),
            connections: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Admits one more connection from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: PeerId) -> Result<PeerGuard, QuotaError> {
        {
            let mut conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            let n = conns.entry(peer).or_insert(0);
            if *n >= self.limits.connections_per_peer {
                if *n == 0 {
                    conns.remove(&peer);
                }
                return Err(QuotaError::Connections(self.limits.connections_per_peer));
            }
            *n += 1;
        }
        Ok(PeerGuard {
            quotas: self.clone(),
            address: peer,
            peer,
            bytes: self.budget(peer),
        })
    }

    /// Connections `peer` (an address) holds now.
    pub fn connections_of(&self, peer: PeerId) -> usize {
        let conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        conns.get(&peer).copied().unwrap_or(0)
    }

    /// `peer`'s memory budget, counted as used by one more connection.
    fn budget(&self, peer: PeerId) -> Arc<Semaphore> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let (users, sem) = budgets.entry(peer).or_insert_with(|| {
            let kib = kib(self.limits.bytes_per_peer) as usize;
            (0, Arc::new(Semaphore::new(kib)))
        });
        *users += 1;
        sem.clone()
    }

    /// One connection less uses `peer`'s memory budget.
    fn release_budget(&self, peer: PeerId) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((users, _)) = budgets.get_mut(&peer) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                budgets.remove(&peer);
            }
        }
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.quotas.release_budget(self.peer);
        let mut conns = self
            .quotas
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = conns.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                conns.remove(&self.address);
            }
        }
    }
}

impl PeerGuard {
    /// Who this is: the proved key, or the address before (or without) a handshake.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The handshake proved `key`: from now on this connection's memory (and its jobs'
    /// slots) count as that key's, shared with its other connections. Call it before any
    /// frame is read (nothing is held against the address then).
    pub fn identify(&mut self, key: PeerId) {
        if key == self.peer {
            return;
        }
        self.quotas.release_budget(self.peer);
        self.bytes = self.quotas.budget(key);
        self.peer = key;
    }

    /// Memory for a payload of `len` bytes; waits while the peer (or all peers together)
    /// hold their budget, and refuses a payload larger than the peer may ever hold.
    pub async fn bytes(&self, len: usize) -> Result<FrameBudget, QuotaError> {
        let limits = self.quotas.limits;
        if len == 0 {
            return Ok(FrameBudget {
                _peer: None,
                _total: None,
            });
        }
        if len > limits.bytes_per_peer || len > limits.bytes_total {
            return Err(QuotaError::Bytes {
                len,
                limit: limits.bytes_per_peer.min(limits.bytes_total),
            });
        }
        let n = kib(len);
        let closed = |_| QuotaError::Bytes { len, limit: 0 };
        let peer = self
            .bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(closed)?;
        let total = self
            .quotas
            .total_bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(closed)?;
        Ok(FrameBudget {
            _peer: Some(peer),
            _total: Some(total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QuotaLimits {
        QuotaLimits {
            connections_per_peer: 2,
            slots_per_peer: 1,
            bytes_per_peer: 10 << 10,
            bytes_total: 15 << 10,
        }
    }

    const A: PeerId = PeerId::Addr(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: PeerId = PeerId::Addr(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn connections_are_capped_per_peer_and_given_back() {
        let q = Quotas::new(limits());
        let a1 = q.admit(A).unwrap();
        let _a2 = q.admit(A).unwrap();
        assert_eq!(q.admit(A).unwrap_err(), QuotaError::Connections(2));
        let _b = q.admit(B).expect("another peer is not affected");
        drop(a1);
        assert_eq!(q.connections_of(A), 1);
        let _a3 = q.admit(A).expect("a closed connection frees its place");
    }

    #[tokio::test]
    async fn bytes_wait_for_what_is_given_back() {
        let q = Quotas::new(limits());
        let a = q.admit(A).unwrap();
        let big = a.bytes(8 << 10).await.unwrap();
        let over = tokio::time::timeout(std::time::Duration::from_millis(50), a.bytes(4 << 10));
        assert!(over.await.is_err(), "past the peer's budget it waits");
        let b = q.admit(B).unwrap();
        let b_small = b.bytes(4 << 10).await.expect("within the total");
        let over_total =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.bytes(4 << 10));
        assert!(over_total.await.is_err(), "past the total it waits");
        drop(big);
        drop(b_small);
        assert!(a.bytes(4 << 10).await.is_ok());
        assert!(matches!(
            a.bytes(11 << 10).await,
            Err(QuotaError::Bytes { .. })
        ));
        assert!(a.bytes(0).await.is_ok());
    }

    const K1: PeerId = PeerId::Key([1; 16]);
    const K2: PeerId = PeerId::Key([2; 16]);

    /// Whether a payload of `len` bytes can have memory within 50 ms.
    async fn fits(g: &PeerGuard, len: usize) -> Option<FrameBudget> {
        tokio::time::timeout(std::time::Duration::from_millis(50), g.bytes(len))
            .await
            .ok()
            .and_then(Result::ok)
    }

    #[tokio::test]
    async fn a_proved_key_is_one_peer_from_any_address_and_two_keys_are_two() {
        let q = Quotas::new(QuotaLimits {
            bytes_total: 100 << 10,
            ..limits()
        });
        // One host from two addresses: one memory budget.
        let mut from_a = q.admit(A).unwrap();
        let mut from_b = q.admit(B).unwrap();
        from_a.identify(K1);
        from_b.identify(K1);
        assert_eq!(from_b.peer(), K1);
        let held = fits(&from_a, 8 << 10)
            .await
            .expect("within the key's budget");
        assert!(
            fits(&from_b, 4 << 10).await.is_none(),
            "the key's budget is shared"
        );
        // Two hosts behind one address: two budgets.
        let mut nat = q.admit(A).unwrap();
        nat.identify(K2);
        assert!(
            fits(&nat, 8 << 10).await.is_some(),
            "another key is another peer"
        );
        drop(held);
        assert!(fits(&from_b, 4 << 10).await.is_some());
        // Connections still count against the address.
        assert_eq!(q.connections_of(A), 2);
        assert_eq!(q.connections_of(B), 1);
        drop((from_a, from_b, nat));
        assert_eq!(q.connections_of(A), 0);
        assert!(
            q.budgets.lock().unwrap().is_empty(),
            "no budget outlives its users"
        );
    }
}
