//! Records: Noise transport messages with a 2-byte big-endian length prefix, each sealed
//! under the next nonce of its direction. A record's nonce is its position in the stream,
//! never sent, so a dropped, replayed or reordered record fails to open like a tampered one.

use snow::StatelessTransportState;

use crate::stream::StreamError;

/// Bytes of the length prefix before each handshake message and record.
pub const LEN_PREFIX: usize = 2;
/// The largest Noise message, and so the largest record body (ciphertext and tag).
pub const MAX_RECORD: usize = 65535;
/// Bytes of ChaCha20-Poly1305's tag.
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;

/// The first nonce that is never used: Noise reserves 2⁶⁴−1. A stream that gets there (after
/// 2⁶⁴−1 records, which no real connection reaches) fails with
/// [`StreamError::NonceExhausted`] rather than reuse a nonce.
const NONCE_LIMIT: u64 = u64::MAX;

/// One connection's two ciphers and their nonces.
pub(crate) struct Records {
    transport: StatelessTransportState,
    send_nonce: u64,
    recv_nonce: u64,
}

impl Records {
    pub(crate) fn new(transport: StatelessTransportState) -> Self {
        Records {
            transport,
            send_nonce: 0,
            recv_nonce: 0,
        }
    }

    /// Seals `plain` (at most [`MAX_RECORD_PLAINTEXT`] bytes) as one record, prefix included,
    /// at the start of `wire` (at least `LEN_PREFIX + plain.len() + TAG_LEN` bytes); returns
    /// the record's length.
    pub(crate) fn seal(&mut self, plain: &[u8], wire: &mut [u8]) -> Result<usize, StreamError> {
        debug_assert!(plain.len() <= MAX_RECORD_PLAINTEXT);
        if self.send_nonce == NONCE_LIMIT {
            return Err(StreamError::NonceExhausted);
        }
        let body = self
            .transport
            .write_message(self.send_nonce, plain, &mut wire[LEN_PREFIX..])
            .map_err(StreamError::Noise)?;
        let prefix = u16::try_from(body).map_err(|_| StreamError::Noise(snow::Error::Input))?;
        wire[..LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
        self.send_nonce += 1;
        Ok(LEN_PREFIX + body)
    }

    /// Opens one record body (the bytes after its prefix) into `plain` (at least
    /// `body.len() - TAG_LEN` bytes); returns the plaintext's length.
    pub(crate) fn open(&mut self, body: &[u8], plain: &mut [u8]) -> Result<usize, StreamError> {
        if body.len() < TAG_LEN {
            return Err(StreamError::Tampered);
        }
        if self.recv_nonce == NONCE_LIMIT {
            return Err(StreamError::NonceExhausted);
        }
        let n = self
            .transport
            .read_message(self.recv_nonce, body, plain)
            .map_err(|_| StreamError::Tampered)?;
        self.recv_nonce += 1;
        Ok(n)
    }

    /// Test hook: starts both directions at `nonce`, to reach the nonce limit.
    #[cfg(test)]
    pub(crate) fn set_nonces(&mut self, nonce: u64) {
        self.send_nonce = nonce;
        self.recv_nonce = nonce;
    }

    /// Test hook: records sealed so far.
    #[cfg(test)]
    pub(crate) fn sent(&self) -> u64 {
        self.send_nonce
    }
}
