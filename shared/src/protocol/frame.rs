//! Length-prefixed frames: `u32 header length | u32 payload length | header | payload`,
//! big-endian lengths, a JSON header and opaque payload bytes. Every length is checked
//! against [`Limits`] before anything is allocated.

use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size limits for one frame.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON header accepted.
    pub max_header: u32,
    /// Largest payload accepted.
    pub max_payload: u32,
}

impl Limits {
    /// The limits both sides use by default: 16 MiB of header, 512 MiB of payload.
    pub const DEFAULT: Limits = Limits {
        max_header: 16 << 20,
        max_payload: 512 << 20,
    };
}

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream inside a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// A length over the limit.
    #[error("frame {what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// "header" or "payload".
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A header that is empty or not a valid message.
    #[error("malformed frame header: {0}")]
    Malformed(String),
}

const PREFIX: usize = 8;

fn check_lengths(prefix: [u8; PREFIX], limits: Limits) -> Result<(usize, usize), FrameError> {
    let header = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let payload = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if header == 0 {
        return Err(FrameError::Malformed("empty header".into()));
    }
    if header > limits.max_header {
        return Err(FrameError::TooLarge {
            what: "header",
            len: header.into(),
            limit: limits.max_header.into(),
        });
    }
    if payload > limits.max_payload {
        return Err(FrameError::TooLarge {
            what: "payload",
            len: payload.into(),
            limit: limits.max_payload.into(),
        });
    }
    Ok((header as usize, payload as usize))
}

fn encode<M: Serialize>(msg: &M, payload: &[u8], limits: Limits) -> Result<Vec<u8>, FrameError> {
    let header = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let too_large = |what, len: usize, limit: u32| FrameError::TooLarge {
        what,
        len: len as u64,
        limit: limit.into(),
    };
    let hlen = u32::try_from(header.len())
        .ok()
        .filter(|&l| l <= limits.max_header)
        .ok_or_else(|| too_large("header", header.len(), limits.max_header))?;
    let plen = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= limits.max_payload)
        .ok_or_else(|| too_large("payload", payload.len(), limits.max_payload))?;
    let mut buf = Vec::with_capacity(PREFIX + header.len() + payload.len());
    buf.extend_from_slice(&hlen.to_be_bytes());
    buf.extend_from_slice(&plen.to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    Ok(buf)
}

fn decode<M: DeserializeOwned>(header: &[u8]) -> Result<M, FrameError> {
    serde_json::from_slice(header).map_err(|e| FrameError::Malformed(e.to_string()))
}

fn eof_is_truncation(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

/// Bytes allocated ahead of arriving data: a peer that announces a large frame and sends
/// nothing costs this much, not the announced length.
const GROW_STEP: usize = 64 << 10;

/// Reads exactly `len` bytes into a buffer that grows as they arrive.
async fn read_growing<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(len.min(GROW_STEP));
    let got = (&mut *r).take(len as u64).read_to_end(&mut buf).await?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    Ok(buf)
}

