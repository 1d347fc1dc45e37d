//! The option tables and their lookup.
//!
//! One static table of gcc option spellings ([`GCC`]) plus a small overlay of clang-only
//! spellings ([`CLANG`]), both sorted bytewise by spelling. Each [`Row`] says how the option's
//! value is attached ([`Attach`]) and what the option means to offload ([`Meaning`]).
//!
//! Lookup finds the *longest* spelling that matches the argument under its row's attachment
//! rule, so exceptions inside a prefix family (`-fprofile-use` inside `-f*`, `-march=native`
//! inside `-m*`) win over the family row, exactly as gcc's own option matcher prefers the
//! longest option name.

use super::IncludeDirKind;
use super::IncludeDirKind::{After, Angle, Quote, System};
use Attach::{Equals, Family, Flag, Joined, JoinedOrSeparate, Separate};
use Meaning::{
    AssemblerArgs, DepFile, DepGen, DepOption, HostCpu, IncludeDir, IncludeFile, Informational,
    Language, LocalOnly, Mode, NoStdInc, NoStdIncCxx, OptInfo, Output, PassThrough,
    PreprocessorArgs, ScanQuiet, SideOutput,
};
use Stage::{Assembly, Object, Preprocess};

/// How an option's value is attached to its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    /// Exact spelling, no value (`-c`).
    Flag,
    /// Exact spelling, the value is the next argv word (`-Xlinker X`).
    Separate,
    /// The value is glued to the spelling, possibly empty (`-Wl,x`, `-std=c11`).
    Joined,
    /// Glued value, or the next argv word when nothing is glued (`-Ifoo`, `-I foo`).
    JoinedOrSeparate,
    /// `--opt=value`, or exactly `--opt` followed by the value as the next word.
    Equals,
    /// A prefix family: the whole word is the option, there is no separate value (`-f*`).
    Family,
}

/// The compilation stage an option stops at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `-E`, `-M`, `-MM`: preprocess only.
    Preprocess,
    /// `-S`: stop after compiling to assembly.
    Assembly,
    /// `-c`: stop after assembling an object.
    Object,
}

/// What an option means to offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Fine remotely; kept in the dependency-scan arguments.
    PassThrough,
    /// Fine remotely; writes side files to cwd or next to the output; dropped from the scan.
    SideOutput,
    /// Fine remotely; prints diagnostics while preprocessing (`-H`); dropped from the scan.
    ScanQuiet,
    /// `-o`.
    Output,
    /// Selects where compilation stops.
    Mode(Stage),
    /// `-MD` / `-MMD`: write a dependency file while compiling.
    DepGen,
    /// `-MF file`.
    DepFile,
    /// `-MT`, `-MQ`, `-MP`: shape the dependency file; dropped from the scan.
    DepOption,
    /// An include-search directory.
    IncludeDir(IncludeDirKind),
    /// `-include file`, `-imacros file`.
    IncludeFile,
    /// `-x lang`.
    Language,
    /// `-nostdinc`.
    NoStdInc,
    /// `-nostdinc++`.
    NoStdIncCxx,
    /// `-Wa,...`: fine only if every item is in the assembler allow-list.
    AssemblerArgs,
    /// `-Wp,...`: fine only as `-Wp,-MD,file` / `-Wp,-MMD,file`.
    PreprocessorArgs,
    /// `-fopt-info*`: fine unless it names a report file (`=file`).
    OptInfo,
    /// Known, but the command must run locally; the text says why.
    LocalOnly(&'static str),
    /// Depends on the host CPU (`-march=native`): clang's driver resolves it into explicit
    /// `-cc1` arguments, so the job runs remotely as that `-cc1` command.
    HostCpu,
    /// Only prints information (`-v`, `--version`, ...).
    Informational,
}

/// One option spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    /// The spelling, including the leading dash(es) and any `=`/`,` that precedes a value.
    pub spelling: &'static str,
    /// How the value attaches.
    pub attach: Attach,
    /// What the option means.
    pub meaning: Meaning,
}

const fn r(spelling: &'static str, attach: Attach, meaning: Meaning) -> Row {
    Row {
        spelling,
        attach,
        meaning,
    }
}

