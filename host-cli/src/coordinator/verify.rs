//! `offload build --verify RATE`: a sample of the remote results is checked against a local
//! compile of the same command. The sampled job's remote outputs are held back; the host
//! compiles it (here, in the coordinator, so that its status, stdout and stderr are seen
//! too) and compares every byte. The local result is the one the build gets; a mismatch
//! takes that worker out for that compiler for the rest of the build and is reported at
//! the end.
//!
//! The sample is spread evenly, not drawn at random: every job adds RATE to a counter and
//! a job that takes it past the next whole number is verified, so that RATE of the remote
//! jobs are, from the first ones on.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use super::executor::WorkerId;
pub use super::held::{Compiled, Held};
use super::localrun::{LocalCommand, LocalRun};

/// What differs between a remote and a local result, for the report; `None` if nothing.
pub fn difference(remote: &Compiled, local: &Compiled) -> Option<String> {
    if remote.status != local.status {
        return Some(format!(
            "exit status {:?} remotely, {:?} here",
            remote.status, local.status
        ));
    }
    for ((path, r), (_, l)) in remote.files.iter().zip(&local.files) {
        if r != l {
            let at = r
                .iter()
                .zip(l)
                .position(|(a, b)| a != b)
                .unwrap_or(r.len().min(l.len()));
            return Some(format!(
                "{path}: {} bytes remotely, {} here, first difference at byte {at}",
                r.len(),
                l.len()
            ));
        }
    }
    if remote.stdout != local.stdout {
        return Some("standard output".into());
    }
    if remote.stderr != local.stderr {
        return Some("diagnostics (standard error)".into());
    }
    None
}

/// The build's verification state.
#[derive(Debug, Default)]
pub struct Verify {
    /// Fraction of remote jobs to verify, 0 to 1.
    rate: f64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    credit: f64,
    compared: u64,
    /// (worker, compiler) pairs taken out after a mismatch.
    banned: HashSet<(WorkerId, String)>,
    /// One line per mismatch.
    mismatches: Vec<String>,
}