/// Blocking [`read_growing`].
fn read_growing_blocking<R: Read>(r: &mut R, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(len.min(GROW_STEP));
    let got = (&mut *r).take(len as u64).read_to_end(&mut buf)?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W, M>(
    w: &mut W,
    msg: &M,
    payload: &[u8],
    limits: Limits,
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let buf = encode(msg, payload, limits)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R, M>(r: &mut R, limits: Limits) -> Result<Option<(M, Vec<u8>)>, FrameError>
where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let Some(started) = FrameStart::wait(r).await? else {
        return Ok(None);
    };
    let lengths = started.lengths(r, limits).await?;
    Ok(Some(lengths.body(r).await?))
}

/// The first bytes of a frame, read: for a reader that waits for a frame without a time
/// limit and then gives the rest of it one ([`read_frame`] in steps).
#[derive(Debug, Clone, Copy)]
pub struct FrameStart {
    prefix: [u8; PREFIX],
    got: usize,
}

/// A frame's lengths, read and checked against the limits.
#[derive(Debug, Clone, Copy)]
pub struct FrameLengths {
    /// Bytes of JSON header.
    pub header: usize,
    /// Bytes of payload.
    pub payload: usize,
}

impl FrameStart {
    /// Waits for the next frame's first bytes. `Ok(None)` is a clean end of stream.
    pub async fn wait<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<FrameStart>, FrameError> {
        let mut prefix = [0u8; PREFIX];
        let got = r.read(&mut prefix).await?;
        Ok((got > 0).then_some(FrameStart { prefix, got }))
    }

    /// Reads the rest of the lengths and checks them against `limits`.
    pub async fn lengths<R: AsyncRead + Unpin>(
        mut self,
        r: &mut R,
        limits: Limits,
    ) -> Result<FrameLengths, FrameError> {
        r.read_exact(&mut self.prefix[self.got..])
            .await
            .map_err(eof_is_truncation)?;
        let (header, payload) = check_lengths(self.prefix, limits)?;
        Ok(FrameLengths { header, payload })
    }
}

impl FrameLengths {
    /// Reads the header and the payload, in buffers that grow as the bytes arrive.
    pub async fn body<R, M>(self, r: &mut R) -> Result<(M, Vec<u8>), FrameError>
    where
        R: AsyncRead + Unpin,
        M: DeserializeOwned,
    {
        let header = read_growing(r, self.header).await?;
        let msg = decode(&header)?;
        let payload = read_growing(r, self.payload).await?;
        Ok((msg, payload))
    }
}

/// Blocking [`write_frame`], for the compiler wrapper.
pub fn write_frame_blocking<W: Write, M: Serialize>(
    w: &mut W,
    msg: &M,
    payload: &[u8],
    limits: Limits,
) -> Result<(), FrameError> {
    let buf = encode(msg, payload, limits)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Blocking [`read_frame`], for the compiler wrapper.
pub fn read_frame_blocking<R: Read, M: DeserializeOwned>(
    r: &mut R,
    limits: Limits,
) -> Result<Option<(M, Vec<u8>)>, FrameError> {
    let mut prefix = [0u8; PREFIX];
    let first = loop {
        match r.read(&mut prefix) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut prefix[first..])
        .map_err(eof_is_truncation)?;
    let (hlen, plen) = check_lengths(prefix, limits)?;
    let header = read_growing_blocking(r, hlen)?;
    let msg = decode(&header)?;
    let payload = read_growing_blocking(r, plen)?;
    Ok(Some((msg, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Message;
    use proptest::prelude::*;

    const SMALL: Limits = Limits {
        max_header: 1024,
        max_payload: 1024,
    };

    fn hello() -> Message {
        Message::Hello(crate::protocol::Hello {
            protocol: "offload".into(),
            version: 1,
            client: "test".into(),
        })
    }

    #[tokio::test]
    async fn round_trip_async_and_blocking() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &hello(), b"payload", SMALL)
            .await
            .unwrap();
        let mut r = &buf[..];
        let (m, p): (Message, _) = read_frame(&mut r, SMALL).await.unwrap().unwrap();
        assert_eq!(m, hello());
        assert_eq!(p, b"payload");
        assert!(
            read_frame::<_, Message>(&mut r, SMALL)
                .await
                .unwrap()
                .is_none()
        );
        let mut r = &buf[..];
        let (m, _): (Message, _) = read_frame_blocking(&mut r, SMALL).unwrap().unwrap();
        assert_eq!(m, hello());
    }

    /// A frame announcing the largest payload and sending a few bytes costs a small buffer,
    /// not the announced length, and ends as a truncation.
    #[tokio::test]
    async fn announced_lengths_are_not_allocated_up_front() {
        let mut bytes = encode(&hello(), b"", Limits::DEFAULT).unwrap();
        bytes[4..8].copy_from_slice(&Limits::DEFAULT.max_payload.to_be_bytes());
        bytes.extend_from_slice(b"only a few bytes");
        let err = read_frame::<_, Message>(&mut &bytes[..], Limits::DEFAULT)
            .await
            .expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated), "{err}");
        let blocking = read_frame_blocking::<_, Message>(&mut &bytes[..], Limits::DEFAULT)
            .expect_err("truncated");
        assert!(matches!(blocking, FrameError::Truncated), "{blocking}");
    }

    #[tokio::test]
    async fn malformed_frames_are_clear_errors() {
        let good = encode(&hello(), b"xy", SMALL).unwrap();
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut big_payload = good.clone();
        big_payload[4..8].copy_from_slice(&4096u32.to_be_bytes());
        let mut zero = good.clone();
        zero[0..4].copy_from_slice(&0u32.to_be_bytes());
        let mut garbage = good.clone();
        garbage[8] = b'!';
        let unknown = {
            let h = br#"{"type":"hello","body":{"protocol":"offload","version":1,"client":"x","extra":1}}"#;
            let mut v = (h.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&0u32.to_be_bytes());
            v.extend_from_slice(h);
            v
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("huge header", huge, "exceeds the limit"),
            ("huge payload", big_payload, "exceeds the limit"),
            ("empty header", zero, "empty header"),
            ("not json", garbage, "malformed"),
            ("unknown field", unknown, "unknown field"),
            (
                "truncated prefix",
                good[..5].to_vec(),
                "closed in the middle",
            ),
            (
                "truncated body",
                good[..good.len() - 1].to_vec(),
                "closed in the middle",
            ),
        ];
        for (name, bytes, want) in cases {
            let err = read_frame::<_, Message>(&mut &bytes[..], SMALL)
                .await
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
            let err = read_frame_blocking::<_, Message>(&mut &bytes[..], SMALL)
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name} (blocking): {err}");
        }
    }

    #[test]
    fn oversized_writes_are_refused() {
        let err = encode(&hello(), &[0u8; 2048], SMALL).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                what: "payload",
                ..
            }
        ));
    }

    /// Frames of every kind a peer sends first, encoded: the seeds the property tests
    /// mutate.
    fn seeds() -> Vec<Vec<u8>> {
        [
            hello(),
            Message::Cancel(crate::protocol::Cancel { job_id: 7 }),
            Message::Error(crate::protocol::ProtocolError {
                message: "x".into(),
            }),
            Message::PairRequest(crate::protocol::PairRequest {
                version: 5,
                host: "h".into(),
            }),
        ]
        .iter()
        .map(|m| encode(m, b"abc", SMALL).expect("encode"))
        .collect()
    }

    /// One input through both readers: a frame, the end, or a typed error, never a panic,
    /// and the same answer from each. Whether it was a frame.
    fn parse_both(input: &[u8]) -> bool {
        let blocking = read_frame_blocking::<_, Message>(&mut &input[..], SMALL);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let async_ = rt.block_on(read_frame::<_, Message>(&mut &input[..], SMALL));
        match (&blocking, &async_) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("the readers disagree: {blocking:?} vs {async_:?}"),
        }
        matches!(blocking, Ok(Some(_)))
    }

    /// A mutation of an encoded frame.
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: usize, bits: u8 },
        Cut { at: usize },
        Length { second: bool, value: u32 },
        Insert { at: usize, byte: u8 },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
            any::<usize>().prop_map(|at| Mutation::Cut { at }),
            (any::<bool>(), any::<u32>())
                .prop_map(|(second, value)| Mutation::Length { second, value }),
            (any::<usize>(), prop::sample::select(b"{}[]\",:0 ".to_vec()))
                .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        ]
    }

    fn apply(input: &mut Vec<u8>, m: &Mutation) {
        if input.is_empty() {
            return;
        }
        match *m {
            Mutation::Flip { at, bits } => {
                let i = at % input.len();
                input[i] ^= bits;
            }
            Mutation::Cut { at } => input.truncate(at % input.len()),
            Mutation::Length { second, value } => {
                let at = if second { 4 } else { 0 };
                if input.len() >= at + 4 {
                    input[at..at + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
            Mutation::Insert { at, byte } => {
                let i = at % (input.len() + 1);
                input.insert(i, byte);
            }
        }
    }

    proptest! {
        // A bounded run (CI): proptest picks new inputs each run; a failure prints the
        // minimal input.
        #![proptest_config(ProptestConfig {
            cases: 2_000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Valid frames with up to four mutations (bytes flipped, cut, lengths rewritten,
        /// JSON spliced): a frame or a typed error from both readers, never a panic or a
        /// buffer beyond the limits.
        #[test]
        fn mutated_frames_are_a_frame_or_an_error(
            seed in 0..4usize,
            mutations in prop::collection::vec(mutation(), 0..4),
        ) {
            let mut input = seeds()[seed].clone();
            for m in &mutations {
                apply(&mut input, m);
            }
            let parsed = parse_both(&input);
            if mutations.is_empty() {
                prop_assert!(parsed, "an unmutated frame did not parse");
            }
        }

        /// Noise, of any length up to a few frames' worth.
        #[test]
        fn random_bytes_are_a_frame_or_an_error(input in prop::collection::vec(any::<u8>(), 0..300)) {
            parse_both(&input);
        }

        /// Any message header and payload within the limits round-trips.
        #[test]
        fn frames_within_the_limits_round_trip(
            job_id in any::<u64>(),
            message in "\\PC{0,200}",
            payload in prop::collection::vec(any::<u8>(), 0..1024),
        ) {
            for m in [
                Message::Cancel(crate::protocol::Cancel { job_id }),
                Message::Error(crate::protocol::ProtocolError { message: message.clone() }),
            ] {
                let bytes = encode(&m, &payload, SMALL).expect("encode");
                let (got, p): (Message, _) = read_frame_blocking(&mut &bytes[..], SMALL)
                    .expect("read")
                    .expect("a frame");
                prop_assert_eq!(got, m);
                prop_assert_eq!(&p, &payload);
            }
        }
    }
}
