//! [`SecureStream`]: the encrypted byte stream after the handshake, an `AsyncRead +
//! AsyncWrite` that carries any protocol unchanged.
//!
//! Writes are buffered into records of up to 65519 bytes of plaintext (65535 on the wire
//! with the tag, plus the 2-byte length): a record goes out when it is full, on `flush`, or
//! on `shutdown`. So, as with a `BufWriter`, bytes not flushed are not sent. Reads pull as
//! many records as the socket has ready, up to 128 KiB per read call, and open a record
//! straight into the caller's buffer when it fits there.
//!
//! End of stream is authenticated: `shutdown` sends an empty record, the close, after which
//! the peer reads end of stream (`Ok(0)`). A connection that ends without the close, at a
//! record boundary or in the middle of one, reads as [`StreamError::Truncated`]. After any
//! error the stream is dead: every later call fails.

use std::cmp::min;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::record::{LEN_PREFIX, MAX_RECORD, MAX_RECORD_PLAINTEXT, Records, TAG_LEN};

/// What went wrong in a [`SecureStream`]. Reads and writes return it inside an
/// `io::Error`; [`StreamError::of`] gets it back.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A record failed authentication: tampered, corrupted, replayed, reordered or dropped
    /// (each record's nonce is its position).
    #[error("a record failed authentication: the stream was tampered with or corrupted")]
    Tampered,
    #[error("the connection ended without the peer's close: the stream was truncated")]
    Truncated,
    #[error("bytes followed the peer's close")]
    DataAfterClose,
    #[error("this stream has sent 2^64-1 records: its nonces are used up")]
    NonceExhausted,
    #[error("write after shutdown")]
    Shutdown,
    #[error("the stream failed earlier and is unusable")]
    Failed,
    /// A local Noise failure (not caused by the peer).
    #[error("noise: {0}")]
    Noise(#[source] snow::Error),
}

impl StreamError {
    /// The `StreamError` an I/O error from a [`SecureStream`] carries, if it carries one
    /// (else the error came from the underlying stream).
    pub fn of(e: &io::Error) -> Option<&StreamError> {
        e.get_ref()?.downcast_ref()
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            StreamError::Tampered | StreamError::DataAfterClose => io::ErrorKind::InvalidData,
            StreamError::Truncated => io::ErrorKind::UnexpectedEof,
            StreamError::Shutdown => io::ErrorKind::BrokenPipe,
            StreamError::NonceExhausted | StreamError::Failed | StreamError::Noise(_) => {
                io::ErrorKind::Other
            }
        }
    }
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// One record on the wire, prefix included, at the most.
const WIRE_RECORD: usize = LEN_PREFIX + MAX_RECORD;
/// The read buffer: two records, so one whole record always fits after compaction. With the
/// write side's two record buffers and the read side's plaintext buffer, a stream used both
/// ways holds about 320 KiB, allocated on first use.
const READ_BUF: usize = 2 * WIRE_RECORD;

/// An encrypted, authenticated stream over `S`, made by [`initiate`](crate::initiate) or
/// [`respond`](crate::respond). Split it with `tokio::io::split` to read and write at once.
pub struct SecureStream<S> {
    inner: S,
    records: Records,
    /// Plaintext written and not yet sealed.
    plain_out: Vec<u8>,
    /// One sealed record being written to `inner`: `wire_out[wire_pos..wire_len]` is left.
    wire_out: Vec<u8>,
    wire_pos: usize,
    wire_len: usize,
    /// The close record has been sealed: no more writes.
    close_sealed: bool,
    /// Bytes read from `inner`: `wire_in[in_start..in_end]` are not yet opened.
    wire_in: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// One opened record: `plain_in[plain_pos..plain_len]` is not yet read.
    plain_in: Vec<u8>,
    plain_pos: usize,
    plain_len: usize,
    peer_closed: bool,
    failed: bool,
}

impl<S> SecureStream<S> {
    pub(crate) fn new(inner: S, records: Records) -> Self {
        SecureStream {
            inner,
            records,
            plain_out: Vec::new(),
            wire_out: Vec::new(),
            wire_pos: 0,
            wire_len: 0,
            close_sealed: false,
            wire_in: Vec::new(),
            in_start: 0,
            in_end: 0,
            plain_in: Vec::new(),
            plain_pos: 0,
            plain_len: 0,
            peer_closed: false,
            failed: false,
        }
    }

