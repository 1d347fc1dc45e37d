//! The toolchain probe: before a worker compiles anything for a compiler, a few canned
//! translation units are compiled here and there, at the same path, and every result must
//! be identical — objects, debug information, diagnostics, exit status. A worker whose
//! compiler, assembler or libraries differ in any way that shows in an object never gets a
//! job for that compiler; the build's compiles of it run locally.
//!
//! The probe goes through the same path as a real job (dependency scan, shipped inputs, the
//! worker's job root), so it checks that path too.

use std::path::Path;

use offload_shared::protocol::ExitStatus;

use std::sync::Arc;

use super::executor::Executor;
use super::{Coordinator, Outcome};
use crate::classify::{self, Classification};
use crate::ipc::CompileRequest;

/// The canned sources: C with the C library's headers, varargs, floating point and a
/// loop the optimizer transforms; C++ with templates and the standard library.
const FILES: &[(&str, &str)] = &[
    (
        "probe.c",
        "#include <stdio.h>\n#include <stdarg.h>\n#include <string.h>\n\
         struct s { double d; long l; char c[3]; };\n\
         static int tbl[64] = { 1, 2, 3, 5, 8, 13 };\n\
         int f(int x) { return x * 3 + tbl[x & 63]; }\n\
         double g(const struct s *p, double k) { return p->d * k + (double)p->l; }\n\
         int h(const char *fmt, ...) { va_list ap; va_start(ap, fmt); int r = vprintf(fmt, ap); va_end(ap); return r; }\n\
         long loop(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i ^ (i >> 3); return s; }\n\
         size_t len(const char *p) { return strlen(p) + sizeof(struct s); }\n\
         int warn(void) { int unused; return 0; }\n",
    ),
    (
        "probe.cc",
        "#include <utility>\n#include <cstddef>\n\
         template <typename T, std::size_t N> struct arr { T v[N]; T sum() const { T s{}; for (auto &x : v) s += x; return s; } };\n\
         struct base { virtual ~base() {} virtual int f() const { return 1; } };\n\
         struct derived : base { int f() const override { return 2; } };\n\
         int use(const base &b) { arr<double, 3> a{{1.5, 2.5, 3.0}}; auto p = std::make_pair(b.f(), a.sum()); return p.first + int(p.second); }\n\
         int both() { derived d; return use(d); }\n",
    ),
];

/// The compiles for C (and preprocessed assembly, which uses the same programs but cc1plus).
const C_CASES: &[&[&str]] = &[
    &["-O2", "-g", "-Wall", "-c", "probe.c", "-o", "c-O2-g.o"],
    &["-O0", "-MD", "-c", "probe.c", "-o", "c-O0.o"],
];
/// The compiles for C++.
const CXX_CASES: &[&[&str]] = &[&["-O1", "-g", "-Wall", "-c", "probe.cc", "-o", "cxx-O1-g.o"]];

/// The key a probe result is kept under for the host's side: the compiler's fingerprint
/// and the probe itself (its sources and commands), so a changed probe runs again.
pub fn key(fp: &super::fingerprint::Fingerprint) -> offload_shared::Digest {
    let mut text = fp.digest().to_hex();
    for (name, body) in FILES {
        text.push_str(&format!("\n{name}\n{body}"));
    }
    for case in C_CASES.iter().chain(CXX_CASES) {
        text.push_str(&format!("\n{}", case.join(" ")));
    }
    offload_shared::Digest::of(text.as_bytes())
}

/// Runs the probe for `req.compiler` (its C or its C++ side) on `exec` in `dir` (a
/// directory of this host's that the worker cannot see). `Err` says what differed.
pub async fn run(
    coord: &Coordinator,
    exec: &Arc<dyn Executor>,
    req: &CompileRequest,
    cxx: bool,
    dir: &Path,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("probe directory {}: {e}", dir.display());
    let cwd = dir.join("w");
    std::fs::create_dir_all(&cwd).map_err(io)?;
    let cwd = cwd.canonicalize().map_err(io)?;
    for (name, text) in FILES {
        std::fs::write(cwd.join(name), text).map_err(io)?;
    }
    for args in if cxx { CXX_CASES } else { C_CASES } {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let before = listing(&cwd)?;
        let local = tokio::process::Command::new(&req.compiler)
            .args(&args)
            .current_dir(&cwd)
            .env_clear()
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running {} here: {e}", req.compiler))?;
        let local_files = take_new(&cwd, &before)?;

        let name = Path::new(&req.compiler)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cc");
        let os_args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let Classification::Remote(compile) = classify::classify(name, &os_args) else {
            return Err(format!(
                "{} cannot compile the probe remotely",
                req.compiler
            ));
        };
        let probe_req = CompileRequest {
            compiler: req.compiler.clone(),
            args: args.clone(),
            cwd: cwd.to_string_lossy().into_owned(),
            env: req.env.clone(),
            umask: req.umask,
            stderr_tty: false,
            stdin_columns: None,
        };
        let (status, stdout, stderr) =
            match coord.remote(exec, &probe_req, &compile, &[], false).await {
                Outcome::Done {
                    status,
                    stdout,
                    stderr,
                } => (status, stdout, stderr),
                // Our own probe cannot be compiled there (or here: a failed scan): prove nothing.
                Outcome::Local(why)
                | Outcome::LocalGranted(_, why)
                | Outcome::FellBack(why)
                | Outcome::Elsewhere(why) => {
                    return Err(why);
                }
                Outcome::Verify(_) | Outcome::Held(_) | Outcome::RanHere { .. } => {
                    return Err("a probe's result is never held back or raced".into());
                }
            };
        let remote_files = take_new(&cwd, &before)?;
        let local_status = match local.status.code() {
            Some(c) => ExitStatus::Code(c),
            None => ExitStatus::Signal(-1),
        };
        let what = args.join(" ");
        if status != local_status {
            return Err(format!(
                "`{what}` exits {status:?} there, {local_status:?} here"
            ));
        }
        if stdout != local.stdout || stderr != local.stderr {
            return Err(format!("`{what}` prints different diagnostics there"));
        }
        if remote_files != local_files {
            return Err(format!(
                "`{what}` gives different output there: {}",
                first_difference(&local_files, &remote_files)
            ));
        }
    }
    Ok(())
}

/// Names the first file that differs, and for text its first differing line.
fn first_difference(here: &[(String, Vec<u8>)], there: &[(String, Vec<u8>)]) -> String {
    for (name, bytes) in here {
        match there.iter().find(|(n, _)| n == name) {
            None => return format!("{name} is missing"),
            Some((_, theirs)) if theirs != bytes => {
                let (a, b) = (
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(theirs),
                );
                let line = a
                    .lines()
                    .zip(b.lines())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!(" (here {x:?}, there {y:?})"))
                    .unwrap_or_default();
                let line: String = line.chars().take(300).collect();
                return format!("{name}{line}");
            }
            Some(_) => {}
        }
    }
    match there
        .iter()
        .find(|(n, _)| !here.iter().any(|(m, _)| m == n))
    {
        Some((n, _)) => format!("{n} is extra"),
        None => "the same files".into(),
    }
}

fn listing(dir: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and removes the files that were not in `before`.
fn take_new(dir: &Path, before: &[String]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for name in listing(dir)? {
        if before.contains(&name) {
            continue;
        }
        let p = dir.join(&name);
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let _ = std::fs::remove_file(&p);
        out.push((name, bytes));
    }
    Ok(out)
}
