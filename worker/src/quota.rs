//! What one peer may hold of the worker: connections, slots and bytes of frames in memory.
//!
//! A peer is who connects (its address until pairing gives it a key). The connection cap
//! across all peers is taken before `accept` (in `server.rs`); the caps here are per peer,
//! below it, so one peer cannot fill the worker by itself. Every grant is a guard released
//! by drop: a connection that ends, a job that is cancelled, a frame that is dropped gives
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
    /// A connection made inside the worker's process (tests, local streams).
    Local,
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerId::Addr(a) => write!(f, "{a}"),
            PeerId::Local => f.write_str("local"),
        }
    }
}

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct QuotaLimits {
    /// Connections one peer may hold at once.
    pub connections_per_peer: usize,
    /// Jobs of one peer compiling at once.
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
    peers: Mutex<HashMap<PeerId, PeerState>>,
}

#[derive(Debug)]
struct PeerState {
    connections: usize,
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// One admitted connection's share: dropping it gives the connection back.
#[derive(Debug)]
pub struct PeerGuard {
    quotas: Arc<Quotas>,
    peer: PeerId,
    slots: Arc<Semaphore>,
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
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Admits one more connection from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: PeerId) -> Result<PeerGuard, QuotaError> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let state = peers.entry(peer).or_insert_with(|| PeerState {
            connections: 0,
            slots: Arc::new(Semaphore::new(self.limits.slots_per_peer)),
            bytes: Arc::new(Semaphore::new(kib(self.limits.bytes_per_peer) as usize)),
        });
        if state.connections >= self.limits.connections_per_peer {
            return Err(QuotaError::Connections(self.limits.connections_per_peer));
        }
        state.connections += 1;
        Ok(PeerGuard {
            quotas: self.clone(),
            peer,
            slots: state.slots.clone(),
            bytes: state.bytes.clone(),
        })
    }

    /// Connections `peer` holds now.
    pub fn connections_of(&self, peer: PeerId) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&peer).map_or(0, |s| s.connections)
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut peers = self.quotas.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = peers.get_mut(&self.peer) {
            state.connections = state.connections.saturating_sub(1);
            if state.connections == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

impl PeerGuard {
    /// Who this is.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// One of the peer's slots; waits while it uses all of them.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
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
    async fn slots_and_bytes_wait_for_what_is_given_back() {
        let q = Quotas::new(limits());
        let a = q.admit(A).unwrap();
        let a_other = q.admit(A).unwrap();
        let s = a.slot().await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), a_other.slot());
        assert!(waiting.await.is_err(), "the peer's one slot is taken");
        drop(s);
        assert!(a_other.slot().await.is_some());

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
}
