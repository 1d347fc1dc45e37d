//! The `offload` binary: `offload build`, `offload worker`, `offload status`, `offload cc`, and — when
//! started under a compiler's name from the masquerade directory — the compiler wrapper.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use offload_host::{build, compilers, config, wrapper};
use offload_worker::jobroot::JobUser;

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
        #[arg(long = "worker", value_name = "HOST:PORT")]
        workers: Vec<String>,
        /// Compiles to run on this host at once [default: the CPUs this process may use].
        #[arg(short = 'j', long = "jobs")]
        jobs: Option<usize>,
        /// Niceness added to local compiles, so that preparing remote jobs comes first.
        #[arg(long, default_value_t = 10)]
        local_nice: i32,
        /// List why compiles ran locally.
        #[arg(short, long)]
        verbose: bool,
        /// The build command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Accept compile jobs from hosts.
    Worker {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:7420")]
        listen: SocketAddr,
        /// Jobs to run at once [default: the CPUs this process may use].
        #[arg(long)]
        slots: Option<u32>,
        /// Where the file store, toolchains and job roots live.
        #[arg(long, default_value = "/var/tmp/offload-worker")]
        work_dir: PathBuf,
        /// Most bytes the worker's file store keeps, in MiB (least recently used files go first).
        #[arg(long, default_value_t = 10240)]
        store_max_mib: u64,
        /// Write the bound address to this file once listening.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// UID:GID that compiles of slot 0 run as; slot N's run as UID+N:GID+N [default:
        /// 1900000000:1900000000 when started as root, outside a user namespace].
        #[arg(long, value_parser = parse_user)]
        job_user: Option<JobUser>,
        #[command(flatten)]
        limits: WorkerLimits,
    },
    /// Show this host's compilers, the workers, how each would run each compiler, and
    /// whether its toolchain probe passed (results are kept across builds).
    Status {
        /// A worker to ask (HOST:PORT); repeat for several. Workers probed before are asked too.
        #[arg(long = "worker", value_name = "HOST:PORT")]
        workers: Vec<String>,
    },
    /// Run one compiler call through the enclosing `offload build` (for CC="offload cc gcc").
    Cc {
        /// The compiler, then its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<OsString>,
    },
}

/// How much a worker gives peers, and for how long.
#[derive(Debug, clap::Args)]
struct WorkerLimits {
    /// Most connections served at once, from all hosts (more wait to be accepted).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Most connections one host may hold [default: twice the slots, plus 8].
    #[arg(long)]
    connections_per_host: Option<usize>,
    /// Jobs of one host compiling at once [default: all slots].
    #[arg(long)]
    slots_per_host: Option<usize>,
    /// Seconds a new connection has to say hello.
    #[arg(long, default_value_t = 10)]
    handshake_secs: u64,
    /// Seconds a connection may stay quiet between jobs.
    #[arg(long, default_value_t = 300)]
    idle_secs: u64,
    /// Seconds a frame may take once it started (plus time at 256 KiB/s for its length).
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
    /// On SIGTERM or Ctrl-C, seconds running jobs get to finish before they are stopped.
    #[arg(long, default_value_t = 8)]
    drain_secs: u64,
}

impl WorkerLimits {
    fn apply(&self, config: &mut offload_worker::Config) {
        use std::time::Duration;
        config.max_connections = self.max_connections.max(1);
        let mut q = offload_worker::quota::QuotaLimits::for_slots(
            config.slots as usize,
            offload_worker::server::max_frame(),
        );
        if let Some(n) = self.connections_per_host {
            q.connections_per_peer = n.max(1);
        }
        if let Some(n) = self.slots_per_host {
            q.slots_per_peer = n.max(1);
        }
        config.quotas = Some(q);
        config.timeouts = offload_worker::conn::Timeouts {
            handshake: Duration::from_secs(self.handshake_secs.max(1)),
            idle: Duration::from_secs(self.idle_secs.max(1)),
            stall: Duration::from_secs(self.stall_secs.max(1)),
        };
        config.drain = Duration::from_secs(self.drain_secs);
    }
}

fn parse_user(s: &str) -> Result<JobUser, String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    Ok(JobUser {
        uid: u.parse().map_err(|_| "bad UID")?,
        gid: g.parse().map_err(|_| "bad GID")?,
    })
}

fn cpus() -> usize {
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
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("offload: {e:#}");
            ExitCode::from(2)
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
            command,
        } => rt.block_on(build::run(build::BuildConfig {
            local_nice,
            workers: {
                let settings = config::load(&config::dir()?)?;
                workers.extend(settings.workers);
                workers
            },
            local_slots: jobs.unwrap_or_else(cpus),
            local_worker_slots: cpus(),
            verbose,
            command,
        })),
        Command::Worker {
            listen,
            slots,
            work_dir,
            port_file,
            job_user,
            store_max_mib,
            limits,
        } => rt.block_on(async move {
            // SAFETY: plain syscall.
            let root = unsafe { libc::geteuid() } == 0;
            let in_userns = std::fs::read_to_string("/proc/self/uid_map")
                .map(|m| !m.split_whitespace().eq(["0", "0", "4294967295"]))
                .unwrap_or(false);
            // A range no distribution or subordinate-id default uses.
            let job_user = job_user.or((root && !in_userns).then_some(JobUser {
                uid: 1_900_000_000,
                gid: 1_900_000_000,
            }));
            let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "worker".into());
            let slots = slots.unwrap_or_else(|| cpus() as u32).max(1);
            let mut config = offload_worker::Config::new(slots, work_dir, name);
            config.job_user = job_user;
            config.store_max_bytes = store_max_mib.saturating_mul(1 << 20);
            limits.apply(&mut config);
            let worker = offload_worker::Worker::new(config)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            if let Some(p) = port_file {
                tracing::info!("listening on {addr}");
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, format!("{addr}\n"))?;
                std::fs::rename(&tmp, &p)?;
            } else {
                eprintln!("offload worker listening on {addr}");
            }
            // SIGTERM (`docker stop`, systemd) and Ctrl-C both drain.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            let shutdown = async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("stopping");
            };
            worker.serve(listener, shutdown).await;
            Ok(0)
        }),
        Command::Status { workers } => rt.block_on(async move {
            let cache = offload_host::coordinator::probecache::ProbeCache::open_default();
            print!("{}", offload_host::status::report(&workers, &cache).await);
            Ok(0)
        }),
        Command::Cc { .. } => unreachable!("handled before the runtime starts"),
    }
}
