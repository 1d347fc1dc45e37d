//! One connection: the protocol over any byte stream, with every limit and timeout.
//!
//! Two halves run in one task. The *reader* turns bytes into frames: it waits for a
//! frame's first byte without a time limit (being idle is the *loop*'s business), then
//! gives the rest of the frame [`Timeouts::stall`] and from then on an average of
//! [`MIN_RATE`] (so a large announced length buys a peer no time), takes the
//! frame's bytes from its peer's memory quota before reading them (buffers grow as the
//! bytes arrive), and accepts a payload only where the protocol expects one, of at most
//! the size the loop announced. The *loop* answers the frames in order and, while a job
//! compiles, also watches for the peer leaving, a `Cancel`, and the worker stopping: each
//! ends the job at once (its sandbox is killed and its slot, uid and root given back).
//!
//! ```text
//! hello ─► welcome ─┬─► toolchain query ─► info
//!                   ├─► offer ─► need bytes ─► bundle ─► info
//!                   └─► job ─► need blobs ─► blobs ─► (compiling; cancel?) ─► done/rejected
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use offload_secure::{PairingCode, PublicKey};
use offload_shared::Digest;
use offload_shared::protocol::frame::{FrameStart, write_frame};
use offload_shared::protocol::{
    FrameError, JobRejected, JobRequest, Limits, Message, NeedBlobs, NeedToolchain, NotDonating,
    PROTOCOL_NAME, PROTOCOL_VERSION, PairConfirm, PairRequest, PairResult, ProtocolError,
    ToolchainOffer, Welcome, payload,
};
use offload_shared::tree::EntryKind;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};

use crate::donation;
use crate::job::{JobError, MAX_JOB_BYTES};
use crate::pairing::{Decision, REQUEST_TIMEOUT, Request};
use crate::quota::{FrameBudget, PeerGuard, QuotaError};
use crate::server::Worker;
use crate::shipped::{Owned, check_offer_size};

/// How long a connection may take, and be quiet.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accepting the connection to a complete `Hello`.
    pub handshake: Duration,
    /// Between frames, while no job of the connection runs.
    pub idle: Duration,
    /// For a frame's bytes once it started (plus time at [`MIN_RATE`] for its length), and
    /// for a reply to be taken by the peer.
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            stall: Duration::from_secs(30),
        }
    }
}

/// The slowest transfer a frame is given time for, in bytes per second.
pub const MIN_RATE: u64 = 256 << 10;

/// Time for a frame of `len` bytes the worker sends.
fn frame_time(stall: Duration, len: usize) -> Duration {
    stall + Duration::from_secs(len as u64 / MIN_RATE)
}

/// A reader that counts what it reads.
struct Counted<'a, R> {
    inner: &'a mut R,
    read: &'a AtomicU64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        this.read.fetch_add(got as u64, Ordering::Relaxed);
        r
    }
}

/// Runs `read` (which reads through a [`Counted`] on `read_so_far`), cutting it when it
/// falls behind: after `stall`, it must have kept up [`MIN_RATE`] on average. A peer
/// that announces a large frame and trickles it is cut as soon as one that sends nothing.
async fn paced<T>(
    read: impl Future<Output = T>,
    read_so_far: &AtomicU64,
    stall: Duration,
) -> Result<T, ConnError> {
    let t0 = tokio::time::Instant::now();
    tokio::pin!(read);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            r = &mut read => return Ok(r),
            _ = tick.tick() => {
                let got = read_so_far.load(Ordering::Relaxed);
                let allowed = stall + Duration::from_secs_f64(got as f64 / MIN_RATE as f64);
                if t0.elapsed() > allowed {
                    return Err(ConnError::Stalled(t0.elapsed()));
                }
            }
        }
    }
}

/// Largest JSON header: a job's tree of tens of thousands of entries fits.
pub(crate) const MAX_HEADER: u32 = 16 << 20;

/// Whether the worker serves or is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Serving.
    Serving,
    /// No new jobs; running ones may finish until this instant, then are stopped.
    Draining {
        /// When running jobs are stopped.
        until: tokio::time::Instant,
    },
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Reading or writing a frame failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No complete hello in time.
    #[error("no hello within {0:?}")]
    Handshake(Duration),
    /// Quiet for too long between frames.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// A frame, or a reply, did not get through in time.
    #[error("a frame stalled ({0:?} without completing)")]
    Stalled(Duration),
    /// The peer went past a quota.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ConnError {
    /// Whether this is an ordinary end, logged quietly.
    pub fn is_ordinary(&self) -> bool {
        matches!(self, ConnError::Idle(_))
    }
}

