//! Compiler command-line classification.
//!
//! Decides, for one gcc/clang invocation, whether it can run on a remote worker and, if so,
//! extracts what the rest of the host needs: the source, the output, the directories the compile
//! writes to, the arguments for the host's dependency scan and the include directories.
//!
//! The worker runs the *same* command line at the *same* paths, so the classifier never rewrites
//! arguments; it only has to be sure that the compile reads nothing the dependency scan does not
//! see and writes nothing outside the directories it reports. Anything it does not positively
//! know is classified [`Classification::Local`].
//!
//! This crate is pure: it performs no IO. Response files are read through a callback
//! ([`expand_response_files`]). The host classifies every intercepted call with it; the
//! worker admits a job only if the same tables would have sent it ([`admit`]).
//!
//! Layout:
//! - `env`: which environment variables a remote compile gets;
//! - `admit`: the worker's check of a job's command and environment;
//! - `table`: the static option tables (gcc, plus a clang overlay) and the prefix-aware lookup;
//! - `parse`: the single pass over argv that fills a [`Compile`] or finds a [`LocalReason`];
//! - `lang`: compiler-driver names, file-name suffixes and `-x` languages;
//! - `subopts`: the values of `-Wa,` and `-Wp,`;
//! - `paths`: gcc's default output and dependency-file names;
//! - `reason`: [`LocalReason`];
//! - `rsp`: `@file` response files.

pub mod admit;
pub mod env;
mod lang;
mod parse;
mod paths;
mod reason;
mod rsp;
mod subopts;
mod table;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::PathBuf;

pub use parse::classify;
pub use reason::LocalReason;
pub use rsp::{
    MAX_RESPONSE_DEPTH, MAX_RESPONSE_FILES, RspError, expand_response_files, parse_response_file,
};

/// The language the one source file is compiled as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// C (`.c`, or `-x c`).
    C,
    /// C++ (`.cc .cp .cxx .cpp .CPP .c++ .C`, `.c` under a C++ driver, or `-x c++`).
    Cxx,
    /// Assembler that goes through the C preprocessor (`.S`, `.sx`, or `-x assembler-with-cpp`).
    AsmCpp,
    /// Preprocessed C (`.i`, or `-x cpp-output`).
    PreprocessedC,
    /// Preprocessed C++ (`.ii`, `.i` under a C++ driver, or `-x c++-cpp-output`).
    PreprocessedCxx,
}

/// Which include-search list an include directory option adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncludeDirKind {
    /// `-iquote dir`: searched for `#include "..."` only.
    Quote,
    /// `-I dir`.
    Angle,
    /// `-isystem dir`.
    System,
    /// `-idirafter dir` (and clang's `-isystem-after dir`).
    After,
}

/// A compile that can run remotely, with what the host needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compile {
    /// The language the source is compiled as.
    pub language: Language,
    /// The one source file, exactly as written in argv (relative to cwd or absolute).
    pub source: PathBuf,
    /// The object/assembly output: the `-o` value, or the default gcc would use (basename of
    /// the source with `.o`, or `.s` with `-S`, in cwd).
    pub output: PathBuf,
    /// Directories (as written, relative to cwd or absolute; `"."` for cwd) where the compile
    /// may create files: always `"."`, plus the directory of the output and of the dependency
    /// file (`-MD`/`-MMD` with or without `-MF`, `-Wp,-MD,file`, `-Wp,-MMD,file`).
    /// Side outputs (`-save-temps*`, `-gsplit-dwarf`, `-fstack-usage`, `-fcallgraph-info`) go to
    /// cwd or the output's directory. Deduplicated, in first-seen order.
    pub output_dirs: Vec<PathBuf>,
    /// The arguments (argv without argv\[0\]) for the host's dependency scan: the original
    /// arguments (after response-file expansion) minus everything that selects the mode or
    /// produces output (`-c`, `-S`, `-o X`, `-MD`, `-MMD`, `-MF X`, `-MT X`, `-MQ X`, `-MP`,
    /// `-Wp,-MD,X`, `-Wp,-MMD,X`, `-save-temps*`, `-gsplit-dwarf`, `-fstack-usage`,
    /// `-fcallgraph-info*`, and `-H`, which would print the header tree during the scan).
    /// The caller appends `["-M", "-MF", <path>]` itself. Everything else is kept, in order.
    pub scan_args: Vec<OsString>,
    /// Every include directory named on the command line, in order, with its kind (as written).
    pub include_dirs: Vec<(IncludeDirKind, PathBuf)>,
    /// `-nostdinc` given.
    pub nostdinc: bool,
    /// `-nostdinc++` given.
    pub nostdincxx: bool,
    /// A clang option resolved against this host's CPU (`-march=native`): the job must run
    /// as the `-cc1` command this host's driver builds.
    pub host_cpu: bool,
}

/// The classifier's verdict on one compiler invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// Safe to run remotely.
    Remote(Compile),
    /// Must run locally; the reason is shown to the user in verbose/summary output.
    Local(LocalReason),
}
