//! SecureStream over real TCP loopback: data both ways, frames unchanged, and every kind of
//! damage to the records is a typed error that kills the stream.

mod common;

use common::{Damage, STEP, damaged_pair, pattern, secure_pair};
use offload_secure::{MAX_RECORD_PLAINTEXT, SecureStream, StreamError};
use offload_shared::protocol::{Limits, frame};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until an error, which it returns; panics on a clean end of stream.
async fn read_error<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Error {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(STEP, r.read(&mut buf))
            .await
            .expect("read hangs")
        {
            Ok(0) => panic!("a clean end of stream where an error was due"),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

fn stream_error(e: &std::io::Error) -> &StreamError {
    StreamError::of(e).unwrap_or_else(|| panic!("not a StreamError: {e}"))
}

/// Sends three records from the initiator and closes.
async fn send_three(a: &mut SecureStream<TcpStream>) {
    for word in [&b"first"[..], b"second", b"third"] {
        // The proxy may have cut the connection: the writer's errors are not what is tested.
        let _ = a.write_all(word).await;
        let _ = a.flush().await;
    }
    let _ = a.shutdown().await;
}

#[tokio::test]
async fn bytes_arrive_and_shutdown_is_a_clean_end() {
    let ((mut a, _), (mut b, _)) = secure_pair().await;
    a.write_all(b"hello").await.unwrap();
    a.flush().await.unwrap();
    let mut got = [0u8; 5];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    b.write_all(b"back").await.unwrap();
    b.shutdown().await.unwrap();
    let mut back = Vec::new();
    a.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"back");
    // Half-closed: a can still write, b can still read.
    a.write_all(b" world").await.unwrap();
    a.shutdown().await.unwrap();
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b" world");
    assert_eq!(
        b.read(&mut [0u8; 8]).await.unwrap(),
        0,
        "end of stream stays the end"
    );
}

#[tokio::test]
async fn frames_run_unchanged_through_it() {
    let ((mut a, _), (mut b, _)) = secure_pair().await;
    let payload = pattern(7, 3 * MAX_RECORD_PLAINTEXT + 11);
    let msg = serde_json::json!({"Job": {"id": 42, "argv": ["cc", "-c", "x.c"]}});
    frame::write_frame(&mut a, &msg, &payload, Limits::DEFAULT)
        .await
        .unwrap();
    frame::write_frame(&mut a, &msg, &[], Limits::DEFAULT)
        .await
        .unwrap();
    a.shutdown().await.unwrap();
    let (got, body): (serde_json::Value, _) = frame::read_frame(&mut b, Limits::DEFAULT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got, body), (msg.clone(), payload));
    let (got, body): (serde_json::Value, _) = frame::read_frame(&mut b, Limits::DEFAULT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got, body.len()), (msg, 0));
    assert!(
        frame::read_frame::<_, serde_json::Value>(&mut b, Limits::DEFAULT)
            .await
            .unwrap()
            .is_none()
    );
}

/// Each side writes `LEN` bytes while it reads the other's, through `tokio::io::split`.
#[tokio::test]
async fn large_transfers_both_ways_at_once_through_split() {
    // Debug builds seal about 1 MB/s: there, 4 MiB (65 records each way, enough to fill both
    // sockets' buffers, so each side writes while its peer is blocked writing too).
    const LEN: usize = if cfg!(debug_assertions) {
        4 << 20
    } else {
        64 << 20
    };
    let ((a, _), (b, _)) = secure_pair().await;
    let run = |stream: SecureStream<TcpStream>, seed: u64, peer_seed: u64| async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let write = tokio::spawn(async move {
            let data = pattern(seed, LEN);
            // Uneven writes, to cross record boundaries every way.
            for chunk in data.chunks(100_003) {
                writer.write_all(chunk).await.unwrap();
            }
            writer.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(LEN);
        reader.read_to_end(&mut got).await.unwrap();
        write.await.unwrap();
        assert_eq!(got.len(), LEN);
        assert_eq!(
            Sha256::digest(&got),
            Sha256::digest(pattern(peer_seed, LEN))
        );
    };
    let both = async { tokio::join!(tokio::spawn(run(a, 1, 2)), tokio::spawn(run(b, 2, 1))) };
    let (x, y) = tokio::time::timeout(STEP * 4, both)
        .await
        .expect("transfer hangs");
    x.unwrap();
    y.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_a_record_is_tampering() {
    // Record 0 of the initiator is message 2 through the proxy: "first", 2 + 5 + 16 bytes.
    for offset in [2, 3, 6, 7, 8, 15, 22] {
        let (mut a, mut b) = damaged_pair(Damage::Flip { message: 2, offset }).await;
        send_three(&mut a).await;
        let err = read_error(&mut b).await;
        assert!(
            matches!(stream_error(&err), StreamError::Tampered),
            "offset {offset}: {err}"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // Dead from then on, for reads and writes alike.
        let again = b.read(&mut [0u8; 8]).await.unwrap_err();
        assert!(
            matches!(stream_error(&again), StreamError::Failed),
            "{again}"
        );
        let write = b.write_all(b"x").await.unwrap_err();
        assert!(
            matches!(stream_error(&write), StreamError::Failed),
            "{write}"
        );
    }
}

#[tokio::test]
async fn a_flipped_length_prefix_is_tampering_or_truncation() {
    for offset in [0, 1] {
        let (mut a, mut b) = damaged_pair(Damage::Flip { message: 2, offset }).await;
        send_three(&mut a).await;
        let err = read_error(&mut b).await;
        // A shorter length cuts the record (it fails to open); a longer one swallows the
        // next records and the close, and the connection ends inside it.
        let e = stream_error(&err);
        assert!(
            matches!(e, StreamError::Tampered | StreamError::Truncated),
            "offset {offset}: {err}"
        );
    }
}

#[tokio::test]
async fn dropped_duplicated_and_reordered_records_are_tampering() {
    for damage in [
        Damage::Drop(2),
        Damage::Duplicate(2),
        Damage::Swap(2),
        Damage::Drop(3),
    ] {
        let (mut a, mut b) = damaged_pair(damage).await;
        send_three(&mut a).await;
        let err = read_error(&mut b).await;
        assert!(
            matches!(stream_error(&err), StreamError::Tampered),
            "{damage:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_cut_connection_is_truncation_not_an_end() {
    // Messages 2, 3, 4 are the three records, 5 the close: cut inside a record, at a
    // record boundary (the whole of record 3 sent, then nothing), and before the close.
    for (message, bytes) in [(2, 1), (2, 10), (3, 0), (4, 0), (5, 0), (5, 17)] {
        let (mut a, mut b) = damaged_pair(Damage::Cut { message, bytes }).await;
        send_three(&mut a).await;
        let err = read_error(&mut b).await;
        assert!(
            matches!(stream_error(&err), StreamError::Truncated),
            "cut {message}/{bytes}: {err}"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
    // Undamaged, the same exchange ends cleanly.
    let (mut a, mut b) = damaged_pair(Damage::None).await;
    send_three(&mut a).await;
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"firstsecondthird");
}

#[tokio::test]
async fn a_peer_that_drops_the_connection_without_closing_is_truncation() {
    let ((mut a, _), (mut b, _)) = secure_pair().await;
    a.write_all(b"partial").await.unwrap();
    a.flush().await.unwrap();
    drop(a);
    let mut got = [0u8; 7];
    b.read_exact(&mut got).await.unwrap();
    let err = read_error(&mut b).await;
    assert!(
        matches!(stream_error(&err), StreamError::Truncated),
        "{err}"
    );
}