/// A frame read, with the memory it holds accounted to its peer.
struct Frame {
    msg: Message,
    payload: Vec<u8>,
    _budget: FrameBudget,
}

type Incoming = Result<Frame, ConnError>;

/// Serves one connection until the peer leaves, breaks the protocol or a limit, or the
/// worker stops.
pub async fn serve<R, W>(
    worker: &Worker,
    peer: PeerGuard,
    who: Who,
    r: R,
    w: W,
    drain: watch::Receiver<Drain>,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let timeouts = worker.timeouts();
    let allowed = AtomicU32::new(0);
    let (tx, rx) = mpsc::channel(1);
    let reader = read_frames(BufReader::new(r), &allowed, &peer, timeouts.stall, tx);
    let conn = Conn {
        worker,
        peer: &peer,
        who,
        w: BufWriter::new(w),
        rx,
        allowed: &allowed,
        mine: Owned::default(),
        drain,
        timeouts,
    };
    let main = conn.run();
    tokio::pin!(reader, main);
    tokio::select! {
        res = &mut main => return res,
        () = &mut reader => {}
    }
    // The reader ended (the peer closed, or a bad frame it passed on): the loop finishes
    // with what is queued.
    main.await
}

/// Reads frames into `tx` until the stream ends or a frame is bad (which it passes on).
async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    allowed: &AtomicU32,
    peer: &PeerGuard,
    stall: Duration,
    tx: mpsc::Sender<Incoming>,
) {
    loop {
        let start = match FrameStart::wait(&mut r).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let limits = Limits {
            max_header: MAX_HEADER,
            max_payload: allowed.load(Ordering::Acquire),
        };
        let frame = async {
            let lengths = tokio::time::timeout(stall, start.lengths(&mut r, limits))
                .await
                .map_err(|_| ConnError::Stalled(stall))??;
            let len = lengths.header + lengths.payload;
            let budget = peer.bytes(len).await?;
            let counter = AtomicU64::new(0);
            let mut counted = Counted {
                inner: &mut r,
                read: &counter,
            };
            let (msg, payload) = paced(lengths.body(&mut counted), &counter, stall).await??;
            Ok(Frame {
                msg,
                payload,
                _budget: budget,
            })
        }
        .await;
        let failed = frame.is_err();
        if tx.send(frame).await.is_err() || failed {
            return;
        }
    }
}

/// Who is at the other end, as the handshake proved it.
#[derive(Debug, Clone)]
pub enum Who {
    /// A host that proved this key; it runs jobs only while it is paired.
    Host {
        /// Its long-term key.
        key: PublicKey,
        /// The handshake's pairing code.
        code: PairingCode,
        /// Where it connects from, for the owner's list of pairing requests.
        address: String,
    },
    /// A stream made in this process (tests, local streams): trusted.
    Local,
}

/// The loop's state.
struct Conn<'a, W> {
    worker: &'a Worker,
    peer: &'a PeerGuard,
    who: Who,
    w: BufWriter<W>,
    rx: mpsc::Receiver<Incoming>,
    /// The payload the next frame may carry (0 but where the protocol expects bytes).
    allowed: &'a AtomicU32,
    /// The toolchains this connection shipped: they serve its jobs alone.
    mine: Owned,
    drain: watch::Receiver<Drain>,
    timeouts: Timeouts,
}

/// How a running job ended.
enum During {
    /// It ran, was cancelled or stopped.
    Ran(Result<(offload_shared::protocol::JobDone, Vec<u8>), JobError>),
    /// The worker stopped lending its cores (and why): the job was stopped.
    GivenBack(String),
    /// The peer left.
    Left,
    /// The peer's next frame was bad.
    Failed(ConnError),
    /// The peer sent something other than a cancel.
    Unexpected,
}

/// What the loop does after a frame.
enum Next {
    Continue,
    Close,
}

