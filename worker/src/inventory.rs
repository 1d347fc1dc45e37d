//! The worker's own compilers: every program in [`PROGRAM_PATH`] whose name is a compiler
//! driver's, listed once at start. A host's [`CompilerRef`] is matched against this list by
//! comparing strings and digests; the worker never opens, and never runs, a path a peer
//! named. What each compiler says of itself (version, target, `.ident`) is asked once and
//! kept.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use offload_shared::Digest;
use offload_shared::protocol::CompilerRef;
use offload_shared::toolchain::{self, PROGRAM_PATH};

/// Largest compiler driver read for its digest (gcc's is ~1 MB, clang's ~100 KB).
const MAX_DRIVER_BYTES: u64 = 256 << 20;

/// Which driver a program is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `cc`, `gcc`, `gcc-12`, `x86_64-linux-gnu-gcc-12`.
    Gcc,
    /// `c++`, `g++`, `g++-12`, `aarch64-linux-gnu-g++`.
    Gxx,
    /// `clang`, `clang-14`.
    Clang,
    /// `clang++`, `clang++-14`.
    Clangxx,
}

impl Family {
    /// The family of a driver named `name` (a file name, no directory), if it is one.
    pub fn of(name: &str) -> Option<Family> {
        // Without a `-MAJOR` suffix of digits.
        let stem = match name.rsplit_once('-') {
            Some((s, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => s,
            _ => name,
        };
        let with_target = |base: &str| {
            stem == base
                || stem
                    .strip_suffix(base)
                    .is_some_and(|t| t.len() > 1 && t.ends_with('-'))
        };
        match stem {
            "cc" if stem == name => Some(Family::Gcc),
            "c++" if stem == name => Some(Family::Gxx),
            "clang" => Some(Family::Clang),
            "clang++" => Some(Family::Clangxx),
            _ if with_target("gcc") => Some(Family::Gcc),
            _ if with_target("g++") => Some(Family::Gxx),
            _ => None,
        }
    }

    fn clang(self) -> bool {
        matches!(self, Family::Clang | Family::Clangxx)
    }
}

/// What a compiler says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Its driver binary (every link resolved).
    pub real: PathBuf,
    /// Digest of the driver binary.
    pub digest: Digest,
    /// `-dumpfullversion` (gcc) or `-dumpversion` (clang).
    pub version: String,
    /// `-dumpmachine`.
    pub machine: String,
    /// The `.ident` it writes into assembly.
    pub ident: Option<String>,
}

/// One compiler of the worker's.
#[derive(Debug)]
pub struct Own {
    /// Where it was found (a name in [`PROGRAM_PATH`], links not resolved).
    pub path: PathBuf,
    /// Which driver.
    pub family: Family,
    facts: OnceLock<Option<Facts>>,
}

impl Own {
    /// Its facts, asked on first use; `None` when it does not run.
    pub fn facts(&self) -> Option<&Facts> {
        self.facts
            .get_or_init(|| ask(&self.path, self.family))
            .as_ref()
    }
}

/// How a worker compiler can serve a host's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// The host's very driver, at the host's path.
    Native,
    /// Another build of the same gcc for the host's target; its own `.ident`.
    CrossGcc(String),
    /// Another build of the same clang that targets the host's machine too.
    CrossClang,
}

/// The worker's compilers.
#[derive(Debug)]
pub struct Inventory {
    own: Vec<Own>,
    /// clang's `.ident` for `--target=T`, by (index in `own`, T).
    clang_idents: Mutex<HashMap<(usize, String), Option<String>>>,
}

impl Inventory {
    /// Lists the compilers in [`PROGRAM_PATH`].
    pub fn scan() -> Inventory {
        Inventory::of_dirs(PROGRAM_PATH.iter().map(Path::new))
    }

    /// Lists the compilers in `dirs`.
    pub fn of_dirs<'a>(dirs: impl Iterator<Item = &'a Path>) -> Inventory {
        let mut own = Vec::new();
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<(PathBuf, Family)> = rd
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    Some((e.path(), Family::of(&name)?))
                })
                .filter(|(p, _)| p.is_file())
                .collect();
            found.sort();
            own.extend(found.into_iter().map(|(path, family)| Own {
                path,
                family,
                facts: OnceLock::new(),
            }));
        }
        tracing::debug!(compilers = own.len(), "compilers found");
        Inventory {
            own,
            clang_idents: Mutex::new(HashMap::new()),
        }
    }

    /// Every compiler found.
    pub fn all(&self) -> &[Own] {
        &self.own
    }

    /// The compiler of this worker's that serves the host's `host`, and how: its driver at
    /// the host's path with the host's digest, else another build of the same compiler
    /// (same family, version and target; for clang the same `.ident` when it targets the
    /// host's machine). The probe then proves it equal.
    pub fn find(&self, host: &CompilerRef) -> Option<(&Own, Match)> {
        let name = Path::new(&host.path).file_name()?.to_str()?;
        let family = Family::of(name)?;
        if let Some(own) = self.own.iter().find(|o| {
            o.path.as_os_str() == host.path.as_str()
                && o.facts().is_some_and(|f| f.digest == host.digest)
        }) {
            return Some((own, Match::Native));
        }
        let mut words = host.version.split_whitespace();
        let (full, target) = (words.next()?, words.next()?);
        if !plain_word(target) {
            return None;
        }
        self.own.iter().enumerate().find_map(|(i, o)| {
            if o.family != family {
                return None;
            }
            let f = o.facts()?;
            if f.version != full {
                return None;
            }
            if family.clang() {
                (self.clang_ident(i, target)? == host.ident).then_some((o, Match::CrossClang))
            } else {
                (f.machine == target)
                    .then(|| f.ident.clone())
                    .flatten()
                    .map(|ident| (o, Match::CrossGcc(ident)))
            }
        })
    }

    fn clang_ident(&self, i: usize, target: &str) -> Option<String> {
        let key = (i, target.to_owned());
        let mut cache = self.clang_idents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = cache.get(&key) {
            return known.clone();
        }
        let ident = toolchain::assembly_ident(&self.own[i].path, &[&format!("--target={target}")])
            .ok()
            .flatten();
        // Bounded: targets are plain words, and a host names few of them.
        if cache.len() < 256 {
            cache.insert(key, ident.clone());
        }
        ident
    }
}

