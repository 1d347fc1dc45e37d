//! `offload build -- CMD…`: runs CMD with compiler calls intercepted.
//!
//! A private directory of links named like compilers goes first on PATH (and CC/CXX are
//! set when the user has not set them); each link runs the offload binary as a compiler
//! wrapper, which asks the coordinator in this process where to compile. With no worker
//! given, a local worker process is started so that the command always works.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UnixListener;

use offload_secure::Fingerprint;

use crate::auth::HostAuth;
use crate::compilers::MASQUERADE_NAMES;
use crate::coordinator::probecache::ProbeCache;
use crate::coordinator::remote::WorkerSpec;
use crate::coordinator::{self, Coordinator};
use crate::wrapper::{ENV_MASQ_DIR, ENV_SOCKET};

/// Settings of `offload build`.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Workers to use; empty starts a local one.
    pub workers: Vec<WorkerSpec>,
    /// This host's key and paired workers.
    pub auth: Arc<HostAuth>,
    /// Look for paired workers on the LAN, during the build too.
    pub discover: bool,
    /// Local compile slots.
    pub local_slots: usize,
    /// Slots of the local worker started when no worker is given.
    pub local_worker_slots: usize,
    /// Niceness added to local compiles (0: none).
    pub local_nice: i32,
    /// Print why compiles ran locally.
    pub verbose: bool,
    /// Fraction of remote results to check against a local compile.
    pub verify_rate: f64,
    /// Every distributable compile on a worker, none here (for checking workers).
    pub remote_only: bool,
    /// The command.
    pub command: Vec<String>,
}