fn protocol_error(message: String) -> Message {
    Message::Error(ProtocolError { message })
}

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
    async fn run(mut self) -> Result<(), ConnError> {
        let handshake = self.timeouts.handshake;
        let first = tokio::time::timeout(handshake, self.rx.recv())
            .await
            .map_err(|_| ConnError::Handshake(handshake))?;
        let Some(first) = first else {
            return Ok(());
        };
        let hello = match first {
            Ok(f) => f.msg,
            Err(e) => return self.fail(e).await,
        };
        match hello {
            Message::PairRequest(req) => return self.pair(req).await,
            // An unpaired host gets this refusal, whatever it sent, and nothing else.
            _ if !self.paired() => return self.refuse(self.not_paired()).await,
            Message::Hello(h) if h.protocol == PROTOCOL_NAME && h.version == PROTOCOL_VERSION => {
                tracing::debug!(client = h.client, peer = %self.peer.peer(), "hello");
            }
            Message::Hello(h) => {
                let why = format!(
                    "protocol {} version {} is not supported (this worker speaks {PROTOCOL_NAME} {PROTOCOL_VERSION})",
                    h.protocol, h.version
                );
                return self.refuse(why).await;
            }
            _ => return self.refuse("expected hello".into()).await,
        }
        let welcome = Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            worker: self.worker.config.name.clone(),
            slots: self.worker.config.slots,
            arch: std::env::consts::ARCH.to_owned(),
        });
        self.send(&welcome, &[]).await?;
        loop {
            let idle = self.timeouts.idle;
            let incoming = tokio::select! {
                f = self.rx.recv() => f,
                () = tokio::time::sleep(idle) => return Err(ConnError::Idle(idle)),
                () = draining(&mut self.drain) => return Ok(()),
            };
            let frame = match incoming {
                None => return Ok(()),
                Some(Ok(f)) => f,
                Some(Err(e)) => return self.fail(e).await,
            };
            // A host unpaired since it connected gets nothing more.
            if !matches!(frame.msg, Message::Cancel(_)) && !self.paired() {
                return self.refuse(self.not_paired()).await;
            }
            let next = match frame.msg {
                Message::ToolchainQuery(compiler) => {
                    let (toolchains, mine) = (&self.worker.toolchains, &self.mine);
                    let got = tokio::task::block_in_place(|| toolchains.get(&compiler, mine));
                    let info = match &got {
                        Ok(tc) => tc.info(&compiler),
                        Err(e) => e.info(&compiler),
                    };
                    self.send(&Message::ToolchainInfo(info), &[]).await?;
                    // Its jobs will follow: a spare root for the first of them.
                    if let Ok(tc) = got {
                        let spares = self.worker.spares.clone();
                        drop(tokio::task::spawn_blocking(move || {
                            spares.replenish(&tc, false);
                        }));
                    }
                    Next::Continue
                }
                Message::ToolchainOffer(offer) => self.offered(offer).await?,
                Message::Job(job) => self.job(*job).await?,
                // A cancel that crossed the job's reply.
                Message::Cancel(_) => Next::Continue,
                _ => {
                    return self
                        .refuse("expected a job, a toolchain query or offer".into())
                        .await;
                }
            };
            if let Next::Close = next {
                return Ok(());
            }
        }
    }

    /// Whether the peer may run jobs here now.
    fn paired(&self) -> bool {
        match &self.who {
            Who::Host { key, .. } => self.worker.pairings.is_paired(key),
            Who::Local => true,
        }
    }

    /// The refusal an unpaired host gets, and nothing else.
    fn not_paired(&self) -> String {
        let fp = match &self.who {
            Who::Host { key, .. } => key.fingerprint().to_string(),
            Who::Local => String::new(),
        };
        format!(
            "this worker is not paired with this host ({fp}): run `offload pair` on the host and allow its code on the worker"
        )
    }

    /// A pairing request: waits for the owner's decision while the host stays, answers;
    /// after a yes, waits for the host's user's yes, and only then pins the host and
    /// answers again. Ends the connection.
    async fn pair(&mut self, req: PairRequest) -> Result<(), ConnError> {
        let worker = self.worker;
        let answer = |accepted: bool, reason: &str| {
            Message::PairResult(PairResult {
                accepted,
                worker: worker.config.name.clone(),
                reason: reason.to_owned(),
            })
        };
        if req.version != PROTOCOL_VERSION {
            let why = format!(
                "protocol version {} is not supported (this worker speaks {PROTOCOL_VERSION})",
                req.version
            );
            return self.send(&answer(false, &why), &[]).await;
        }
        // A host paired already (or a local peer, which needs no pairing) is accepted at
        // once; any other waits for the owner.
        let request = match self.who.clone() {
            Who::Host { key, code, address } if !self.paired() => {
                let mut request = match worker.pairings.request(key, code, &req.host, &address) {
                    Ok(r) => r,
                    Err(e) => return self.send(&answer(false, &e.to_string()), &[]).await,
                };
                let decision = tokio::select! {
                    d = request.decision() => d,
                    // The host left or spoke out of turn: the request is withdrawn.
                    _ = self.rx.recv() => return Ok(()),
                    () = draining(&mut self.drain) => Decision::Denied,
                };
                if decision == Decision::Denied {
                    let why = "the worker's owner did not allow it";
                    return self.send(&answer(false, why), &[]).await;
                }
                Some(request)
            }
            _ => None,
        };
        let already = if request.is_none() {
            "already paired"
        } else {
            ""
        };
        self.send(&answer(true, already), &[]).await?;
        // The host's user compares the code too; only their yes pins the host here.
        let confirmed = tokio::select! {
            f = tokio::time::timeout(REQUEST_TIMEOUT, self.rx.recv()) => f,
            () = draining(&mut self.drain) => return Ok(()),
        };
        let yes = matches!(
            confirmed,
            Ok(Some(Ok(Frame {
                msg: Message::PairConfirm(PairConfirm { confirmed: true }),
                ..
            })))
        );
        if !yes {
            // A no, a departure, a timeout or anything else: the request is withdrawn.
            return Ok(());
        }
        let done = match request.map(Request::complete) {
            None | Some(Ok(())) => answer(true, already),
            Some(Err(e)) => {
                tracing::warn!("cannot pin the host: {e}");
                answer(false, "the worker could not record the pairing")
            }
        };
        self.send(&done, &[]).await
    }

    /// Writes a frame, giving the peer [`Timeouts::stall`] (plus time for its length) to
    /// take it.
    async fn send(&mut self, msg: &Message, payload: &[u8]) -> Result<(), ConnError> {
        let time = frame_time(self.timeouts.stall, payload.len());
        let lim = Limits {
            max_header: MAX_HEADER,
            max_payload: Limits::DEFAULT.max_payload,
        };
        tokio::time::timeout(time, write_frame(&mut self.w, msg, payload, lim))
            .await
            .map_err(|_| ConnError::Stalled(time))??;
        Ok(())
    }

    /// Says what was wrong, then ends the connection with it.
    async fn refuse(&mut self, why: String) -> Result<(), ConnError> {
        let _ = self.send(&protocol_error(why.clone()), &[]).await;
        Err(ConnError::Protocol(why))
    }

    /// Tells the peer why its frame ended the connection (best effort), then ends it.
    async fn fail(&mut self, e: ConnError) -> Result<(), ConnError> {
        if !matches!(e, ConnError::Frame(FrameError::Io(_))) {
            let _ = self.send(&protocol_error(e.to_string()), &[]).await;
        }
        Err(e)
    }

    /// The next frame, which must come within the idle time; `None` if the peer left.
    async fn expect_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        let idle = self.timeouts.idle;
        let got = tokio::time::timeout(idle, self.rx.recv())
            .await
            .map_err(|_| ConnError::Idle(idle))?;
        self.allowed.store(0, Ordering::Release);
        match got {
            None => Ok(None),
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(e)) => self.fail(e).await.map(|()| None),
        }
    }

    /// Answers the host's offer of its toolchain: takes a bundle it keeps already, asks for
    /// the bytes of one it lacks (refusing oversized ones before they are sent), and
    /// answers with the toolchain it then has, or why not.
    async fn offered(&mut self, offer: ToolchainOffer) -> Result<Next, ConnError> {
        let (compiler, bundle) = (&offer.compiler, offer.bundle);
        let worker = self.worker;
        let toolchains = &worker.toolchains;
        if toolchains.has_bundle(&bundle) {
            let mine = &mut self.mine;
            let got =
                tokio::task::block_in_place(|| toolchains.install(compiler, &bundle, None, mine));
            let info = got.map_or_else(|e| e.info(compiler), |tc| tc.info(compiler));
            self.send(&Message::ToolchainInfo(info), &[]).await?;
            return Ok(Next::Continue);
        }
        if let Err(e) = check_offer_size(offer.size, Limits::DEFAULT.max_payload.into()) {
            tracing::warn!(compiler = compiler.path, %bundle, "{e}");
            self.send(&Message::ToolchainInfo(e.info(compiler)), &[])
                .await?;
            return Ok(Next::Continue);
        }
        // Exactly the offered size: a larger payload is refused before it is read.
        self.allowed
            .store(u32::try_from(offer.size).unwrap_or(0), Ordering::Release);
        self.send(&Message::NeedToolchain(NeedToolchain { bundle }), &[])
            .await?;
        let t0 = std::time::Instant::now();
        let Some(frame) = self.expect_frame().await? else {
            return Ok(Next::Close);
        };
        match &frame.msg {
            Message::ToolchainBundle(b)
                if b.bundle == bundle && frame.payload.len() as u64 == offer.size => {}
            _ => {
                self.refuse("expected the offered toolchain bundle".into())
                    .await?;
                return Ok(Next::Close);
            }
        }
        let received_ms = t0.elapsed().as_millis() as u64;
        let mine = &mut self.mine;
        let bytes = &frame.payload;
        let got = tokio::task::block_in_place(|| {
            toolchains.install(compiler, &bundle, Some(bytes), mine)
        });
        tracing::info!(
            compiler = compiler.path,
            %bundle,
            bytes = bytes.len(),
            received_ms,
            unpacked_ms = t0.elapsed().as_millis() as u64 - received_ms,
            ok = got.is_ok(),
            "toolchain bundle received"
        );
        let info = match got {
            Ok(tc) => tc.info(compiler),
            Err(e) => {
                tracing::warn!(compiler = compiler.path, %bundle, "shipped toolchain refused: {e}");
                e.info(compiler)
            }
        };
        drop(frame);
        self.send(&Message::ToolchainInfo(info), &[]).await?;
        Ok(Next::Continue)
    }

    async fn reject(&mut self, id: u64, e: &JobError) -> Result<(), ConnError> {
        let reason = e.for_peer();
        tracing::info!(job = id, "rejected: {e}");
        let msg = Message::JobRejected(JobRejected { job_id: id, reason });
        self.send(&msg, &[]).await
    }

    /// Receives a job's missing blobs, runs it and answers.
    async fn job(&mut self, job: JobRequest) -> Result<Next, ConnError> {
        let id = job.job_id;
        let stopping = *self.drain.borrow() != Drain::Serving;
        if stopping {
            self.reject(id, &JobError::Stopping).await?;
            return Ok(Next::Close);
        }
        let lending = self.worker.donation.current();
        if !lending.donating {
            return self.not_donating(id, lending.why, false).await;
        }
        // A tree or working directory the job root would refuse is refused before its
        // blobs are asked for: they would only churn the store.
        let early = offload_shared::tree::validate(&job.tree)
            .map_err(|e| JobError::Root(e.into()))
            .and_then(|()| crate::admission::check_cwd(&job).map_err(JobError::Refused));
        if let Err(e) = early {
            self.reject(id, &e).await?;
            return Ok(Next::Continue);
        }
        let worker = self.worker;
        let store = &worker.store;
        let mut seen = HashSet::new();
        let mut missing: Vec<Digest> = Vec::new();
        for e in &job.tree {
            if let EntryKind::File { digest, .. } = &e.kind
                && seen.insert(*digest)
                && !store.has(digest)
            {
                missing.push(*digest);
            }
        }
        // The job's blobs become the most recently used: eviction takes others first.
        store.touch(seen.iter().copied());
        if !missing.is_empty() {
            self.allowed
                .store(Limits::DEFAULT.max_payload, Ordering::Release);
        }
        let need = Message::NeedBlobs(NeedBlobs {
            job_id: id,
            digests: missing.clone(),
        });
        self.send(&need, &[]).await?;
        if !missing.is_empty() {
            let Some(frame) = self.expect_frame().await? else {
                return Ok(Next::Close);
            };
            let Message::Blobs(b) = &frame.msg else {
                self.refuse("expected blobs".into()).await?;
                return Ok(Next::Close);
            };
            let asked: HashSet<&Digest> = missing.iter().collect();
            if b.job_id != id
                || b.blobs.len() != missing.len()
                || !b.blobs.iter().all(|(d, _)| asked.contains(d))
            {
                self.refuse("blobs do not match the request".into()).await?;
                return Ok(Next::Close);
            }
            let sizes: Vec<u64> = b.blobs.iter().map(|(_, s)| *s).collect();
            let parts = match payload::unpack(&frame.payload, &sizes, MAX_JOB_BYTES) {
                Ok(p) => p,
                Err(e) => {
                    self.refuse(e.to_string()).await?;
                    return Ok(Next::Close);
                }
            };
            let put = tokio::task::block_in_place(|| {
                let put = b
                    .blobs
                    .iter()
                    .zip(parts)
                    .try_for_each(|((d, _), bytes)| store.put(d, &bytes));
                // On every path, so that a refused job leaves the store within its budget.
                store.evict();
                put
            });
            drop(frame);
            if let Err(e) = put {
                self.reject(id, &JobError::Store(e)).await?;
                return Ok(Next::Continue);
            }
        }
        // The job's root, removed once the reply is sent (or on the way out).
        let mut finished = None;
        let during = {
            let run = worker.run_job(job, &self.mine, self.peer, &mut finished);
            tokio::pin!(run);
            let mut lending = worker.donation.subscribe();
            let grace = worker.config.give_back_grace;
            let give_back = async {
                let why = donation::given_back(&mut lending).await;
                tokio::time::sleep(grace).await;
                why
            };
            tokio::pin!(give_back);
            loop {
                tokio::select! {
                    r = &mut run => break During::Ran(r),
                    // Dropping the job kills it.
                    why = &mut give_back => break During::GivenBack(why),
                    f = self.rx.recv() => match f {
                        // The peer left: dropping the job kills it.
                        None => break During::Left,
                        Some(Err(e)) => break During::Failed(e),
                        Some(Ok(Frame { msg: Message::Cancel(c), .. })) if c.job_id == id => {
                            break During::Ran(Err(JobError::Cancelled));
                        }
                        Some(Ok(Frame { msg: Message::Cancel(_), .. })) => continue,
                        Some(Ok(_)) => break During::Unexpected,
                    },
                    () = stopped(&mut self.drain) => break During::Ran(Err(JobError::Stopping)),
                }
            }
        };
        let result = match during {
            During::Ran(r) => r,
            During::GivenBack(why) => return self.not_donating(id, why, true).await,
            During::Left => return Ok(Next::Close),
            During::Failed(e) => {
                self.fail(e).await?;
                return Ok(Next::Close);
            }
            During::Unexpected => {
                self.refuse("only a cancel may come while a job runs".into())
                    .await?;
                return Ok(Next::Close);
            }
        };
        match result {
            Ok((done, payload)) => {
                let host = self.peer.peer();
                tracing::info!(job_id = id, %host, compile_ms = done.compile_ms, "job done");
                self.send(&Message::JobDone(done), &payload).await?
            }
            Err(e) => self.reject(id, &e).await?,
        }
        drop(finished);
        Ok(Next::Continue)
    }
}

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
    /// Answers a job the worker does not run (`running` false), or stopped while it ran,
    /// because it does not lend now.
    async fn not_donating(
        &mut self,
        job_id: u64,
        why: String,
        running: bool,
    ) -> Result<Next, ConnError> {
        if running {
            tracing::info!(job_id, why, "job given back");
        } else {
            tracing::info!(job_id, why, "job refused: not lending");
        }
        let msg = Message::NotDonating(NotDonating { job_id, why });
        self.send(&msg, &[]).await?;
        Ok(Next::Continue)
    }
}

/// Completes when the worker starts stopping.
async fn draining(drain: &mut watch::Receiver<Drain>) {
    let changed = drain.wait_for(|d| *d != Drain::Serving).await.is_ok();
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// Completes when running jobs must stop.
async fn stopped(drain: &mut watch::Receiver<Drain>) {
    let state = drain.wait_for(|d| *d != Drain::Serving).await.map(|d| *d);
    let Ok(state) = state else {
        return std::future::pending().await;
    };
    let Drain::Draining { until } = state else {
        return;
    };
    tokio::time::sleep_until(until).await;
}

/// A connection over a stream made in this process (tests, local streams), served as
/// the peer [`crate::quota::PeerId::Local`].
pub async fn serve_local<R, W>(worker: &Arc<Worker>, r: R, w: W) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer = worker.quotas.admit(crate::quota::PeerId::Local)?;
    serve(worker, peer, Who::Local, r, w, worker.drain_signal()).await
}
