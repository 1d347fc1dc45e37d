//! Talks to one worker: a pool of open connections, each carrying one job at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offload_secure::{Fingerprint, PublicKey, SecureStream};
use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::payload;
use offload_shared::protocol::{
    Blobs, CompilerRef, FrameError, Hello, JobDone, Limits, Message, PROTOCOL_NAME,
    PROTOCOL_VERSION, ToolchainBundle, ToolchainInfo, ToolchainKind, ToolchainOffer, Welcome,
};
use tokio::io::{BufReader, BufWriter, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::auth::{HostAuth, Untrusted};

use super::executor::{BoxFuture, Executor, Greeting, WorkerId};
use super::prepare::Prepared;
use super::ship::Bundle;

/// Why a remote job did not produce a result; the job then runs locally.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The worker proved a key this host does not trust.
    #[error("worker {addr}: {why}")]
    Untrusted {
        /// The worker.
        addr: String,
        /// Which key, and why not.
        why: Untrusted,
    },
    /// Could not connect or the handshake failed.
    #[error("cannot reach worker {addr}: {why}")]
    Connect {
        /// The worker.
        addr: String,
        /// Why.
        why: String,
    },
    /// The connection broke or carried garbage.
    #[error("worker {addr}: {source}")]
    Frame {
        /// The worker.
        addr: String,
        /// Why.
        source: FrameError,
    },
    /// The worker did not answer in time.
    #[error("worker {0} did not answer in time")]
    Timeout(String),
    /// The worker gave its cores back (its owner is back, it was paused): it runs
    /// nothing until it lends again.
    #[error("worker {addr} does not lend its cores now ({why})")]
    NotLending {
        /// The worker.
        addr: String,
        /// Its reason (a token).
        why: String,
    },
    /// The worker declined the job.
    #[error("worker {addr} declined the job: {reason}")]
    Rejected {
        /// The worker.
        addr: String,
        /// Its reason.
        reason: String,
    },
    /// The worker answered something that is not a valid result.
    #[error("worker {addr} sent an invalid answer: {why}")]
    Invalid {
        /// The worker.
        addr: String,
        /// Why.
        why: String,
    },
    /// An input could not be read on this host (it changed or vanished during the build):
    /// not the worker's fault.
    #[error("cannot read {path} here: {source}")]
    HostFile {
        /// The input.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RemoteError {
    /// Whether the worker is to blame, so that it should get no job for a while: it could
    /// not be reached, broke the protocol, timed out, or declined (what made it decline —
    /// a full disk, a toolchain it cannot set up — usually holds for the next job too).
    /// A failure on this host's side says nothing about the worker.
    pub fn blames_worker(&self) -> bool {
        match self {
            RemoteError::Connect { .. }
            | RemoteError::Untrusted { .. }
            | RemoteError::Frame { .. }
            | RemoteError::Timeout(_)
            | RemoteError::Rejected { .. }
            | RemoteError::Invalid { .. } => true,
            RemoteError::HostFile { .. } | RemoteError::NotLending { .. } => false,
        }
    }
}

/// A worker as the user names it: `HOST:PORT`, or `FINGERPRINT@HOST:PORT` to use it
/// without pairing because its key is known another way (it must prove that key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// `HOST:PORT`.
    pub addr: String,
    /// The key it must prove.
    pub expect: Option<Fingerprint>,
}

impl std::str::FromStr for WorkerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<WorkerSpec, String> {
        let (expect, addr) = match s.split_once('@') {
            Some((fp, addr)) => (
                Some(
                    fp.parse::<Fingerprint>()
                        .map_err(|e| format!("{fp}: not a worker fingerprint ({e})"))?,
                ),
                addr,
            ),
            None => (None, s),
        };
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(WorkerSpec {
                    addr: addr.to_owned(),
                    expect,
                })
            }
            _ => Err(format!("{addr}: expected HOST:PORT")),
        }
    }
}

impl std::fmt::Display for WorkerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.expect {
            Some(fp) => write!(f, "{fp}@{}", self.addr),
            None => f.write_str(&self.addr),
        }
    }
}

