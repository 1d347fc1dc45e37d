//! A bounded soak of one worker: many small real compiles over several connections at once,
//! the worker killed and started again every few hundred jobs, and its resident memory and
//! open descriptors sampled as it goes.
//!
//! [`run`] sends `jobs` compiles, job `n` compiling its own source `int f_n(void) { return n; }`
//! at `DIR/s<n>.c` with `gcc -O2 -c s<n>.c -o s<n>.o`. Every object is compared with a
//! local compile of the same source at the same path (made once, before the worker starts).
//! Each job gets exactly one answer: a job whose connection is cut by a restart is sent again
//! on a new connection (and counted as cut), every reply must carry the job's own id and
//! object, and a connection the driver closes must end without a frame it did not ask for.
//!
//! Every `sample_every` completed jobs the driver stops handing out jobs, waits for the ones
//! in flight, lets the worker settle (its job roots are removed after the reply) and reads
//! `/proc/PID/status` (VmRSS, Threads), `/proc/PID/fd`, the worker's children and the job
//! roots left in its work directory. A restart comes just after a sample, with jobs in
//! flight. [`Report::violations`] compares each lifetime's mean after warm-up with its mean
//! at the end against [`Bounds`].
//!
//! With `OFFLOAD_LOG=offload_worker=debug` in the environment the worker logs its per-job
//! timings; [`job_timings`] reads them back and [`Report::overhead`] subtracts the local
//! compile of the same source (pin both to one core: [`Config::worker_cpu`],
//! [`Config::local_cpu`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ExitStatus};

use crate::netns::NetnsWorker;
use crate::peer::{self, JobReply, JobSpec, Peer};

/// The compiler every job names (the host's and the worker's).
const GCC: &str = "/usr/bin/gcc";

/// How long a restarted worker may take before a connection attempt gives up.
const RECONNECT_LIMIT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Jobs in all (each a distinct source).
    pub jobs: usize,
    /// Kill and start the worker after every this many completed jobs (0: never).
    pub restart_every: usize,
    /// Peer connections sending jobs at once, one thread each.
    pub connections: usize,
    /// A connection is closed and a new one opened after this many jobs (0: never, but a
    /// restart still cuts it).
    pub jobs_per_connection: usize,
    /// Sample the worker after every this many completed jobs.
    pub sample_every: usize,
    /// Samples at the start of each lifetime left out of the flatness check (the first
    /// compile prepares the toolchain, the runtime starts its threads).
    pub warmup_samples: usize,
    /// Samples averaged at either end of a lifetime.
    pub window: usize,
    /// The worker's `--slots`.
    pub slots: u32,
    /// The worker keeps its work directory (store, toolchain template, leftover job roots)
    /// across restarts, as a restarted service would: a directory under `/var/tmp` is bound
    /// onto it. Otherwise each run of the worker starts from an empty one.
    pub keep_work_dir: bool,
    /// Pin the worker (every thread and every compile) to this CPU.
    pub worker_cpu: Option<usize>,
    /// Make the local reference compiles one at a time on this CPU (their times are then the
    /// baseline of [`Report::overhead`]); otherwise `connections` at once, unpinned.
    pub local_cpu: Option<usize>,
    /// Make each job's local reference just before the job is sent, on its connection's
    /// thread, rather than all of them before the worker starts: local and remote compiles
    /// then alternate, and a change in the machine's load affects both alike.
    pub interleave_local: bool,
    /// Mount a tmpfs on the source directory (and use it as the local compiles' `TMPDIR`),
    /// so that local compiles write where a worker whose work directory is a tmpfs does.
    pub local_tmpfs: bool,
    /// Attempts per job before it counts as lost.
    pub max_attempts: u32,
    /// Distinct sources: job `n` compiles source `n % distinct` (0: every job its own, so
    /// the worker's store gains a blob per job; with a few, it stops growing).
    pub distinct: usize,
    /// With [`Config::interleave_local`], wait this long (ms) after each reply before the
    /// next local compile: the worker's work after a reply (removing the root, the next
    /// spare root) then lands outside the local compile that is the baseline (0: none).
    pub gap_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            jobs: 600,
            restart_every: 200,
            connections: 2,
            jobs_per_connection: 50,
            sample_every: 10,
            warmup_samples: 4,
            window: 5,
            slots: 2,
            keep_work_dir: true,
            worker_cpu: None,
            local_cpu: None,
            interleave_local: false,
            local_tmpfs: false,
            max_attempts: 5,
            distinct: 0,
            gap_ms: 0,
        }
    }
}

impl Config {
    /// The source job `n` compiles.
    fn source_of(&self, n: usize) -> usize {
        if self.distinct == 0 {
            n
        } else {
            n % self.distinct
        }
    }

    /// How many distinct sources the jobs compile.
    fn sources(&self) -> usize {
        if self.distinct == 0 {
            self.jobs
        } else {
            self.distinct.min(self.jobs)
        }
    }

