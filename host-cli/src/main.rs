//! The `offload` binary: `offload build`, `offload worker`, `offload status`, `offload cc`, and — when
//! started under a compiler's name from the masquerade directory — the compiler wrapper.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use offload_host::auth::HostAuth;
use offload_host::coordinator::remote::WorkerSpec;
use offload_host::{build, compilers, config, wrapper};

mod pairing;
mod workercli;

#[derive(Parser)]
#[command(
    name = "offload",
    version,
    about = "Run C/C++ builds with their compiles on idle cores of the LAN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a build command with its compiler calls distributed.
    Build {
        /// A worker to use (HOST:PORT); repeat for several. Those of `config.toml` in the
        /// config directory ($OFFLOAD_CONFIG_DIR, else ~/.config/offload) are used too.
        /// Without any, a local worker is started.
        #[arg(long = "worker", value_name = "[FINGERPRINT@]HOST:PORT")]
        workers: Vec<WorkerSpec>,
        /// Compiles to run on this host at once [default: the CPUs this process may use].
        #[arg(short = 'j', long = "jobs")]
        jobs: Option<usize>,
        /// Niceness added to local compiles, so that preparing remote jobs comes first.
        #[arg(long, default_value_t = 10)]
        local_nice: i32,
        /// List why compiles ran locally.
        #[arg(short, long)]
        verbose: bool,
        /// Do not look for paired workers on the LAN.
        #[arg(long)]
        no_discover: bool,
        /// Check this share of the remote results against a local compile of the same
        /// command (0 to 1, or a percentage: 0.1, 10%): a worker whose result differs gets
        /// no more jobs for that compiler, the local result is used, and the end of the
        /// build says so.
        #[arg(long, value_name = "RATE", value_parser = parse_rate, default_value = "0")]
        verify: f64,
        /// Compile every job that can go remote on a worker, waiting for one however slow
        /// it is, and none here (a job whose worker fails still falls back): for checking
        /// a worker, not for speed.
        #[arg(long)]
        remote_only: bool,
        /// The build command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Accept compile jobs from paired hosts (`offload worker`), or manage its pairings
    /// (`offload worker pairings|allow|deny|revoke`).
    Worker(Box<workercli::WorkerArgs>),
    /// Show this host's compilers, the workers, how each would run each compiler, and
    /// whether its toolchain probe passed (results are kept across builds).
    Status {
        /// A worker to ask ([FINGERPRINT@]HOST:PORT); repeat for several. Paired workers and
        /// workers probed before are asked too.
        #[arg(long = "worker", value_name = "[FINGERPRINT@]HOST:PORT")]
        workers: Vec<WorkerSpec>,
    },
    /// Pair with a worker: both sides show a code; allow it on the worker
    /// (`offload worker allow CODE`) and confirm here that the codes are the same.
    Pair {
        /// The worker: HOST:PORT, or the fingerprint or name of a worker found on the LAN.
        worker: String,
        /// Do not ask here (the worker's owner still has to allow the code).
        #[arg(long)]
        yes: bool,
    },
    /// Print this host's key fingerprint (for a worker's `--trust-host`).
    Id,
    /// Forget a paired worker (by fingerprint or name): it gets no more jobs from here.
    Unpair {
        /// The worker's fingerprint or name.
        worker: String,
    },
    /// List the workers found on the LAN, configured and paired: id, name, address,
    /// architecture, slots, paired or not, reachable or not.
    Workers {
        /// Seconds to listen for workers on the LAN.
        #[arg(long, default_value_t = 2.0)]
        wait: f64,
    },
    /// Run one compiler call through the enclosing `offload build` (for CC="offload cc gcc").
    Cc {
        /// The compiler, then its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<OsString>,
    },
}

/// This host's key and paired workers, from the config directory.
fn host_auth() -> anyhow::Result<std::sync::Arc<HostAuth>> {
    Ok(std::sync::Arc::new(HostAuth::load(&config::dir()?)?))
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    // In a cross compiler's job root, this binary stands in for its assembler.
    if let Some(real) = std::env::var_os(offload_worker::asshim::ENV_REAL) {
        offload_worker::asshim::run(real);
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if compilers::is_compiler_name(name).is_some() {
        wrapper::run(&OsString::from(name), args.collect());
    }
    let cli = Cli::parse();
    if let Command::Cc { argv } = &cli.command {
        let mut it = argv.iter().cloned();
        let compiler = it.next().unwrap_or_default();
        wrapper::run(&compiler, it.collect());
    }
    // `offload build` reports problems after the build; its logs are opt-in (OFFLOAD_LOG).
    let default_filter = if matches!(cli.command, Command::Build { .. }) {
        "off"
    } else {
        "warn"
    };
    init_logging(default_filter);
    match run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("offload: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by `OFFLOAD_LOG`; with `OFFLOAD_LOG_FILE=PATH`, appended to that
/// file instead, so that a build's own stderr stays exactly what the build printed.
/// A share: `0.1` or `10%`, from 0 to 1.
fn parse_rate(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a share (0.1 or 10%)"))?;
    let v = v / scale;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} is not between 0 and 1 (0% and 100%)"))
    }
}

fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
        .unwrap_or_else(|_| default_filter.into());
    let file = std::env::var_os("OFFLOAD_LOG_FILE").map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| (path, e))
    });
    match file {
        Some(Ok(f)) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        other => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init();
            if let Some(Err((path, e))) = other {
                tracing::warn!("cannot log to {}: {e}; logging here", path.display());
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Build {
            mut workers,
            jobs,
            local_nice,
            verbose,
            no_discover,
            verify,
            remote_only,
            command,
        } => {
            let settings = config::load(&config::dir()?)?;
            rt.block_on(build::run(build::BuildConfig {
                local_nice,
                discover: !no_discover && settings.discover,
                workers: {
                    for w in &settings.workers {
                        workers.push(w.parse().map_err(anyhow::Error::msg)?);
                    }
                    workers
                },
                auth: host_auth()?,
                local_slots: jobs.unwrap_or_else(cpus),
                local_worker_slots: cpus(),
                verbose,
                verify_rate: verify,
                remote_only,
                command,
            }))
        }
        Command::Worker(args) => rt.block_on(workercli::run(*args)),
        Command::Status { workers } => rt.block_on(async move {
            let cache = offload_host::coordinator::probecache::ProbeCache::open_default();
            let auth = host_auth()?;
            print!(
                "{}",
                offload_host::status::report(&workers, auth, &cache).await
            );
            Ok(0)
        }),
        Command::Pair { worker, yes } => rt.block_on(pairing::pair(&worker, yes, host_auth()?)),
        Command::Id => {
            println!("{}", host_auth()?.identity().fingerprint());
            Ok(0)
        }
        Command::Unpair { worker } => {
            let auth = host_auth()?;
            match auth.unpin(&worker)? {
                Some(p) => {
                    println!("unpaired worker {} ({})", p.name, p.fingerprint());
                    Ok(0)
                }
                None => anyhow::bail!("no paired worker is named {worker}"),
            }
        }
        Command::Workers { wait } => rt.block_on(pairing::list(
            std::time::Duration::from_secs_f64(wait.clamp(0.0, 60.0)),
            host_auth()?,
        )),
        Command::Cc { .. } => unreachable!("handled before the runtime starts"),
    }
}
