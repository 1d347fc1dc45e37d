//! Running commands: a clean, fixed environment, captured output, a hang guard (not a timing
//! assertion: a command that hangs would otherwise hang the suite), and the parser of
//! `offload build`'s summary line.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `SOURCE_DATE_EPOCH` of every run (makes `__DATE__`/`__TIME__` deterministic).
pub const SOURCE_DATE_EPOCH: &str = "1577836800";

/// Variables that change how compilers, make or offload behave; removed from the inherited
/// environment so that only a test's own settings apply.
const SCRUB_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "LIBRARY_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
    "GCC_COLORS",
    "GCC_URLS",
    "GCC_EXEC_PREFIX",
    "GCC_COMPARE_DEBUG",
    "COMPILER_PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_MESSAGES",
    "LC_CTYPE",
    "TERM",
    "COLUMNS",
    "SOURCE_DATE_EPOCH",
    "TMPDIR",
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEFILES",
    "OFFLOAD_SOCKET",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "OFFLOAD_MASQ_DIR",
];

/// How long any one command may run before the suite calls it hung and kills it.
pub const HANG_GUARD: Duration = Duration::from_secs(900);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Set on top of the clean environment.
    pub env: Vec<(String, String)>,
    /// Fed to standard input (empty when `None`).
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// `argv` in `cwd`, with the clean environment.
    pub fn new<I, S>(argv: I, cwd: &Path) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            stdin: None,
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// The same command with `prefix` in front of argv.
    pub fn prefixed(&self, prefix: &[OsString]) -> Cmd {
        let mut c = self.clone();
        c.argv = prefix
            .iter()
            .cloned()
            .chain(self.argv.iter().cloned())
            .collect();
        c
    }

    /// The command line, shell-quoted, for messages.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts the command in a process group of its own.
    pub fn spawn(&self) -> Running {
        let mut c = std::process::Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .current_dir(&self.cwd)
            .env_clear()
            .envs(clean_env())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = c.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `{}` in {}: {e}",
                self.display(),
                self.cwd.display()
            )
        });
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin.clone().unwrap_or_default();
        let feeder = std::thread::spawn(move || {
            // A command that does not read its input closes the pipe: not an error here.
            let _ = stdin.write_all(&input);
        });
        let out = reader(child.stdout.take().expect("piped stdout"));
        let err = reader(child.stderr.take().expect("piped stderr"));
        Running {
            what: self.display(),
            child,
            feeder: Some(feeder),
            out: Some(out),
            err: Some(err),
            started: Instant::now(),
        }
    }

    /// Runs the command to completion.
    pub fn run(&self) -> Output {
        self.spawn().wait()
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// The inherited environment minus [`SCRUB_ENV`], plus `LC_ALL=C` and `SOURCE_DATE_EPOCH`.
pub fn clean_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !SCRUB_ENV.iter().any(|s| k == s))
        .collect();
    env.push(("LC_ALL".into(), "C".into()));
    env.push(("SOURCE_DATE_EPOCH".into(), SOURCE_DATE_EPOCH.into()));
    // Every offload the tests run is the tests' host (see `crate::keys`).
    if !env.iter().any(|(k, _)| k == "OFFLOAD_CONFIG_DIR") {
        let _ = crate::keys::host_identity();
        env.push(("OFFLOAD_CONFIG_DIR".into(), crate::keys::host_dir().into()));
    }
    env
}

