//! Payloads: several byte strings concatenated and compressed with zstd. The sizes travel
//! in the frame's header; [`unpack`] checks that the bytes match them exactly.

use std::io::Read;

/// zstd level: fast enough that compressing never costs more than the network saves.
const LEVEL: i32 = 1;

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not a zstd stream, or a corrupt one.
    #[error("corrupt payload: {0}")]
    Corrupt(std::io::Error),
    /// The sizes in the header add up to more than the limit.
    #[error("payload announces {0} bytes, more than the limit")]
    TooLarge(u64),
    /// The bytes do not match the announced sizes.
    #[error("payload holds {got} bytes where the header announces {want}")]
    SizeMismatch {
        /// Announced.
        want: u64,
        /// Found (at most one past the announced size).
        got: u64,
    },
}

/// Compresses the concatenation of `parts`.
pub fn pack<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut raw = Vec::new();
    for p in parts {
        raw.extend_from_slice(p);
    }
    if raw.is_empty() {
        return Vec::new();
    }
    // Compressing from memory into memory cannot fail.
    zstd::bulk::compress(&raw, LEVEL).unwrap_or_default()
}

/// Decompresses `payload` and splits it at `sizes`; refuses more than `max_total` bytes.
pub fn unpack(payload: &[u8], sizes: &[u64], max_total: u64) -> Result<Vec<Vec<u8>>, PayloadError> {
    let want: u64 = sizes
        .iter()
        .try_fold(0u64, |a, &s| a.checked_add(s))
        .unwrap_or(u64::MAX);
    if want > max_total {
        return Err(PayloadError::TooLarge(want));
    }
    let raw = if payload.is_empty() {
        Vec::new()
    } else {
        let mut dec = zstd::stream::read::Decoder::new(payload).map_err(PayloadError::Corrupt)?;
        let mut raw = Vec::with_capacity(want as usize);
        // Read at most one byte more than announced, to detect an oversized stream
        // without letting it grow without bound.
        (&mut dec)
            .take(want + 1)
            .read_to_end(&mut raw)
            .map_err(PayloadError::Corrupt)?;
        raw
    };
    if raw.len() as u64 != want {
        return Err(PayloadError::SizeMismatch {
            want,
            got: raw.len() as u64,
        });
    }
    let mut out = Vec::with_capacity(sizes.len());
    let mut at = 0usize;
    for &s in sizes {
        let s = s as usize;
        out.push(raw[at..at + s].to_vec());
        at += s;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatches() {
        let p = pack([&b"hello"[..], b"", b"world!"]);
        let parts = unpack(&p, &[5, 0, 6], 1 << 20).unwrap();
        assert_eq!(parts, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
        assert!(matches!(
            unpack(&p, &[5, 0, 5], 1 << 20),
            Err(PayloadError::SizeMismatch { want: 10, got: 11 })
        ));
        assert!(matches!(
            unpack(&p, &[5, 0, 7], 1 << 20),
            Err(PayloadError::SizeMismatch { want: 12, got: 11 })
        ));
        assert!(matches!(
            unpack(&p, &[5, 0, 6], 4),
            Err(PayloadError::TooLarge(11))
        ));
        assert!(matches!(
            unpack(b"not zstd", &[3], 100),
            Err(PayloadError::Corrupt(_))
        ));
        assert!(unpack(&pack([]), &[], 0).unwrap().is_empty());
    }
}