/// A finished remote compile: the worker's report, stdout, stderr and the output files'
/// bytes in the report's order.
#[derive(Debug)]
pub struct RemoteResult {
    /// The report.
    pub done: JobDone,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Output bytes, in `done.outputs` order.
    pub files: Vec<Vec<u8>>,
}

struct Conn {
    r: BufReader<ReadHalf<SecureStream<TcpStream>>>,
    w: BufWriter<WriteHalf<SecureStream<TcpStream>>>,
}

/// One worker.
pub struct Worker {
    /// `host:port`.
    pub addr: String,
    /// Its identity in this build: its address.
    id: WorkerId,
    /// This host's key and the pinned workers.
    auth: Arc<HostAuth>,
    /// The key it must prove, when one was named with its address (else a pinned one).
    expect: Option<Fingerprint>,
    /// The key it proved, once connected.
    key: Mutex<Option<PublicKey>>,
    /// Connections between jobs, with when each was last used.
    idle: Mutex<Vec<(Conn, std::time::Instant)>>,
    name: Mutex<String>,
    /// Bytes sent to it (compressed).
    pub sent: AtomicU64,
    /// Bytes received from it (compressed).
    pub received: AtomicU64,
    /// Its architecture, from its last Welcome.
    arch: Mutex<Option<String>>,
    /// Toolchains it took from this host. A shipped toolchain serves only the connection
    /// that offered it, so every new connection offers them again (the worker keeps the
    /// bytes: an offer of a bundle it holds costs one round trip).
    shipped: Mutex<Vec<(CompilerRef, Arc<Bundle>)>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("addr", &self.addr).finish()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections unused for longer are closed rather than reused: well within a worker's
/// idle timeout (300 s by default), so a reused connection is never one the worker is
/// closing.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Beyond the compile's own limit, time allowed for transfers.
const TRANSFER_MARGIN: Duration = Duration::from_secs(60);
/// Time allowed for shipping a toolchain: sending ~30 MB and the worker's unpacking.
const SHIP_TIMEOUT: Duration = Duration::from_secs(300);
/// Most bytes accepted in a result.
const MAX_RESULT: u64 = 1 << 30;
/// A connection quiet for this long (a compile running) is probed by TCP keepalive…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(1);
/// …every this often…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_PROBES: u32 = 3;
/// …and a connection on which nothing came back for this long, probes or data
/// unacknowledged, is dead (on Linux this limit also decides when keepalive gives up): a
/// worker that vanishes (powered off, off the network) is noticed within 4 s, not at the
/// job's time limit, and its jobs run elsewhere. On a LAN, 4 s without an ACK is no
/// congestion; a worker busy compiling still answers, its kernel does.
const UNACKED_LIMIT: Duration = Duration::from_secs(4);

/// Makes the kernel check that the worker is still there while a job runs (it answers
/// keepalive probes even while it compiles, so a busy worker is never mistaken for a
/// vanished one).
fn watch_liveness(stream: &TcpStream) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    sock.set_tcp_keepalive(&ka)?;
    sock.set_tcp_user_timeout(Some(UNACKED_LIMIT))
}

impl Worker {
    /// A worker at `addr` that must prove the key `expect` names, or else a key pinned
    /// in `auth`; nothing is connected yet.
    pub fn new(addr: String, auth: Arc<HostAuth>, expect: Option<Fingerprint>) -> Worker {
        Worker {
            id: WorkerId::new(&addr),
            auth,
            expect,
            key: Mutex::new(None),
            addr,
            idle: Mutex::new(Vec::new()),
            name: Mutex::new(String::new()),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            arch: Mutex::new(None),
            shipped: Mutex::new(Vec::new()),
        }
    }

