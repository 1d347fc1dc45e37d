//! The Noise XX handshake and the pairing nonces, over any byte stream.
//!
//! On the wire, each message is a 2-byte big-endian length and that many bytes:
//!
//! 1. initiator → responder: `e` (32 bytes, no payload)
//! 2. responder → initiator: `e, ee, s, es`, payload: the responder's nonce commitment
//! 3. initiator → responder: `s, se`, payload: the initiator's nonce
//! 4. responder → initiator: the first transport record: the responder's nonce
//!
//! A message longer than [`MAX_HANDSHAKE_MESSAGE`] is refused before it is read; all
//! buffers are fixed and small. There is no timeout here: wrap the call in
//! `tokio::time::timeout`, or a silent peer holds it for as long as the socket lives.

use std::io;

use snow::{Builder, HandshakeState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::code::{self, NONCE_LEN, PairingCode};
use crate::identity::{Identity, PublicKey, RandomError, random};
use crate::record::{LEN_PREFIX, Records, TAG_LEN};
use crate::stream::SecureStream;

/// The Noise protocol: XX (both static keys sent, encrypted; neither side needs the
/// other's key in advance, which pairing requires), X25519, ChaCha20-Poly1305, BLAKE2s.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// The application named in the prologue.
pub const PROTOCOL_NAME: &str = "offload";

/// The version of this channel, bound into the handshake with [`PROTOCOL_NAME`] (the
/// prologue): peers of different versions fail the handshake rather than misread each other.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest handshake message accepted. The real ones are 32, 128, 96 and 48 bytes.
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;

/// Bytes of the BLAKE2s handshake hash.
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// What a finished handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The peer's long-term key, proven by the handshake. Compare it to the pinned key.
    pub remote: PublicKey,
    /// Six digits equal on both sides iff no one is in the middle: show it when pairing.
    pub code: PairingCode,
    /// The Noise handshake hash: unique to this connection (a channel binding).
    pub handshake_hash: [u8; HANDSHAKE_HASH_LEN],
    /// True on the side that called [`initiate`].
    pub initiator: bool,
}

/// A handshake that did not complete. Every variant leaves the connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake I/O: {0}")]
    Io(#[source] io::Error),
    #[error("the peer closed the connection during the handshake")]
    Truncated,
    #[error("handshake message {message} announces {len} bytes, more than the {max} allowed")]
    Oversized { message: u8, len: usize, max: usize },
    /// Failed to verify or parse: a peer of another protocol or version (the prologue
    /// differs), a corrupted or tampered message, or not a handshake at all.
    #[error(
        "handshake message {message} is invalid (another protocol or version, or tampered): {source}"
    )]
    Invalid { message: u8, source: snow::Error },
    #[error("handshake message {message} carries {len} payload bytes, not {expected}")]
    UnexpectedPayload {
        message: u8,
        len: usize,
        expected: usize,
    },
    #[error("the peer's pairing nonce does not match its commitment")]
    CommitmentMismatch,
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A local Noise failure (not caused by the peer).
    #[error("noise: {0}")]
    Noise(#[source] snow::Error),
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HandshakeError::Truncated
        } else {
            HandshakeError::Io(e)
        }
    }
}

/// The prologue: the protocol's name, a NUL, and its version (big-endian).
pub(crate) fn prologue(version: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROTOCOL_NAME.len() + 3);
    p.extend_from_slice(PROTOCOL_NAME.as_bytes());
    p.push(0);
    p.extend_from_slice(&version.to_be_bytes());
    p
}

/// Runs the handshake as the side that connected. The caller bounds it with a timeout.
pub async fn initiate<S>(
    stream: S,
    identity: &Identity,
) -> Result<(SecureStream<S>, Session), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    initiate_with(stream, identity, &prologue(PROTOCOL_VERSION)).await
}

/// Runs the handshake as the side that accepted. The caller bounds it with a timeout.
pub async fn respond<S>(
    stream: S,
    identity: &Identity,
) -> Result<(SecureStream<S>, Session), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    respond_with(stream, identity, &prologue(PROTOCOL_VERSION)).await
}

pub(crate) async fn initiate_with<S>(
    mut stream: S,
    identity: &Identity,
    prologue: &[u8],
) -> Result<(SecureStream<S>, Session), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = noise(identity, prologue, true)?;
    write_handshake(&mut stream, &mut hs, &[]).await?;
    let commitment: [u8; 32] = read_handshake(&mut stream, &mut hs, 2).await?;
    let my_nonce: [u8; NONCE_LEN] = random()?;
    write_handshake(&mut stream, &mut hs, &my_nonce).await?;

    let (remote, hash, mut records) = into_transport(hs)?;
    let their_nonce = read_reveal(&mut stream, &mut records).await?;
    if code::commitment(&their_nonce) != commitment {
        return Err(HandshakeError::CommitmentMismatch);
    }
    let code = PairingCode::derive(&hash, &my_nonce, &their_nonce);
    Ok(finish(stream, records, remote, code, hash, true))
}

