//! Diagnostics on a terminal. A compiler whose standard error is a terminal colours its
//! diagnostics, and gcc fits source excerpts to the width of the terminal on standard input;
//! the worker's compiler has neither. The colours come back with a flag that neither gcc nor
//! clang records in objects (checked: `-fdiagnostics-color` is not in DW_AT_producer), the
//! width with `COLUMNS`. What cannot be reproduced without changing objects runs locally:
//! gcc's diagnostic URLs (enabled on a terminal by GCC_URLS/TERM_URLS; `-fdiagnostics-urls`
//! *is* recorded), and any colour flag when the command records its switches.

use super::envpolicy;
use crate::compilers::{Family, is_compiler_name};
use crate::ipc::CompileRequest;

/// What the remote compile needs to print like this one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adaptation {
    /// Arguments to put right after argv[0] (the command's own flags come later and win).
    pub extra_args: Vec<&'static str>,
}

/// Adapts `env` (the remote environment) and says which arguments to add, or why the
/// compile must run locally.
pub fn adapt(req: &CompileRequest, env: &mut Vec<(String, String)>) -> Result<Adaptation, String> {
    if let Some(cols) = req.stdin_columns
        && envpolicy::get(env, "COLUMNS").is_none()
    {
        env.push(("COLUMNS".into(), cols.to_string()));
        env.sort();
    }
    let term = envpolicy::get(&req.env, "TERM");
    if !req.stderr_tty || term.is_none_or(|t| t == "dumb") {
        return Ok(Adaptation::default());
    }
    let name = std::path::Path::new(&req.compiler)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let records = req.args.iter().any(|a| {
        matches!(
            a.as_str(),
            "-frecord-gcc-switches"
                | "-grecord-command-line"
                | "-grecord-gcc-switches"
                | "-frecord-command-line"
        )
    });
    match is_compiler_name(name) {
        Some(Family::Gcc) => {
            if ["GCC_URLS", "TERM_URLS"]
                .iter()
                .any(|v| envpolicy::get(&req.env, v).is_some())
            {
                return Err("gcc prints diagnostic URLs on this terminal".into());
            }
            if envpolicy::get(&req.env, "GCC_COLORS") == Some("") {
                return Ok(Adaptation::default());
            }
            if records {
                return Err("coloured diagnostics with recorded switches".into());
            }
            Ok(Adaptation {
                extra_args: vec!["-fdiagnostics-color=always"],
            })
        }
        Some(Family::Clang) => {
            if records {
                return Err("coloured diagnostics with recorded switches".into());
            }
            Ok(Adaptation {
                extra_args: vec!["-fcolor-diagnostics"],
            })
        }
        None => Err(format!("diagnostics of {name} on a terminal")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(compiler: &str, tty: bool, env: &[(&str, &str)], args: &[&str]) -> CompileRequest {
        CompileRequest {
            compiler: compiler.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: "/".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            umask: 0o022,
            stderr_tty: tty,
            stdin_columns: Some(120),
        }
    }

    #[test]
    fn table() {
        let colour = Ok(Adaptation {
            extra_args: vec!["-fdiagnostics-color=always"],
        });
        let none = Ok(Adaptation::default());
        let cases: Vec<(CompileRequest, Result<Adaptation, String>)> = vec![
            (
                req("/usr/bin/gcc", false, &[("TERM", "xterm")], &[]),
                none.clone(),
            ),
            (
                req("/usr/bin/gcc", true, &[("TERM", "xterm")], &["-c"]),
                colour.clone(),
            ),
            (
                req("/usr/bin/gcc", true, &[("TERM", "dumb")], &[]),
                none.clone(),
            ),
            (req("/usr/bin/gcc", true, &[], &[]), none.clone()),
            (
                req(
                    "/usr/bin/g++",
                    true,
                    &[("TERM", "xterm"), ("GCC_COLORS", "")],
                    &[],
                ),
                none.clone(),
            ),
            (
                req("/usr/bin/clang", true, &[("TERM", "xterm")], &[]),
                Ok(Adaptation {
                    extra_args: vec!["-fcolor-diagnostics"],
                }),
            ),
        ];
        for (r, want) in cases {
            let mut env = Vec::new();
            assert_eq!(adapt(&r, &mut env), want, "{:?} {:?}", r.compiler, r.env);
            assert_eq!(env, vec![("COLUMNS".to_string(), "120".to_string())]);
        }
        let mut env = Vec::new();
        assert!(
            adapt(
                &req(
                    "/usr/bin/gcc",
                    true,
                    &[("TERM", "xterm"), ("GCC_URLS", "st")],
                    &[]
                ),
                &mut env
            )
            .is_err()
        );
        assert!(
            adapt(
                &req(
                    "/usr/bin/gcc",
                    true,
                    &[("TERM", "xterm")],
                    &["-frecord-gcc-switches"]
                ),
                &mut env
            )
            .is_err()
        );
    }
}
