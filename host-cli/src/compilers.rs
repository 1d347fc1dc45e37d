//! Which program names are compilers, and where the real one is.
//!
//! `offload build` puts a directory of links named like compilers first on PATH; each link
//! points at the offload binary, which then finds the real compiler of the same name
//! further along PATH.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Names linked in the masquerade directory. Target-prefixed names
/// (`x86_64-linux-gnu-gcc-12`) are recognised by [`is_compiler_name`] too.
pub const MASQUERADE_NAMES: &[&str] = &[
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "clang++",
    "x86_64-linux-gnu-gcc",
    "x86_64-linux-gnu-g++",
    "gcc-12",
    "g++-12",
    "x86_64-linux-gnu-gcc-12",
    "x86_64-linux-gnu-g++-12",
    "clang-14",
    "clang++-14",
];

/// The compiler family a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// gcc, g++, cc, c++ and target-prefixed or versioned forms.
    Gcc,
    /// clang and clang++.
    Clang,
}

/// Whether `name` (a basename) is a compiler we intercept, and of which family:
/// `[TRIPLE-]BASE[-VERSION]` with BASE one of cc, c++, gcc, g++, clang, clang++.
pub fn is_compiler_name(name: &str) -> Option<Family> {
    let base = name.rsplit_once('-').map_or(name, |(head, tail)| {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '.') {
            head
        } else {
            name
        }
    });
    let base = base.rsplit('-').next().unwrap_or(base);
    match base {
        "cc" | "c++" | "gcc" | "g++" => Some(Family::Gcc),
        "clang" | "clang++" => Some(Family::Clang),
        _ => None,
    }
}

/// Finds the real compiler `name` on `path_var`, skipping `skip_dir` (the masquerade
/// directory) and anything that resolves to `self_exe`.
pub fn find_real(
    name: &OsStr,
    path_var: &OsStr,
    skip_dir: Option<&Path>,
    self_exe: &Path,
) -> Option<PathBuf> {
    let name_path = Path::new(name);
    if name_path.components().count() > 1 {
        return Some(name_path.to_owned());
    }
    for dir in std::env::split_paths(path_var) {
        if dir.as_os_str().is_empty() || Some(dir.as_path()) == skip_dir {
            continue;
        }
        let cand = dir.join(name);
        let Ok(meta) = std::fs::metadata(&cand) else {
            continue;
        };
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        if std::fs::canonicalize(&cand).is_ok_and(|c| c == self_exe) {
            continue;
        }
        return Some(cand);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (n, want) in [
            ("gcc", Some(Family::Gcc)),
            ("g++", Some(Family::Gcc)),
            ("cc", Some(Family::Gcc)),
            ("c++", Some(Family::Gcc)),
            ("gcc-12", Some(Family::Gcc)),
            ("x86_64-linux-gnu-gcc-12", Some(Family::Gcc)),
            ("aarch64-linux-gnu-g++", Some(Family::Gcc)),
            ("clang", Some(Family::Clang)),
            ("clang++-14", Some(Family::Clang)),
            ("ld", None),
            ("gcc-ar", None),
            ("gcc-nm-12", None),
            ("make", None),
            ("offload", None),
        ] {
            assert_eq!(is_compiler_name(n), want, "{n}");
        }
    }
}
