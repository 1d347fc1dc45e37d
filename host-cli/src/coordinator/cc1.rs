//! The compiler proper's command, as this host's clang driver builds it (`clang -###`).
//!
//! A worker that runs another build of the host's clang (an arm64 clang targeting x86_64)
//! is not given the driver's job: its driver would choose the target CPU, include
//! directories and GCC installation from its own machine. It runs `clang -cc1` with exactly
//! the arguments this host's driver chose, so only the compiler proper's code is the
//! worker's, and the probe proves that equal.

/// Asks `compiler` for the command it would run for `args` (in `cwd`, with `env`). `Err`
/// when the driver would run anything but exactly one `-cc1` command, or would print a
/// diagnostic of its own (the worker, running `-cc1` only, would not).
pub async fn command(
    compiler: &str,
    args: &[String],
    cwd: &str,
    env: &[(String, String)],
) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new(compiler)
        .arg("-###")
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{compiler} -###: {e}"))?;
    if !out.status.success() {
        return Err(format!("{compiler} -### failed"));
    }
    parse(&String::from_utf8_lossy(&out.stderr))
}

/// The `-###` listing's commands must be exactly one `-cc1` command; every other line must
/// be the driver's header.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with(" \"") {
            commands.push(split(line.trim_start())?);
            continue;
        }
        let header = (i == 0 && line.contains("clang version"))
            || [
                "Target: ",
                "Thread model: ",
                "InstalledDir: ",
                " (in-process)",
            ]
            .iter()
            .any(|p| line.starts_with(p));
        if !header {
            return Err(format!(
                "the driver says more than its command: {}",
                line.chars().take(200).collect::<String>()
            ));
        }
    }
    match <[Vec<String>; 1]>::try_from(commands) {
        Ok([cmd]) if cmd.get(1).map(String::as_str) == Some("-cc1") => Ok(cmd),
        Ok(_) => Err("the driver runs something other than -cc1".into()),
        Err(v) => Err(format!("the driver runs {} commands, not one", v.len())),
    }
}

/// Splits a line of `"arg" "arg"…`, each quoted with `\` before `"`, `\` and `$`.
fn split(line: &str) -> Result<Vec<String>, String> {
    let bad = || format!("cannot read the driver's command: {line}");
    let mut out = Vec::new();
    let mut chars = line.chars();
    loop {
        match chars.next() {
            None => return Ok(out),
            Some(' ') => {}
            Some('"') => {
                let mut arg = String::new();
                loop {
                    match chars.next().ok_or_else(bad)? {
                        '"' => break,
                        '\\' => arg.push(chars.next().ok_or_else(bad)?),
                        c => arg.push(c),
                    }
                }
                out.push(arg);
            }
            Some(_) => return Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "Debian clang version 14.0.6\n\
        Target: x86_64-pc-linux-gnu\n\
        Thread model: posix\n\
        InstalledDir: /usr/bin\n \
        (in-process)\n \
        \"/usr/lib/llvm-14/bin/clang\" \"-cc1\" \"-triple\" \"x86_64-pc-linux-gnu\" \"-D\" \"Q=\\\"a b\\\"\" \"-D\" \"P=\\\\\\$x\" \"-o\" \"t.o\" \"-x\" \"c\" \"t.c\"\n";

    #[test]
    fn one_cc1_command() {
        let cmd = parse(LISTING).unwrap();
        assert_eq!(
            cmd,
            [
                "/usr/lib/llvm-14/bin/clang",
                "-cc1",
                "-triple",
                "x86_64-pc-linux-gnu",
                "-D",
                "Q=\"a b\"",
                "-D",
                "P=\\$x",
                "-o",
                "t.o",
                "-x",
                "c",
                "t.c"
            ]
        );
    }

    #[test]
    fn refuses_diagnostics_and_other_jobs() {
        let warned = LISTING.replace(
            "Thread model: posix\n",
            "Thread model: posix\nclang: warning: -lm: 'linker' input unused\n",
        );
        assert!(parse(&warned).unwrap_err().contains("warning"));
        let two = format!("{LISTING} \"/usr/bin/as\" \"-o\" \"t.o\"\n");
        assert!(parse(&two).unwrap_err().contains("2 commands"));
        let cc1as = LISTING.replace("\"-cc1\"", "\"-cc1as\"");
        assert!(parse(&cc1as).is_err());
        assert!(parse("Debian clang version 14.0.6\n").is_err());
        assert!(parse(" \"/usr/bin/clang\" \"-cc1\" \"unterminated\n").is_err());
    }
}