/// A started command.
#[derive(Debug)]
pub struct Running {
    what: String,
    child: Child,
    feeder: Option<JoinHandle<()>>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has finished.
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the command (killing its process group if it runs past [`HANG_GUARD`]).
    pub fn wait(mut self) -> Output {
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for a child") {
                break s;
            }
            if self.started.elapsed() > HANG_GUARD {
                self.kill_group();
                let _ = self.child.wait();
                let out = self
                    .out
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                let err = self
                    .err
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!(
                    "`{}` hung (still running after {HANG_GUARD:?}); killed it.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.what,
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        let stdout = self
            .out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Output {
            status: Status::from(status),
            stdout,
            stderr,
            elapsed: self.started.elapsed(),
        }
    }

    fn kill_group(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall on our own child's process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only when a test panicked while the command ran: do not leave it behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl From<std::process::ExitStatus> for Status {
    fn from(s: std::process::ExitStatus) -> Status {
        match s.code() {
            Some(c) => Status::Code(c),
            None => Status::Signal(s.signal().unwrap_or(0)),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Code(c) => write!(f, "exit code {c}"),
            Status::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: Status,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// From start to exit.
    pub elapsed: std::time::Duration,
}

impl Output {
    /// Everything, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ({} bytes) ---\n{}\n--- stderr ({} bytes) ---\n{}",
            self.status,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout),
            self.stderr.len(),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    /// Panics unless the command exited with 0.
    pub fn assert_success(&self, what: &str) -> &Output {
        assert_eq!(
            self.status,
            Status::Code(0),
            "{what} failed: {}",
            self.describe()
        );
        self
    }
}

/// Quotes for a POSIX shell when needed.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The counts of `offload build`'s summary line
/// `offload: N compiler calls: R remote, L local, F fell back; sent X, received Y; T s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// N.
    pub calls: u64,
    /// R.
    pub remote: u64,
    /// L.
    pub local: u64,
    /// F.
    pub fell_back: u64,
}

impl Summary {
    fn parse(line: &str) -> Option<Summary> {
        let rest = line.strip_prefix("offload: ")?;
        let (calls, rest) = rest.split_once(" compiler calls: ")?;
        let (counts, rest) = rest.split_once("; sent ")?;
        let (_sent, rest) = rest.split_once(", received ")?;
        let (_received, secs) = rest.split_once("; ")?;
        secs.strip_suffix(" s")?.parse::<f64>().ok()?;
        let mut it = counts.split(", ");
        let mut field =
            |suffix: &str| -> Option<u64> { it.next()?.strip_suffix(suffix)?.parse().ok() };
        let s = Summary {
            calls: calls.parse().ok()?,
            remote: field(" remote")?,
            local: field(" local")?,
            fell_back: field(" fell back")?,
        };
        (s.remote + s.local + s.fell_back == s.calls).then_some(s)
    }
}

/// Splits `offload build`'s stderr into the build command's own stderr and offload's
/// summary: the summary line must be there once, followed only by offload's `-v` lines
/// (`offload:   …`). Returns `Err` with a description when it is not.
pub fn split_summary(stderr: &[u8]) -> Result<(Vec<u8>, Summary, String), String> {
    let text = String::from_utf8_lossy(stderr);
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("offload: ") && line.contains(" compiler calls: ") {
            if start.is_some() {
                return Err(format!("two summary lines in offload's stderr:\n{text}"));
            }
            start = Some(offset);
        }
        offset += line.len();
    }
    let Some(start) = start else {
        return Err(format!("no summary line in offload's stderr:\n{text}"));
    };
    let tail = &text[start..];
    let mut lines = tail.lines();
    let first = lines.next().unwrap_or_default();
    let summary =
        Summary::parse(first).ok_or_else(|| format!("cannot parse the summary line {first:?}"))?;
    if let Some(bad) = lines.clone().find(|l| !l.starts_with("offload:")) {
        return Err(format!(
            "offload's stderr goes on after the summary line with {bad:?}:\n{text}"
        ));
    }
    // `start` is a byte offset into the lossy text; it equals the offset into `stderr` as long
    // as everything before it is valid UTF-8, which holds when the prefix decodes unchanged.
    let head = &stderr[..start.min(stderr.len())];
    if String::from_utf8_lossy(head) != text[..start] {
        return Err("offload's stderr is not valid UTF-8 before the summary".into());
    }
    Ok((head.to_vec(), summary, tail.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_parsed_and_split_off() {
        let err = b"warning: x\noffload: 22 compiler calls: 20 remote, 1 local, 1 fell back; sent 1.5 KiB, received 10 B; 4.2 s\noffload:       1 \xc3\x97 linking\n";
        let (head, s, tail) = split_summary(err).unwrap();
        assert_eq!(head, b"warning: x\n");
        assert_eq!(
            s,
            Summary {
                calls: 22,
                remote: 20,
                local: 1,
                fell_back: 1
            }
        );
        assert!(tail.contains("linking"));
        assert!(split_summary(b"no summary\n").is_err());
        assert!(
            split_summary(b"offload: 1 compiler calls: 1 remote, 0 local, 0 fell back; sent 1 B, received 1 B; 0.1 s\nmore\n")
                .is_err()
        );
        assert!(Summary::parse("offload: 2 compiler calls: 1 remote, 0 local, 0 fell back; sent 1 B, received 1 B; 0.1 s").is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a.c"), "a.c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
