//! What the secure channel costs on loopback TCP: handshake time per connection, bulk
//! throughput one way and both ways at once, and a small request's round trip, each next to
//! plain TCP.
//!
//! ```text
//! cargo run --release -p offload-secure --example bench [MiB] [handshakes] [round trips]
//! ```
//! (defaults: 256 MiB, 300 handshakes, 5000 round trips of 200 bytes).
//!
//! Measured on the project's 2-core machine (AVX2; load average 4 to 7 from other builds,
//! so the spread is mostly theirs), six runs:
//!
//! | what | plain TCP | secure |
//! | --- | --- | --- |
//! | connect (median; secure: connect + handshake) | 61–79 µs | 0.72–0.97 ms (p95 1.0–5.2 ms) |
//! | 256 MiB one way | 1.2–2.9 GiB/s | 209–475 MiB/s |
//! | 256 MiB each way at once (sum of both) | 1.0–2.6 GiB/s | 197–451 MiB/s |
//! | 200-byte request and answer (mean) | 23–82 µs | 29–75 µs |
//!
//! On a quiet day (2026-12-03, load 0.3; plain and secure alternating): handshake 0.61 ms,
//! 837 MiB/s one way, a 200-byte exchange 20 → 60 µs, a job-shaped exchange (18 KiB out,
//! 6 KiB back) 44 → 109 µs. `docs/BENCHMARKS.md` has the end-to-end cost.
//!
//! A profile of the one-way transfer: ChaCha20 and Poly1305 (the RustCrypto AVX2 backends)
//! take about half the time, the kernel's socket copies most of the rest, `memmove` 4%.

use std::time::{Duration, Instant};

use offload_secure::{Identity, initiate, respond};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CHUNK: usize = 1 << 20;

async fn tcp_pair(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let (client, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    let (client, server) = (client?, accepted?.0);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// Writes `total` bytes in 1 MiB writes, then shuts down.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, total: usize) -> Result<()> {
    let chunk = vec![0x5au8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK);
        w.write_all(&chunk[..n]).await?;
        left -= n;
    }
    w.shutdown().await?;
    Ok(())
}

/// Reads to the end; returns the byte count.
async fn drain<R: AsyncRead + Unpin>(r: &mut R) -> Result<usize> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

async fn one_way<S>(mut a: S, mut b: S, total: usize) -> Result<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let reader = tokio::spawn(async move { drain(&mut b).await });
    send(&mut a, total).await?;
    let got = reader.await??;
    assert_eq!(got, total);
    Ok(started.elapsed())
}

async fn both_ways<S>(a: S, b: S, total: usize) -> Result<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in [a, b] {
        let (mut r, mut w) = tokio::io::split(s);
        tasks.push(tokio::spawn(async move {
            send(&mut w, total).await.map(|()| 0)
        }));
        tasks.push(tokio::spawn(async move { drain(&mut r).await }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// `n` exchanges of a `req`-byte request and an `ans`-byte answer; returns the mean.
async fn round_trips<S>(mut a: S, mut b: S, n: u32, req: usize, ans: usize) -> Result<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; req];
        let answer = vec![9u8; ans];
        for _ in 0..n {
            b.read_exact(&mut buf).await?;
            b.write_all(&answer).await?;
            b.flush().await?;
        }
        Result::Ok(())
    });
    let msg = vec![7u8; req];
    let mut buf = vec![0u8; ans];
    let started = Instant::now();
    for _ in 0..n {
        a.write_all(&msg).await?;
        a.flush().await?;
        a.read_exact(&mut buf).await?;
    }
    let took = started.elapsed();
    echo.await??;
    Ok(took / n)
}

fn mib_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<std::result::Result<_, _>>()?;
    let mib = args.first().copied().unwrap_or(256);
    let handshakes = args.get(1).copied().unwrap_or(300);
    let trips = u32::try_from(args.get(2).copied().unwrap_or(5000))?;
    let total = mib << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (host, worker) = (Identity::generate()?, Identity::generate()?);

    let mut plain_connect = Vec::new();
    let mut secure_connect = Vec::new();
    for _ in 0..handshakes {
        let started = Instant::now();
        let (client, server) = tcp_pair(&listener).await?;
        plain_connect.push(started.elapsed());
        let (x, y) = tokio::join!(initiate(client, &host), respond(server, &worker));
        x?;
        y?;
        secure_connect.push(started.elapsed());
    }
    plain_connect.sort();
    secure_connect.sort();
    println!(
        "connect, {handshakes} times: TCP median {:?}; TCP + handshake median {:?}, p95 {:?}, max {:?}",
        percentile(&plain_connect, 0.5),
        percentile(&secure_connect, 0.5),
        percentile(&secure_connect, 0.95),
        secure_connect.last().copied().unwrap_or_default(),
    );

    let (a, b) = tcp_pair(&listener).await?;
    let plain = one_way(a, b, total).await?;
    let (a, b) = secure_pair(&listener, &host, &worker).await?;
    let secure = one_way(a, b, total).await?;
    println!(
        "{mib} MiB one way: TCP {:.0} MiB/s ({plain:.2?}); secure {:.0} MiB/s ({secure:.2?})",
        mib_s(total, plain),
        mib_s(total, secure)
    );

    let (a, b) = tcp_pair(&listener).await?;
    let plain = both_ways(a, b, total).await?;
    let (a, b) = secure_pair(&listener, &host, &worker).await?;
    let secure = both_ways(a, b, total).await?;
    println!(
        "{mib} MiB each way at once: TCP {:.0} MiB/s ({plain:.2?}); secure {:.0} MiB/s ({secure:.2?}), both directions counted",
        mib_s(2 * total, plain),
        mib_s(2 * total, secure)
    );

    // A 200-byte exchange, and one shaped like a compile job (what a Lua -O2 build sends
    // and gets back per job, on average: 18 KiB of request frames, 6 KiB of results).
    for (what, req, ans) in [
        ("200-byte", 200, 200),
        ("job-shaped 18 KiB/6 KiB", 18 << 10, 6 << 10),
    ] {
        let (mut plain, mut secure) = (Vec::new(), Vec::new());
        // Alternating, so that a change in the machine's load hits both alike.
        for _ in 0..5 {
            let (a, b) = tcp_pair(&listener).await?;
            plain.push(round_trips(a, b, trips / 5, req, ans).await?);
            let (a, b) = secure_pair(&listener, &host, &worker).await?;
            secure.push(round_trips(a, b, trips / 5, req, ans).await?);
        }
        plain.sort();
        secure.sort();
        let (p, s) = (percentile(&plain, 0.5), percentile(&secure, 0.5));
        println!(
            "{what} round trip, median of 5 means of {}: TCP {p:.1?}; secure {s:.1?}; the channel adds {:.1?}",
            trips / 5,
            s.saturating_sub(p)
        );
    }
    Ok(())
}

async fn secure_pair(
    listener: &TcpListener,
    host: &Identity,
    worker: &Identity,
) -> Result<(
    offload_secure::SecureStream<TcpStream>,
    offload_secure::SecureStream<TcpStream>,
)> {
    let (client, server) = tcp_pair(listener).await?;
    let (x, y) = tokio::join!(initiate(client, host), respond(server, worker));
    Ok((x?.0, y?.0))
}
