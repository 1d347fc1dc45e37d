//! The handshake over real TCP loopback: honest peers agree, a man in the middle shows,
//! and hostile or foreign input is a typed error, never a panic or a hang.

mod common;

use common::{STEP, handshake, pattern, tcp_pair};
use offload_secure::{
    HandshakeError, Identity, MAX_HANDSHAKE_MESSAGE, NOISE_PARAMS, PROTOCOL_VERSION, initiate,
    respond,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn honest_peers_prove_their_keys_and_agree_on_the_code() {
    let (host, worker) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let mut codes = Vec::new();
    for _ in 0..3 {
        let (client, server) = tcp_pair().await;
        let (x, y) = handshake(client, server, &host, &worker).await;
        let ((_, at_host), (_, at_worker)) = (x.unwrap(), y.unwrap());
        assert_eq!(at_host.remote, *worker.public());
        assert_eq!(at_worker.remote, *host.public());
        assert_eq!(at_host.code, at_worker.code);
        assert_eq!(at_host.handshake_hash, at_worker.handshake_hash);
        assert!(at_host.initiator && !at_worker.initiator);
        codes.push(at_host.code);
    }
    // Fresh per connection, not a function of the keys (a 3·10⁻⁶ chance of a false failure).
    assert!(codes[0] != codes[1] || codes[1] != codes[2], "{codes:?}");
}

/// A relaying man in the middle: it accepts the host's connection as a worker and connects
/// to the worker as a host, with keys of its own, and passes the plaintext through. Both
/// handshakes succeed and the data flows, but the two sides' codes differ: the comparison
/// at pairing is what catches it.
#[tokio::test]
async fn a_relaying_man_in_the_middle_gets_different_codes_on_the_two_sides() {
    let (host, worker) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let worker_key = *worker.public();
    let worker_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker_addr = worker_listener.local_addr().unwrap();
    let mitm_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mitm_addr = mitm_listener.local_addr().unwrap();

    let worker_side = tokio::spawn(async move {
        let (sock, _) = worker_listener.accept().await.unwrap();
        let (mut stream, session) = respond(sock, &worker).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        (session, got)
    });
    let mitm = tokio::spawn(async move {
        let (as_worker, as_host) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (from_host, _) = mitm_listener.accept().await.unwrap();
        let (mut to_host, with_host) = respond(from_host, &as_worker).await.unwrap();
        let to_worker = TcpStream::connect(worker_addr).await.unwrap();
        let (mut to_worker, with_worker) = initiate(to_worker, &as_host).await.unwrap();
        tokio::io::copy(&mut to_host, &mut to_worker).await.unwrap();
        to_worker.shutdown().await.unwrap();
        (
            (with_host, *as_worker.public()),
            (with_worker, *as_host.public()),
        )
    });

    let sock = TcpStream::connect(mitm_addr).await.unwrap();
    let (mut stream, at_host) = initiate(sock, &host).await.unwrap();
    stream.write_all(b"a job").await.unwrap();
    stream.shutdown().await.unwrap();
    let ((with_host, mitm_as_worker), (with_worker, mitm_as_host)) =
        tokio::time::timeout(STEP, mitm).await.unwrap().unwrap();
    let (at_worker, relayed) = tokio::time::timeout(STEP, worker_side)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(relayed, b"a job", "the relay works: only the codes tell");
    // Each honest side agrees with the man in the middle it talked to...
    assert_eq!(at_host.code, with_host.code);
    assert_eq!(at_worker.code, with_worker.code);
    // ...but not with the other honest side (a 10⁻⁶ chance of a false failure), and each
    // sees the man in the middle's key, not the other's.
    assert_ne!(at_host.code, at_worker.code);
    assert_eq!(at_host.remote, mitm_as_worker);
    assert_eq!(at_worker.remote, mitm_as_host);
    assert_eq!(with_host.remote, *host.public());
    assert_eq!(with_worker.remote, worker_key);
}

/// Runs `respond` against a peer that sends `bytes` and then closes its sending side.
async fn respond_to(bytes: &[u8]) -> HandshakeError {
    let (mut client, server) = tcp_pair().await;
    client.write_all(bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let me = Identity::generate().unwrap();
    let result = tokio::time::timeout(STEP, respond(server, &me))
        .await
        .expect("respond hangs");
    result.err().expect("garbage made a session")
}

/// Runs `initiate` against a server that answers with `bytes` and then closes.
async fn initiate_to(bytes: &[u8]) -> HandshakeError {
    let (client, mut server) = tcp_pair().await;
    let bytes = bytes.to_vec();
    let server = tokio::spawn(async move {
        let _ = server.write_all(&bytes).await;
        let _ = server.shutdown().await;
        let mut sink = Vec::new();
        let _ = server.read_to_end(&mut sink).await;
    });
    let me = Identity::generate().unwrap();
    let result = tokio::time::timeout(STEP, initiate(client, &me))
        .await
        .expect("initiate hangs");
    server.await.unwrap();
    result.err().expect("garbage made a session")
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

#[tokio::test]
async fn a_peer_speaking_another_protocol_is_refused_before_anything_is_read() {
    let err = respond_to(b"GET / HTTP/1.1\r\nHost: worker\r\n\r\n").await;
    assert!(
        matches!(
            err,
            HandshakeError::Oversized {
                message: 1,
                len: 0x4745,
                ..
            }
        ),
        "{err}"
    );
    let err = initiate_to(b"SSH-2.0-OpenSSH_9.2\r\n").await;
    assert!(
        matches!(err, HandshakeError::Oversized { message: 2, .. }),
        "{err}"
    );
    let err = respond_to(&[0xff, 0xff]).await;
    assert!(
        matches!(
            err,
            HandshakeError::Oversized {
                len: 65535,
                max: MAX_HANDSHAKE_MESSAGE,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_in_handshake_shape_fails_to_verify() {
    // A plausible first message (any 32 bytes are an ephemeral key), then garbage.
    let mut bytes = framed(&pattern(1, 32));
    bytes.extend(framed(&pattern(2, 96)));
    let err = respond_to(&bytes).await;
    assert!(
        matches!(err, HandshakeError::Invalid { message: 3, .. }),
        "{err}"
    );
    // A first message with a payload: refused (message 1's payload would be in clear).
    let err = respond_to(&framed(&pattern(3, 40))).await;
    assert!(
        matches!(
            err,
            HandshakeError::UnexpectedPayload {
                message: 1,
                len: 8,
                ..
            }
        ),
        "{err}"
    );
    let err = initiate_to(&framed(&pattern(4, 128))).await;
    assert!(
        matches!(err, HandshakeError::Invalid { message: 2, .. }),
        "{err}"
    );
    let err = respond_to(&framed(&[])).await;
    assert!(
        matches!(err, HandshakeError::Invalid { message: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_truncated_handshake_is_truncation() {
    for bytes in [&[][..], &[0][..], &[0, 32, 1, 2, 3][..]] {
        let err = respond_to(bytes).await;
        assert!(matches!(err, HandshakeError::Truncated), "{bytes:?}: {err}");
    }
    // A whole first message, then silence and a close: truncated at message 3.
    let err = respond_to(&framed(&pattern(5, 32))).await;
    assert!(matches!(err, HandshakeError::Truncated), "{err}");
}

/// Taken as a stalled handshake or read (a loopback handshake takes milliseconds).
const HANG: std::time::Duration = std::time::Duration::from_secs(1);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

proptest! {
    // A bounded run (CI): every case is a real handshake over loopback.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random messages of random lengths, in handshake framing, at both roles: every one
    /// an error, none a panic or a hang. With a well-formed first message (32 bytes) the
    /// responder reaches message 3, and refuses it.
    #[test]
    fn random_handshake_input_is_an_error(
        well_formed_first in any::<bool>(),
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
    ) {
        let mut bytes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let m = if i == 0 && well_formed_first { &m[..m.len().min(32)] } else { &m[..] };
            let mut m = m.to_vec();
            if i == 0 && well_formed_first {
                m.resize(32, 7);
            }
            bytes.extend(framed(&m));
        }
        let rt = runtime();
        let err = rt.block_on(respond_to(&bytes));
        if well_formed_first && !messages.is_empty() {
            prop_assert!(
                matches!(
                    err,
                    HandshakeError::Invalid { message: 3, .. }
                        | HandshakeError::UnexpectedPayload { message: 3, .. }
                        | HandshakeError::Truncated
                ),
                "{}", err
            );
        }
        let _ = rt.block_on(initiate_to(&bytes));
    }

    /// One bit flipped anywhere in what the initiator sends (its two handshake messages,
    /// their length prefixes, its first record): never a working channel. The handshake
    /// fails on a side, or the record is refused as tampered or truncated.
    #[test]
    fn a_flipped_bit_in_the_handshake_never_makes_a_channel(
        message in 0..3usize,
        offset in any::<usize>(),
    ) {
        let rt = runtime();
        let works = rt.block_on(async {
            let damage = common::Damage::Flip { message, offset };
            // A longer length prefix stalls both sides: no channel either.
            let Some((x, y)) = common::damaged_handshake_within(damage, HANG).await else {
                return false;
            };
            let (Ok((mut a, _)), Ok((mut b, _))) = (x, y) else {
                return false;
            };
            let send = async {
                let _ = a.write_all(b"a job").await;
                let _ = a.shutdown().await;
            };
            let mut got = Vec::new();
            let (_, read) = tokio::join!(send, tokio::time::timeout(HANG, b.read_to_end(&mut got)));
            matches!(read, Ok(Ok(_)))
        });
        prop_assert!(!works, "a channel worked with message {} flipped at {}", message, offset);
    }
}

/// A hand-made peer (snow directly) with a prologue of our choosing, to be a peer of
/// another version or one that breaks the pairing protocol.
struct RawPeer {
    stream: TcpStream,
    hs: snow::HandshakeState,
}

impl RawPeer {
    fn new(stream: TcpStream, prologue: &[u8], initiator: bool) -> Self {
        let key = Identity::generate().unwrap();
        let builder = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .prologue(prologue)
            .unwrap()
            .local_private_key(key.secret_bytes())
            .unwrap();
        let hs = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        };
        RawPeer {
            stream,
            hs: hs.unwrap(),
        }
    }

    async fn send(&mut self, payload: &[u8]) {
        let mut buf = [0u8; 512];
        let n = self.hs.write_message(payload, &mut buf).unwrap();
        self.stream.write_all(&framed(&buf[..n])).await.unwrap();
    }

    async fn recv(&mut self) -> Result<Vec<u8>, snow::Error> {
        let mut prefix = [0u8; 2];
        self.stream.read_exact(&mut prefix).await.unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut msg).await.unwrap();
        let mut payload = [0u8; 512];
        let n = self.hs.read_message(&msg, &mut payload)?;
        Ok(payload[..n].to_vec())
    }
}

fn prologue(name: &str, version: u16) -> Vec<u8> {
    let mut p = name.as_bytes().to_vec();
    p.push(0);
    p.extend_from_slice(&version.to_be_bytes());
    p
}

#[tokio::test]
async fn a_raw_peer_of_this_version_completes_the_noise_handshake() {
    // The check that RawPeer speaks the protocol, so the mismatch tests below mean something.
    let (client, server) = tcp_pair().await;
    let me = Identity::generate().unwrap();
    let ours = tokio::spawn(async move { respond(server, &me).await });
    let mut raw = RawPeer::new(client, &prologue("offload", PROTOCOL_VERSION), true);
    raw.send(&[]).await;
    let commitment = raw.recv().await.unwrap();
    assert_eq!(commitment.len(), 32);
    raw.send(&[9u8; 32]).await;
    assert!(raw.hs.is_handshake_finished());
    assert!(
        tokio::time::timeout(STEP, ours)
            .await
            .unwrap()
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn a_peer_of_another_version_or_protocol_fails_the_handshake() {
    for theirs in [
        prologue("offload", PROTOCOL_VERSION + 1),
        prologue("offlaod", PROTOCOL_VERSION),
        vec![],
    ] {
        // They respond: our initiator cannot verify their message 2.
        let (client, server) = tcp_pair().await;
        let raw = tokio::spawn({
            let theirs = theirs.clone();
            async move {
                let mut raw = RawPeer::new(server, &theirs, false);
                raw.recv().await.unwrap();
                raw.send(&[0u8; 32]).await;
                let mut rest = Vec::new();
                let _ = raw.stream.read_to_end(&mut rest).await;
            }
        });
        let me = Identity::generate().unwrap();
        let err = initiate(client, &me)
            .await
            .err()
            .expect("a session across versions");
        assert!(
            matches!(err, HandshakeError::Invalid { message: 2, .. }),
            "{err}"
        );
        drop(err);
        raw.await.unwrap();

        // They initiate: they cannot verify our message 2, and give up; we see them leave.
        let (client, server) = tcp_pair().await;
        let me = Identity::generate().unwrap();
        let ours = tokio::spawn(async move { respond(server, &me).await });
        let mut raw = RawPeer::new(client, &theirs, true);
        raw.send(&[]).await;
        assert!(
            raw.recv().await.is_err(),
            "they verify our message 2 across versions"
        );
        drop(raw);
        let err = tokio::time::timeout(STEP, ours)
            .await
            .unwrap()
            .unwrap()
            .err()
            .unwrap();
        assert!(matches!(err, HandshakeError::Truncated), "{err}");
    }
}

#[tokio::test]
async fn a_responder_that_reveals_another_nonce_than_it_committed_to_is_refused() {
    let (client, server) = tcp_pair().await;
    let raw = tokio::spawn(async move {
        let mut raw = RawPeer::new(server, &prologue("offload", PROTOCOL_VERSION), false);
        raw.recv().await.unwrap();
        let committed = [1u8; 32];
        raw.send(
            &Sha256::new()
                .chain_update(b"offload pairing commitment v1\0")
                .chain_update(committed)
                .finalize(),
        )
        .await;
        raw.recv().await.unwrap();
        // Reveal a different nonce, as a man in the middle steering the code would.
        let transport = raw.hs.into_stateless_transport_mode().unwrap();
        let mut buf = [0u8; 64];
        let n = transport.write_message(0, &[2u8; 32], &mut buf).unwrap();
        raw.stream.write_all(&framed(&buf[..n])).await.unwrap();
        raw.stream
    });
    let me = Identity::generate().unwrap();
    let err = initiate(client, &me)
        .await
        .err()
        .expect("a session with a broken commitment");
    assert!(matches!(err, HandshakeError::CommitmentMismatch), "{err}");
    drop(raw.await.unwrap());
}
