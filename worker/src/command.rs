//! The program, command and environment a job runs with, for each [`Mode`].
//!
//! The host's own compiler runs the job's command unchanged. A cross gcc searches the
//! host's include directories (`-isystem DIR…` at the end, after the command's own
//! `-isystem`s; not recorded in objects), and its assembler's shim rewrites its `.ident` to
//! the host's. Another clang runs the compiler proper with the arguments the host's driver
//! chose. The probe proves the result equal.

use offload_shared::protocol::JobRequest;

use crate::toolchain::{Mode, REAL_AS};

/// What runs in the job's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program, an absolute path in the job root.
    pub program: String,
    /// Its arguments, `argv[0]` included.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
}

/// A job this mode cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A `-cc1` command that does not start with the program and `-cc1`.
    #[error("a -cc1 command must start with the program and -cc1")]
    BadCc1,
    /// Another build of clang needs the host driver's `-cc1` command.
    #[error(
        "this worker runs another build of clang: the job must carry the host driver's -cc1 command"
    )]
    NeedsCc1,
    /// gcc has no `-cc1` command to run.
    #[error("a gcc job cannot carry a -cc1 command")]
    Cc1ForGcc,
    /// A flag whose effect a cross compiler cannot reproduce.
    #[error("a cross compiler cannot reproduce {0}")]
    NotReproducible(&'static str),
}

/// Flags whose effect a cross gcc cannot give byte for byte.
const CROSS_GCC_UNREPRODUCIBLE: &[&str] = &["-nostdinc++", "-frecord-gcc-switches"];

impl Mode {
    /// The command `job` runs with under this mode.
    pub fn command(&self, job: &JobRequest) -> Result<Command, CommandError> {
        let program = job.compiler.path.clone();
        // The worker's clang sits at the host compiler's path in the job root; argv[0] is
        // only a name to `clang -cc1`, which runs no other program. Native (or shipped)
        // clang gets a -cc1 command for a job resolved against the host's CPU
        // (`-march=native`).
        let cc1 = !job.cc1_argv.is_empty();
        let plain = |argv: &[String]| Command {
            program: program.clone(),
            argv: argv.to_vec(),
            env: job.env.clone(),
        };
        match self {
            Mode::CrossClangCc1 | Mode::Native | Mode::Shipped if cc1 => {
                if job.cc1_argv.get(1).map(String::as_str) != Some("-cc1") {
                    return Err(CommandError::BadCc1);
                }
                Ok(plain(&job.cc1_argv))
            }
            Mode::CrossClangCc1 => Err(CommandError::NeedsCc1),
            Mode::Native | Mode::Shipped => Ok(plain(&job.argv)),
            Mode::CrossGcc { .. } if cc1 => Err(CommandError::Cc1ForGcc),
            Mode::CrossGcc { ident } => cross_gcc(job, ident, program),
        }
    }
}

