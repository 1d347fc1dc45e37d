//! The files a compiler driver runs with for `-c`: the driver, the sub-programs it names
//! with `-print-prog-name` (cc1, cc1plus, as, objcopy), their shared libraries as `ldd`
//! lists them, and a few data files (locale and `gconv` caches, `ld.so.cache`).
//!
//! Both sides use this list: the worker copies it into a template for its own compilers, the
//! host packs it into a bundle for a worker that has no such compiler (see `bundle`). The
//! nodes come from a [`PathWalker`], so every link on the way is recorded and the files can
//! be recreated at the same absolute paths through the same links. Headers are never part
//! of a toolchain: they travel with each job.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::walk::{Node, PathWalker, Resolved};

/// Data files the compilers read besides their libraries (those that exist are taken).
pub const DATA_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/usr/lib/locale/C.utf8",
    "/usr/lib/locale/locale-archive",
    "/usr/share/locale/locale.alias",
    "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
    "/usr/lib/aarch64-linux-gnu/gconv/gconv-modules.cache",
];

/// glibc's character-set conversion modules, which cc1 loads through `iconv` for
/// `-finput-charset`, `-fexec-charset` and `-fwide-exec-charset`. A toolchain holds them;
/// a job root gets them only when its command names a charset ([`needs_charsets`]), as
/// they are hundreds of files.
pub const CHARSET_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/gconv",
    "/usr/lib/aarch64-linux-gnu/gconv",
];

/// Whether `path` is a conversion module below one of [`CHARSET_DIRS`].
pub fn is_charset_module(path: &Path) -> bool {
    CHARSET_DIRS
        .iter()
        .any(|d| path.starts_with(d) && path != Path::new(d))
}

/// Whether a compile with these arguments may convert character sets.
pub fn needs_charsets<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter().any(|a| {
        let a = a.as_ref();
        [
            "-finput-charset=",
            "-fexec-charset=",
            "-fwide-exec-charset=",
        ]
        .iter()
        .any(|f| a.starts_with(f))
    })
}

/// Sub-programs a driver runs for `-c` (objcopy splits `-gsplit-dwarf` objects), asked of
/// the driver with `-print-prog-name`.
pub const SUB_PROGRAMS: &[&str] = &["cc1", "cc1plus", "as", "objcopy"];

/// Directories searched for a sub-program the driver names without a path.
pub const PROGRAM_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// A compiler's files.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The driver binary's real path (every link resolved).
    pub driver: PathBuf,
    /// Every directory, link and file, parents first.
    pub nodes: BTreeMap<PathBuf, Node>,
}

/// The `.ident` text `compiler` (with `extra` arguments first) writes into assembly, e.g.
/// `GCC: (Debian 12.2.0-14+deb12u1) 12.2.0`; `Ok(None)` when it writes none.
pub fn assembly_ident(compiler: &Path, extra: &[&str]) -> io::Result<Option<String>> {
    let out = Command::new(compiler)
        .args(extra)
        .args(["-x", "c", "-S", "-o", "-", "/dev/null"])
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok(crate::ident::of_assembly(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Collects the files of the compiler at `compiler` (an absolute path, links allowed).
/// `Ok(None)` when there is no file there.
pub fn collect(compiler: &str) -> io::Result<Option<Collected>> {
    let mut walker = PathWalker::new();
    let Resolved::File(driver) = walker.resolve(Path::new(compiler), Path::new("/"))? else {
        return Ok(None);
    };
    add_parts(&mut walker, compiler, &driver)?;
    Ok(Some(Collected {
        driver,
        nodes: walker.into_nodes(),
    }))
}

/// Adds to `walker` what the compiler run as `compiler`, whose driver binary is `driver`,
/// needs besides the driver itself (which the caller has resolved): its sub-programs, their
/// and the driver's libraries, and the data files.
pub fn add_parts(walker: &mut PathWalker, compiler: &str, driver: &Path) -> io::Result<()> {
    let mut programs = vec![driver.to_owned()];
    for sub in SUB_PROGRAMS {
        if let Some(p) = sub_program(compiler, sub)
            && let Resolved::File(real) = walker.resolve(&p, Path::new("/"))?
        {
            programs.push(real);
        }
    }
    let mut extra: Vec<PathBuf> = Vec::new();
    for p in &programs {
        extra.extend(shared_libraries(p));
    }
    extra.extend(DATA_FILES.iter().map(PathBuf::from));
    extra.extend(CHARSET_DIRS.iter().map(PathBuf::from));
    for p in extra {
        if let Resolved::Dir(d) = walker.resolve(&p, Path::new("/"))? {
            add_dir_contents(walker, &d)?;
        }
    }
    Ok(())
}

/// Adds every file below `dir` (one level of subdirectories is enough for locale data).
fn add_dir_contents(walker: &mut PathWalker, dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if let Resolved::Dir(d) = walker.resolve(&p, Path::new("/"))? {
            add_dir_contents(walker, &d)?;
        }
    }
    Ok(())
}

/// Where the driver finds `name`: an absolute path, or a bare name looked up in the PATH
/// the job runs with.
pub fn sub_program(compiler: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new(compiler)
        .arg(format!("-print-prog-name={name}"))
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    if s.starts_with('/') {
        return Some(PathBuf::from(s));
    }
    PROGRAM_PATH
        .iter()
        .map(|d| Path::new(d).join(s))
        .find(|p| p.is_file())
}

/// The shared libraries `program` loads, and its interpreter, as `ldd` lists them.
pub fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(program).output() else {
        return Vec::new();
    };
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                    \tlibgone.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn missing_compiler_is_none() {
        assert!(collect("/nonexistent/offload-test-cc").unwrap().is_none());
    }
}
