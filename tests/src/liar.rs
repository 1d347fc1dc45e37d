//! A worker that lies: a proxy with a key of its own in front of a real worker, relaying
//! every frame both ways (it ends the host's secure channel and opens its own to the
//! worker as the tests' host), except that the result of every job whose command mentions
//! the bait comes back with the last byte of its last output changed (sizes kept, the
//! payload compressed again: only a comparison of the bytes shows it). What `offload build --verify` must catch.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use offload_secure::{Fingerprint, Identity};
use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::{Limits, Message, payload};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The proxy; it runs until dropped (its runtime thread ends with the test process).
pub struct LyingWorker {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    lied: Arc<Mutex<Vec<u64>>>,
    _runtime: std::thread::JoinHandle<()>,
}

impl LyingWorker {
    /// Listens on loopback, relaying to `worker` and lying about jobs whose argv has an
    /// argument containing `bait`.
    pub fn start(worker: SocketAddr, bait: &str) -> LyingWorker {
        let identity: &'static Identity =
            Box::leak(Box::new(Identity::generate().expect("a key for the liar")));
        let fingerprint = identity.fingerprint();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let lied = Arc::new(Mutex::new(Vec::new()));
        let (bait, told) = (bait.to_owned(), lied.clone());
        let runtime = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                while let Ok((host, _)) = listener.accept().await {
                    let (bait, told) = (bait.clone(), told.clone());
                    tokio::spawn(async move {
                        let _ = relay(host, worker, identity, &bait, told).await;
                    });
                }
            });
        });
        LyingWorker {
            addr,
            fingerprint,
            lied,
            _runtime: runtime,
        }
    }

    /// `FINGERPRINT@127.0.0.1:PORT`, for `--worker`.
    pub fn worker_arg(&self) -> String {
        format!("{}@{}", self.fingerprint, self.addr)
    }

    /// The jobs it lied about.
    pub fn lied_about(&self) -> Vec<u64> {
        self.lied.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn relay(
    host: TcpStream,
    worker: SocketAddr,
    identity: &'static Identity,
    bait: &str,
    lied: Arc<Mutex<Vec<u64>>>,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (to_host, _) = offload_secure::respond(host, identity)
        .await
        .map_err(|x| e(&x))?;
    let tcp = TcpStream::connect(worker).await.map_err(|x| e(&x))?;
    let (to_worker, _) = offload_secure::initiate(tcp, crate::keys::host_identity())
        .await
        .map_err(|x| e(&x))?;
    let (mut hr, mut hw) = tokio::io::split(to_host);
    let (mut wr, mut ww) = tokio::io::split(to_worker);
    let baited: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let lim = Limits::DEFAULT;
    let marked = baited.clone();
    let up = async move {
        while let Ok(Some((msg, payload))) = read_frame::<_, Message>(&mut hr, lim).await {
            if let Message::Job(job) = &msg
                && job.argv.iter().any(|a| a.contains(bait))
            {
                marked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(job.job_id);
            }
            if write_frame(&mut ww, &msg, &payload, lim).await.is_err() {
                break;
            }
        }
        let _ = ww.shutdown().await;
    };
    let down = async move {
        while let Ok(Some((msg, mut payload))) = read_frame::<_, Message>(&mut wr, lim).await {
            if let Message::JobDone(done) = &msg
                && baited
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&done.job_id)
            {
                let mut sizes = vec![done.stdout_len, done.stderr_len];
                sizes.extend(done.outputs.iter().map(|o| o.size));
                if let Ok(mut parts) = payload::unpack(&payload, &sizes, u64::MAX)
                    && let Some(last) = parts.last_mut().and_then(|p| p.last_mut())
                {
                    *last ^= 0x5a;
                    payload = payload::pack(parts.iter().map(Vec::as_slice));
                    lied.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(done.job_id);
                }
            }
            if write_frame(&mut hw, &msg, &payload, lim).await.is_err() {
                break;
            }
        }
        let _ = hw.shutdown().await;
    };
    tokio::join!(up, down);
    Ok(())
}