/// Runs the build; returns the command's exit code.
pub async fn run(cfg: BuildConfig) -> anyhow::Result<i32> {
    let started = Instant::now();
    let Some((program, args)) = cfg.command.split_first() else {
        bail!("no build command given (usage: offload build -- make -j8)");
    };
    let tmp = tempfile::Builder::new()
        .prefix("offload-build-")
        .tempdir()
        .context("creating a private directory")?;
    let self_exe = std::env::current_exe()?.canonicalize()?;
    let masq = tmp.path().join("bin");
    std::fs::create_dir(&masq)?;
    for name in MASQUERADE_NAMES {
        std::os::unix::fs::symlink(&self_exe, masq.join(name))?;
    }

    let mut local_worker = None;
    let browser = if cfg.discover {
        crate::lan::start()
    } else {
        None
    };
    let mut found = Vec::new();
    if let Some(b) = &browser
        && cfg.workers.is_empty()
    {
        tokio::time::sleep(crate::lan::FIRST_LOOK).await;
        found = crate::lan::usable_now(b, &cfg.auth);
    }
    let workers = if cfg.workers.is_empty() && found.is_empty() {
        let host = cfg.auth.identity().fingerprint();
        let (child, spec) =
            start_local_worker(&self_exe, tmp.path(), cfg.local_worker_slots, &host).await?;
        local_worker = Some(child);
        vec![spec]
    } else {
        cfg.workers.clone()
    };

    let coord = Coordinator::new(
        coordinator::Config {
            local_slots: cfg.local_slots,
            queue_per_worker: 1,
            timeout_secs: 600,
            local_nice: cfg.local_nice,
            scratch: tmp.path().to_owned(),
            verify_rate: cfg.verify_rate,
            remote_only: cfg.remote_only,
        },
        &workers,
        cfg.auth.clone(),
        // A worker started for this build only (at a new port each time) keeps its results
        // in memory.
        if local_worker.is_some() {
            ProbeCache::open(None)
        } else {
            ProbeCache::open_default()
        },
    )
    .await;
    let following = browser.as_ref().map(|b| {
        let known: Vec<String> = workers.iter().map(|w| w.addr.clone()).collect();
        crate::lan::follow(b, coord.clone(), cfg.auth.clone(), known)
    });
    let sock = tmp.path().join("coordinator.sock");
    let listener = UnixListener::bind(&sock).context("binding the coordinator socket")?;
    let server = tokio::spawn(coord.clone().serve(listener));

    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut new_path = masq.clone().into_os_string();
    if !path.is_empty() {
        new_path.push(":");
        new_path.push(&path);
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("PATH", &new_path)
        .env(ENV_SOCKET, &sock)
        .env(ENV_MASQ_DIR, &masq);
    for (var, default) in [("CC", "cc"), ("CXX", "c++")] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, default);
        }
    }
    // As many jobs at once as there are compile slots here and on live workers, unless
    // the user said; a jobserver follows the slots as workers come and go.
    let plan = crate::parallel::plan(&cfg.command, &|k| std::env::var(k).ok(), coord.capacity());
    let (jobserver, parallelism) = apply_parallelism(&mut cmd, plan)?;
    let follow_slots = jobserver.map(|js| tokio::spawn(follow_capacity(js, coord.clone())));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    // Ctrl-C reaches the build command too; this process waits for it to finish.
    let status = {
        let following = async {
            match following {
                Some(f) => f.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(following);
        loop {
            tokio::select! {
                s = child.wait() => break s?,
                _ = tokio::signal::ctrl_c() => {}
                () = &mut following => {}
            }
        }
    };
    if let Some(b) = browser {
        b.stop();
    }
    if let Some(f) = follow_slots {
        f.abort();
    }
    server.abort();
    if let Some(mut w) = local_worker {
        let _ = w.kill().await;
    }
    let (sent, received) = coord.traffic();
    eprintln!("{}", coord.stats.summary(sent, received, started.elapsed()));
    for w in coord.stats.warnings() {
        eprintln!("offload: warning: {w}");
    }
    for line in coord.verify.report() {
        eprintln!("offload: {line}");
    }
    if cfg.verbose {
        let reused = coord
            .stats
            .scans_reused
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("offload:   dependency scans reused: {reused}");
        let probes =
            |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "offload:   toolchain probes run: {}, reused from earlier builds: {}",
            probes(&coord.stats.probes_run),
            probes(&coord.stats.probes_reused)
        );
        let second = probes(&coord.stats.second_runs);
        if second > 0 {
            eprintln!(
                "offload:   slow remote jobs also run here: {second} (the worker still won {})",
                probes(&coord.stats.second_runs_lost)
            );
        }
        eprintln!("offload:   {parallelism}");
        for (reason, n) in coord.stats.reasons() {
            eprintln!("offload:   {n:>5} × {reason}");
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Tells the build command its parallelism as `plan` says: the jobserver, if it is one,
/// and what was done, for the end of a verbose build (a line printed before the build's
/// own output would change its stderr).
fn apply_parallelism(
    cmd: &mut tokio::process::Command,
    plan: crate::parallel::Plan,
) -> anyhow::Result<(Option<crate::jobserver::Jobserver>, String)> {
    use crate::parallel::Plan;
    Ok(match plan {
        Plan::AsIs(why) => (None, format!("the build's parallelism is its own: {why}")),
        Plan::Jobserver { n } => {
            let js = crate::jobserver::Jobserver::new(n).context("starting the jobserver")?;
            let mut flags = std::env::var("MAKEFLAGS").unwrap_or_default();
            flags.push_str(&js.makeflags());
            cmd.env("MAKEFLAGS", flags);
            let said = format!("make got {n} jobs at once (a jobserver following the slots)");
            (Some(js), said)
        }
        Plan::DebBuildOptions(v) => {
            cmd.env("DEB_BUILD_OPTIONS", &v);
            (None, format!("the build got DEB_BUILD_OPTIONS={v}"))
        }
        Plan::Append(args) => {
            let said = format!("the build got {}", args.join(" "));
            cmd.args(args);
            (None, said)
        }
    })
}

/// Keeps the jobserver's size at the coordinator's capacity for the whole build.
async fn follow_capacity(js: crate::jobserver::Jobserver, coord: Arc<Coordinator>) {
    let mut last = js.jobs();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = coord.capacity();
        if now != last {
            match js.set_jobs(now) {
                Ok(()) => tracing::info!(jobs = now, "the build's parallelism follows the slots"),
                Err(e) => tracing::warn!("cannot resize the jobserver: {e}"),
            }
            last = now;
        }
    }
}

/// Starts `offload worker` on a free loopback port, trusting this host's key `host`, and
/// waits until it listens; it is used by the key it reports. As a normal user it runs in a
/// user namespace where it may `chroot`.
async fn start_local_worker(
    self_exe: &Path,
    tmp: &Path,
    slots: usize,
    host: &Fingerprint,
) -> anyhow::Result<(tokio::process::Child, WorkerSpec)> {
    let port_file = tmp.join("worker.port");
    let work_dir: PathBuf = tmp.join("worker");
    let mut argv: Vec<String> = Vec::new();
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        argv.extend(["unshare", "--user", "--map-root-user", "--mount"].map(String::from));
    }
    argv.push(self_exe.to_string_lossy().into_owned());
    argv.extend([
        "worker".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--slots".into(),
        slots.to_string(),
        "--work-dir".into(),
        work_dir.to_string_lossy().into_owned(),
        "--port-file".into(),
        port_file.to_string_lossy().into_owned(),
        "--state-dir".into(),
        tmp.join("worker-state").to_string_lossy().into_owned(),
        "--trust-host".into(),
        host.to_string(),
        // It runs beside this build, whose own compiles would make it busy.
        "--lend".into(),
        "always".into(),
    ]);
    // Its messages go to a log file: the build's output stays the build's own.
    let log = std::fs::File::create(tmp.join("worker.log")).context("creating the worker log")?;
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting a local worker")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut lines = s.lines();
            if let (Some(addr), Some(fp)) = (lines.next(), lines.next()) {
                let expect = fp
                    .parse::<Fingerprint>()
                    .with_context(|| format!("the local worker's fingerprint {fp:?}"))?;
                let spec = WorkerSpec {
                    addr: addr.to_owned(),
                    expect: Some(expect),
                };
                return Ok((child, spec));
            }
        }
        if Instant::now() > deadline {
            bail!("the local worker did not start within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
