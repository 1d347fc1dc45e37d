//! Table-driven tests of [`classify`] over whole command lines.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::*;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn remote(compiler: &str, args: &[&str]) -> Compile {
    match classify(compiler, &os(args)) {
        Classification::Remote(compile) => compile,
        Classification::Local(reason) => {
            panic!("{compiler} {args:?}: expected remote, got local: {reason}")
        }
    }
}

fn local(compiler: &str, args: &[&str]) -> LocalReason {
    match classify(compiler, &os(args)) {
        Classification::Local(reason) => reason,
        Classification::Remote(compile) => {
            panic!("{compiler} {args:?}: expected local, got remote: {compile:?}")
        }
    }
}

fn paths(paths: &[&str]) -> Vec<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

struct RemoteCase {
    compiler: &'static str,
    args: &'static [&'static str],
    language: Language,
    source: &'static str,
    output: &'static str,
    dirs: &'static [&'static str],
    scan: &'static [&'static str],
}

const fn rc(
    compiler: &'static str,
    args: &'static [&'static str],
    language: Language,
    source: &'static str,
    output: &'static str,
    dirs: &'static [&'static str],
    scan: &'static [&'static str],
) -> RemoteCase {
    RemoteCase {
        compiler,
        args,
        language,
        source,
        output,
        dirs,
        scan,
    }
}

use Language::{AsmCpp, C, Cxx, PreprocessedC, PreprocessedCxx};

