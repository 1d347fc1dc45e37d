//! Helpers for the tests over TCP loopback: connected pairs, handshakes, and a proxy that
//! damages one direction message by message.

#![allow(dead_code)]

use std::time::Duration;

use offload_secure::{HandshakeError, Identity, SecureStream, Session, initiate, respond};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any test waits on one step.
pub const STEP: Duration = Duration::from_secs(30);

pub type Handshake = Result<(SecureStream<TcpStream>, Session), HandshakeError>;

/// A connected pair of loopback sockets: (the connecting side, the accepting side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Both handshakes over `client` (initiator) and `server` (responder), at once.
pub async fn handshake(
    client: TcpStream,
    server: TcpStream,
    initiator: &Identity,
    responder: &Identity,
) -> (Handshake, Handshake) {
    let both = async { tokio::join!(initiate(client, initiator), respond(server, responder)) };
    tokio::time::timeout(STEP, both)
        .await
        .expect("handshakes hang")
}

/// Two streams that completed a handshake over loopback, with their sessions.
pub async fn secure_pair() -> (
    (SecureStream<TcpStream>, Session),
    (SecureStream<TcpStream>, Session),
) {
    let (client, server) = tcp_pair().await;
    let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (x, y) = handshake(client, server, &a, &b).await;
    (x.unwrap(), y.unwrap())
}

/// What the proxy does to the initiator-to-responder direction, counted in messages:
/// message 0 is handshake message 1, message 1 is handshake message 3, and message 2 on are
/// the initiator's records.
#[derive(Debug, Clone, Copy)]
pub enum Damage {
    None,
    /// Flips the low bit of byte `offset` (modulo its length) of message `message` (offset
    /// 0 and 1 are its length prefix).
    Flip {
        message: usize,
        offset: usize,
    },
    Drop(usize),
    Duplicate(usize),
    /// Sends message `n + 1` before message `n`.
    Swap(usize),
    /// Sends `bytes` bytes of message `message` (prefix included), then ends the connection.
    Cut {
        message: usize,
        bytes: usize,
    },
}

/// Streams that did their handshake through a proxy that applies `damage` to what the
/// initiator sends: (initiator's side, responder's side).
pub async fn damaged_pair(damage: Damage) -> (SecureStream<TcpStream>, SecureStream<TcpStream>) {
    let (x, y) = damaged_handshake(damage).await;
    (x.unwrap().0, y.unwrap().0)
}

/// Both handshakes through a proxy that applies `damage` to what the initiator sends.
pub async fn damaged_handshake(damage: Damage) -> (Handshake, Handshake) {
    damaged_handshake_within(damage, STEP)
        .await
        .expect("handshakes hang")
}

/// [`damaged_handshake`], or `None` if it has not ended within `limit`: a length prefix
/// made larger leaves both sides waiting, which only the caller's timeout ends (as the
/// worker's handshake timeout does).
pub async fn damaged_handshake_within(
    damage: Damage,
    limit: Duration,
) -> Option<(Handshake, Handshake)> {
    let (client, proxy_a) = tcp_pair().await;
    let (proxy_b, server) = tcp_pair().await;
    tokio::spawn(run_proxy(proxy_a, proxy_b, damage));
    let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let both = async { tokio::join!(initiate(client, &a), respond(server, &b)) };
    tokio::time::timeout(limit, both).await.ok()
}

async fn run_proxy(from_initiator: TcpStream, to_responder: TcpStream, damage: Damage) {
    let (mut a_read, mut a_write) = from_initiator.into_split();
    let (mut b_read, mut b_write) = to_responder.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut b_read, &mut a_write).await;
        let _ = a_write.shutdown().await;
    });
    let mut held: Option<Vec<u8>> = None;
    for index in 0.. {
        let mut prefix = [0u8; 2];
        if a_read.read_exact(&mut prefix).await.is_err() {
            break;
        }
        let mut message = prefix.to_vec();
        message.resize(2 + usize::from(u16::from_be_bytes(prefix)), 0);
        if a_read.read_exact(&mut message[2..]).await.is_err() {
            break;
        }
        let send: Vec<Vec<u8>> = match damage {
            Damage::Flip { message: m, offset } if m == index => {
                let at = offset % message.len();
                message[at] ^= 1;
                vec![message]
            }
            Damage::Drop(m) if m == index => vec![],
            Damage::Duplicate(m) if m == index => vec![message.clone(), message],
            Damage::Swap(m) if m == index => {
                held = Some(message);
                vec![]
            }
            Damage::Swap(m) if m + 1 == index => vec![message, held.take().unwrap()],
            Damage::Cut { message: m, bytes } if m == index => {
                let _ = b_write.write_all(&message[..bytes]).await;
                break;
            }
            _ => vec![message],
        };
        for m in send {
            if b_write.write_all(&m).await.is_err() {
                return;
            }
        }
    }
    let _ = b_write.shutdown().await;
    let _ = back.await;
}

/// Deterministic bytes for transfers: a xorshift stream from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