pub(crate) async fn respond_with<S>(
    mut stream: S,
    identity: &Identity,
    prologue: &[u8],
) -> Result<(SecureStream<S>, Session), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = noise(identity, prologue, false)?;
    let [] = read_handshake::<_, 0>(&mut stream, &mut hs, 1).await?;
    let my_nonce: [u8; NONCE_LEN] = random()?;
    write_handshake(&mut stream, &mut hs, &code::commitment(&my_nonce)).await?;
    let their_nonce: [u8; NONCE_LEN] = read_handshake(&mut stream, &mut hs, 3).await?;

    let (remote, hash, mut records) = into_transport(hs)?;
    let mut wire = [0u8; LEN_PREFIX + NONCE_LEN + TAG_LEN];
    let n = records
        .seal(&my_nonce, &mut wire)
        .map_err(|_| HandshakeError::Noise(snow::Error::Input))?;
    stream.write_all(&wire[..n]).await?;
    stream.flush().await?;
    let code = PairingCode::derive(&hash, &their_nonce, &my_nonce);
    Ok(finish(stream, records, remote, code, hash, false))
}

fn noise(
    identity: &Identity,
    prologue: &[u8],
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let params = NOISE_PARAMS.parse().map_err(HandshakeError::Noise)?;
    let builder = Builder::new(params)
        .prologue(prologue)
        .and_then(|b| b.local_private_key(identity.secret_bytes()))
        .map_err(HandshakeError::Noise)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(HandshakeError::Noise)
}

/// Writes the next handshake message, carrying `payload`, with its length prefix.
async fn write_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut HandshakeState,
    payload: &[u8],
) -> Result<(), HandshakeError> {
    let mut wire = [0u8; LEN_PREFIX + MAX_HANDSHAKE_MESSAGE];
    let len = hs
        .write_message(payload, &mut wire[LEN_PREFIX..])
        .map_err(HandshakeError::Noise)?;
    let prefix = u16::try_from(len).map_err(|_| HandshakeError::Noise(snow::Error::Input))?;
    wire[..LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    stream.write_all(&wire[..LEN_PREFIX + len]).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one length-prefixed message into `buf`; refuses one longer than the buffer
/// before reading its body.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8; MAX_HANDSHAKE_MESSAGE],
    message: u8,
) -> Result<usize, HandshakeError> {
    let mut prefix = [0u8; LEN_PREFIX];
    stream.read_exact(&mut prefix).await?;
    let len = usize::from(u16::from_be_bytes(prefix));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::Oversized {
            message,
            len,
            max: MAX_HANDSHAKE_MESSAGE,
        });
    }
    stream.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// Reads handshake message number `message`, whose payload must be `N` bytes.
async fn read_handshake<S: AsyncRead + Unpin, const N: usize>(
    stream: &mut S,
    hs: &mut HandshakeState,
    message: u8,
) -> Result<[u8; N], HandshakeError> {
    let mut msg = [0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
    let len = read_message(stream, &mut msg, message).await?;
    let got = hs
        .read_message(&msg[..len], &mut payload)
        .map_err(|source| HandshakeError::Invalid { message, source })?;
    expect_payload(&payload[..got], message)
}

/// Reads message 4, the first transport record: the responder's nonce.
async fn read_reveal<S: AsyncRead + Unpin>(
    stream: &mut S,
    records: &mut Records,
) -> Result<[u8; NONCE_LEN], HandshakeError> {
    let mut msg = [0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
    let len = read_message(stream, &mut msg, 4).await?;
    let got = records
        .open(&msg[..len], &mut payload)
        .map_err(|_| HandshakeError::Invalid {
            message: 4,
            source: snow::Error::Decrypt,
        })?;
    expect_payload(&payload[..got], 4)
}

fn expect_payload<const N: usize>(payload: &[u8], message: u8) -> Result<[u8; N], HandshakeError> {
    payload
        .try_into()
        .map_err(|_| HandshakeError::UnexpectedPayload {
            message,
            len: payload.len(),
            expected: N,
        })
}

fn into_transport(
    hs: HandshakeState,
) -> Result<(PublicKey, [u8; HANDSHAKE_HASH_LEN], Records), HandshakeError> {
    let missing = || {
        HandshakeError::Noise(snow::Error::State(
            snow::error::StateProblem::HandshakeNotFinished,
        ))
    };
    let remote = hs
        .get_remote_static()
        .and_then(PublicKey::from_slice)
        .ok_or_else(missing)?;
    let hash: [u8; HANDSHAKE_HASH_LEN] =
        hs.get_handshake_hash().try_into().map_err(|_| missing())?;
    let transport = hs
        .into_stateless_transport_mode()
        .map_err(HandshakeError::Noise)?;
    Ok((remote, hash, Records::new(transport)))
}

fn finish<S>(
    stream: S,
    records: Records,
    remote: PublicKey,
    code: PairingCode,
    handshake_hash: [u8; HANDSHAKE_HASH_LEN],
    initiator: bool,
) -> (SecureStream<S>, Session) {
    tracing::debug!(peer = %remote.fingerprint(), initiator, "secure handshake done");
    let session = Session {
        remote,
        code,
        handshake_hash,
        initiator,
    };
    (SecureStream::new(stream, records), session)
}