#[rustfmt::skip]
const REMOTE: &[RemoteCase] = &[
    // Modes and default outputs.
    rc("gcc", &["-c", "a.c"], C, "a.c", "a.o", &["."], &["a.c"]),
    rc("gcc", &["src/a.c", "-c"], C, "src/a.c", "a.o", &["."], &["src/a.c"]),
    rc("cc", &["-S", "src/a.c"], C, "src/a.c", "a.s", &["."], &["src/a.c"]),
    rc("gcc", &["-c", "-S", "a.c"], C, "a.c", "a.s", &["."], &["a.c"]),
    rc("gcc", &["-c", "a.c", "-ofoo.o"], C, "a.c", "foo.o", &["."], &["a.c"]),
    rc("gcc", &["-c", "a.c", "-o", "/abs/o/a.o"], C, "a.c", "/abs/o/a.o", &[".", "/abs/o"], &["a.c"]),
    // Dependency files.
    rc(
        "gcc",
        &["-c", "src/a.c", "-o", "obj/a.o", "-MD"],
        C, "src/a.c", "obj/a.o", &[".", "obj"], &["src/a.c"],
    ),
    rc("gcc", &["-MD", "-c", "src/a.c"], C, "src/a.c", "a.o", &["."], &["src/a.c"]),
    rc(
        "gcc",
        &["-MMD", "-MF", "deps/x.d", "-MT", "x.o", "-MQ", "$x", "-MP", "-c", "a.c", "-o", "obj/x.o"],
        C, "a.c", "obj/x.o", &[".", "obj", "deps"], &["a.c"],
    ),
    rc(
        "gcc",
        &["-MMD", "-MFdeps/x.d", "-MTx.o", "-MQx", "-c", "a.c"],
        C, "a.c", "a.o", &[".", "deps"], &["a.c"],
    ),
    // -MF without -MD/-MMD writes nothing.
    rc("gcc", &["-MF", "deps/x.d", "-c", "a.c"], C, "a.c", "a.o", &["."], &["a.c"]),
    // CMake, Meson and libtool style.
    rc(
        "cc",
        &["-DX", "-O2", "-MD", "-MT", "CMakeFiles/x.dir/a.c.o", "-MF", "CMakeFiles/x.dir/a.c.o.d",
          "-o", "CMakeFiles/x.dir/a.c.o", "-c", "/src/a.c"],
        C, "/src/a.c", "CMakeFiles/x.dir/a.c.o", &[".", "CMakeFiles/x.dir"], &["-DX", "-O2", "/src/a.c"],
    ),
    rc(
        "c++",
        &["-Ix.p", "-fdiagnostics-color=always", "-MD", "-MQ", "x.p/a.cc.o", "-MF", "x.p/a.cc.o.d",
          "-o", "x.p/a.cc.o", "-c", "../a.cc"],
        Cxx, "../a.cc", "x.p/a.cc.o", &[".", "x.p"], &["-Ix.p", "-fdiagnostics-color=always", "../a.cc"],
    ),
    rc(
        "gcc",
        &["-DHAVE_CONFIG_H", "-I.", "-g", "-O2", "-MT", "a.lo", "-MD", "-MP", "-MF", ".deps/a.Tpo",
          "-c", "a.c", "-fPIC", "-DPIC", "-o", ".libs/a.o"],
        C, "a.c", ".libs/a.o", &[".", ".libs", ".deps"],
        &["-DHAVE_CONFIG_H", "-I.", "-g", "-O2", "a.c", "-fPIC", "-DPIC"],
    ),
    // Kernel style.
    rc(
        "gcc",
        &[
            "-Wp,-MMD,drivers/.a.o.d", "-nostdinc", "-I./include", "-include", "./include/kconfig.h",
            "-D__KERNEL__", "-O2", "-fno-strict-aliasing", "-mno-red-zone", "-mcmodel=kernel",
            "-Wa,--noexecstack", "-DKBUILD_MODNAME=\"a\"", "-c", "-o", "drivers/a.o", "drivers/a.c",
        ],
        C, "drivers/a.c", "drivers/a.o", &[".", "drivers"],
        &[
            "-nostdinc", "-I./include", "-include", "./include/kconfig.h", "-D__KERNEL__", "-O2",
            "-fno-strict-aliasing", "-mno-red-zone", "-mcmodel=kernel", "-Wa,--noexecstack",
            "-DKBUILD_MODNAME=\"a\"", "drivers/a.c",
        ],
    ),
    rc(
        "gcc",
        &["-Wp,-MD,deps/.a.o.d", "-c", "a.S", "-o", "obj/a.o"],
        AsmCpp, "a.S", "obj/a.o", &[".", "obj", "deps"], &["a.S"],
    ),
    // Languages.
    rc("gcc", &["-x", "c++", "a.c", "-c"], Cxx, "a.c", "a.o", &["."], &["-x", "c++", "a.c"]),
    rc("gcc", &["-xc++", "-c", "a.c"], Cxx, "a.c", "a.o", &["."], &["-xc++", "a.c"]),
    rc("g++", &["-c", "a.c"], Cxx, "a.c", "a.o", &["."], &["a.c"]),
    rc("x86_64-linux-gnu-g++-12", &["-c", "a.i"], PreprocessedCxx, "a.i", "a.o", &["."], &["a.i"]),
    rc("g++", &["-x", "c", "-c", "a.c"], C, "a.c", "a.o", &["."], &["-x", "c", "a.c"]),
    rc("gcc", &["-c", "a.i"], PreprocessedC, "a.i", "a.o", &["."], &["a.i"]),
    rc("gcc", &["-c", "a.ii"], PreprocessedCxx, "a.ii", "a.o", &["."], &["a.ii"]),
    rc("gcc", &["-c", "a.cc"], Cxx, "a.cc", "a.o", &["."], &["a.cc"]),
    rc("gcc", &["-c", "A.C"], Cxx, "A.C", "A.o", &["."], &["A.C"]),
    rc("gcc", &["-c", "a.c++"], Cxx, "a.c++", "a.o", &["."], &["a.c++"]),
    rc("gcc", &["-c", "a.sx"], AsmCpp, "a.sx", "a.o", &["."], &["a.sx"]),
    rc("gcc", &["-c", "x.S", "-o", "x.o"], AsmCpp, "x.S", "x.o", &["."], &["x.S"]),
    rc(
        "gcc",
        &["-c", "-x", "assembler-with-cpp", "boot.asm"],
        AsmCpp, "boot.asm", "boot.o", &["."], &["-x", "assembler-with-cpp", "boot.asm"],
    ),
    rc(
        "gcc",
        &["-c", "-x", "cpp-output", "pp"],
        PreprocessedC, "pp", "pp.o", &["."], &["-x", "cpp-output", "pp"],
    ),
    rc(
        "gcc",
        &["-c", "-x", "c++-cpp-output", "pp.x"],
        PreprocessedCxx, "pp.x", "pp.o", &["."], &["-x", "c++-cpp-output", "pp.x"],
    ),
    // `-x none` resets to suffix rules; `-x` after the last input has no effect.
    rc(
        "gcc",
        &["-x", "c++", "-x", "none", "-c", "a.c", "-x", "c++"],
        C, "a.c", "a.o", &["."], &["-x", "c++", "-x", "none", "a.c", "-x", "c++"],
    ),
    // Linker-only flags are ignored with -c and kept for the scan.
    rc(
        "gcc",
        &[
            "-c", "a.c", "-L", "lib", "-Llib2", "-lm", "-l", "z", "-Wl,--as-needed,-z,now", "-shared",
            "-static", "-static-libgcc", "-static-libstdc++", "-rdynamic", "-pie", "-no-pie", "-s",
            "-Xlinker", "--gc-sections", "-nostdlib", "-nostartfiles", "-nodefaultlibs", "-pthread",
            "-fuse-ld=lld", "-u", "sym", "-T", "x.ld", "-z", "defs",
        ],
        C, "a.c", "a.o", &["."],
        &[
            "a.c", "-L", "lib", "-Llib2", "-lm", "-l", "z", "-Wl,--as-needed,-z,now", "-shared",
            "-static", "-static-libgcc", "-static-libstdc++", "-rdynamic", "-pie", "-no-pie", "-s",
            "-Xlinker", "--gc-sections", "-nostdlib", "-nostartfiles", "-nodefaultlibs", "-pthread",
            "-fuse-ld=lld", "-u", "sym", "-T", "x.ld", "-z", "defs",
        ],
    ),
    // Pass-through families; -H is dropped from the scan.
    rc(
        "gcc",
        &[
            "-c", "a.c", "-O2", "-Os", "-g", "-g3", "-ggdb", "-gz", "-gdwarf-4", "-fPIC", "-m64",
            "-Wall", "-Wno-unused", "-Werror=format", "-w", "-std=gnu11", "-ansi", "-pedantic",
            "-pedantic-errors", "-DX=1", "-D", "Y", "-UZ", "-U", "W", "-A", "q=a", "-pipe", "-H",
            "-C", "-CC", "-P", "-undef", "-trigraphs", "-traditional-cpp",
            "-fdiagnostics-color=always", "-fmessage-length=0", "-ffile-prefix-map=/a=b",
            "-fdebug-prefix-map=/a=b", "-fmacro-prefix-map=/a=b", "-frandom-seed=x",
            "-frecord-gcc-switches", "-finput-charset=UTF-8", "-fexec-charset=UTF-8", "-fopenmp",
            "-fsanitize=address,undefined", "-fno-lto", "-fno-profile-arcs", "-fopt-info-vec",
            "-Wa,-mrelax-relocations=no,--compress-debug-sections=zlib,-O2", "-march=x86-64-v2",
            "-mtune=generic", "--param", "ssp-buffer-size=4", "--param=max-inline-insns-single=10",
            "-p", "-pg", "-Qn", "-no-canonical-prefixes", "-pass-exit-codes",
        ],
        C, "a.c", "a.o", &["."],
        &[
            "a.c", "-O2", "-Os", "-g", "-g3", "-ggdb", "-gz", "-gdwarf-4", "-fPIC", "-m64",
            "-Wall", "-Wno-unused", "-Werror=format", "-w", "-std=gnu11", "-ansi", "-pedantic",
            "-pedantic-errors", "-DX=1", "-D", "Y", "-UZ", "-U", "W", "-A", "q=a", "-pipe",
            "-C", "-CC", "-P", "-undef", "-trigraphs", "-traditional-cpp",
            "-fdiagnostics-color=always", "-fmessage-length=0", "-ffile-prefix-map=/a=b",
            "-fdebug-prefix-map=/a=b", "-fmacro-prefix-map=/a=b", "-frandom-seed=x",
            "-frecord-gcc-switches", "-finput-charset=UTF-8", "-fexec-charset=UTF-8", "-fopenmp",
            "-fsanitize=address,undefined", "-fno-lto", "-fno-profile-arcs", "-fopt-info-vec",
            "-Wa,-mrelax-relocations=no,--compress-debug-sections=zlib,-O2", "-march=x86-64-v2",
            "-mtune=generic", "--param", "ssp-buffer-size=4", "--param=max-inline-insns-single=10",
            "-p", "-pg", "-Qn", "-no-canonical-prefixes", "-pass-exit-codes",
        ],
    ),
    // Side outputs: fine remotely, written to cwd or the output's directory, not scanned.
    rc(
        "gcc",
        &[
            "-c", "a.c", "-o", "obj/a.o", "-save-temps", "-save-temps=obj", "-save-temps=cwd",
            "-gsplit-dwarf", "-fstack-usage", "-fcallgraph-info", "-fcallgraph-info=su,da",
        ],
        C, "a.c", "obj/a.o", &[".", "obj"], &["a.c"],
    ),
    // Clang overlay.
    rc(
        "clang++",
        &[
            "-c", "a.cpp", "-target", "x86_64-linux-gnu", "--target=x86_64-linux-gnu",
            "-Qunused-arguments", "-fcolor-diagnostics", "-fno-color-diagnostics", "-mllvm",
            "-inline-threshold=100", "-stdlib=libc++", "-gsplit-dwarf=single", "-Weverything",
            "-fdebug-compilation-dir", ".",
        ],
        Cxx, "a.cpp", "a.o", &["."],
        &[
            "a.cpp", "-target", "x86_64-linux-gnu", "--target=x86_64-linux-gnu",
            "-Qunused-arguments", "-fcolor-diagnostics", "-fno-color-diagnostics", "-mllvm",
            "-inline-threshold=100", "-stdlib=libc++", "-Weverything", "-fdebug-compilation-dir",
            ".",
        ],
    ),
    rc("clang++-17", &["-c", "a.c"], Cxx, "a.c", "a.o", &["."], &["a.c"]),
];

