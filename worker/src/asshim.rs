//! The assembler shim of a cross toolchain: the worker's binary, installed in a job root at
//! the cross assembler's path. It rewrites the cross compiler's `.ident` in the assembly to
//! the host compiler's (the one difference between their objects, measured: the `.comment`
//! section) and hands over to the real assembler with the same arguments.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The environment variable that switches the binary into this mode: the real assembler.
pub const ENV_REAL: &str = "OFFLOAD_AS_REAL";

/// Runs the shim; never returns.
pub fn run(real: OsString) -> ! {
    let from = std::env::var("OFFLOAD_IDENT_FROM").unwrap_or_default();
    let to = std::env::var("OFFLOAD_IDENT_TO").unwrap_or_default();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Input files: words that are not options and not an option's value (`-o FILE`,
    // `-I DIR`, `--MD FILE`); the driver passes one `.s` file, or none with -pipe (stdin).
    let mut inputs = Vec::new();
    let mut skip_next = false;
    for a in &args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let s = a.to_string_lossy();
        if matches!(s.as_ref(), "-o" | "-I" | "--MD" | "-a") {
            skip_next = true;
        } else if !s.starts_with('-') {
            inputs.push(a.clone());
        }
    }
    let mut cmd = Command::new(&real);
    cmd.args(&args)
        .env_remove(ENV_REAL)
        .env_remove("OFFLOAD_IDENT_FROM")
        .env_remove("OFFLOAD_IDENT_TO");
    if !from.is_empty() && !to.is_empty() {
        if inputs.is_empty() {
            let mut asm = Vec::new();
            if std::io::stdin().read_to_end(&mut asm).is_err() {
                std::process::exit(1);
            }
            let asm = offload_shared::ident::rewrite(&asm, &from, &to);
            let Ok(mut child) = cmd.stdin(Stdio::piped()).spawn() else {
                std::process::exit(1);
            };
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(&asm);
            }
            let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
            std::process::exit(code);
        }
        for input in &inputs {
            if let Ok(asm) = std::fs::read(input) {
                let new = offload_shared::ident::rewrite(&asm, &from, &to);
                if new != asm && std::fs::write(input, new).is_err() {
                    std::process::exit(1);
                }
            }
        }
    }
    let err = cmd.exec();
    eprintln!(
        "offload as-shim: cannot run {}: {err}",
        real.to_string_lossy()
    );
    std::process::exit(1)
}