    /// [`Config::default`], with any of these environment variables overriding its fields:
    /// `SOAK_JOBS`, `SOAK_RESTART_EVERY`, `SOAK_CONNECTIONS`, `SOAK_JOBS_PER_CONNECTION`,
    /// `SOAK_SAMPLE_EVERY`, `SOAK_WARMUP_SAMPLES`, `SOAK_WINDOW`, `SOAK_SLOTS`, `SOAK_DISTINCT`,
    /// `SOAK_GAP_MS`,
    /// `SOAK_KEEP_WORK_DIR`, `SOAK_INTERLEAVE_LOCAL`, `SOAK_LOCAL_TMPFS` (0/1),
    /// `SOAK_WORKER_CPU`, `SOAK_LOCAL_CPU` (a CPU number, or empty for none). Panics on a
    /// value that does not parse.
    pub fn from_env(base: Config) -> Config {
        fn get<T: std::str::FromStr>(name: &str, field: &mut T) {
            if let Ok(v) = std::env::var(name) {
                *field = v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"));
            }
        }
        fn get_opt(name: &str, field: &mut Option<usize>) {
            if let Ok(v) = std::env::var(name) {
                *field = match v.trim() {
                    "" | "none" => None,
                    s => Some(
                        s.parse()
                            .unwrap_or_else(|_| panic!("{name}={v}: not a CPU number")),
                    ),
                };
            }
        }
        let mut c = base;
        get("SOAK_JOBS", &mut c.jobs);
        get("SOAK_RESTART_EVERY", &mut c.restart_every);
        get("SOAK_CONNECTIONS", &mut c.connections);
        get("SOAK_JOBS_PER_CONNECTION", &mut c.jobs_per_connection);
        get("SOAK_SAMPLE_EVERY", &mut c.sample_every);
        get("SOAK_WARMUP_SAMPLES", &mut c.warmup_samples);
        get("SOAK_WINDOW", &mut c.window);
        get("SOAK_SLOTS", &mut c.slots);
        get("SOAK_DISTINCT", &mut c.distinct);
        get("SOAK_GAP_MS", &mut c.gap_ms);
        for (name, flag) in [
            ("SOAK_KEEP_WORK_DIR", &mut c.keep_work_dir),
            ("SOAK_INTERLEAVE_LOCAL", &mut c.interleave_local),
            ("SOAK_LOCAL_TMPFS", &mut c.local_tmpfs),
        ] {
            let mut v = u8::from(*flag);
            get(name, &mut v);
            *flag = v != 0;
        }
        get_opt("SOAK_WORKER_CPU", &mut c.worker_cpu);
        get_opt("SOAK_LOCAL_CPU", &mut c.local_cpu);
        c
    }
}

/// What the flatness check allows per worker lifetime: the mean of the last
/// [`Config::window`] samples minus the mean of the first `window` after warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most growth of VmRSS, KiB.
    pub rss_growth_kib: f64,
    /// Most growth of the open descriptor count.
    pub fd_growth: f64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            rss_growth_kib: 20.0 * 1024.0,
            fd_growth: 4.0,
        }
    }
}

