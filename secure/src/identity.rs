//! Who a peer is: a long-term X25519 key pair ([`Identity`]), its public half
//! ([`PublicKey`]) and the short id derived from it ([`Fingerprint`]).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use zeroize::Zeroizing;

/// Bytes in an X25519 key, public or secret.
pub const KEY_LEN: usize = 32;

/// Bytes of SHA-256 kept in a [`Fingerprint`]: 128 bits, far past any birthday collision
/// among a user's machines, and a second preimage is out of reach.
pub const FINGERPRINT_LEN: usize = 16;

/// A peer's long-term X25519 public key. Displayed and parsed as 64 hex digits; serialized
/// (serde) the same way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// The key from its 32 bytes (every 32-byte string is an X25519 public key).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The key from a slice; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(PublicKey(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key's short id: the first 16 bytes of SHA-256 of the 32 key bytes, in lowercase
    /// RFC 4648 base32 without padding (26 characters of `a-z2-7`: no 0/O or 1/l to confuse).
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::digest(self.0);
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Fingerprint(fp)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A string that is not a key or a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a public key is 64 hex digits")]
    PublicKey,
    #[error("a fingerprint is 26 base32 characters (a-z, 2-7)")]
    Fingerprint,
    #[error("a pairing code is 6 digits")]
    PairingCode,
}

impl FromStr for PublicKey {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| ParseError::PublicKey)?;
        Ok(PublicKey(bytes))
    }
}

/// The short, stable id of a [`PublicKey`] (see [`PublicKey::fingerprint`]): what a worker
/// announces and what a user types. It names a key; authentication always compares the
/// whole key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; FINGERPRINT_LEN]);

impl Fingerprint {
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase(),
        )
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = ParseError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let upper = s.trim().to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| ParseError::Fingerprint)?;
        Ok(Fingerprint(
            bytes.try_into().map_err(|_| ParseError::Fingerprint)?,
        ))
    }
}

/// Serializes as its `Display` string and parses with `FromStr`.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_string;

serde_as_string!(PublicKey);
serde_as_string!(Fingerprint);

/// A long-term X25519 key pair: this host's or worker's identity. The secret half is wiped
/// from memory on drop and never printed (`Debug` shows the fingerprint).
pub struct Identity {
    secret: Zeroizing<[u8; KEY_LEN]>,
    public: PublicKey,
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the operating system: {0}")]
pub struct RandomError(pub getrandom::Error);

/// `n` random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(bytes)
}

impl Identity {
    /// A new random key pair.
    pub fn generate() -> Result<Self, RandomError> {
        Ok(Identity::from_secret_bytes(Zeroizing::new(random()?)))
    }

    /// The key pair whose secret half is `secret` (any 32 bytes are an X25519 secret key;
    /// the public half is computed).
    pub fn from_secret_bytes(secret: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let public = derive_public(&secret);
        Identity { secret, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint()
    }

    /// The secret key's bytes: for storing it, and for the handshake. Never log them.
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

/// X25519's public key for `secret`, by snow's own Curve25519 (no second implementation).
fn derive_public(secret: &[u8; KEY_LEN]) -> PublicKey {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow's default resolver has Curve25519: the crate enables use-curve25519");
    dh.set(secret);
    let public = PublicKey::from_slice(dh.pubkey()).expect("an X25519 public key is 32 bytes");
    // snow's Dh keeps a copy of the secret; overwrite it before it is dropped.
    dh.set(&[0u8; KEY_LEN]);
    public
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_display_and_serde() {
        let id = Identity::generate().unwrap();
        let key = *id.public();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!("zz".parse::<PublicKey>().is_err());
        assert!(text[..62].parse::<PublicKey>().is_err());
    }

    #[test]
    fn fingerprint_is_stable_short_and_case_insensitive() {
        // X25519's RFC 7748 test vector: Alice's secret and public keys.
        let secret: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let id = Identity::from_secret_bytes(Zeroizing::new(secret));
        assert_eq!(
            id.public().to_string(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let fp = id.fingerprint();
        let text = fp.to_string();
        assert_eq!(text.len(), 26);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        // Pinned: a change here renames every worker.
        let digest = Sha256::digest(id.public().as_bytes());
        assert_eq!(fp.as_bytes()[..], digest[..16]);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            text.to_ascii_uppercase().parse::<Fingerprint>().unwrap(),
            fp
        );
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert!(text[..25].parse::<Fingerprint>().is_err());
        assert!("0".repeat(26).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = Identity::generate().unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode(id.secret_bytes())));
        assert!(shown.contains(&id.fingerprint().to_string()));
    }
}