impl Verify {
    /// Verifies `rate` of the remote jobs (clamped to 0..=1).
    pub fn new(rate: f64) -> Verify {
        Verify {
            rate: if rate.is_nan() {
                0.0
            } else {
                rate.clamp(0.0, 1.0)
            },
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the next remote result is to be verified.
    pub fn sample(&self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let mut s = self.lock();
        s.credit += self.rate;
        if s.credit >= 1.0 - 1e-9 {
            s.credit -= 1.0;
            true
        } else {
            false
        }
    }

    /// Workers taken out for `compiler`.
    pub fn banned_for(&self, compiler: &str) -> Vec<WorkerId> {
        self.lock()
            .banned
            .iter()
            .filter(|(_, c)| c == compiler)
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// Records a comparison; a difference takes the worker out for the compiler.
    pub fn record(&self, held: &Held, difference: Option<String>) {
        let mut s = self.lock();
        s.compared += 1;
        if let Some(what) = difference {
            tracing::warn!(
                worker = held.label,
                compiler = held.compiler,
                source = held.source,
                "verification failed: {what}"
            );
            s.banned
                .insert((held.worker.clone(), held.compiler.clone()));
            s.mismatches.push(format!(
                "worker {} gave a different result for {} ({}): {what}; it got no more {} jobs",
                held.label, held.source, held.compiler, held.compiler
            ));
        }
    }

    /// The end-of-build report: nothing if nothing was verified.
    pub fn report(&self) -> Vec<String> {
        let s = self.lock();
        if s.compared == 0 {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "verified {} remote result{} against local compiles: {}",
            s.compared,
            if s.compared == 1 { "" } else { "s" },
            match s.mismatches.len() {
                0 => "all identical".to_string(),
                n => format!("{n} differed (the local results were used)"),
            }
        )];
        lines.extend(s.mismatches.iter().cloned());
        lines
    }
}

/// Compiles `held`'s command here with the wrapper's environment `env` (and the remote
/// run's `COLUMNS`), as the wrapper would have ([`LocalRun`]), and reads
/// every output the remote result named. An output the local compile did not write reads
/// as empty (and so differs, unless the remote one was empty too).
pub async fn compile_here(
    held: &Held,
    env: &[(String, String)],
    nice: i32,
) -> std::io::Result<Compiled> {
    let mut env = env.to_vec();
    if let Some(c) = &held.columns
        && !env.iter().any(|(k, _)| k == "COLUMNS")
    {
        env.push(("COLUMNS".into(), c.clone()));
    }
    let cmd = LocalCommand {
        argv: held.argv.clone(),
        cwd: held.cwd.clone(),
        env,
        umask: held.umask,
    };
    let mut run = LocalRun::start(&cmd, nice)?;
    let (status, stdout, stderr) = run.wait().await?;
    let files = held
        .result
        .files
        .iter()
        .map(|(path, _)| {
            let bytes = std::fs::read(Path::new(path)).unwrap_or_default();
            (path.clone(), bytes)
        })
        .collect();
    Ok(Compiled {
        status,
        stdout,
        stderr,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_the_rate_spread_evenly() {
        for (rate, jobs, want) in [
            (0.0, 100, 0),
            (1.0, 100, 100),
            (0.1, 100, 10),
            (0.25, 8, 2),
            (0.5, 3, 1),
            (2.0, 5, 5),
            (f64::NAN, 5, 0),
        ] {
            let v = Verify::new(rate);
            let n = (0..jobs).filter(|_| v.sample()).count();
            assert_eq!(n, want, "rate {rate} over {jobs} jobs");
        }
        // A rate of one in ten verifies the tenth job, not only late ones.
        let v = Verify::new(0.1);
        let first = (1..=20).find(|_| v.sample());
        assert_eq!(first, Some(10));
    }

    use offload_shared::protocol::ExitStatus;

    fn compiled(status: i32, obj: &[u8], stderr: &[u8]) -> Compiled {
        Compiled {
            status: ExitStatus::Code(status),
            stdout: Vec::new(),
            stderr: stderr.to_vec(),
            files: vec![("/b/a.o".into(), obj.to_vec())],
        }
    }

    #[test]
    fn differences_name_what_differs() {
        let a = compiled(0, b"\x7fELF1", b"");
        assert_eq!(difference(&a, &a.clone()), None);
        let cases = [
            (compiled(1, b"\x7fELF1", b""), "exit status"),
            (
                compiled(0, b"\x7fELF2", b""),
                "/b/a.o: 5 bytes remotely, 5 here, first difference at byte 4",
            ),
            (compiled(0, b"\x7fELF", b""), "first difference at byte 4"),
            (compiled(0, b"\x7fELF1", b"warning"), "diagnostics"),
        ];
        for (other, want) in cases {
            let got = difference(&a, &other).unwrap_or_default();
            assert!(got.contains(want), "{got:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_mismatch_bans_that_worker_for_that_compiler_only() {
        let v = Verify::new(1.0);
        let held = |w: &str, cc: &str| Held {
            worker: WorkerId::new(w),
            label: w.into(),
            compiler: cc.into(),
            argv: vec![cc.into()],
            cwd: "/".into(),
            columns: None,
            source: "a.c".into(),
            result: compiled(0, b"", b""),
            writable: Default::default(),
            inputs: Default::default(),
            umask: 0o022,
        };
        v.record(&held("w1", "/usr/bin/gcc"), None);
        assert!(v.banned_for("/usr/bin/gcc").is_empty());
        v.record(&held("w1", "/usr/bin/gcc"), Some("a.o".into()));
        assert_eq!(v.banned_for("/usr/bin/gcc"), vec![WorkerId::new("w1")]);
        assert!(v.banned_for("/usr/bin/g++").is_empty());
        let report = v.report();
        assert!(
            report[0].contains("verified 2 remote results"),
            "{report:?}"
        );
        assert!(report[0].contains("1 differed"), "{report:?}");
        assert!(
            report[1].contains("w1") && report[1].contains("a.c"),
            "{report:?}"
        );
        assert!(Verify::new(0.5).report().is_empty());
    }
}