    /// The underlying stream (for its addresses; reading or writing it directly would
    /// break the channel).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn fail(&mut self, e: impl Into<io::Error>) -> io::Error {
        self.failed = true;
        e.into()
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(StreamError::Failed.into());
        }
        Ok(())
    }

    /// Seals `plain` into the (empty) outgoing record buffer.
    fn seal(&mut self, plain: Option<&[u8]>) -> io::Result<()> {
        debug_assert_eq!(self.wire_pos, self.wire_len);
        if self.wire_out.is_empty() {
            self.wire_out = vec![0; WIRE_RECORD];
        }
        let plain = plain.unwrap_or(&self.plain_out);
        match self.records.seal(plain, &mut self.wire_out) {
            Ok(n) => {
                self.wire_pos = 0;
                self.wire_len = n;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Opens the next whole record in the read buffer, if there is one: straight into
    /// `out` when its plaintext fits there, else into `plain_in`.
    fn open_buffered(&mut self, out: &mut ReadBuf<'_>) -> Result<bool, StreamError> {
        let buffered = &self.wire_in[self.in_start..self.in_end];
        let Some(prefix) = buffered.first_chunk::<LEN_PREFIX>() else {
            return Ok(false);
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        let Some(body) = buffered.get(LEN_PREFIX..LEN_PREFIX + len) else {
            return Ok(false);
        };
        let plain_len = len.saturating_sub(TAG_LEN);
        let n = if plain_len > 0 && plain_len <= out.remaining() {
            let n = self
                .records
                .open(body, out.initialize_unfilled_to(plain_len))?;
            out.advance(n);
            n
        } else {
            if self.plain_in.is_empty() {
                self.plain_in = vec![0; MAX_RECORD_PLAINTEXT];
            }
            let n = self.records.open(body, &mut self.plain_in)?;
            self.plain_pos = 0;
            self.plain_len = n;
            n
        };
        self.in_start += LEN_PREFIX + len;
        if n == 0 {
            self.peer_closed = true;
            if self.in_start != self.in_end {
                return Err(StreamError::DataAfterClose);
            }
        }
        Ok(true)
    }
}

impl<S: AsyncWrite + Unpin> SecureStream<S> {
    /// Writes the pending sealed record to `inner`, all of it.
    fn poll_write_wire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wire_pos < self.wire_len {
            let pending = &self.wire_out[self.wire_pos..self.wire_len];
            match ready!(Pin::new(&mut self.inner).poll_write(cx, pending)) {
                Ok(0) => return Poll::Ready(Err(self.fail(io::ErrorKind::WriteZero))),
                Ok(n) => self.wire_pos += n,
                Err(e) => return Poll::Ready(Err(self.fail(e))),
            }
        }
        self.wire_pos = 0;
        self.wire_len = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals what is buffered and writes every sealed byte to `inner` (without flushing it).
    fn poll_write_all_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write_wire(cx))?;
            if self.plain_out.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.seal(None)?;
            self.plain_out.clear();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SecureStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_usable()?;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        loop {
            if this.plain_pos < this.plain_len {
                let n = min(buf.remaining(), this.plain_len - this.plain_pos);
                buf.put_slice(&this.plain_in[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            match this.open_buffered(buf) {
                // Opened straight into `buf`: one record per call.
                Ok(true) if buf.filled().len() > before => return Poll::Ready(Ok(())),
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            }
            // No whole record buffered: make room for one, then read.
            if this.wire_in.is_empty() {
                this.wire_in = vec![0; READ_BUF];
            }
            if this.in_start == this.in_end {
                (this.in_start, this.in_end) = (0, 0);
            } else if READ_BUF - this.in_end < WIRE_RECORD {
                this.wire_in.copy_within(this.in_start..this.in_end, 0);
                this.in_end -= this.in_start;
                this.in_start = 0;
            }
            let mut space = ReadBuf::new(&mut this.wire_in[this.in_end..]);
            match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut space)) {
                Ok(()) if space.filled().is_empty() => {
                    return Poll::Ready(Err(this.fail(StreamError::Truncated)));
                }
                Ok(()) => this.in_end += space.filled().len(),
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SecureStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_usable()?;
        if this.close_sealed {
            return Poll::Ready(Err(StreamError::Shutdown.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            ready!(this.poll_write_wire(cx))?;
            if this.plain_out.len() == MAX_RECORD_PLAINTEXT {
                this.seal(None)?;
                this.plain_out.clear();
                continue;
            }
            if this.plain_out.is_empty() && buf.len() >= MAX_RECORD_PLAINTEXT {
                // A whole record's worth: sealed straight from the caller's buffer.
                this.seal(Some(&buf[..MAX_RECORD_PLAINTEXT]))?;
                return Poll::Ready(Ok(MAX_RECORD_PLAINTEXT));
            }
            if this.plain_out.capacity() == 0 {
                this.plain_out.reserve_exact(MAX_RECORD_PLAINTEXT);
            }
            let n = min(buf.len(), MAX_RECORD_PLAINTEXT - this.plain_out.len());
            this.plain_out.extend_from_slice(&buf[..n]);
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_usable()?;
        ready!(this.poll_write_all_records(cx))?;
        Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map_err(|e| this.fail(e))
    }

    /// Sends what is buffered, then the close record, then shuts `inner` down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_usable()?;
        if !this.close_sealed {
            ready!(this.poll_write_all_records(cx))?;
            this.seal(Some(&[]))?;
            this.close_sealed = true;
        }
        ready!(this.poll_write_wire(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx)).map_err(|e| this.fail(e))?;
        Pin::new(&mut this.inner)
            .poll_shutdown(cx)
            .map_err(|e| this.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, initiate, respond};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    async fn pair() -> (SecureStream<DuplexStream>, SecureStream<DuplexStream>) {
        let (a, b) = duplex(1 << 20);
        let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (x, y) = tokio::join!(initiate(a, &ia), respond(b, &ib));
        (x.unwrap().0, y.unwrap().0)
    }

    #[tokio::test]
    async fn nonce_exhaustion_is_an_error_not_a_reuse() {
        let (mut a, mut b) = pair().await;
        a.records.set_nonces(u64::MAX - 1);
        b.records.set_nonces(u64::MAX - 1);
        a.write_all(b"last").await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"last");
        a.write_all(b"one too many").await.unwrap();
        let err = a.flush().await.unwrap_err();
        assert!(
            matches!(StreamError::of(&err), Some(StreamError::NonceExhausted)),
            "{err}"
        );
        let err = a.write_all(b"x").await.unwrap_err();
        assert!(
            matches!(StreamError::of(&err), Some(StreamError::Failed)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn writes_are_buffered_until_flush_and_cut_into_records() {
        let (mut a, mut b) = pair().await;
        let start = a.records_sent();
        for _ in 0..1000 {
            a.write_all(b"0123456789").await.unwrap();
        }
        assert_eq!(a.records_sent(), start, "nothing is sealed before a flush");
        a.flush().await.unwrap();
        assert_eq!(
            a.records_sent(),
            start + 1,
            "10 000 small writes made one record"
        );
        let big = vec![7u8; 3 * MAX_RECORD_PLAINTEXT + 5];
        a.write_all(&big).await.unwrap();
        a.shutdown().await.unwrap();
        assert_eq!(
            a.records_sent(),
            start + 1 + 4 + 1,
            "three full records, the rest, the close"
        );
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 10_000 + big.len());
        let err = a.write_all(b"x").await.unwrap_err();
        assert!(
            matches!(StreamError::of(&err), Some(StreamError::Shutdown)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reads_of_any_size_see_the_same_bytes() {
        let data: Vec<u8> = (0..3 * MAX_RECORD_PLAINTEXT + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        for size in [
            1,
            7,
            MAX_RECORD_PLAINTEXT - 1,
            MAX_RECORD_PLAINTEXT,
            100_000,
        ] {
            let (mut a, mut b) = pair().await;
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                a.write_all(&sent[..1000]).await.unwrap();
                a.flush().await.unwrap();
                a.write_all(&sent[1000..]).await.unwrap();
                a.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = b.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            writer.await.unwrap();
            assert!(got == data, "read size {size}");
        }
    }

    #[tokio::test]
    async fn bytes_after_the_close_are_an_error() {
        let (mut a, mut b) = pair().await;
        let mut wire = vec![0u8; WIRE_RECORD];
        let n = a.records.seal(&[], &mut wire).unwrap();
        wire.truncate(n);
        wire.extend_from_slice(b"more");
        a.inner.write_all(&wire).await.unwrap();
        let err = b.read(&mut [0u8; 8]).await.unwrap_err();
        assert!(
            matches!(StreamError::of(&err), Some(StreamError::DataAfterClose)),
            "{err}"
        );
    }

    impl<S> SecureStream<S> {
        fn records_sent(&self) -> u64 {
            self.records.sent()
        }
    }
}
