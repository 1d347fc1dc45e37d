//! The pairing code: six digits both sides show, equal on both iff they ran one handshake
//! with each other and not two with someone in the middle.
//!
//! A code taken from the handshake hash alone could be ground: a man in the middle answers
//! the initiator's ephemeral key with one of its own chosen among about a million until
//! the two handshakes' codes agree, a few seconds of X25519. So the code also covers two
//! nonces exchanged commit-then-reveal, as in Bluetooth's numeric comparison: the responder
//! commits to its nonce (in handshake message 2), the initiator then sends its nonce
//! (message 3), and only then does the responder reveal its own (the first transport
//! message). Each side's nonce is fixed before it sees the other's, so whatever a man in the
//! middle does, each of its two handshakes ends in a code it could not choose, and the two
//! agree with probability 10⁻⁶ per attempt.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::identity::{ParseError, serde_as_string};

/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 32;

/// Digits in a pairing code.
pub const DIGITS: usize = 6;

const MODULUS: u64 = 1_000_000;
const COMMIT_LABEL: &[u8] = b"offload pairing commitment v1\0";
const CODE_LABEL: &[u8] = b"offload pairing code v1\0";

/// The commitment the responder sends for its `nonce`: SHA-256 over a label and the nonce
/// (32 random bytes, so the commitment hides it).
pub(crate) fn commitment(nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMIT_LABEL)
        .chain_update(nonce)
        .finalize()
        .into()
}

/// Six decimal digits, shown with leading zeros ("042917"). Serializes (serde) as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingCode(u32);

impl PairingCode {
    /// The code of a handshake with hash `handshake_hash` and the two sides' nonces: SHA-256
    /// over a label, the hash and both nonces, its first 8 bytes as a big-endian number,
    /// modulo 10⁶ (the bias of 2⁶⁴ mod 10⁶ is below 10⁻¹³).
    pub(crate) fn derive(
        handshake_hash: &[u8],
        initiator_nonce: &[u8; NONCE_LEN],
        responder_nonce: &[u8; NONCE_LEN],
    ) -> Self {
        let digest = Sha256::new()
            .chain_update(CODE_LABEL)
            .chain_update((handshake_hash.len() as u64).to_be_bytes())
            .chain_update(handshake_hash)
            .chain_update(initiator_nonce)
            .chain_update(responder_nonce)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let code = u64::from_be_bytes(first) % MODULUS;
        PairingCode(u32::try_from(code).expect("below 10^6"))
    }

    /// The code as a number below 10⁶.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.0, width = DIGITS)
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairingCode({self})")
    }
}

impl FromStr for PairingCode {
    type Err = ParseError;

    /// Six digits; spaces and dashes between them are ignored ("042 917", "042-917").
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
        if digits.len() != DIGITS || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::PairingCode);
        }
        let value = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        Ok(PairingCode(value))
    }
}

serde_as_string!(PairingCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let code = PairingCode(42_917);
        assert_eq!(code.to_string(), "042917");
        for text in ["042917", "042 917", "042-917", " 042917"] {
            assert_eq!(text.parse::<PairingCode>().unwrap(), code, "{text}");
        }
        for bad in ["42917", "0429170", "04291a", "", "٠٤٢٩١٧"] {
            assert!(bad.parse::<PairingCode>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, "\"042917\"");
        assert_eq!(serde_json::from_str::<PairingCode>(&json).unwrap(), code);
    }

    #[test]
    fn every_input_changes_the_code() {
        let h = [7u8; 32];
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let code = PairingCode::derive(&h, &a, &b);
        assert_eq!(code, PairingCode::derive(&h, &a, &b));
        assert!(code.value() < 1_000_000);
        // A 10⁻⁶ chance each of a false failure: these inputs are fixed, so it never flakes.
        assert_ne!(code, PairingCode::derive(&[8u8; 32], &a, &b));
        assert_ne!(code, PairingCode::derive(&h, &b, &b));
        assert_ne!(code, PairingCode::derive(&h, &a, &a));
        assert_ne!(
            code,
            PairingCode::derive(&h, &b, &a),
            "the roles are not interchangeable"
        );
    }

    #[test]
    fn codes_spread_over_all_digits() {
        let mut seen_first_digit = [false; 10];
        for i in 0u8..=255 {
            let code = PairingCode::derive(&[i; 32], &[0; 32], &[0; 32]);
            seen_first_digit[(code.value() / 100_000) as usize] = true;
        }
        assert!(seen_first_digit.iter().all(|&s| s));
    }

    #[test]
    fn commitment_depends_on_the_nonce() {
        assert_ne!(commitment(&[0; 32]), commitment(&[1; 32]));
        assert_eq!(commitment(&[3; 32]), commitment(&[3; 32]));
    }
}
