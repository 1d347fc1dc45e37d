//! The worker's admission of a job's command: only what a host would send remote runs.
//!
//! A worker cannot trust that a peer ran the classifier; it runs the same tables itself.
//! The compiler's arguments must classify as remote ([`crate::classify`]), every environment
//! variable must be one the host forwards ([`crate::env`]), and a clang `-cc1` command
//! (built by the host's driver, too long a language to classify) may not name any of the
//! options that load code into the compiler.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use crate::env::{self, Rule};
use crate::{Classification, LocalReason};

/// Why a job's command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An empty argv.
    #[error("the job has no command")]
    Empty,
    /// A working directory that is not absolute and normalised: `chroot` keeps the working
    /// directory, so a relative one would start the compiler outside its root.
    #[error("the job's working directory {0:?} is not an absolute normalised path")]
    WorkingDirectory(String),
    /// The command is not one a host sends remote.
    #[error("the command is not a remote compile: {0}")]
    NotRemote(LocalReason),
    /// A response file could not be read or expanded.
    #[error("response file: {0}")]
    ResponseFile(String),
    /// An environment variable a host never forwards.
    #[error("environment variable {0} is not allowed")]
    Env(String),
    /// A `-cc1` option that loads code.
    #[error("the -cc1 command has {0}, which loads code into the compiler")]
    Cc1(String),
    /// A `-cc1` command that does not start with the program and `-cc1`.
    #[error("a -cc1 command must start with the program and -cc1")]
    Cc1Shape,
}

/// `-cc1` options (and prefixes) that load code or run programs.
const CC1_FORBIDDEN: &[&str] = &[
    "-load",
    "-plugin",
    "-add-plugin",
    "-plugin-arg-",
    "-fpass-plugin=",
    "-fplugin",
];

/// Checks `argv` (the driver command; `argv[0]` the compiler), the `-cc1` command if any
/// and the environment. `read` gives a response file's bytes by its path as written,
/// relative to the job's directory.
pub fn admit(
    argv: &[String],
    cc1: &[String],
    env: &[(String, String)],
    read: &mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
) -> Result<(), Refusal> {
    let (program, args) = argv.split_first().ok_or(Refusal::Empty)?;
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let args = if args.iter().any(|a| a.as_encoded_bytes().starts_with(b"@")) {
        crate::expand_response_files(&args, read)
            .map_err(|e| Refusal::ResponseFile(e.to_string()))?
            .0
    } else {
        args
    };
    if let Classification::Local(reason) = crate::classify(name, &args) {
        return Err(Refusal::NotRemote(reason));
    }
    for (k, _) in env {
        // PATH is the worker's standard one, set by the host.
        let ok = k == "PATH" || matches!(env::rule(k), Some(Rule::Forward | Rule::Locale));
        if !ok {
            return Err(Refusal::Env(k.clone()));
        }
    }
    if !cc1.is_empty() {
        if cc1.get(1).map(String::as_str) != Some("-cc1") {
            return Err(Refusal::Cc1Shape);
        }
        if let Some(bad) = cc1
            .iter()
            .skip(2)
            .find(|a| CC1_FORBIDDEN.iter().any(|f| a.starts_with(f)))
        {
            return Err(Refusal::Cc1(bad.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    fn no_files(_: &Path) -> io::Result<Vec<u8>> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }

    #[test]
    fn ordinary_compiles_are_admitted() {
        let env = vec![
            ("PATH".into(), "/usr/bin".into()),
            ("LC_ALL".into(), "C".into()),
        ];
        admit(
            &s(&["/usr/bin/gcc", "-O2", "-c", "a.c", "-o", "a.o"]),
            &[],
            &env,
            &mut no_files,
        )
        .unwrap();
        let cc1 = s(&[
            "/usr/bin/clang",
            "-cc1",
            "-triple",
            "x86_64-pc-linux-gnu",
            "-O2",
        ]);
        admit(
            &s(&["/usr/bin/clang", "-march=native", "-c", "a.c"]),
            &cc1,
            &[],
            &mut no_files,
        )
        .unwrap();
    }

    #[test]
    fn hostile_commands_are_refused() {
        type Row<'a> = (&'a [&'a str], &'a [&'a str], &'a [(&'a str, &'a str)]);
        let table: &[Row] = &[
            (&[], &[], &[]),
            (&["/usr/bin/gcc", "-fplugin=/x.so", "-c", "a.c"], &[], &[]),
            (
                &["/usr/bin/gcc", "-wrapper", "/bin/sh,-c,id", "-c", "a.c"],
                &[],
                &[],
            ),
            (&["/usr/bin/gcc", "-specs=/x", "-c", "a.c"], &[], &[]),
            (&["/usr/bin/gcc", "-B/tmp", "-c", "a.c"], &[], &[]),
            (&["/usr/bin/gcc", "a.c", "-o", "prog"], &[], &[]),
            (&["/bin/sh", "-c", "id"], &[], &[]),
            (
                &["/usr/bin/gcc", "-c", "a.c"],
                &[],
                &[("LD_PRELOAD", "/x.so")],
            ),
            (
                &["/usr/bin/gcc", "-c", "a.c"],
                &[],
                &[("GCC_EXEC_PREFIX", "/x")],
            ),
            (&["/usr/bin/gcc", "-c", "a.c"], &[], &[("HOME", "/root")]),
            (&["/usr/bin/gcc", "-c", "@args"], &[], &[]),
            (
                &["/usr/bin/clang", "-c", "a.c"],
                &["/usr/bin/clang", "-cc1", "-load", "/x.so"],
                &[],
            ),
            (
                &["/usr/bin/clang", "-c", "a.c"],
                &["/usr/bin/clang", "-cc1", "-fpass-plugin=/x.so"],
                &[],
            ),
            (
                &["/usr/bin/clang", "-c", "a.c"],
                &["/bin/sh", "-c", "id"],
                &[],
            ),
        ];
        for (argv, cc1, env) in table {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert!(
                admit(&s(argv), &s(cc1), &env, &mut no_files).is_err(),
                "{argv:?} {cc1:?} {env:?}"
            );
        }
    }

    #[test]
    fn response_files_are_read_through_the_callback() {
        let mut read = |p: &Path| {
            assert_eq!(p, Path::new("args"));
            Ok(b"-O2 -c a.c".to_vec())
        };
        admit(&s(&["/usr/bin/gcc", "@args"]), &[], &[], &mut read).unwrap();
        let mut hostile = |_: &Path| Ok(b"-fplugin=/x.so -c a.c".to_vec());
        assert!(admit(&s(&["/usr/bin/gcc", "@args"]), &[], &[], &mut hostile).is_err());
    }
}