/// One reading of the worker, taken with no job in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Jobs completed (in all lifetimes) when it was taken.
    pub completed: usize,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/PID/fd`.
    pub fds: usize,
    /// Threads of the worker.
    pub threads: u64,
    /// Processes whose parent is the worker (jobs' inits, which exist only while a job
    /// runs).
    pub children: usize,
    /// Job roots in the work directory's `jobs/` (not yet removed).
    pub job_roots: usize,
    /// Spare roots in `jobs/` (`spare-N`: made ahead for the next job, never one a job ran
    /// in; at most two per slot).
    pub spare_roots: usize,
    /// Blobs in the work directory's store.
    pub store_blobs: usize,
}

/// One run of the worker process, from its start to the restart that ended it.
#[derive(Debug, Clone, Default)]
pub struct Lifetime {
    /// Its process id.
    pub pid: u32,
    /// Jobs completed before it started.
    pub first_job: usize,
    /// Jobs completed while it ran.
    pub jobs: usize,
    /// The readings, the first just after it started.
    pub samples: Vec<Sample>,
}

/// Means at either end of a lifetime, and maxima.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trend {
    /// Mean VmRSS (KiB) of the first `window` samples after warm-up.
    pub rss_first_kib: f64,
    /// Mean VmRSS (KiB) of the last `window` samples.
    pub rss_last_kib: f64,
    /// Largest VmRSS (KiB) of the lifetime.
    pub rss_max_kib: u64,
    /// Mean descriptor count of the first `window` samples after warm-up.
    pub fds_first: f64,
    /// Mean descriptor count of the last `window` samples.
    pub fds_last: f64,
    /// Largest descriptor count of the lifetime.
    pub fds_max: usize,
    /// Samples the means were taken from (after warm-up).
    pub samples: usize,
}

impl Lifetime {
    /// The lifetime's trend: the first `warmup` samples are left out, then the mean of the
    /// first and last `window` of the rest (they overlap when there are fewer than
    /// `2 * window`). `None` with no sample after warm-up.
    pub fn trend(&self, warmup: usize, window: usize) -> Option<Trend> {
        let s = self.samples.get(warmup..).filter(|s| !s.is_empty())?;
        let w = window.clamp(1, s.len());
        let mean =
            |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
        let (first, last) = (&s[..w], &s[s.len() - w..]);
        Some(Trend {
            rss_first_kib: mean(first, |x| x.rss_kib as f64),
            rss_last_kib: mean(last, |x| x.rss_kib as f64),
            rss_max_kib: self.samples.iter().map(|x| x.rss_kib).max().unwrap_or(0),
            fds_first: mean(first, |x| x.fds as f64),
            fds_last: mean(last, |x| x.fds as f64),
            fds_max: self.samples.iter().map(|x| x.fds).max().unwrap_or(0),
            samples: s.len(),
        })
    }
}

/// What happened to one job.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    /// Times it was sent.
    pub attempts: u32,
    /// Attempts cut by a restart (the connection closed or failed while the worker was
    /// being restarted).
    pub cut: u32,
    /// `JobDone` replies it got (exactly one when all is well).
    pub replies: u32,
    /// The rejection, if the worker declined it.
    pub rejected: Option<String>,
    /// What was wrong with its reply or its attempts (wrong id, wrong object, a connection
    /// error with no restart to explain it, …).
    pub problems: Vec<String>,
    /// Sending the job to receiving its reply, µs (the successful attempt).
    pub round_trip_us: u64,
    /// The local reference compile of the same source, µs.
    pub local_us: u64,
    /// The worker's reported `compile_ms`.
    pub compile_ms: u64,
}

/// The local reference for one job.
#[derive(Debug, Clone, Copy)]
struct Expected {
    digest: Digest,
    local_us: u64,
}

/// Everything a soak measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub config: Config,
    /// Per job, by job number.
    pub jobs: Vec<JobRecord>,
    /// Each run of the worker.
    pub lifetimes: Vec<Lifetime>,
    /// Restarts done.
    pub restarts: usize,
    /// From the first job sent to the last reply (restarts included, reference compiles
    /// not).
    pub duration: Duration,
    /// The local reference compiles.
    pub reference_duration: Duration,
    /// Frames a worker sent that nobody asked for (found when the driver closes a
    /// connection).
    pub unsolicited: Vec<String>,
    /// Problems of the run itself (a connection thread that panicked, …).
    pub errors: Vec<String>,
    /// The worker's log file (every lifetime), while the worker exists.
    pub log: PathBuf,
}

/// Percentiles of a set of values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// How many.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Mean.
    pub mean: f64,
}

impl Stats {
    /// The statistics of `v` (all zero when empty).
    pub fn of(v: &[f64]) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Stats {
            n: s.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            mean: s.iter().sum::<f64>() / s.len() as f64,
        }
    }
}

/// The worker's own per-job timings (`job timings` and `compiled` debug lines), by job id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Building the job root, µs.
    pub root_us: u64,
    /// Root, sandboxed compile and harvest, µs.
    pub total_us: u64,
    /// The sandboxed run (clone to reaping), ms.
    pub compiled_ms: Option<u64>,
    /// Whether the root was made from a spare root (workers that log it).
    pub spare: bool,
}

/// Reads the `job timings` (and `compiled`) lines of a worker log, by job id; a job logged
/// more than once (sent again after a restart) keeps its last timings.
pub fn job_timings(log: &str) -> BTreeMap<u64, Timing> {
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    let mut out: BTreeMap<u64, Timing> = BTreeMap::new();
    let mut compiled: BTreeMap<u64, u64> = BTreeMap::new();
    for line in log.lines() {
        let Some(job) = field(line, "job") else {
            continue;
        };
        // `LEVEL target: message field=value …` (tracing's default format).
        if line.contains(": job timings ") {
            if let (Some(root_us), Some(total_us)) =
                (field(line, "root_us"), field(line, "total_us"))
            {
                out.insert(
                    job,
                    Timing {
                        root_us,
                        total_us,
                        compiled_ms: compiled.remove(&job),
                        spare: line.split_whitespace().any(|w| w == "spare=true"),
                    },
                );
            }
        } else if line.contains(": compiled ")
            && let Some(ms) = field(line, "ms")
        {
            compiled.insert(job, ms);
        }
    }
    out
}

/// Per-job overhead at the worker and at the peer, beyond the local compile of the same
/// source (`Report::overhead`); all in µs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overhead {
    /// Jobs counted (after warm-up, never cut, logged by the worker).
    pub jobs: usize,
    /// Of them, those whose root was made from a spare root.
    pub from_spare: usize,
    /// The local compile.
    pub local: Stats,
    /// The worker's `total_us`: job root, sandboxed compile, harvest.
    pub worker_total: Stats,
    /// The worker's `root_us`.
    pub worker_root: Stats,
    /// `total_us` minus the same job's local compile.
    pub worker_minus_local: Stats,
    /// The sandboxed run (`compile_ms`, clone to reaping, whole milliseconds rounded down:
    /// + 0.5 ms each) minus the local compile; only its mean means much.
    pub sandboxed_minus_local: Stats,
    /// `total_us` minus the job root and the sandboxed run (+ 0.5 ms): harvesting the
    /// outputs, packing the reply; likewise a mean.
    pub harvest: Stats,
    /// The peer's round trip (job sent to reply read) minus the local compile.
    pub round_trip_minus_local: Stats,
}

/// Source `n`'s text, relative name and object name.
fn job_files(n: usize) -> (String, String, String) {
    (
        format!("int f_{n}(void) {{ return {n}; }}\n"),
        format!("s{n}.c"),
        format!("s{n}.o"),
    )
}

fn argv_of(n: usize) -> Vec<String> {
    let (_, c, o) = job_files(n);
    [GCC, "-O2", "-c", &c, "-o", &o]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Pins the calling process (or a child about to exec) to `cpu`.
fn pin_self(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; plain syscall on our own process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Compiles job `n` locally in `dir`, as the worker will (same path, same command, the
/// host's clean environment); the object's digest and the compile's wall time.
/// With `tmpdir`, gcc's temporary files go to `dir` too.
fn reference(dir: &Path, n: usize, cpu: Option<usize>, tmpdir: bool) -> Result<Expected, String> {
    let (src, c, o) = job_files(n);
    std::fs::write(dir.join(&c), &src).map_err(|e| format!("{c}: {e}"))?;
    let argv = argv_of(n);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C");
    if tmpdir {
        cmd.env("TMPDIR", dir);
    }
    if let Some(cpu) = cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: sched_setaffinity only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || pin_self(cpu));
        }
    }
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("gcc: {e}"))?;
    let local_us = t.elapsed().as_micros() as u64;
    if !out.status.success() {
        return Err(format!("local compile of {c} failed: {out:?}"));
    }
    let obj = dir.join(&o);
    let bytes = std::fs::read(&obj).map_err(|e| format!("{o}: {e}"))?;
    let _ = std::fs::remove_file(&obj);
    Ok(Expected {
        digest: Digest::of(&bytes),
        local_us,
    })
}

/// Every source's reference: one at a time on `cfg.local_cpu`, or `cfg.connections` at once.
fn references(dir: &Path, cfg: &Config) -> Vec<Expected> {
    let (jobs, cpu) = (cfg.sources(), cfg.local_cpu);
    let next = AtomicUsize::new(0);
    let threads = if cpu.is_some() {
        1
    } else {
        cfg.connections.max(1)
    };
    let mut all: Vec<(usize, Expected)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= jobs {
                            return mine;
                        }
                        let e = reference(dir, n, cpu, cfg.local_tmpfs)
                            .unwrap_or_else(|e| panic!("{e}"));
                        mine.push((n, e));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a reference compile thread panicked"))
            .collect()
    });
    all.sort_by_key(|(n, _)| *n);
    all.into_iter().map(|(_, e)| e).collect()
}

/// The counters the connection threads and the controller share.
#[derive(Debug, Default)]
struct Ctl {
    /// No new job is handed out (a sample is being taken).
    paused: bool,
    /// Jobs handed out and not yet answered.
    in_flight: usize,
    /// Jobs answered.
    completed: usize,
    /// Connection threads still running.
    running: usize,
}

struct Shared<'a> {
    cfg: &'a Config,
    addr: SocketAddr,
    dir: String,
    cc: CompilerRef,
    base: JobSpec,
    /// Made before the run, or empty with [`Config::interleave_local`].
    expected: &'a [Expected],
    ctl: Mutex<Ctl>,
    cv: Condvar,
    next: AtomicUsize,
    /// Bumped just before each restart kills the worker: an attempt that fails while it
    /// changed was cut by the restart.
    generation: AtomicU64,
}

impl Shared<'_> {
    fn ctl(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, once the controller lets jobs out; `None` when all are handed out.
    fn claim(&self) -> Option<usize> {
        let mut c = self.ctl();
        while c.paused {
            c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.cfg.jobs {
            return None;
        }
        c.in_flight += 1;
        Some(n)
    }

    fn answered(&self) {
        let mut c = self.ctl();
        c.in_flight -= 1;
        c.completed += 1;
        self.cv.notify_all();
    }

    /// Job `n` as the host would send it.
    fn spec(&self, n: usize) -> JobSpec {
        let k = self.cfg.source_of(n);
        let (src, c, _) = job_files(k);
        let mut spec = self.base.clone();
        spec.job.job_id = n as u64 + 1;
        spec.job.argv = argv_of(k);
        spec.file(&format!("{}/{c}", self.dir), src.as_bytes());
        spec
    }
}

/// Marks a connection thread finished however it ends (a panic included), with the job it
/// had in flight given up.
struct Running<'a> {
    sh: &'a Shared<'a>,
    busy: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut c = self.sh.ctl();
        c.running -= 1;
        if self.busy {
            c.in_flight -= 1;
        }
        self.sh.cv.notify_all();
    }
}

/// A greeted connection that has asked about the compiler, as the host's connections do.
fn connect(sh: &Shared<'_>) -> Result<Peer, String> {
    let deadline = Instant::now() + RECONNECT_LIMIT;
    loop {
        let err = match Peer::connect(sh.addr) {
            Ok(mut p) => match p.query(&sh.cc) {
                Ok(_) => return Ok(p),
                Err(e) => format!("toolchain query: {e}"),
            },
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "no connection to {} within {RECONNECT_LIMIT:?}: {err}",
                sh.addr
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Closes a connection from our side; the worker must close it too without sending
/// anything (an answer to nothing would be a duplicate). A connection cut by a restart
/// ends with an error or at once, which is fine.
fn close(p: Peer) -> Option<String> {
    let mut p = p;
    let _ = p.stream.shutdown(Shutdown::Write);
    let _ = p.stream.set_read_timeout(Some(Duration::from_secs(10)));
    match p.recv() {
        Ok(Some((m, _))) => Some(format!("{m:?}")),
        _ => None,
    }
}

/// A connection, and the restart generation it was opened in.
type Conn = (Peer, u64);

/// Sends job `n` until it gets an answer (a restart cuts an attempt: the job goes again on
/// a new connection).
fn run_job(sh: &Shared<'_>, n: usize, expected: Expected, peer: &mut Option<Conn>) -> JobRecord {
    let spec = sh.spec(n);
    let id = spec.job.job_id;
    let (_, _, o) = job_files(sh.cfg.source_of(n));
    let out_path = format!("{}/{o}", sh.dir);
    let mut rec = JobRecord {
        local_us: expected.local_us,
        ..JobRecord::default()
    };
    while rec.attempts < sh.cfg.max_attempts {
        rec.attempts += 1;
        // A connection opened before a restart is cut by it, even if idle meanwhile.
        let generation = match peer {
            Some((_, g)) => *g,
            None => sh.generation.load(Ordering::SeqCst),
        };
        let failed = |rec: &mut JobRecord, what: String| {
            if sh.generation.load(Ordering::SeqCst) == generation {
                rec.problems
                    .push(format!("attempt {}: {what} (no restart)", rec.attempts));
            } else {
                rec.cut += 1;
            }
        };
        let (p, _) = match peer {
            Some(c) => c,
            None => match connect(sh) {
                Ok(p) => peer.insert((p, generation)),
                Err(e) => {
                    failed(&mut rec, e);
                    continue;
                }
            },
        };
        let t = Instant::now();
        let reply = p.job(&spec.job, &spec.blobs);
        let round_trip_us = t.elapsed().as_micros() as u64;
        match reply {
            JobReply::Done {
                done,
                stdout,
                stderr,
                files,
            } => {
                rec.replies += 1;
                rec.round_trip_us = round_trip_us;
                rec.compile_ms = done.compile_ms;
                if done.job_id != id {
                    rec.problems
                        .push(format!("the reply is for job {}, not {id}", done.job_id));
                }
                if done.status != ExitStatus::Code(0) || !stdout.is_empty() || !stderr.is_empty() {
                    rec.problems.push(format!(
                        "status {:?}, stdout {:?}, stderr {:?}",
                        done.status,
                        String::from_utf8_lossy(&stdout),
                        String::from_utf8_lossy(&stderr)
                    ));
                }
                let names: Vec<&String> = files.keys().collect();
                if names != [&out_path] {
                    rec.problems
                        .push(format!("outputs {names:?}, expected only {out_path}"));
                }
                if let Some(obj) = files.get(&out_path)
                    && Digest::of(obj) != expected.digest
                {
                    rec.problems
                        .push(format!("{out_path} differs from the local compile"));
                }
                return rec;
            }
            JobReply::Rejected(r) => {
                rec.rejected = Some(r);
                return rec;
            }
            JobReply::Closed => {
                *peer = None;
                failed(&mut rec, "connection closed without an answer".into());
            }
            JobReply::Error(e) => {
                *peer = None;
                failed(&mut rec, format!("error: {e}"));
            }
        }
    }
    rec
}

/// One connection thread: jobs until none is left.
fn connection_thread(sh: &Shared<'_>) -> (Vec<(usize, JobRecord)>, Vec<String>) {
    let mut running = Running { sh, busy: false };
    let mut out = Vec::new();
    let mut unsolicited = Vec::new();
    let mut peer: Option<Conn> = None;
    let mut on_this = 0;
    while let Some(n) = sh.claim() {
        running.busy = true;
        let k = sh.cfg.source_of(n);
        let expected = match sh.expected.get(k) {
            Some(e) => *e,
            None => {
                std::thread::sleep(Duration::from_millis(sh.cfg.gap_ms));
                reference(Path::new(&sh.dir), k, sh.cfg.local_cpu, sh.cfg.local_tmpfs)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        };
        let rec = run_job(sh, n, expected, &mut peer);
        running.busy = false;
        sh.answered();
        out.push((n, rec));
        on_this += 1;
        if sh.cfg.jobs_per_connection > 0 && on_this >= sh.cfg.jobs_per_connection {
            on_this = 0;
            if let Some((p, _)) = peer.take()
                && let Some(frame) = close(p)
            {
                unsolicited.push(format!("after job {n}: {frame}"));
            }
        }
    }
    if let Some((p, _)) = peer.take()
        && let Some(frame) = close(p)
    {
        unsolicited.push(format!("at the end: {frame}"));
    }
    (out, unsolicited)
}

/// A tmpfs mounted on a directory of the host, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| rd.count())
}

/// Entries of the worker's `jobs/`: job roots, and spare roots (`spare-N`).
fn count_roots(jobs: &Path) -> (usize, usize) {
    let names: Vec<bool> = std::fs::read_dir(jobs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().starts_with("spare-"))
        .collect();
    let spares = names.iter().filter(|s| **s).count();
    (names.len() - spares, spares)
}

/// One reading of process `pid` (its work directory seen through its own root).
fn read_sample(pid: u32, completed: usize) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .map_or(0, |c| c.split_whitespace().count())
        })
        .sum();
    let work = PathBuf::from(format!("/proc/{pid}/root/tmp/offload-worker"));
    let store_blobs = std::fs::read_dir(work.join("store"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|fan| count_entries(&fan.path()))
        .sum();
    let (job_roots, spare_roots) = count_roots(&work.join("jobs"));
    Sample {
        completed,
        rss_kib: field("VmRSS:"),
        fds: count_entries(Path::new(&format!("/proc/{pid}/fd"))),
        threads: field("Threads:"),
        children,
        job_roots,
        spare_roots,
        store_blobs,
    }
}

/// A reading once the worker has settled: no child, no job root left, and the descriptor
/// count the same twice in a row (a reply goes out before its root is removed); after a
/// second at most, whatever it is then.
fn settled_sample(pid: u32, completed: usize) -> Sample {
    let mut last = read_sample(pid, completed);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let s = read_sample(pid, completed);
        if s.children == 0 && s.job_roots == 0 && s.fds == last.fds {
            return s;
        }
        last = s;
    }
    last
}

/// The worker's `/tmp/offload-worker` kept across restarts: a host directory bound onto it
/// (and the work directory's setup snippet for [`NetnsWorker::start_with_setup`]).
fn work_dir_setup(cfg: &Config, host_dir: &Path) -> String {
    let mut steps = Vec::new();
    if let Some(cpu) = cfg.worker_cpu {
        // The shell pins itself, then execs the worker: every thread and compile inherits it.
        steps.push(format!("taskset -p -c {cpu} $$ >/dev/null"));
    }
    if cfg.keep_work_dir {
        steps.push(format!(
            "mkdir -p /tmp/offload-worker && mount --bind {} /tmp/offload-worker",
            crate::cmd::shell_quote(&host_dir.to_string_lossy())
        ));
    }
    steps.join(" && ")
}

fn worker_pid(w: &NetnsWorker) -> u32 {
    let pid = w.pid().expect("the worker runs");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "offload",
        "process {pid} is not the worker: RSS and descriptors would be another process's"
    );
    pid
}

/// Runs a soak against a worker of its own (see the module's documentation). `name` makes
/// the source directory (`/tmp/offload-e2e/NAME`) and the kept work directory
/// (`/var/tmp/offload-e2e-NAME-PID`) unique. Returns the report and the worker, still
/// running (its log is [`Report::log`]).
pub fn run(name: &str, cfg: &Config) -> (Report, NetnsWorker) {
    assert!(cfg.jobs > 0 && cfg.connections > 0 && cfg.sample_every > 0);
    let dir = crate::twice::fresh_dir(name);
    let dir_s = dir.to_string_lossy().into_owned();
    let tmpfs = cfg.local_tmpfs.then(|| Tmpfs::mount(&dir));
    let t0 = Instant::now();
    let expected = if cfg.interleave_local {
        Vec::new()
    } else {
        references(&dir, cfg)
    };
    let reference_duration = t0.elapsed();
    let host_work = PathBuf::from(format!(
        "/var/tmp/offload-e2e-{name}-{}",
        std::process::id()
    ));
    if cfg.keep_work_dir {
        let _ = std::fs::remove_dir_all(&host_work);
        std::fs::create_dir_all(&host_work)
            .unwrap_or_else(|e| panic!("{}: {e}", host_work.display()));
    }
    let worker = NetnsWorker::start_with_setup(cfg.slots, &work_dir_setup(cfg, &host_work));
    let cc = peer::compiler_ref(GCC);
    let mut base = JobSpec::new(&cc, &dir_s, &[GCC]);
    base.system_includes(GCC);
    let sh = Shared {
        cfg,
        addr: worker.addr(),
        dir: dir_s,
        cc,
        base,
        expected: &expected,
        ctl: Mutex::new(Ctl {
            running: cfg.connections,
            ..Ctl::default()
        }),
        cv: Condvar::new(),
        next: AtomicUsize::new(0),
        generation: AtomicU64::new(0),
    };
    let mut lifetimes = vec![Lifetime {
        pid: worker_pid(&worker),
        first_job: 0,
        jobs: 0,
        samples: vec![settled_sample(worker_pid(&worker), 0)],
    }];
    let mut restarts = 0;
    let mut errors = Vec::new();
    let started = Instant::now();
    let (records, unsolicited) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.connections)
            .map(|_| s.spawn(|| connection_thread(&sh)))
            .collect();
        // The controller: samples every `sample_every` jobs, restarts every `restart_every`.
        let mut next_sample = cfg.sample_every;
        let mut next_restart = if cfg.restart_every == 0 {
            usize::MAX
        } else {
            cfg.restart_every
        };
        loop {
            let mut c = sh.ctl();
            while c.running > 0 && c.completed < next_sample.min(cfg.jobs) {
                c = sh.cv.wait(c).unwrap_or_else(|p| p.into_inner());
            }
            if c.running == 0 {
                break;
            }
            c.paused = true;
            while c.in_flight > 0 {
                c = sh.cv.wait(c).unwrap_or_else(|p| p.into_inner());
            }
            let completed = c.completed;
            drop(c);
            let life = lifetimes.last_mut().expect("a lifetime");
            life.samples.push(settled_sample(life.pid, completed));
            life.jobs = completed - life.first_job;
            while next_sample <= completed {
                next_sample += cfg.sample_every;
            }
            let restart = completed >= next_restart && completed < cfg.jobs;
            let mut c = sh.ctl();
            c.paused = false;
            sh.cv.notify_all();
            if completed >= cfg.jobs {
                break;
            }
            if !restart {
                continue;
            }
            // Restart with jobs in flight: wait until one is out, then a little more (a
            // different moment of a job each time).
            let deadline = Instant::now() + Duration::from_secs(2);
            while c.in_flight == 0 && c.running > 0 && Instant::now() < deadline {
                c = sh
                    .cv
                    .wait_timeout(c, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(c);
            std::thread::sleep(Duration::from_millis((restarts as u64 * 7) % 23));
            sh.generation.fetch_add(1, Ordering::SeqCst);
            worker.restart(cfg.slots);
            restarts += 1;
            while next_restart <= completed {
                next_restart += cfg.restart_every;
            }
            let first_job = sh.ctl().completed;
            let life = lifetimes.last_mut().expect("a lifetime");
            life.jobs = first_job - life.first_job;
            let pid = worker_pid(&worker);
            lifetimes.push(Lifetime {
                pid,
                first_job,
                jobs: 0,
                samples: vec![read_sample(pid, first_job)],
            });
        }
        let mut records = Vec::new();
        let mut unsolicited = Vec::new();
        for h in handles {
            match h.join() {
                Ok((r, u)) => {
                    records.extend(r);
                    unsolicited.extend(u);
                }
                Err(e) => errors.push(format!("a connection thread panicked: {e:?}")),
            }
        }
        (records, unsolicited)
    });
    let duration = started.elapsed();
    let completed = sh.ctl().completed;
    if let Some(life) = lifetimes.last_mut() {
        life.jobs = completed - life.first_job;
        // The threads may all have ended before the controller took the last sample (their
        // connections are closed by then: a descriptor or two fewer).
        if life.samples.last().is_some_and(|s| s.completed < completed) {
            life.samples.push(settled_sample(life.pid, completed));
        }
    }
    let mut jobs = vec![JobRecord::default(); cfg.jobs];
    for (n, r) in records {
        if jobs[n].attempts > 0 {
            errors.push(format!("job {n} was handed out twice"));
        }
        jobs[n] = r;
    }
    if cfg.keep_work_dir {
        // Store, toolchain template and whatever the last worker left: small, and only this
        // run's.
        let _ = std::fs::remove_dir_all(&host_work);
    }
    drop(tmpfs);
    let _ = std::fs::remove_dir_all(&dir);
    let report = Report {
        config: cfg.clone(),
        jobs,
        lifetimes,
        restarts,
        duration,
        reference_duration,
        unsolicited,
        errors,
        log: worker.log_path().to_owned(),
    };
    (report, worker)
}

impl Report {
    /// Jobs that never got an answer.
    pub fn lost(&self) -> Vec<usize> {
        (0..self.jobs.len())
            .filter(|&n| self.jobs[n].replies == 0 && self.jobs[n].rejected.is_none())
            .collect()
    }

    /// Jobs answered more than once, and frames nobody asked for.
    pub fn duplicated(&self) -> usize {
        self.jobs.iter().filter(|j| j.replies > 1).count() + self.unsolicited.len()
    }

    /// Attempts cut by a restart, in all.
    pub fn cut(&self) -> u32 {
        self.jobs.iter().map(|j| j.cut).sum()
    }

    /// Jobs that needed more than one attempt.
    pub fn retried(&self) -> usize {
        self.jobs.iter().filter(|j| j.attempts > 1).count()
    }

    /// Everything that is wrong: lost, duplicated, rejected or wrong jobs, unexplained
    /// connection errors, the run's own errors, job roots or children left at a sample,
    /// and lifetimes whose RSS or descriptors grew beyond `bounds`. Empty when all is well.
    pub fn violations(&self, bounds: Bounds) -> Vec<String> {
        let mut v = self.errors.clone();
        let lost = self.lost();
        if !lost.is_empty() {
            v.push(format!(
                "{} jobs lost (no answer after {} attempts): {:?}",
                lost.len(),
                self.config.max_attempts,
                &lost[..lost.len().min(20)]
            ));
        }
        for (n, j) in self.jobs.iter().enumerate() {
            if j.replies > 1 {
                v.push(format!("job {n} answered {} times", j.replies));
            }
            if let Some(r) = &j.rejected {
                v.push(format!("job {n} rejected: {r}"));
            }
            for p in &j.problems {
                v.push(format!("job {n}: {p}"));
            }
        }
        for u in &self.unsolicited {
            v.push(format!("a frame nobody asked for {u}"));
        }
        for (i, life) in self.lifetimes.iter().enumerate() {
            for s in &life.samples[1..] {
                if s.children != 0 || s.job_roots != 0 {
                    v.push(format!(
                        "lifetime {i} (pid {}), after {} jobs, with no job in flight: {} children, {} job roots left",
                        life.pid, s.completed, s.children, s.job_roots
                    ));
                }
                let most = 2 * self.config.slots as usize;
                if s.spare_roots > most {
                    v.push(format!(
                        "lifetime {i} (pid {}), after {} jobs: {} spare roots (at most {most})",
                        life.pid, s.completed, s.spare_roots
                    ));
                }
            }
            let Some(t) = life.trend(self.config.warmup_samples, self.config.window) else {
                continue;
            };
            let rss = t.rss_last_kib - t.rss_first_kib;
            if rss > bounds.rss_growth_kib {
                v.push(format!(
                    "lifetime {i} (pid {}): RSS grew by {rss:.0} KiB (mean {:.0} → {:.0} KiB over {} jobs), bound {:.0} KiB",
                    life.pid, t.rss_first_kib, t.rss_last_kib, life.jobs, bounds.rss_growth_kib
                ));
            }
            let fds = t.fds_last - t.fds_first;
            if fds > bounds.fd_growth {
                v.push(format!(
                    "lifetime {i} (pid {}): open descriptors grew by {fds:.1} (mean {:.1} → {:.1} over {} jobs), bound {}",
                    life.pid, t.fds_first, t.fds_last, life.jobs, bounds.fd_growth
                ));
            }
        }
        v
    }

    /// The worker's per-job overhead beyond the local compile (needs the worker's debug
    /// log: `OFFLOAD_LOG=offload_worker=debug`); the first `warmup` jobs and every job cut
    /// by a restart are left out. `None` when the log has no timings.
    pub fn overhead(&self, warmup: usize) -> Option<Overhead> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        let timings = job_timings(&log);
        if timings.is_empty() {
            return None;
        }
        let mut local = Vec::new();
        let mut total = Vec::new();
        let mut root = Vec::new();
        let mut minus = Vec::new();
        let mut rtt = Vec::new();
        let mut sandboxed = Vec::new();
        let mut harvest = Vec::new();
        let mut from_spare = 0;
        for (n, j) in self.jobs.iter().enumerate().skip(warmup) {
            let Some(t) = timings.get(&(n as u64 + 1)) else {
                continue;
            };
            if j.attempts != 1 || j.replies != 1 {
                continue;
            }
            let l = j.local_us as f64;
            from_spare += usize::from(t.spare);
            local.push(l);
            total.push(t.total_us as f64);
            root.push(t.root_us as f64);
            minus.push(t.total_us as f64 - l);
            rtt.push(j.round_trip_us as f64 - l);
            let run = j.compile_ms as f64 * 1000.0 + 500.0;
            sandboxed.push(run - l);
            harvest.push(t.total_us as f64 - t.root_us as f64 - run);
        }
        Some(Overhead {
            jobs: local.len(),
            from_spare,
            local: Stats::of(&local),
            worker_total: Stats::of(&total),
            worker_root: Stats::of(&root),
            worker_minus_local: Stats::of(&minus),
            sandboxed_minus_local: Stats::of(&sandboxed),
            harvest: Stats::of(&harvest),
            round_trip_minus_local: Stats::of(&rtt),
        })
    }

    /// A readable summary (Markdown tables), as `bench/soak.sh` prints it.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let secs = self.duration.as_secs_f64();
        let _ = writeln!(
            s,
            "soak: {} jobs ({} distinct sources), {} connections ({} jobs each before reconnecting), worker --slots {}, restart every {} jobs, work dir {}",
            c.jobs,
            c.sources(),
            c.connections,
            c.jobs_per_connection,
            c.slots,
            c.restart_every,
            if c.keep_work_dir {
                "kept across restarts"
            } else {
                "fresh per run"
            }
        );
        let _ = writeln!(
            s,
            "{} restarts; {:.1} s ({:.1} jobs/s; local references {:.1} s before); answered {}, lost {}, duplicated {}, rejected {}, wrong {}; attempts cut by a restart {}, jobs sent again {}",
            self.restarts,
            secs,
            c.jobs as f64 / secs,
            self.reference_duration.as_secs_f64(),
            self.jobs.iter().filter(|j| j.replies > 0).count(),
            self.lost().len(),
            self.duplicated(),
            self.jobs.iter().filter(|j| j.rejected.is_some()).count(),
            self.jobs.iter().filter(|j| !j.problems.is_empty()).count(),
            self.cut(),
            self.retried(),
        );
        let _ = writeln!(
            s,
            "\nPer lifetime (samples with no job in flight, every {} jobs; means of the first {} after {} warm-up samples and of the last {}):\n",
            c.sample_every, c.window, c.warmup_samples, c.window
        );
        let _ = writeln!(
            s,
            "| lifetime | jobs | samples | RSS start | RSS first | RSS last | RSS max | growth | fds start | fds first | fds last | fds max | threads last | store blobs at end |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (i, life) in self.lifetimes.iter().enumerate() {
            let start = life.samples.first().copied();
            let end = life.samples.last().copied();
            let Some(t) = life.trend(c.warmup_samples, c.window) else {
                let _ = writeln!(
                    s,
                    "| {i} | {} | {} | too few samples after warm-up |",
                    life.jobs,
                    life.samples.len()
                );
                continue;
            };
            let _ = writeln!(
                s,
                "| {i} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.2} MiB | {} | {:.1} | {:.1} | {} | {} | {} |",
                life.jobs,
                life.samples.len(),
                start.map_or(0, |x| x.rss_kib) as f64 / 1024.0,
                t.rss_first_kib / 1024.0,
                t.rss_last_kib / 1024.0,
                t.rss_max_kib as f64 / 1024.0,
                (t.rss_last_kib - t.rss_first_kib) / 1024.0,
                start.map_or(0, |x| x.fds),
                t.fds_first,
                t.fds_last,
                t.fds_max,
                end.map_or(0, |x| x.threads),
                end.map_or(0, |x| x.store_blobs),
            );
        }
        let _ = writeln!(
            s,
            "\nVmRSS (MiB) / descriptors after so many jobs, up to eleven points per lifetime:\n"
        );
        for (i, life) in self.lifetimes.iter().enumerate() {
            let n = life.samples.len();
            let points: Vec<String> = (0..=10)
                .map(|p| p * (n.max(1) - 1) / 10)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|k| {
                    let x = life.samples[k];
                    format!(
                        "{}: {:.2}/{}",
                        x.completed,
                        x.rss_kib as f64 / 1024.0,
                        x.fds
                    )
                })
                .collect();
            let _ = writeln!(s, "- lifetime {i}: {}", points.join(", "));
        }
        let rtt: Vec<f64> = self
            .jobs
            .iter()
            .filter(|j| j.replies == 1 && j.attempts == 1)
            .map(|j| j.round_trip_us as f64 / 1000.0)
            .collect();
        let r = Stats::of(&rtt);
        let local: Vec<f64> = self
            .jobs
            .iter()
            .map(|j| j.local_us as f64 / 1000.0)
            .collect();
        let l = Stats::of(&local);
        let _ = writeln!(
            s,
            "\nRound trip per job (not cut): median {:.1} ms, p95 {:.1} ms; local compile: median {:.1} ms, p95 {:.1} ms",
            r.p50, r.p95, l.p50, l.p95
        );
        s
    }
}

impl Overhead {
    /// A Markdown table, in ms.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} jobs ({} of them in a root made from a spare root)\n",
            self.jobs, self.from_spare
        );
        let _ = writeln!(s, "| per job | median | p95 | mean |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (name, st) in [
            ("local `gcc -O2 -c` (the compiler's own run)", self.local),
            (
                "worker: job root + sandboxed compile + harvest (`total_us`)",
                self.worker_total,
            ),
            ("worker: job root (`root_us`)", self.worker_root),
            (
                "**worker overhead**: `total_us` − local compile",
                self.worker_minus_local,
            ),
            (
                "of which: sandboxed run (`compile_ms` + 0.5) − local compile",
                self.sandboxed_minus_local,
            ),
            (
                "of which: harvest and the rest (`total_us` − `root_us` − run)",
                self.harvest,
            ),
            (
                "peer round trip − local compile",
                self.round_trip_minus_local,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
                st.p50 / 1000.0,
                st.p95 / 1000.0,
                st.mean / 1000.0
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_read_from_the_log() {
        let log = "\
2026-11-26T10:00:00.000001Z DEBUG offload_worker::server: compiled job=3 ms=14
2026-11-26T10:00:00.000002Z DEBUG offload_worker::server: job timings job=3 root_us=610 total_us=15890
2026-11-26T10:00:00.000003Z  INFO offload_worker::server: rejected: x job=4
2026-11-26T10:00:00.000004Z DEBUG offload_worker::server: job timings job=5 root_us=700 total_us=16000 spare=true
";
        let t = job_timings(log);
        assert_eq!(
            t.get(&3),
            Some(&Timing {
                root_us: 610,
                total_us: 15890,
                compiled_ms: Some(14),
                spare: false,
            })
        );
        assert_eq!(t.get(&5).map(|t| t.compiled_ms), Some(None));
        assert_eq!(t.get(&5).map(|t| t.spare), Some(true));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of(&v);
        assert_eq!((s.p50, s.p95, s.n), (50.0, 95.0, 100));
        assert_eq!(Stats::of(&[7.0]).p95, 7.0);
    }

    #[test]
    fn a_trend_skips_warm_up_and_averages_each_end() {
        let s = |rss, fds| Sample {
            completed: 0,
            rss_kib: rss,
            fds,
            threads: 1,
            children: 0,
            job_roots: 0,
            spare_roots: 0,
            store_blobs: 0,
        };
        let life = Lifetime {
            pid: 1,
            first_job: 0,
            jobs: 50,
            samples: vec![s(1, 3), s(100, 9), s(110, 9), s(120, 10), s(130, 11)],
        };
        let t = life.trend(1, 2).expect("trend");
        assert_eq!(
            (t.rss_first_kib, t.rss_last_kib, t.rss_max_kib),
            (105.0, 125.0, 130)
        );
        assert_eq!((t.fds_first, t.fds_last, t.fds_max), (9.0, 10.5, 11));
        assert!(life.trend(5, 2).is_none());
    }
}
