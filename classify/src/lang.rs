//! Compiler-driver names, input languages by file-name suffix, and `-x` languages.

use super::{Language, LocalReason};

/// What the compiler name tells us about the command-line dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Driver {
    /// The clang overlay table applies.
    pub clang: bool,
    /// A C++ driver (`g++`, `c++`, `clang++`): like gcc's `g++`, it compiles `.c` as C++ and
    /// `.i` as preprocessed C++ unless `-x` says otherwise.
    pub cxx: bool,
}

impl Driver {
    /// Reads the dialect from the compiler's name as invoked (`gcc`, `x86_64-linux-gnu-g++-12`,
    /// `clang++-17`, `cc`, a path...). Names with a non-gcc syntax (`clang-cl`, `cl`) are refused.
    pub(crate) fn from_name(compiler: &str) -> Result<Self, LocalReason> {
        let base = compiler.rsplit('/').next().unwrap_or(compiler);
        let name = strip_version(base);
        if name == "cl" || name.ends_with("clang-cl") {
            return Err(LocalReason::UnsupportedCompiler(base.to_owned()));
        }
        Ok(Self {
            clang: name.contains("clang"),
            cxx: name.contains("++"),
        })
    }
}

/// `g++-12` → `g++`, `clang-17.0` → `clang`; other names unchanged.
fn strip_version(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match trimmed.strip_suffix('-') {
        Some(stem) if trimmed.len() < name.len() => stem,
        _ => name,
    }
}

/// What gcc would do with one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// A source offload can compile remotely.
    Source(Language),
    /// A header: compiling it generates a precompiled header.
    Header,
    /// Source in a language offload does not handle; the text names it.
    Unsupported(String),
    /// Not a source: gcc would pass it to the linker (objects, libraries, unknown suffixes).
    NotSource,
    /// `-`: the source comes from stdin.
    Stdin,
}

/// The language of `path` from its suffix, as gcc decides it (case-sensitive; a name that is
/// only the suffix, like `.c`, has none). `cxx` applies the C++ driver's promotion of `.c`,
/// `.i` and `.h`.
pub(crate) fn by_suffix(path: &str, cxx: bool) -> InputKind {
    let suffix = match path.rfind('.') {
        Some(dot) if dot > 0 => &path[dot + 1..],
        _ => return InputKind::NotSource,
    };
    let source = |language| InputKind::Source(language);
    let unsupported = |what: &str| InputKind::Unsupported(what.to_owned());
    match suffix {
        "c" if cxx => source(Language::Cxx),
        "c" => source(Language::C),
        "cc" | "cp" | "cxx" | "cpp" | "CPP" | "c++" | "C" => source(Language::Cxx),
        "S" | "sx" => source(Language::AsmCpp),
        "i" if cxx => source(Language::PreprocessedCxx),
        "i" => source(Language::PreprocessedC),
        "ii" => source(Language::PreprocessedCxx),
        "h" | "hh" | "H" | "hp" | "hxx" | "hpp" | "HPP" | "h++" | "tcc" => InputKind::Header,
        "s" => unsupported("assembler without preprocessing (.s)"),
        "m" | "mi" => unsupported("Objective-C"),
        "mm" | "M" | "mii" => unsupported("Objective-C++"),
        "cppm" | "ccm" | "cxxm" | "c++m" | "ixx" => unsupported("C++ module interface"),
        "cu" => unsupported("CUDA"),
        "cl" => unsupported("OpenCL"),
        "f" | "for" | "ftn" | "fpp" | "F" | "FOR" | "FTN" | "FPP" | "f90" | "f95" | "f03"
        | "f08" | "F90" | "F95" | "F03" | "F08" => unsupported("Fortran"),
        "ads" | "adb" => unsupported("Ada"),
        "d" | "di" | "dd" => unsupported("D"),
        "go" => unsupported("Go"),
        "ll" | "bc" => unsupported("LLVM IR"),
        _ => InputKind::NotSource,
    }
}

/// The language a `-x` value selects for the inputs that follow; `None` for `-x none`
/// (back to suffix rules).
pub(crate) fn by_x(value: &str) -> Option<InputKind> {
    let source = |language| Some(InputKind::Source(language));
    match value {
        "none" => None,
        "c" => source(Language::C),
        "c++" => source(Language::Cxx),
        "assembler-with-cpp" => source(Language::AsmCpp),
        "cpp-output" => source(Language::PreprocessedC),
        "c++-cpp-output" => source(Language::PreprocessedCxx),
        "c-header"
        | "c++-header"
        | "c++-system-header"
        | "c++-user-header"
        | "objective-c-header"
        | "objective-c++-header" => Some(InputKind::Header),
        other => Some(InputKind::Unsupported(format!("-x {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names() {
        let driver = |name| Driver::from_name(name).map(|d| (d.clang, d.cxx));
        assert_eq!(driver("gcc"), Ok((false, false)));
        assert_eq!(driver("cc"), Ok((false, false)));
        assert_eq!(driver("g++"), Ok((false, true)));
        assert_eq!(driver("c++"), Ok((false, true)));
        assert_eq!(driver("x86_64-linux-gnu-g++-12"), Ok((false, true)));
        assert_eq!(driver("x86_64-w64-mingw32-g++-posix"), Ok((false, true)));
        assert_eq!(driver("/usr/bin/gcc-12"), Ok((false, false)));
        assert_eq!(driver("clang"), Ok((true, false)));
        assert_eq!(driver("clang-17"), Ok((true, false)));
        assert_eq!(driver("clang++-17.0"), Ok((true, true)));
        assert!(driver("clang-cl").is_err());
        assert!(driver("clang-cl-17").is_err());
    }

    #[test]
    fn suffixes() {
        use InputKind::*;
        assert_eq!(by_suffix("a.c", false), Source(Language::C));
        assert_eq!(by_suffix("a.c", true), Source(Language::Cxx));
        assert_eq!(by_suffix("dir.x/a.C", false), Source(Language::Cxx));
        assert_eq!(by_suffix("a.c++", false), Source(Language::Cxx));
        assert_eq!(by_suffix("a.S", false), Source(Language::AsmCpp));
        assert_eq!(by_suffix("a.sx", true), Source(Language::AsmCpp));
        assert_eq!(by_suffix("a.i", false), Source(Language::PreprocessedC));
        assert_eq!(by_suffix("a.i", true), Source(Language::PreprocessedCxx));
        assert_eq!(by_suffix("a.ii", false), Source(Language::PreprocessedCxx));
        assert_eq!(by_suffix("a.hpp", false), Header);
        assert!(matches!(by_suffix("a.s", false), Unsupported(_)));
        assert_eq!(by_suffix("a.o", false), NotSource);
        assert_eq!(by_suffix("liba.so.1", false), NotSource);
        assert_eq!(by_suffix("Makefile", false), NotSource);
        assert_eq!(by_suffix(".c", false), NotSource);
        assert_eq!(by_suffix("a.CXX", false), NotSource);
    }

    #[test]
    fn x_values() {
        assert_eq!(by_x("none"), None);
        assert_eq!(by_x("c++"), Some(InputKind::Source(Language::Cxx)));
        assert_eq!(by_x("c++-header"), Some(InputKind::Header));
        assert!(matches!(by_x("assembler"), Some(InputKind::Unsupported(_))));
    }
}