#[test]
fn remote_cases() {
    for case in REMOTE {
        let compile = remote(case.compiler, case.args);
        let what = format!("{} {:?}", case.compiler, case.args);
        assert_eq!(compile.language, case.language, "{what}");
        assert_eq!(compile.source, Path::new(case.source), "{what}");
        assert_eq!(compile.output, Path::new(case.output), "{what}");
        assert_eq!(compile.output_dirs, paths(case.dirs), "{what}");
        assert_eq!(compile.scan_args, os(case.scan), "{what}");
    }
}

#[test]
#[rustfmt::skip]
fn include_dirs_and_files() {
    let args = [
            "-c", "a.c", "-Iinc", "-I", "inc2", "-iquote", "q", "-iquoteq2", "-isystem", "sys",
            "-isystemsys2", "-idirafter", "after", "-idirafterafter2", "-include", "pre.h",
            "-imacros", "m.h", "-include=x.h", "-includey.h", "-nostdinc", "-nostdinc++",
    ];
    let compile = remote("gcc", &args);
    use IncludeDirKind::{After, Angle, Quote, System};
    let want: Vec<(IncludeDirKind, PathBuf)> = [
        (Angle, "inc"),
        (Angle, "inc2"),
        (Quote, "q"),
        (Quote, "q2"),
        (System, "sys"),
        (System, "sys2"),
        (After, "after"),
        (After, "after2"),
    ]
    .into_iter()
    .map(|(kind, dir)| (kind, PathBuf::from(dir)))
    .collect();
    assert_eq!(compile.include_dirs, want);
    assert!(compile.nostdinc && compile.nostdincxx);
    // Everything is kept for the scan, in order, except -c.
    assert_eq!(compile.scan_args, os(&args[1..]));

    let plain = remote("gcc", &["-c", "a.c"]);
    assert!(plain.include_dirs.is_empty() && !plain.nostdinc && !plain.nostdincxx);

    let clang = remote("clang", &["-c", "a.c", "-isystem-after", "late"]);
    assert_eq!(clang.include_dirs, vec![(After, PathBuf::from("late"))]);
}