    /// A connection left by an earlier job, if one is fresh enough.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, at)| at.elapsed() < POOL_IDLE);
        idle.pop().map(|(c, _)| c)
    }

    /// Keeps a connection for the next job.
    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((conn, std::time::Instant::now()));
    }

    /// The key the worker proved, once connected.
    pub fn key(&self) -> Option<PublicKey> {
        *self.key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker's architecture (`std::env::consts::ARCH` there), once it has answered.
    pub fn arch(&self) -> Option<String> {
        self.arch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn frame_err(&self) -> impl Fn(FrameError) -> RemoteError + '_ {
        |source| RemoteError::Frame {
            addr: self.addr.clone(),
            source,
        }
    }

    /// The name the worker gave when it was greeted (empty before).
    pub fn name(&self) -> String {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens a connection and shakes hands.
    pub async fn hello(&self) -> Result<Welcome, RemoteError> {
        let (conn, welcome) = self.connect().await?;
        welcome
            .worker
            .clone_into(&mut self.name.lock().unwrap_or_else(|p| p.into_inner()));
        self.put_idle(conn);
        Ok(welcome)
    }

    async fn connect(&self) -> Result<(Conn, Welcome), RemoteError> {
        let cerr = |why: String| RemoteError::Connect {
            addr: self.addr.clone(),
            why,
        };
        let (stream, session) = dial(&self.addr, self.auth.identity()).await?;
        self.auth
            .check(&session.remote, self.expect.as_ref())
            .map_err(|why| RemoteError::Untrusted {
                addr: self.addr.clone(),
                why,
            })?;
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.remote);
        let (r, w) = tokio::io::split(stream);
        let mut c = Conn {
            r: BufReader::new(r),
            w: BufWriter::new(w),
        };
        let hello = Message::Hello(Hello {
            protocol: PROTOCOL_NAME.into(),
            version: PROTOCOL_VERSION,
            client: hostname(),
        });
        let lim = Limits::DEFAULT;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            write_frame(&mut c.w, &hello, &[], lim).await?;
            read_frame::<_, Message>(&mut c.r, lim).await
        })
        .await
        .map_err(|_| cerr("handshake timed out".into()))?
        .map_err(|e| cerr(e.to_string()))?;
        match answer {
            Some((Message::Welcome(w), _)) if w.version == PROTOCOL_VERSION => {
                *self.arch.lock().unwrap_or_else(|p| p.into_inner()) = Some(w.arch.clone());
                let shipped = self
                    .shipped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                for (compiler, bundle) in &shipped {
                    let offered =
                        tokio::time::timeout(SHIP_TIMEOUT, self.offer(&mut c, compiler, bundle))
                            .await
                            .map_err(|_| RemoteError::Timeout(self.addr.clone()))??;
                    if offered.0.kind == ToolchainKind::Unavailable {
                        return Err(cerr(format!(
                            "it no longer takes the toolchain for {}: {}",
                            compiler.path, offered.0.detail
                        )));
                    }
                }
                Ok((c, w))
            }
            Some((Message::Error(e), _)) => Err(cerr(e.message)),
            _ => Err(cerr("unexpected handshake answer".into())),
        }
    }

    /// Asks how the worker would run `compiler` (it prepares that toolchain to answer).
    pub async fn toolchain(&self, compiler: &CompilerRef) -> Result<ToolchainInfo, RemoteError> {
        let conn = self.take_idle();
        let mut c = match conn {
            Some(c) => c,
            None => self.connect().await?.0,
        };
        let lim = Limits::DEFAULT;
        let fe = self.frame_err();
        // Preparing a toolchain copies a compiler: under emulation that takes a while.
        let answer = tokio::time::timeout(TRANSFER_MARGIN, async {
            write_frame(
                &mut c.w,
                &Message::ToolchainQuery(compiler.clone()),
                &[],
                lim,
            )
            .await?;
            read_frame::<_, Message>(&mut c.r, lim).await
        })
        .await
        .map_err(|_| RemoteError::Timeout(self.addr.clone()))?
        .map_err(&fe)?;
        match answer {
            Some((Message::ToolchainInfo(info), _)) if info.path == compiler.path => {
                self.put_idle(c);
                Ok(info)
            }
            Some((Message::Error(e), _)) => Err(RemoteError::Invalid {
                addr: self.addr.clone(),
                why: e.message,
            }),
            _ => Err(RemoteError::Invalid {
                addr: self.addr.clone(),
                why: "unexpected answer to a toolchain query".into(),
            }),
        }
    }

    /// Offers this host's toolchain for `compiler` (the bundle `bundle`) and sends the bytes
    /// if the worker asks for them. Gives the worker's answer and how many bytes were sent
    /// (none when it kept the bundle from an earlier build). Later connections offer it
    /// again when the worker took it.
    pub async fn ship(
        &self,
        compiler: &CompilerRef,
        bundle: Arc<Bundle>,
    ) -> Result<(ToolchainInfo, u64), RemoteError> {
        let conn = self.take_idle();
        let mut c = match conn {
            Some(c) => c,
            None => self.connect().await?.0,
        };
        let result = tokio::time::timeout(SHIP_TIMEOUT, self.offer(&mut c, compiler, &bundle))
            .await
            .map_err(|_| RemoteError::Timeout(self.addr.clone()))?;
        if let Ok((info, _)) = &result {
            if info.kind == ToolchainKind::Shipped {
                let mut shipped = self.shipped.lock().unwrap_or_else(|p| p.into_inner());
                shipped.retain(|(c, _)| c.path != compiler.path);
                shipped.push((compiler.clone(), bundle));
            }
            self.put_idle(c);
        }
        result
    }

    /// The offer exchange on one connection.
    async fn offer(
        &self,
        c: &mut Conn,
        compiler: &CompilerRef,
        bundle: &Bundle,
    ) -> Result<(ToolchainInfo, u64), RemoteError> {
        let lim = Limits::DEFAULT;
        let fe = self.frame_err();
        let invalid = |why: String| RemoteError::Invalid {
            addr: self.addr.clone(),
            why,
        };
        let (digest, bytes) = (bundle.digest, &bundle.bytes);
        let offer = Message::ToolchainOffer(ToolchainOffer {
            compiler: compiler.clone(),
            bundle: digest,
            size: bytes.len() as u64,
        });
        write_frame(&mut c.w, &offer, &[], lim).await.map_err(&fe)?;
        let mut sent = 0u64;
        loop {
            let answer = read_frame::<_, Message>(&mut c.r, lim).await.map_err(&fe)?;
            match answer {
                Some((Message::NeedToolchain(n), _)) if n.bundle == digest && sent == 0 => {
                    let msg = Message::ToolchainBundle(ToolchainBundle { bundle: digest });
                    write_frame(&mut c.w, &msg, bytes, lim).await.map_err(&fe)?;
                    sent = bytes.len() as u64;
                    self.sent.fetch_add(sent, Ordering::Relaxed);
                }
                Some((Message::ToolchainInfo(info), _)) if info.path == compiler.path => {
                    return Ok((info, sent));
                }
                Some((Message::Error(e), _)) => return Err(invalid(e.message)),
                _ => return Err(invalid("unexpected answer to a toolchain offer".into())),
            }
        }
    }

    /// Runs a prepared job.
    pub async fn run(&self, job: &Prepared) -> Result<RemoteResult, RemoteError> {
        let conn = self.take_idle();
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().await?.0,
        };
        let limit = Duration::from_secs(job.job.timeout_secs.into()) + TRANSFER_MARGIN;
        let result = tokio::time::timeout(limit, self.exchange(&mut conn, job))
            .await
            .map_err(|_| RemoteError::Timeout(self.addr.clone()))?;
        if result.is_ok()
            || matches!(
                result,
                Err(RemoteError::Rejected { .. } | RemoteError::NotLending { .. })
            )
        {
            self.put_idle(conn);
        }
        result
    }

    async fn exchange(&self, c: &mut Conn, job: &Prepared) -> Result<RemoteResult, RemoteError> {
        let lim = Limits::DEFAULT;
        let fe = self.frame_err();
        let id = job.job.job_id;
        write_frame(&mut c.w, &Message::Job(Box::new(job.job.clone())), &[], lim)
            .await
            .map_err(&fe)?;
        let invalid = |why: &str| RemoteError::Invalid {
            addr: self.addr.clone(),
            why: why.to_owned(),
        };
        loop {
            let Some((msg, bytes)) = read_frame::<_, Message>(&mut c.r, lim).await.map_err(&fe)?
            else {
                return Err(fe(FrameError::Truncated));
            };
            self.received
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            match msg {
                Message::NeedBlobs(n) if n.job_id == id => {
                    if n.digests.is_empty() {
                        continue;
                    }
                    let mut datas = Vec::with_capacity(n.digests.len());
                    for d in &n.digests {
                        let path = job
                            .blobs
                            .get(d)
                            .ok_or_else(|| invalid("asked for an unknown blob"))?;
                        let bytes = tokio::fs::read(path).await.map_err(|source| {
                            RemoteError::HostFile {
                                path: path.clone(),
                                source,
                            }
                        })?;
                        datas.push((*d, bytes));
                    }
                    let body = payload::pack(datas.iter().map(|(_, b)| &b[..]));
                    let msg = Message::Blobs(Blobs {
                        job_id: id,
                        blobs: datas.iter().map(|(d, b)| (*d, b.len() as u64)).collect(),
                    });
                    self.sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                    write_frame(&mut c.w, &msg, &body, lim).await.map_err(&fe)?;
                }
                Message::JobDone(done) if done.job_id == id => {
                    let mut sizes = vec![done.stdout_len, done.stderr_len];
                    sizes.extend(done.outputs.iter().map(|o| o.size));
                    let mut parts = payload::unpack(&bytes, &sizes, MAX_RESULT)
                        .map_err(|e| invalid(&e.to_string()))?
                        .into_iter();
                    let stdout = parts.next().unwrap_or_default();
                    let stderr = parts.next().unwrap_or_default();
                    return Ok(RemoteResult {
                        done,
                        stdout,
                        stderr,
                        files: parts.collect(),
                    });
                }
                Message::NotDonating(n) if n.job_id == id => {
                    return Err(RemoteError::NotLending {
                        addr: self.addr.clone(),
                        why: n.why,
                    });
                }
                Message::JobRejected(r) if r.job_id == id => {
                    return Err(RemoteError::Rejected {
                        addr: self.addr.clone(),
                        reason: r.reason,
                    });
                }
                Message::Error(e) => return Err(invalid(&e.message)),
                _ => return Err(invalid("unexpected message")),
            }
        }
    }
}

