//! An authenticated, encrypted channel between an offload host and its workers, with keys
//! pinned at pairing.
//!
//! # Design
//!
//! Each side has a long-term X25519 key pair, its [`Identity`], made on first use and kept
//! in the OS keyring or a 0600 key file ([`KeyStore`]), or handed in as a file
//! ([`Identity::from_file`]). Its public key's [`Fingerprint`] is the short id a worker
//! announces and a user types.
//!
//! A connection starts with a Noise handshake ([`initiate`] on the side that connects,
//! [`respond`] on the side that accepts), `Noise_XX_25519_ChaChaPoly_BLAKE2s` by `snow`
//! with its pure-Rust primitives: no home-made cryptography, and no C in the dependency
//! graph (snow's default features would bring `ring`; they are off). Why XX: both sides
//! send their static key, encrypted, so neither needs the other's key beforehand (first
//! contact, pairing) and both are authenticated at the end; a passive observer learns
//! neither key. The prologue binds the protocol name and [`PROTOCOL_VERSION`], so a peer of
//! another protocol or version fails the handshake.
//!
//! The handshake yields a [`SecureStream`], an `AsyncRead + AsyncWrite` through which the
//! existing frames run unchanged, and a [`Session`]: the peer's proven [`PublicKey`] and a
//! six-digit [`PairingCode`].
//!
//! # What is pinned, and what the code proves
//!
//! Pairing is the first contact: each side shows its [`PairingCode`]; the user checks that
//! both show the same digits and confirms, and each side then stores the other's whole
//! public key in its [`PinStore`] (a worker pins hosts, a host pins workers and their last
//! address). Equal codes prove that the two sides ran one handshake with each other, not
//! two with a man in the middle. A code cut from the handshake hash alone would not: a man
//! in the middle picks its ephemeral key after seeing the initiator's, and can try a
//! million until the codes agree. So the code also covers a nonce from each side exchanged
//! commit-then-reveal, as Bluetooth's numeric comparison does (see [`PairingCode`]): each
//! of the man in the middle's two handshakes ends in a code it cannot steer, and they
//! agree with probability 10⁻⁶ per attempt, each attempt a pairing prompt the user sees.
//!
//! Later connections are checked against the pin ([`PinStore::require`]): the handshake
//! proves the peer holds the pinned key's secret, and no code is shown. The code is
//! computed on every connection, so every connection's handshake is the same; the reveal
//! costs the initiator one round trip more than plain XX before it can send (two in all).
//!
//! # What is defended
//!
//! Against anyone on the network: reading the traffic (ChaCha20-Poly1305, forward secret
//! through the ephemeral keys); changing, replaying, reordering, dropping or truncating it
//! (each record's nonce is its position, and the end of stream is an authenticated close:
//! any of these kills the stream with a typed [`StreamError`]); posing as a paired peer
//! (only the pinned key's holder completes the check); a man in the middle at pairing, if
//! the user compares the codes. Malformed, oversized or truncated handshake input is a
//! typed [`HandshakeError`], read into fixed small buffers.
//!
//! # What is not defended
//!
//! A user who confirms a pairing without comparing the codes; anyone who can read the key
//! file or the keyring entry (the key is the identity), or write the pin file; a peer that
//! was paired and misbehaves (pairing is trust); traffic analysis (record sizes and timing
//! are visible); a peer that stalls the handshake (the caller's timeout bounds it: this
//! crate sets none); denial of service in general. The peer's identity is only as good as
//! the comparison that pinned it.
//!
//! # Wiring it in
//!
//! - Bound the handshake with a timeout: [`initiate`] and [`respond`] wait as long as the
//!   peer lets them.
//! - After the handshake, check [`Session::remote`] against the pins (or pair, showing
//!   [`Session::code`]) before acting on anything the peer sends. The responder learns the
//!   initiator's key only at the end of the handshake, so a worker refuses an unpaired host
//!   through the stream, after it.
//! - Flush after each message, as the frame code does: writes are buffered into records.
//! - Close with `shutdown()`: the peer then reads a clean end of stream. A peer that
//!   vanishes without it reads as an `UnexpectedEof` error ([`StreamError::Truncated`]),
//!   never as a clean end.
//! - Errors from reads and writes are `io::Error`s; [`StreamError::of`] tells a tampered or
//!   truncated stream from the socket's own failures.
//! - [`KeyStore::load_or_create`] may block on the keyring: call it before the runtime
//!   starts or in `spawn_blocking`, and only turn the keyring on where a user session is.
//!
//! ```no_run
//! # async fn demo(stream: tokio::net::TcpStream) -> anyhow::Result<()> {
//! use offload_secure::{KeyStore, PeerRole, PinStore, initiate};
//! use std::time::Duration;
//!
//! let dir = std::path::Path::new("/home/me/.config/offload");
//! let me = KeyStore::new(dir, "host").with_keyring(true).load_or_create()?.identity;
//! let (stream, session) =
//!     tokio::time::timeout(Duration::from_secs(5), initiate(stream, &me)).await??;
//! let workers = PinStore::open(dir, PeerRole::Workers)?;
//! workers.require(&session.remote)?; // or, when pairing: show session.code
//! let (reader, writer) = tokio::io::split(stream);
//! # Ok(()) }
//! ```

mod code;
mod files;
mod handshake;
mod identity;
mod keystore;
mod pins;
mod record;
mod stream;

pub use code::PairingCode;
pub use files::FileError;
pub use handshake::{
    HANDSHAKE_HASH_LEN, HandshakeError, MAX_HANDSHAKE_MESSAGE, NOISE_PARAMS, PROTOCOL_NAME,
    PROTOCOL_VERSION, Session, initiate, respond,
};
pub use identity::{Fingerprint, Identity, ParseError, PublicKey, RandomError};
pub use keystore::{KEYRING_SERVICE, KeyError, KeyLocation, KeyStore, LoadedIdentity};
pub use pins::{PeerRole, Pin, PinError, PinStore};
pub use record::{MAX_RECORD, MAX_RECORD_PLAINTEXT};
pub use stream::{SecureStream, StreamError};
