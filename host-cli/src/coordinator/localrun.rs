//! A compile run here by the coordinator itself (not by the wrapper): to verify a remote
//! result, or as the speculative second run of a job a worker is slow with. It runs the
//! command the worker ran, with the wrapper's environment (plus the remote run's
//! `COLUMNS`), umask and niceness, writing the real output paths as a local compile does.
//! It can be stopped: SIGTERM to its process group, on which the compiler driver removes
//! its temporary and partial output files, as it does when a build is interrupted.

use std::process::Stdio;
use std::time::Duration;

use offload_shared::protocol::ExitStatus;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// What to run: a command as the wrapper would have run it.
#[derive(Debug, Clone)]
pub struct LocalCommand {
    /// argv[0] (the compiler) first.
    pub argv: Vec<String>,
    /// Where.
    pub cwd: String,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The wrapper's umask.
    pub umask: u32,
}

/// How long a stopped compiler has to clean up before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running local compile.
#[derive(Debug)]
pub struct LocalRun {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// Reads a pipe to its end, off the caller's task (so that a full pipe never blocks the
/// compiler while the caller waits for something else).
fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: Option<R>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf).await;
        }
        buf
    })
}

impl LocalRun {
    /// Starts `c` here, at niceness `nice`.
    pub fn start(c: &LocalCommand, nice: i32) -> std::io::Result<LocalRun> {
        let Some((program, args)) = c.argv.split_first() else {
            return Err(std::io::Error::other("an empty command"));
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&c.cwd)
            .env_clear()
            .envs(c.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A run nobody waits for any more (the build was interrupted) does not linger.
            .kill_on_drop(true);
        let umask = c.umask as libc::mode_t;
        // SAFETY: umask, nice and setpgid are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // A process group of its own, so that stopping it reaches cc1 and as too.
                libc::setpgid(0, 0);
                libc::umask(umask);
                if nice > 0 {
                    libc::nice(nice.min(19));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let stdout = Some(drain(child.stdout.take()));
        let stderr = Some(drain(child.stderr.take()));
        Ok(LocalRun {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits for it to end: its status and what it printed. Cancel-safe (the status is
    /// kept once the process ended).
    pub async fn wait(&mut self) -> std::io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        let status = self.child.wait().await?;
        let stdout = match self.stdout.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        use std::os::unix::process::ExitStatusExt;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(s),
            (None, None) => ExitStatus::Code(-1),
        };
        Ok((status, stdout, stderr))
    }

    /// Stops it (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and waits for it: what it
    /// wrote is gone, as after an interrupted local compile.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: our own unreaped child's process group (it leads it).
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGTERM);
            }
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
