//! Why a compiler invocation runs locally.

use std::fmt;

/// Why a command runs locally. [`Display`](fmt::Display) gives a short human text for verbose
/// and summary output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReason {
    /// No `-c` or `-S`: the command links (or does nothing a worker could do).
    Link,
    /// `-E`, `-M` or `-MM`: preprocess only.
    PreprocessOnly,
    /// No input file at all.
    NoSource,
    /// More than one input file.
    MultipleSources,
    /// The source is read from stdin (`-`).
    Stdin,
    /// An input in a language offload does not send (plain assembler, Objective-C, an unknown
    /// `-x` language, ...). Holds a short description of the language.
    UnsupportedLanguage(String),
    /// A header is compiled: precompiled-header generation. Holds the header as written.
    PchGeneration(String),
    /// An input that gcc would hand to the linker (an object, a library, an unknown suffix).
    NotASource(String),
    /// An option that is not in the tables.
    UnknownFlag(String),
    /// A known option that only works locally.
    LocalOnlyFlag {
        /// The option as written (without its separate value, if any).
        flag: String,
        /// Why it only works locally.
        why: &'static str,
    },
    /// An option that needs a value came last.
    MissingArgument(String),
    /// `-o` given more than once.
    DuplicateOutput,
    /// `-o -`: the output goes to stdout.
    OutputToStdout,
    /// An argument is not valid UTF-8 (the wire protocol is JSON).
    NonUtf8,
    /// An `@file` argument left after response-file expansion (the file could not be read).
    UnexpandedResponseFile(String),
    /// An option that only prints information (`-v`, `--version`, `-print-*`, `-dumpversion`...).
    Informational(String),
    /// A compiler driver whose command-line syntax is not gcc's (e.g. `clang-cl`).
    UnsupportedCompiler(String),
}

impl fmt::Display for LocalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Link => f.write_str("linking"),
            Self::PreprocessOnly => f.write_str("preprocess only (-E/-M/-MM)"),
            Self::NoSource => f.write_str("no source file"),
            Self::MultipleSources => f.write_str("several source files"),
            Self::Stdin => f.write_str("source on stdin"),
            Self::UnsupportedLanguage(lang) => write!(f, "unsupported language: {lang}"),
            Self::PchGeneration(header) => write!(f, "PCH generation ({header})"),
            Self::NotASource(input) => write!(f, "input {input} is not a C/C++ source"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag {flag}"),
            Self::LocalOnlyFlag { flag, why } => write!(f, "{flag}: {why}"),
            Self::MissingArgument(flag) => write!(f, "missing argument to {flag}"),
            Self::DuplicateOutput => f.write_str("-o given more than once"),
            Self::OutputToStdout => f.write_str("output to stdout (-o -)"),
            Self::NonUtf8 => f.write_str("argument is not valid UTF-8"),
            Self::UnexpandedResponseFile(arg) => write!(f, "unreadable response file {arg}"),
            Self::Informational(flag) => write!(f, "informational flag {flag}"),
            Self::UnsupportedCompiler(name) => write!(f, "unsupported compiler driver {name}"),
        }
    }
}
