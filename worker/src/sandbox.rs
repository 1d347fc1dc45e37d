//! Runs one compile inside its job root: `chroot`, then the host's working directory, then
//! an unprivileged user, in a process group of its own that is killed on timeout.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use offload_shared::protocol::ExitStatus;

use crate::jobroot::JobUser;

/// What a compile did.
#[derive(Debug)]
pub struct RunOutcome {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a compile could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A string with a NUL byte.
    #[error("argument or path contains a NUL byte")]
    Nul,
    /// Spawning failed.
    #[error("cannot start the compiler: {0}")]
    Spawn(std::io::Error),
    /// It ran too long and was killed.
    #[error("the compile ran longer than {0:?} and was killed")]
    Timeout(Duration),
    /// Waiting failed.
    #[error("waiting for the compiler: {0}")]
    Wait(std::io::Error),
}

/// One compile to run.
#[derive(Debug)]
pub struct RunSpec<'a> {
    /// The job root.
    pub root: &'a Path,
    /// argv; `argv[0]` is the name the process sees.
    pub argv: &'a [String],
    /// The program to execute, an absolute path inside the root.
    pub program: &'a str,
    /// Working directory inside the root.
    pub cwd: &'a str,
    /// The complete environment.
    pub env: &'a [(String, String)],
    /// Who to run as, when the worker is root.
    pub user: Option<JobUser>,
    /// Wall-clock limit.
    pub timeout: Duration,
}

/// Runs the compile and collects its output.
pub async fn run(spec: RunSpec<'_>) -> Result<RunOutcome, RunError> {
    let root = CString::new(spec.root.as_os_str().as_bytes()).map_err(|_| RunError::Nul)?;
    let cwd = CString::new(spec.cwd).map_err(|_| RunError::Nul)?;
    let mut cmd = std::process::Command::new(spec.program);
    if let Some(arg0) = spec.argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(spec.argv.iter().skip(1))
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let user = spec.user;
    // SAFETY: only async-signal-safe calls (chroot, chdir, setpgid, setgroups, setgid,
    // setuid) between fork and exec, on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0
                || libc::chroot(root.as_ptr()) != 0
                || libc::chdir(cwd.as_ptr()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(u) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(RunError::Spawn)?;
    let pid = child.id();
    let out = tokio::time::timeout(spec.timeout, async {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (o, e) = tokio::join!(read_all(stdout), read_all(stderr));
        let status = child.wait().await;
        (o, e, status)
    })
    .await;
    let Ok((stdout, stderr, status)) = out else {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: plain syscall; the group is the one the child made for itself.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        return Err(RunError::Timeout(spec.timeout));
    };
    let status = status.map_err(RunError::Wait)?;
    use std::os::unix::process::ExitStatusExt;
    let status = match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Code(-1),
    };
    Ok(RunOutcome {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut buf).await;
    }
    buf
}