/// What a local case must produce.
enum Want {
    Is(LocalReason),
    /// `LocalOnlyFlag` with this flag.
    Only(&'static str),
    /// The Display text contains this.
    Text(&'static str),
}

use LocalReason as R;
use Want::{Is, Only, Text};

#[rustfmt::skip]
fn local_cases() -> Vec<(&'static str, &'static [&'static str], Want)> {
    vec![
        // Mode.
        ("gcc", &["a.c", "-o", "prog"], Is(R::Link)),
        ("gcc", &["a.o", "b.o", "-o", "prog", "-lm"], Is(R::Link)),
        ("gcc", &["-flto", "-o", "prog", "a.o"], Is(R::Link)),
        ("gcc", &["-E", "a.c"], Is(R::PreprocessOnly)),
        ("gcc", &["-c", "-E", "a.c"], Is(R::PreprocessOnly)),
        ("gcc", &["-M", "a.c"], Is(R::PreprocessOnly)),
        ("gcc", &["-MM", "-c", "a.c"], Is(R::PreprocessOnly)),
        ("gcc", &["-M", "-MD", "-c", "a.c", "-o", "a.o"], Is(R::PreprocessOnly)),
        // Informational wins over everything.
        ("gcc", &["-v"], Is(R::Informational("-v".into()))),
        ("gcc", &["-c", "a.c", "-v"], Is(R::Informational("-v".into()))),
        ("gcc", &["--version"], Text("--version")),
        ("gcc", &["-###", "-c", "a.c"], Text("-###")),
        ("gcc", &["-dumpversion"], Text("-dumpversion")),
        ("gcc", &["-dumpmachine"], Text("-dumpmachine")),
        ("gcc", &["-print-file-name=libc.so"], Text("-print-file-name")),
        ("gcc", &["-print-search-dirs"], Text("-print-search-dirs")),
        ("gcc", &["--help=warnings"], Text("--help")),
        ("gcc", &["--target-help"], Text("--target-help")),
        // Local-only exceptions inside pass-through families.
        ("gcc", &["-c", "a.c", "-march=native"], Text("native")),
        ("gcc", &["-c", "a.c", "-mtune=native"], Only("-mtune=native")),
        ("gcc", &["-c", "a.c", "-mcpu=native"], Only("-mcpu=native")),
        ("gcc", &["-c", "a.c", "-fprofile-use"], Only("-fprofile-use")),
        ("gcc", &["-c", "a.c", "-fprofile-use=prof/"], Only("-fprofile-use=prof/")),
        ("gcc", &["-c", "a.c", "-fprofile-generate"], Only("-fprofile-generate")),
        ("gcc", &["-c", "a.c", "-fprofile-arcs"], Only("-fprofile-arcs")),
        ("gcc", &["-c", "a.c", "-fprofile-dir=x"], Only("-fprofile-dir=x")),
        ("gcc", &["-c", "a.c", "-fprofile-update=atomic"], Only("-fprofile-update=atomic")),
        ("gcc", &["-c", "a.c", "-fauto-profile=x.afdo"], Only("-fauto-profile=x.afdo")),
        ("gcc", &["-c", "a.c", "--coverage"], Only("--coverage")),
        ("gcc", &["-c", "a.c", "-coverage"], Only("-coverage")),
        ("gcc", &["-c", "a.c", "-ftest-coverage"], Only("-ftest-coverage")),
        ("gcc", &["-c", "a.c", "-fbranch-probabilities"], Only("-fbranch-probabilities")),
        ("gcc", &["-c", "a.c", "-fplugin=x.so"], Only("-fplugin=x.so")),
        ("gcc", &["-c", "a.c", "-fplugin-arg-x-y=1"], Only("-fplugin-arg-x-y=1")),
        ("gcc", &["-c", "a.c", "-flto"], Only("-flto")),
        ("gcc", &["-c", "a.c", "-flto=auto"], Only("-flto=auto")),
        ("gcc", &["-c", "a.c", "-flto-partition=none"], Only("-flto-partition=none")),
        ("gcc", &["-c", "a.c", "-fdump-tree-all"], Only("-fdump-tree-all")),
        ("gcc", &["-c", "a.c", "-fsave-optimization-record"], Only("-fsave-optimization-record")),
        ("gcc", &["-c", "a.c", "-fsanitize-ignorelist=x"], Only("-fsanitize-ignorelist=x")),
        ("gcc", &["-c", "a.c", "-fsanitize-blacklist=x"], Only("-fsanitize-blacklist=x")),
        ("gcc", &["-c", "a.c", "-fcompare-debug"], Only("-fcompare-debug")),
        ("gcc", &["-c", "a.c", "-fcompare-debug-second"], Only("-fcompare-debug-second")),
        ("gcc", &["-c", "a.c", "-fdiagnostics-format=sarif-file"], Text("sarif-file")),
        ("gcc", &["-c", "a.c", "-fopt-info-all=x.txt"], Only("-fopt-info-all=x.txt")),
        ("gcc", &["-c", "a.c", "-fsyntax-only"], Only("-fsyntax-only")),
        ("g++", &["-c", "a.cc", "-fmodules-ts"], Only("-fmodules-ts")),
        ("g++", &["-c", "a.cc", "-fmodule-mapper=x"], Only("-fmodule-mapper=x")),
        ("gcc", &["-c", "a.c", "-frepo"], Only("-frepo")),
        // -Wa, / -Wp, / -X.
        ("gcc", &["-c", "a.c", "-Wa,-adhln=x.lst"], Only("-Wa,-adhln=x.lst")),
        ("gcc", &["-c", "a.c", "-Wa,--noexecstack,-ahl=x"], Text("-Wa,")),
        ("gcc", &["-c", "a.c", "-Wa,-Iinc"], Text("allow-list")),
        ("gcc", &["-c", "a.c", "-Wp,-DFOO"], Only("-Wp,-DFOO")),
        ("gcc", &["-c", "a.c", "-Wp,-MD"], Only("-Wp,-MD")),
        ("gcc", &["-c", "a.c", "-Xpreprocessor", "-DX"], Only("-Xpreprocessor")),
        ("gcc", &["-c", "a.c", "-Xassembler", "--x"], Only("-Xassembler")),
        // Search roots and other locally-only options.
        ("gcc", &["-c", "a.c", "-time"], Only("-time")),
        ("gcc", &["-c", "a.c", "-Q"], Only("-Q")),
        ("gcc", &["-c", "a.c", "-specs=x.specs"], Only("-specs=x.specs")),
        ("gcc", &["-c", "a.c", "-specs", "x.specs"], Only("-specs")),
        ("gcc", &["-c", "a.c", "-B", "/opt/bin"], Only("-B")),
        ("gcc", &["-c", "a.c", "-B/opt/bin"], Only("-B/opt/bin")),
        ("gcc", &["-c", "a.c", "--sysroot=/x"], Only("--sysroot=/x")),
        ("gcc", &["-c", "a.c", "--sysroot", "/x"], Only("--sysroot")),
        ("gcc", &["-c", "a.c", "-isysroot", "/x"], Only("-isysroot")),
        ("gcc", &["-c", "a.c", "-iprefix", "/x"], Only("-iprefix")),
        ("gcc", &["-c", "a.c", "-iwithprefix", "x"], Only("-iwithprefix")),
        ("gcc", &["-c", "a.c", "-iwithprefixbefore", "x"], Only("-iwithprefixbefore")),
        ("gcc", &["-c", "a.c", "-imultilib", "x"], Only("-imultilib")),
        ("gcc", &["-c", "a.c", "-aux-info", "x"], Only("-aux-info")),
        ("gcc", &["-c", "a.c", "-dM"], Only("-dM")),
        ("gcc", &["-c", "a.c", "-dA"], Only("-dA")),
        ("gcc", &["-c", "a.c", "-dumpdir", "obj/"], Only("-dumpdir")),
        ("gcc", &["-c", "a.c", "-MG", "-MD"], Only("-MG")),
        ("gcc", &["-c", "a.c", "-no-integrated-cpp"], Only("-no-integrated-cpp")),
        ("gcc", &["-c", "a.c", "-wrapper", "gdb,--args"], Only("-wrapper")),
        ("gcc", &["-c", "a.c", "-include-pch", "x.pch"], Only("-include-pch")),
        ("gcc", &["-c", "a.c", "-remap"], Only("-remap")),
        ("gcc", &["-c", "a.c", "-I-"], Only("-I-")),
        ("gcc", &["-c", "a.c", "-I", "-"], Only("-I-")),
        ("gcc", &["-c", "a.c", "-MD", "-MF", "-"], Only("-MF")),
        ("gcc", &["-c", "a.c", "-isystem-after", "x"], Only("-isystem-after")),
        // Clang.
        ("clang", &["-c", "a.c", "-Xclang", "-fno-pch-timestamp"], Only("-Xclang")),
        ("clang", &["-c", "a.c", "-fmodules"], Only("-fmodules")),
        ("clang", &["-c", "a.c", "-fmodules-cache-path=x"], Only("-fmodules-cache-path=x")),
        ("clang", &["-c", "a.c", "-fimplicit-modules"], Only("-fimplicit-modules")),
        ("clang", &["-c", "a.c", "-gmodules"], Only("-gmodules")),
        ("clang", &["-c", "a.c", "-resource-dir", "x"], Only("-resource-dir")),
        ("clang", &["-c", "a.c", "-resource-dir=x"], Only("-resource-dir=x")),
        ("clang", &["-c", "a.c", "-arch", "arm64"], Only("-arch")),
        ("clang", &["-c", "a.c", "-fprofile-instr-use=x"], Only("-fprofile-instr-use=x")),
        ("clang", &["-c", "a.c", "-fprofile-instr-generate"], Only("-fprofile-instr-generate")),
        ("clang", &["-c", "a.c", "-emit-llvm"], Only("-emit-llvm")),
        ("clang", &["-c", "a.c", "-MJ", "x.json"], Only("-MJ")),
        ("clang", &["-c", "a.c", "--config=x.cfg"], Only("--config=x.cfg")),
        ("clang", &["-c", "a.c", "-ftime-trace"], Only("-ftime-trace")),
        ("clang", &["-c", "a.c", "--gcc-toolchain=/opt"], Only("--gcc-toolchain=/opt")),
        ("clang-cl", &["/c", "a.c"], Is(R::UnsupportedCompiler("clang-cl".into()))),
        // Unknown options.
        ("gcc", &["-c", "a.c", "--frobnicate"], Is(R::UnknownFlag("--frobnicate".into()))),
        ("gcc", &["-c", "a.c", "-Qunused-arguments"], Text("unknown flag -Qunused-arguments")),
        ("gcc", &["-c", "a.c", "-save-temps=foo"], Is(R::UnknownFlag("-save-temps=foo".into()))),
        ("gcc", &["-c", "a.c", "-static-libfoo"], Is(R::UnknownFlag("-static-libfoo".into()))),
        ("gcc", &["-c", "a.c", "-Mno-modules"], Is(R::UnknownFlag("-Mno-modules".into()))),
        ("gcc", &["-c", "a.c", "--std=c11"], Is(R::UnknownFlag("--std=c11".into()))),
        ("gcc", &["-c", "a.c", "-X"], Is(R::UnknownFlag("-X".into()))),
        // Inputs.
        ("gcc", &["-c", "a.s"], Text(".s")),
        ("gcc", &["-c", "a.m"], Text("Objective-C")),
        ("gcc", &["-c", "a.mm"], Text("Objective-C++")),
        ("gcc", &["-c", "a.h"], Is(R::PchGeneration("a.h".into()))),
        ("g++", &["-c", "a.hpp", "-o", "a.hpp.gch"], Is(R::PchGeneration("a.hpp".into()))),
        ("gcc", &["-x", "c-header", "-c", "a.c"], Is(R::PchGeneration("a.c".into()))),
        ("gcc", &["-x", "c++-header", "-c", "a.c"], Is(R::PchGeneration("a.c".into()))),
        ("gcc", &["-c", "-x", "assembler", "a.S"], Is(R::UnsupportedLanguage("-x assembler".into()))),
        ("gcc", &["-c", "-x", "objective-c", "a.c"], Text("objective-c")),
        ("gcc", &["-c", "-x", "c", "-"], Is(R::Stdin)),
        ("gcc", &["-c", "-"], Is(R::Stdin)),
        ("gcc", &["-c", "a.c", "b.c"], Is(R::MultipleSources)),
        ("gcc", &["-c", "a.c", "b.cpp", "-o", "x.o"], Is(R::MultipleSources)),
        ("gcc", &["-c"], Is(R::NoSource)),
        ("gcc", &["-c", "a.c", "b.o"], Is(R::NotASource("b.o".into()))),
        ("gcc", &["-c", "libx.a"], Is(R::NotASource("libx.a".into()))),
        ("gcc", &["-c", "libx.so"], Is(R::NotASource("libx.so".into()))),
        ("gcc", &["-c", "a.c", ""], Is(R::NotASource(String::new()))),
        // Outputs.
        ("gcc", &["-c", "a.c", "-o", "a.o", "-o", "b.o"], Is(R::DuplicateOutput)),
        ("gcc", &["-c", "a.c", "-o", "-"], Is(R::OutputToStdout)),
        ("gcc", &["-c", "a.c", "-o"], Is(R::MissingArgument("-o".into()))),
        ("gcc", &["-c", "a.c", "-I"], Is(R::MissingArgument("-I".into()))),
        // Response files left after expansion.
        ("gcc", &["-c", "@missing.rsp", "a.c"], Is(R::UnexpandedResponseFile("@missing.rsp".into()))),
        ("gcc", &["-c", "a.c", "-o", "@out"], Is(R::UnexpandedResponseFile("@out".into()))),
    ]
}

#[test]
fn local_cases_table() {
    for (compiler, args, want) in local_cases() {
        let reason = local(compiler, args);
        let what = format!("{compiler} {args:?}: got {reason:?}");
        match want {
            Is(expected) => assert_eq!(reason, expected, "{what}"),
            Only(flag) => assert!(
                matches!(&reason, R::LocalOnlyFlag { flag: f, .. } if f == flag),
                "{what}, want local-only {flag}"
            ),
            Text(text) => assert!(reason.to_string().contains(text), "{what}, want {text:?}"),
        }
    }
}

#[test]
fn non_utf8_argument() {
    let args = vec![
        OsString::from("-c"),
        OsString::from("a.c"),
        OsString::from_vec(b"-DX=\xff".to_vec()),
    ];
    assert_eq!(classify("gcc", &args), Classification::Local(R::NonUtf8));
}

#[test]
fn reasons_display() {
    assert_eq!(R::Link.to_string(), "linking");
    assert_eq!(R::MultipleSources.to_string(), "several source files");
    assert_eq!(R::Stdin.to_string(), "source on stdin");
    assert_eq!(
        R::UnknownFlag("-frobnicate".into()).to_string(),
        "unknown flag -frobnicate"
    );
    let native = local("gcc", &["-c", "a.c", "-march=native"]);
    assert_eq!(native.to_string(), "-march=native: depends on the host CPU");
}

#[test]
fn response_file_then_classify() {
    let mut read = |path: &Path| -> std::io::Result<Vec<u8>> {
        assert_eq!(path, Path::new("args.rsp"));
        Ok(b"-c a.c -o \"rsp out.o\"\n-DFROM_RSP=7 -Wall".to_vec())
    };
    let (args, files) = expand_response_files(&os(&["@args.rsp", "-O2"]), &mut read).unwrap();
    assert_eq!(files, vec![PathBuf::from("args.rsp")]);
    let Classification::Remote(compile) = classify("gcc", &args) else {
        panic!("expected remote");
    };
    assert_eq!(compile.output, Path::new("rsp out.o"));
    assert_eq!(
        compile.scan_args,
        os(&["a.c", "-DFROM_RSP=7", "-Wall", "-O2"])
    );
}

#[test]
fn clang_host_cpu_options_go_remote_as_cc1() {
    for flag in ["-march=native", "-mtune=native", "-mcpu=native"] {
        let c = remote("clang", &["-O2", flag, "-c", "a.c"]);
        assert!(c.host_cpu, "{flag}");
        assert!(
            c.scan_args.iter().any(|a| a == flag),
            "{flag} stays in the scan"
        );
        // gcc's driver places the expansion where a rewritten command cannot: local.
        local("gcc", &["-O2", flag, "-c", "a.c"]);
    }
    assert!(!remote("clang", &["-march=x86-64-v3", "-c", "a.c"]).host_cpu);
}