impl Executor for Worker {
    fn id(&self) -> &WorkerId {
        &self.id
    }

    fn label(&self) -> String {
        self.addr.clone()
    }

    fn name(&self) -> String {
        Worker::name(self)
    }

    fn arch(&self) -> Option<String> {
        Worker::arch(self)
    }

    fn greet(&self) -> BoxFuture<'_, Result<Greeting, RemoteError>> {
        Box::pin(async move {
            let w = self.hello().await?;
            Ok(Greeting {
                name: w.worker,
                slots: w.slots as usize,
            })
        })
    }

    fn toolchain<'a>(
        &'a self,
        compiler: &'a CompilerRef,
    ) -> BoxFuture<'a, Result<ToolchainInfo, RemoteError>> {
        Box::pin(Worker::toolchain(self, compiler))
    }

    fn ship<'a>(
        &'a self,
        compiler: &'a CompilerRef,
        bundle: Arc<Bundle>,
    ) -> BoxFuture<'a, Result<(ToolchainInfo, u64), RemoteError>> {
        Box::pin(Worker::ship(self, compiler, bundle))
    }

    fn run<'a>(&'a self, job: &'a Prepared) -> BoxFuture<'a, Result<RemoteResult, RemoteError>> {
        Box::pin(Worker::run(self, job))
    }

    fn traffic(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// Connects to `addr` and runs the secure handshake as `identity`: the stream, and the
/// key (and pairing code) the worker proved. Trusting that key is the caller's decision.
pub async fn dial(
    addr: &str,
    identity: &offload_secure::Identity,
) -> Result<(SecureStream<TcpStream>, offload_secure::Session), RemoteError> {
    let cerr = |why: String| RemoteError::Connect {
        addr: addr.to_owned(),
        why,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| cerr("timed out".into()))?
        .map_err(|e| cerr(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    if let Err(e) = watch_liveness(&stream) {
        tracing::debug!(worker = addr, "cannot set TCP keepalive: {e}");
    }
    tokio::time::timeout(CONNECT_TIMEOUT, offload_secure::initiate(stream, identity))
        .await
        .map_err(|_| cerr("the secure handshake timed out".into()))?
        .map_err(|e| cerr(e.to_string()))
}

/// This machine's name, for the worker's logs and its owner's list of pairing requests.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}