/// A target triple's characters only: what goes into `--target=` is never an option.
fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn ask(path: &Path, family: Family) -> Option<Facts> {
    let real = std::fs::canonicalize(path).ok()?;
    // A driver is a program, not a script around one (Debian's c89-gcc, say).
    let mut magic = [0u8; 4];
    std::fs::File::open(&real)
        .and_then(|mut f| f.read_exact(&mut magic))
        .ok()?;
    if &magic != b"\x7fELF" {
        return None;
    }
    let digest = digest_of_regular(&real).ok()?;
    let say = |opt: &str| {
        Command::new(path)
            .arg(opt)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let version = if family.clang() {
        say("-dumpversion")?
    } else {
        say("-dumpfullversion").or_else(|| say("-dumpversion"))?
    };
    let machine = say("-dumpmachine")?;
    let ident = toolchain::assembly_ident(path, &[]).ok().flatten();
    Some(Facts {
        real,
        digest,
        version,
        machine,
        ident,
    })
}

/// The digest of the regular file at `path`, read without following a final link, without
/// blocking on a FIFO or device, and only up to a size cap.
pub fn digest_of_regular(path: &Path) -> std::io::Result<Digest> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_DRIVER_BYTES {
        return Err(std::io::Error::other("larger than a compiler driver"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_DRIVER_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(Digest::of(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_by_name() {
        let table = [
            ("cc", Some(Family::Gcc)),
            ("gcc", Some(Family::Gcc)),
            ("gcc-12", Some(Family::Gcc)),
            ("x86_64-linux-gnu-gcc-12", Some(Family::Gcc)),
            ("aarch64-linux-gnu-gcc", Some(Family::Gcc)),
            ("c++", Some(Family::Gxx)),
            ("g++-12", Some(Family::Gxx)),
            ("x86_64-linux-gnu-g++", Some(Family::Gxx)),
            ("clang", Some(Family::Clang)),
            ("clang-14", Some(Family::Clang)),
            ("clang++-14", Some(Family::Clangxx)),
            ("gcc-ar-12", None),
            ("x86_64-linux-gnu-gcc-nm", None),
            ("clang-cpp-14", None),
            ("cc-1", None),
            ("-gcc", None),
            ("gccgo", None),
            ("../../bin/gcc", None),
        ];
        for (name, want) in table {
            assert_eq!(Family::of(name), want, "{name}");
        }
    }

    #[test]
    fn targets_are_plain_words() {
        assert!(plain_word("x86_64-linux-gnu"));
        for bad in ["", "-cc1", "a b", "x/../y", "a;b"] {
            assert!(!plain_word(bad), "{bad}");
        }
    }

    #[test]
    fn identity_reads_refuse_what_is_not_a_plain_file() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("f");
        std::fs::write(&file, b"driver").unwrap();
        assert_eq!(digest_of_regular(&file).unwrap(), Digest::of(b"driver"));
        std::os::unix::fs::symlink(&file, t.path().join("link")).unwrap();
        let fifo = std::ffi::CString::new(format!("{}/fifo", t.path().display())).unwrap();
        // SAFETY: plain syscall on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for bad in ["link", "fifo"] {
            assert!(digest_of_regular(&t.path().join(bad)).is_err(), "{bad}");
        }
        for dev in ["/dev/zero", "/dev/null", "/"] {
            assert!(digest_of_regular(Path::new(dev)).is_err(), "{dev}");
        }
    }

    #[test]
    fn a_host_path_is_compared_never_opened() {
        let inv = Inventory::scan();
        let liar = CompilerRef {
            path: "/dev/zero".into(),
            digest: Digest([0; 32]),
            version: "12 /etc/passwd".into(),
            ident: String::new(),
        };
        assert!(inv.find(&liar).is_none());
        let traversal = CompilerRef {
            path: "/usr/bin/gcc".into(),
            version: "../../../tmp/x /tmp/evil".into(),
            ..liar
        };
        assert!(inv.find(&traversal).is_none());
    }
}
