//! Whether a compiler honours `SOURCE_DATE_EPOCH` for `__DATE__` and `__TIME__`: only then
//! does a remote compile of a file that uses them equal the local one. gcc does since 7;
//! clang 14 does not (it takes the wall clock).

use std::io::Write;
use std::process::{Command, Stdio};

/// An epoch whose date and time no wall clock shows: 1970-01-02 03:04:05 UTC.
const EPOCH: &str = "97445";
/// What `__DATE__ __TIME__` expands to at [`EPOCH`].
const EXPECTED: &str = "\"Jan  2 1970\" \"03:04:05\"";

/// Preprocesses `__DATE__ __TIME__` with `SOURCE_DATE_EPOCH` set and checks the result; any
/// failure to run the compiler counts as not honouring it.
pub fn honoured(compiler: &str) -> bool {
    let child = Command::new(compiler)
        .args(["-E", "-P", "-x", "c", "-"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"__DATE__ __TIME__\n");
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => expands_to_epoch(&String::from_utf8_lossy(&out.stdout)),
        _ => false,
    }
}

fn expands_to_epoch(preprocessed: &str) -> bool {
    preprocessed.lines().any(|l| l.trim() == EXPECTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_preprocessed_line() {
        assert!(expands_to_epoch("\n\"Jan  2 1970\" \"03:04:05\"\n"));
        assert!(!expands_to_epoch("\"Dec  2 2026\" \"06:30:00\"\n"));
        assert!(!expands_to_epoch(""));
    }

    #[test]
    fn gcc_honours_it() {
        assert!(honoured("gcc"));
        assert!(!honoured("/nonexistent/cc"));
    }
}
