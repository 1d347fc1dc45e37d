//! The compiler wrapper: what runs when the build calls `gcc` (through the masquerade link)
//! or `offload cc gcc …`. It asks the coordinator of the enclosing `offload build`, then
//! either replays a remote result or becomes the real compiler with `exec`.
//!
//! Blocking and small on purpose: it starts once per compile.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use offload_shared::protocol::frame::{read_frame_blocking, write_frame_blocking};
use offload_shared::protocol::{ExitStatus, Limits};

use crate::compilers;
use crate::ipc::{CompileRequest, Reply, Request};

/// Environment variable naming the coordinator's socket.
pub const ENV_SOCKET: &str = "OFFLOAD_SOCKET";
/// Environment variable naming the masquerade directory (skipped when looking for the real compiler).
pub const ENV_MASQ_DIR: &str = "OFFLOAD_MASQ_DIR";

/// Runs `compiler args…` through the coordinator; never returns.
pub fn run(compiler: &OsStr, args: Vec<OsString>) -> ! {
    let code = match wrap(compiler, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offload: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

fn wrap(compiler: &OsStr, args: Vec<OsString>) -> anyhow::Result<i32> {
    let self_exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .unwrap_or_default();
    let masq = std::env::var_os(ENV_MASQ_DIR).map(PathBuf::from);
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let Some(real) = compilers::find_real(compiler, &path_var, masq.as_deref(), &self_exe) else {
        anyhow::bail!("{}: compiler not found on PATH", compiler.to_string_lossy());
    };
    let real = if real.is_absolute() {
        real
    } else {
        std::env::current_dir()?.join(real)
    };
    let Some(socket) = std::env::var_os(ENV_SOCKET) else {
        // Not inside `offload build`: just be the compiler.
        return Err(exec_local(&real, &args, None));
    };
    let Ok(mut stream) = UnixStream::connect(&socket) else {
        return Err(exec_local(&real, &args, None));
    };
    let request = match describe(&real, &args) {
        Some(r) => Request::Compile(r),
        None => Request::LocalSlot {
            reason: "argument, path or environment is not UTF-8".into(),
        },
    };
    let lim = Limits::DEFAULT;
    if write_frame_blocking(&mut stream, &request, &[], lim).is_err() {
        return Err(exec_local(&real, &args, None));
    }
    match read_frame_blocking::<_, Reply>(&mut stream, lim) {
        Ok(Some((Reply::Finished { status, stdout_len }, payload))) => {
            let split = (stdout_len as usize).min(payload.len());
            let (out, err) = payload.split_at(split);
            let _ = std::io::stdout().write_all(out);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(err);
            Ok(exit_code(status))
        }
        Ok(Some((Reply::RunLocal { nice, .. }, _))) => {
            if nice > 0 {
                // SAFETY: plain syscall; failure (e.g. a limit) leaves the priority as it was.
                unsafe {
                    libc::nice(nice.min(19));
                }
            }
            Err(exec_local(&real, &args, Some(&stream)))
        }
        // The coordinator is gone or confused: the build must go on.
        _ => Err(exec_local(&real, &args, None)),
    }
}

/// Replaces this process with the real compiler. `slot` (the coordinator connection) is
/// passed on so that the slot stays held until the compiler exits. Returns only on failure.
fn exec_local(real: &Path, args: &[OsString], slot: Option<&UnixStream>) -> anyhow::Error {
    if let Some(s) = slot {
        // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
        unsafe {
            libc::fcntl(s.as_raw_fd(), libc::F_SETFD, 0);
        }
    }
    let err = std::process::Command::new(real)
        .arg0(real)
        .args(args)
        .exec();
    anyhow::anyhow!("cannot run {}: {err}", real.display())
}

fn describe(real: &Path, args: &[OsString]) -> Option<CompileRequest> {
    let compiler = real.to_str()?.to_owned();
    let args = args
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    let cwd = std::env::current_dir().ok()?.to_str()?.to_owned();
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"OFFLOAD_") {
            continue;
        }
        env.push((k.into_string().ok()?, v.into_string().ok()?));
    }
    // SAFETY: umask has no failure mode; it is set back at once.
    let umask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    Some(CompileRequest {
        compiler,
        args,
        cwd,
        env,
        umask: umask as u32,
        stderr_tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stdin_columns: terminal_columns(),
    })
}

/// The column count of the terminal on standard input, as gcc asks for it.
fn terminal_columns() -> Option<u16> {
    // SAFETY: TIOCGWINSZ fills a winsize we own; failure leaves it zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col)
}

/// The exit code that reproduces `status` for the wrapper's parent: a signal is re-raised.
fn exit_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(s) => {
            // SAFETY: restoring the default action and raising a signal on ourselves.
            unsafe {
                libc::signal(s, libc::SIG_DFL);
                libc::raise(s);
            }
            128 + s
        }
    }
}