/// A cross gcc's command: the host's include directories and `.ident`.
fn cross_gcc(job: &JobRequest, ident: &str, program: String) -> Result<Command, CommandError> {
    let has = |flag: &str| job.argv.iter().skip(1).any(|a| a == flag);
    if let Some(flag) = CROSS_GCC_UNREPRODUCIBLE.iter().find(|f| has(f)) {
        return Err(CommandError::NotReproducible(flag));
    }
    let mut argv = job.argv.clone();
    // The host's own directories as -isystem, after the command's own: searched before the
    // cross compiler's, which hold nothing in a job root (headers come from the host). Not
    // -nostdinc: that would also drop gcc's implicit <stdc-predef.h>.
    if !has("-nostdinc") {
        for d in &job.system_include_dirs {
            argv.push("-isystem".into());
            argv.push(d.clone());
        }
    }
    let mut env = job.env.clone();
    env.push(("OFFLOAD_AS_REAL".into(), REAL_AS.into()));
    env.push(("OFFLOAD_IDENT_FROM".into(), ident.to_owned()));
    env.push(("OFFLOAD_IDENT_TO".into(), job.compiler.ident.clone()));
    Ok(Command { program, argv, env })
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_shared::Digest;
    use offload_shared::protocol::CompilerRef;

    fn job(argv: &[&str], cc1: &[&str]) -> JobRequest {
        JobRequest {
            job_id: 1,
            compiler: CompilerRef {
                path: "/usr/bin/gcc".into(),
                digest: Digest([0; 32]),
                version: "12.2.0 x86_64-linux-gnu".into(),
                ident: "GCC: (Debian 12.2.0-14) 12.2.0".into(),
            },
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: "/src".into(),
            env: vec![("LANG".into(), "C".into())],
            tree: Vec::new(),
            system_include_dirs: vec!["/usr/include".into()],
            cc1_argv: cc1.iter().map(|s| s.to_string()).collect(),
            timeout_secs: 60,
        }
    }

    fn cross() -> Mode {
        Mode::CrossGcc {
            ident: "GCC: (cross) 12.2.0".into(),
        }
    }

    #[test]
    fn each_mode_runs_the_command_it_can_reproduce() {
        const GCC: &[&str] = &["/usr/bin/gcc", "-c", "a.c"];
        const CC1: &[&str] = &["/usr/bin/clang", "-cc1", "-emit-obj"];
        let (gcc, cc1) = (GCC, CC1);
        type Row = (Mode, &'static [&'static str], &'static [&'static str]);
        let ok: Vec<(Row, Vec<&str>)> = vec![
            ((Mode::Native, gcc, &[]), gcc.to_vec()),
            ((Mode::Shipped, gcc, &[]), gcc.to_vec()),
            ((Mode::Native, gcc, cc1), cc1.to_vec()),
            ((Mode::CrossClangCc1, gcc, cc1), cc1.to_vec()),
            (
                (cross(), gcc, &[]),
                vec!["/usr/bin/gcc", "-c", "a.c", "-isystem", "/usr/include"],
            ),
            (
                (cross(), &["/usr/bin/gcc", "-nostdinc", "-c", "a.c"], &[]),
                vec!["/usr/bin/gcc", "-nostdinc", "-c", "a.c"],
            ),
        ];
        for ((mode, argv, cc1_argv), want) in ok {
            let c = mode.command(&job(argv, cc1_argv)).unwrap();
            assert_eq!(c.program, "/usr/bin/gcc");
            assert_eq!(c.argv, want, "{mode:?} {argv:?}");
        }
        let refused: Vec<(Mode, &[&str], &[&str], CommandError)> = vec![
            (Mode::CrossClangCc1, gcc, &[], CommandError::NeedsCc1),
            (
                Mode::Native,
                gcc,
                &["/usr/bin/clang", "-emit-obj"],
                CommandError::BadCc1,
            ),
            (cross(), gcc, cc1, CommandError::Cc1ForGcc),
            (
                cross(),
                &["/usr/bin/gcc", "-frecord-gcc-switches", "-c", "a.c"],
                &[],
                CommandError::NotReproducible("-frecord-gcc-switches"),
            ),
        ];
        for (mode, argv, cc1_argv, want) in refused {
            assert_eq!(mode.command(&job(argv, cc1_argv)), Err(want));
        }
    }

    #[test]
    fn a_cross_gcc_rewrites_the_ident_through_its_assembler_shim() {
        let c = cross()
            .command(&job(&["/usr/bin/gcc", "-c", "a.c"], &[]))
            .unwrap();
        let env: std::collections::HashMap<_, _> = c.env.iter().cloned().collect();
        assert_eq!(env["OFFLOAD_AS_REAL"], REAL_AS);
        assert_eq!(env["OFFLOAD_IDENT_FROM"], "GCC: (cross) 12.2.0");
        assert_eq!(env["OFFLOAD_IDENT_TO"], "GCC: (Debian 12.2.0-14) 12.2.0");
        assert_eq!(env["LANG"], "C");
    }
}