const NATIVE: &str = "depends on the host CPU";
const PROFILE: &str = "profile instrumentation or feedback data";
const LTO: &str = "link-time optimization";
const MODULES: &str = "needs module files the dependency scan does not see";
const PLUGIN: &str = "loads a compiler plugin";
const READS_FILE: &str = "reads a file the dependency scan does not see";
const WRITES_FILE: &str = "writes a report file outside the output directories";
const ROOTS: &str = "changes toolchain or system search roots (not modelled)";
const AUX_NAMES: &str = "renames auxiliary outputs (not modelled)";
const SPLIT_INCLUDES: &str = "obsolete include-path split";

/// The gcc options, sorted bytewise by spelling.
#[rustfmt::skip]
pub(crate) static GCC: &[Row] = &[
    r("-###", Flag, Informational),
    r("--coverage", Flag, LocalOnly(PROFILE)),
    r("--help", Family, Informational),
    r("--param", Equals, PassThrough),
    r("--print-", Family, Informational),
    r("--sysroot", Equals, LocalOnly(ROOTS)),
    r("--target-help", Flag, Informational),
    r("--version", Flag, Informational),
    r("-A", JoinedOrSeparate, PassThrough),
    r("-B", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-C", Flag, PassThrough),
    r("-CC", Flag, PassThrough),
    r("-D", JoinedOrSeparate, PassThrough),
    r("-E", Flag, Mode(Preprocess)),
    r("-H", Flag, ScanQuiet),
    r("-I", JoinedOrSeparate, IncludeDir(Angle)),
    r("-I-", Flag, LocalOnly(SPLIT_INCLUDES)),
    r("-L", JoinedOrSeparate, PassThrough),
    r("-M", Flag, Mode(Preprocess)),
    r("-MD", Flag, DepGen),
    r("-MF", JoinedOrSeparate, DepFile),
    r("-MG", Flag, LocalOnly("treats missing headers as generated files")),
    r("-MM", Flag, Mode(Preprocess)),
    r("-MMD", Flag, DepGen),
    r("-MP", Flag, DepOption),
    r("-MQ", JoinedOrSeparate, DepOption),
    r("-MT", JoinedOrSeparate, DepOption),
    r("-O", Family, PassThrough),
    r("-P", Flag, PassThrough),
    r("-Q", Flag, LocalOnly("prints compiler statistics")),
    r("-Qn", Flag, PassThrough),
    r("-Qy", Flag, PassThrough),
    r("-S", Flag, Mode(Assembly)),
    r("-T", JoinedOrSeparate, PassThrough),
    r("-U", JoinedOrSeparate, PassThrough),
    r("-W", Family, PassThrough),
    r("-Wa,", Joined, AssemblerArgs),
    r("-Wl,", Joined, PassThrough),
    r("-Wp,", Joined, PreprocessorArgs),
    r("-Xassembler", Separate, LocalOnly("raw assembler option")),
    r("-Xlinker", Separate, PassThrough),
    r("-Xpreprocessor", Separate, LocalOnly("raw preprocessor option")),
    r("-ansi", Flag, PassThrough),
    r("-aux-info", Separate, LocalOnly(WRITES_FILE)),
    r("-c", Flag, Mode(Object)),
    r("-coverage", Flag, LocalOnly(PROFILE)),
    r("-d", Family, LocalOnly("compiler dump flag")),
    r("-dumpbase", Separate, LocalOnly(AUX_NAMES)),
    r("-dumpbase-ext", Separate, LocalOnly(AUX_NAMES)),
    r("-dumpdir", Separate, LocalOnly(AUX_NAMES)),
    r("-dumpfullversion", Flag, Informational),
    r("-dumpmachine", Flag, Informational),
    r("-dumpspecs", Flag, Informational),
    r("-dumpversion", Flag, Informational),
    r("-e", JoinedOrSeparate, PassThrough),
    r("-f", Family, PassThrough),
    r("-fauto-profile", Family, LocalOnly(PROFILE)),
    r("-fbasic-block-sections=", Joined, LocalOnly(READS_FILE)),
    r("-fbranch-probabilities", Flag, LocalOnly(PROFILE)),
    r("-fbuild-session-file=", Joined, LocalOnly(MODULES)),
    r("-fcallgraph-info", Family, SideOutput),
    r("-fcompare-debug", Family, LocalOnly("runs the compiler twice and compares")),
    r("-fcrash-diagnostics", Family, LocalOnly(WRITES_FILE)),
    r("-fcs-profile-generate", Family, LocalOnly(PROFILE)),
    r("-fdeps-", Family, LocalOnly(MODULES)),
    r("-fdiagnostics-add-output=", Joined, LocalOnly(WRITES_FILE)),
    r("-fdiagnostics-format=json-file", Flag, LocalOnly(WRITES_FILE)),
    r("-fdiagnostics-format=sarif-file", Flag, LocalOnly(WRITES_FILE)),
    r("-fdiagnostics-set-output=", Joined, LocalOnly(WRITES_FILE)),
    r("-fdump-", Family, LocalOnly("writes compiler dump files")),
    r("-fembed-offload-object=", Joined, LocalOnly(READS_FILE)),
    r("-flto", Family, LocalOnly(LTO)),
    r("-fltrans", Family, LocalOnly(LTO)),
    r("-fmodule", Family, LocalOnly(MODULES)),
    r("-fno-lto", Flag, PassThrough),
    r("-fopt-info", Family, OptInfo),
    r("-foptimization-record-", Family, LocalOnly(WRITES_FILE)),
    r("-fpass-plugin=", Joined, LocalOnly(PLUGIN)),
    r("-fplugin", Family, LocalOnly(PLUGIN)),
    r("-fproc-stat-report", Family, LocalOnly(WRITES_FILE)),
    r("-fprofile", Family, LocalOnly(PROFILE)),
    r("-frepo", Flag, LocalOnly("writes template repository files")),
    r("-fresolution=", Joined, LocalOnly(LTO)),
    r("-fsanitize-blacklist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-coverage-allowlist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-coverage-blacklist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-coverage-blocklist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-coverage-ignorelist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-coverage-whitelist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-ignorelist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-system-blacklist", Family, LocalOnly(READS_FILE)),
    r("-fsanitize-system-ignorelist", Family, LocalOnly(READS_FILE)),
    r("-fsave-optimization-record", Family, LocalOnly(WRITES_FILE)),
    r("-fself-test", Family, LocalOnly("compiler self-test")),
    r("-fstack-usage", Flag, SideOutput),
    r("-fsyntax-only", Flag, LocalOnly("produces no output file")),
    r("-ftest-coverage", Flag, LocalOnly(PROFILE)),
    r("-fthinlto-index=", Joined, LocalOnly(LTO)),
    r("-ftime-trace", Family, LocalOnly(WRITES_FILE)),
    r("-fwpa", Family, LocalOnly(LTO)),
    r("-fxray-always-instrument=", Joined, LocalOnly(READS_FILE)),
    r("-fxray-attr-list=", Joined, LocalOnly(READS_FILE)),
    r("-fxray-never-instrument=", Joined, LocalOnly(READS_FILE)),
    r("-g", Family, PassThrough),
    r("-gsplit-dwarf", Flag, SideOutput),
    r("-idirafter", JoinedOrSeparate, IncludeDir(After)),
    r("-imacros", JoinedOrSeparate, IncludeFile),
    r("-imultiarch", Separate, LocalOnly(ROOTS)),
    r("-imultilib", Separate, LocalOnly(ROOTS)),
    r("-include", JoinedOrSeparate, IncludeFile),
    r("-include-pch", Separate, LocalOnly("uses a precompiled header")),
    r("-iplugindir=", Joined, LocalOnly(PLUGIN)),
    r("-iprefix", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-iquote", JoinedOrSeparate, IncludeDir(Quote)),
    r("-isysroot", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-isystem", JoinedOrSeparate, IncludeDir(System)),
    r("-isystem-after", JoinedOrSeparate, LocalOnly("clang-only option")),
    r("-iwithprefix", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-iwithprefixbefore", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-l", JoinedOrSeparate, PassThrough),
    r("-m", Family, PassThrough),
    r("-march=native", Family, LocalOnly(NATIVE)),
    r("-mcpu=native", Family, LocalOnly(NATIVE)),
    r("-mtune=native", Family, LocalOnly(NATIVE)),
    r("-no-canonical-prefixes", Flag, PassThrough),
    r("-no-integrated-cpp", Flag, LocalOnly("runs a separate preprocessor pass")),
    r("-no-pie", Flag, PassThrough),
    r("-nodefaultlibs", Flag, PassThrough),
    r("-nolibc", Flag, PassThrough),
    r("-nostartfiles", Flag, PassThrough),
    r("-nostdinc", Flag, NoStdInc),
    r("-nostdinc++", Flag, NoStdIncCxx),
    r("-nostdlib", Flag, PassThrough),
    r("-o", JoinedOrSeparate, Output),
    r("-p", Flag, PassThrough),
    r("-pass-exit-codes", Flag, PassThrough),
    r("-pedantic", Flag, PassThrough),
    r("-pedantic-errors", Flag, PassThrough),
    r("-pg", Flag, PassThrough),
    r("-pie", Flag, PassThrough),
    r("-pipe", Flag, PassThrough),
    r("-print-", Family, Informational),
    r("-pthread", Flag, PassThrough),
    r("-r", Flag, PassThrough),
    r("-rdynamic", Flag, PassThrough),
    r("-remap", Flag, LocalOnly("reads header.gcc remapping files")),
    r("-s", Flag, PassThrough),
    r("-save-temps", Flag, SideOutput),
    r("-save-temps=cwd", Flag, SideOutput),
    r("-save-temps=obj", Flag, SideOutput),
    r("-shared", Flag, PassThrough),
    r("-shared-libgcc", Flag, PassThrough),
    r("-specs", Equals, LocalOnly("reads a specs file")),
    r("-static", Flag, PassThrough),
    r("-static-libasan", Flag, PassThrough),
    r("-static-libgcc", Flag, PassThrough),
    r("-static-libhwasan", Flag, PassThrough),
    r("-static-liblsan", Flag, PassThrough),
    r("-static-libstdc++", Flag, PassThrough),
    r("-static-libtsan", Flag, PassThrough),
    r("-static-libubsan", Flag, PassThrough),
    r("-static-pie", Flag, PassThrough),
    r("-std=", Joined, PassThrough),
    r("-symbolic", Flag, PassThrough),
    r("-time", Family, LocalOnly("reports subprocess timings")),
    r("-traditional", Flag, PassThrough),
    r("-traditional-cpp", Flag, PassThrough),
    r("-trigraphs", Flag, PassThrough),
    r("-u", JoinedOrSeparate, PassThrough),
    r("-undef", Flag, PassThrough),
    r("-v", Flag, Informational),
    r("-w", Flag, PassThrough),
    r("-wrapper", Separate, LocalOnly("runs the compiler under a wrapper program")),
    r("-x", JoinedOrSeparate, Language),
    r("-z", JoinedOrSeparate, PassThrough),
];

/// Clang-only spellings, consulted before [`GCC`] when the driver is clang. Sorted bytewise.
#[rustfmt::skip]
pub(crate) static CLANG: &[Row] = &[
    r("--analyze", Flag, LocalOnly("runs the static analyzer")),
    r("--config", Equals, LocalOnly("reads a clang configuration file")),
    r("--driver-mode=", Joined, LocalOnly("changes the driver's command-line syntax")),
    r("--gcc-install-dir=", Joined, LocalOnly(ROOTS)),
    r("--gcc-toolchain=", Joined, LocalOnly(ROOTS)),
    r("--serialize-diagnostics", Separate, LocalOnly(WRITES_FILE)),
    r("--target=", Joined, PassThrough),
    r("-MJ", JoinedOrSeparate, LocalOnly(WRITES_FILE)),
    r("-Qunused-arguments", Flag, PassThrough),
    r("-Xanalyzer", Separate, LocalOnly("runs the static analyzer")),
    r("-Xarch_", Family, LocalOnly("per-architecture options")),
    r("-Xclang", Separate, LocalOnly("raw clang -cc1 option")),
    r("-arch", Separate, LocalOnly("multi-architecture build")),
    r("-emit-llvm", Flag, LocalOnly("emits LLVM IR instead of an object")),
    r("-fbuiltin-module-map", Flag, LocalOnly(MODULES)),
    r("-fcxx-modules", Flag, LocalOnly(MODULES)),
    r("-fdebug-compilation-dir", Separate, PassThrough),
    r("-fimplicit-module", Family, LocalOnly(MODULES)),
    r("-fprebuilt-module-path=", Joined, LocalOnly(MODULES)),
    r("-gcc-toolchain", Separate, LocalOnly(ROOTS)),
    r("-gen-cdb-fragment-path", Separate, LocalOnly(WRITES_FILE)),
    r("-gen-reproducer", Family, LocalOnly(WRITES_FILE)),
    r("-gmodules", Flag, LocalOnly(MODULES)),
    r("-gsplit-dwarf=", Joined, SideOutput),
    r("-index-store-path", Separate, LocalOnly(WRITES_FILE)),
    r("-integrated-as", Flag, PassThrough),
    r("-isystem-after", JoinedOrSeparate, IncludeDir(After)),
    r("-ivfsoverlay", JoinedOrSeparate, LocalOnly(READS_FILE)),
    r("-march=native", Family, HostCpu),
    r("-mcpu=native", Family, HostCpu),
    r("-mllvm", Separate, PassThrough),
    r("-mtune=native", Family, HostCpu),
    r("-no-integrated-as", Flag, PassThrough),
    r("-nostdlib++", Flag, PassThrough),
    r("-resource-dir", Equals, LocalOnly(ROOTS)),
    r("-rtlib=", Joined, PassThrough),
    r("-stdlib++-isystem", JoinedOrSeparate, LocalOnly(ROOTS)),
    r("-stdlib=", Joined, PassThrough),
    r("-target", Separate, PassThrough),
    r("-unwindlib=", Joined, PassThrough),
    r("-working-directory", Equals, LocalOnly("resolves paths against another directory")),
];

/// Finds the row for one argument that starts with `-`: the longest spelling that matches
/// under its attachment rule. With `clang`, the [`CLANG`] overlay is consulted too and wins
/// ties. `None` means the option is unknown.
pub(crate) fn lookup(arg: &str, clang: bool) -> Option<&'static Row> {
    let gcc = lookup_in(GCC, arg.as_bytes());
    if !clang {
        return gcc;
    }
    match (lookup_in(CLANG, arg.as_bytes()), gcc) {
        (Some(o), Some(g)) if g.spelling.len() > o.spelling.len() => Some(g),
        (Some(o), _) => Some(o),
        (None, g) => g,
    }
}

/// Whether `row` matches `arg` given that its spelling is a prefix of `arg`.
fn accepts(row: &Row, arg: &[u8]) -> bool {
    let rest = arg.get(row.spelling.len()..).unwrap_or_default();
    match row.attach {
        Flag | Separate => rest.is_empty(),
        Joined | JoinedOrSeparate | Family => true,
        Equals => rest.is_empty() || rest.starts_with(b"="),
    }
}

/// Longest accepted prefix match by binary search.
///
/// Invariant: every row that is a prefix of `arg` and has not been rejected is a prefix of
/// `key`. The greatest row `<= key` is either a prefix of `key` (then it is the longest such),
/// or it is not, and then every prefix of `key` in the table is also a prefix of the common
/// prefix of `key` and that row, so `key` can shrink to it. `key` shrinks on every round.
fn lookup_in(table: &'static [Row], arg: &[u8]) -> Option<&'static Row> {
    let mut key = arg;
    loop {
        let i = table.partition_point(|row| row.spelling.as_bytes() <= key);
        let row = table.get(i.checked_sub(1)?)?;
        let spelling = row.spelling.as_bytes();
        if key.starts_with(spelling) {
            if accepts(row, arg) {
                return Some(row);
            }
            key = arg.get(..spelling.len().checked_sub(1)?)?;
        } else {
            let common = key.iter().zip(spelling).take_while(|(a, b)| a == b).count();
            key = arg.get(..common)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meaning(arg: &str, clang: bool) -> Option<Meaning> {
        lookup(arg, clang).map(|row| row.meaning)
    }

    #[test]
    fn tables_are_sorted_without_duplicates() {
        for table in [GCC, CLANG] {
            for pair in table.windows(2) {
                assert!(
                    pair[0].spelling < pair[1].spelling,
                    "{:?} must sort before {:?}",
                    pair[0].spelling,
                    pair[1].spelling
                );
            }
        }
    }

    #[test]
    fn spellings_are_options() {
        for row in GCC.iter().chain(CLANG) {
            assert!(row.spelling.starts_with('-'), "{}", row.spelling);
            if row.attach == Equals {
                assert!(!row.spelling.ends_with('='), "{}", row.spelling);
            }
        }
    }

    #[test]
    fn every_row_finds_itself() {
        for (table, clang) in [(GCC, false), (CLANG, true)] {
            for row in table {
                let found = lookup(row.spelling, clang).map(|r| r.spelling);
                assert_eq!(found, Some(row.spelling));
            }
        }
    }

    #[test]
    fn exceptions_win_over_families() {
        let local = |arg| matches!(meaning(arg, false), Some(LocalOnly(_)));
        assert!(local("-fprofile-use"));
        assert!(local("-fprofile-use=dir/x.profdata"));
        assert!(local("-fprofile-instr-generate"));
        assert!(local("-flto"));
        assert!(local("-flto=thin"));
        assert!(local("-march=native"));
        assert!(local("-mtune=native"));
        assert!(local("-fplugin=foo.so"));
        assert!(local("-fdump-tree-all"));
        assert_eq!(meaning("-fno-lto", false), Some(PassThrough));
        assert!(meaning("-fprofile", false).is_some());
        assert_eq!(meaning("-march=x86-64-v3", false), Some(PassThrough));
        assert_eq!(meaning("-fPIC", false), Some(PassThrough));
        assert_eq!(meaning("-fcompare-elim", false), Some(PassThrough));
        assert_eq!(meaning("-fauto-inc-dec", false), Some(PassThrough));
        assert_eq!(meaning("-Wl,-z,now", false), Some(PassThrough));
        assert_eq!(meaning("-Wa,--noexecstack", false), Some(AssemblerArgs));
        assert_eq!(meaning("-Wp,-MD,x.d", false), Some(PreprocessorArgs));
        assert_eq!(meaning("-Wall", false), Some(PassThrough));
        assert_eq!(meaning("-gsplit-dwarf", false), Some(SideOutput));
        assert_eq!(meaning("-gdwarf-4", false), Some(PassThrough));
        assert_eq!(meaning("-fcallgraph-info=su", false), Some(SideOutput));
        assert_eq!(meaning("-fopt-info-vec=x", false), Some(OptInfo));
    }

    #[test]
    fn attachment_rules() {
        let spelling = |arg, clang| lookup(arg, clang).map(|row| row.spelling);
        // Flags need an exact match; the search falls back to shorter rows.
        assert_eq!(spelling("-static-libgcc", false), Some("-static-libgcc"));
        assert_eq!(spelling("-static-libfoo", false), None);
        assert_eq!(spelling("-cfoo", false), None);
        assert_eq!(spelling("-MDfoo", false), None);
        assert_eq!(spelling("-undef", false), Some("-undef"));
        assert_eq!(spelling("-ufoo", false), Some("-u"));
        // Joined: the longest spelling wins, as in gcc.
        assert_eq!(spelling("-isystemfoo", false), Some("-isystem"));
        assert_eq!(spelling("-isysroot/x", false), Some("-isysroot"));
        assert_eq!(
            spelling("-iwithprefixbeforex", false),
            Some("-iwithprefixbefore")
        );
        assert_eq!(spelling("-include-pch", false), Some("-include-pch"));
        assert_eq!(spelling("-include-pchx", false), Some("-include"));
        assert_eq!(spelling("-I-", false), Some("-I-"));
        assert_eq!(spelling("-I-x", false), Some("-I"));
        // Equals: `=` or exact.
        assert_eq!(spelling("--sysroot=/x", false), Some("--sysroot"));
        assert_eq!(spelling("--sysroot", false), Some("--sysroot"));
        assert_eq!(spelling("--sysrootx", false), None);
        assert_eq!(spelling("--param=a=1", false), Some("--param"));
        // Unknown shapes.
        assert_eq!(spelling("--frobnicate", false), None);
        assert_eq!(spelling("-X", false), None);
        assert_eq!(spelling("-", false), None);
    }

    #[test]
    fn clang_overlay() {
        assert_eq!(meaning("-Qunused-arguments", false), None);
        assert_eq!(meaning("-Qunused-arguments", true), Some(PassThrough));
        assert_eq!(meaning("-mllvm", false), Some(PassThrough)); // the -m family
        assert_eq!(lookup("-mllvm", true).map(|r| r.attach), Some(Separate));
        assert_eq!(
            meaning("-isystem-after", true),
            Some(IncludeDir(IncludeDirKind::After))
        );
        assert!(matches!(
            meaning("-isystem-after", false),
            Some(LocalOnly(_))
        ));
        // gcc rows still apply under clang, and a longer gcc row beats a shorter clang one.
        assert_eq!(meaning("-c", true), Some(Mode(Object)));
        assert!(matches!(
            meaning("-fprofile-instr-use=x", true),
            Some(LocalOnly(_))
        ));
        assert_eq!(
            lookup("-gsplit-dwarf=single", true).map(|r| r.spelling),
            Some("-gsplit-dwarf=")
        );
    }
}
