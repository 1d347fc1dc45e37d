//! Single compiler calls, one test each: a row of the classifier, a dependency-file form, a
//! side output, an include-path shape, a diagnostic. Each runs as
//! `offload build --worker W -j 1 -- <argv>` against a worker in its own namespaces, must
//! match the plain run byte for byte (files, stdout, stderr, exit status), and must have run
//! where the case says.

use offload_e2e::cmd::Status;
use offload_e2e::paths::fix_mtimes;
use offload_e2e::{NetnsWorker, Twice, run_twice};

use crate::via_all_remote;

/// Where the one compiler call must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// On the worker: the summary says 1 remote, 0 local, 0 fell back.
    Remote,
    /// Here, by the classifier's choice: 0 remote, 1 local, 0 fell back.
    Local,
    /// Either (the point is the fidelity): one compiler call in all.
    Any,
    /// On the worker, where it failed, then here, whose result counts: 1 fell back.
    Rerun,
}
use Where::{Any, Local, Remote, Rerun};

/// A file of a case.
#[derive(Debug, Clone, Copy)]
enum F {
    /// Text content.
    T(&'static str),
    /// A symbolic link to this target.
    L(&'static str),
    /// A FIFO.
    Fifo,
}
use F::{Fifo, L, T};

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    files: &'static [(&'static str, F)],
    dirs: &'static [&'static str],
    cwd: &'static str,
    /// `{root}` is replaced by the case's root.
    argv: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    stdin: Option<&'static str>,
    expect: Where,
    /// The plain run's exit code (guards against a case silently breaking).
    rc: i32,
}

const BASE: Case = Case {
    name: "",
    files: BASIC,
    dirs: &[],
    cwd: ".",
    argv: &[],
    env: &[],
    stdin: None,
    expect: Remote,
    rc: 0,
};

const LIB_H: &str = "#ifndef LIB_H\n#define LIB_H\n#define LIB_SCALE 3\nint add(int a, int b);\nint get(int i);\n#endif\n";
const A_C: &str = "#include \"lib.h\"\n#include <stdio.h>\n\
int add(int a, int b) { return a + b; }\n\
static int table[8] = {1, 2, 3, 4, 5, 6, 7, 8};\n\
int get(int i) { return table[i & 7] * LIB_SCALE; }\n\
struct point { int x, y; const char *label; };\n\
int manhattan(const struct point *p) { return (p->x < 0 ? -p->x : p->x) + (p->y < 0 ? -p->y : p->y); }\n\
void where(void) { puts(__FILE__); }\n";
const B_C: &str = "#include \"lib.h\"\nint twice(int v) { return add(v, v); }\n";
const MAIN_C: &str = "#include \"lib.h\"\nint main(void) { return add(1, 2) == 3 ? 0 : 1; }\n";
const BASIC: &[(&str, F)] = &[("a.c", T(A_C)), ("lib.h", T(LIB_H))];
const SRC_TREE: &[(&str, F)] = &[("src/a.c", T(A_C)), ("src/lib.h", T(LIB_H))];
const POLY: &str = "template <typename T> T twice(T v) { return v + v; }\n\
struct S { int v; S(int x) : v(x) {} int get() const { return v; } };\n\
int use(int x) { S s(twice(x)); return s.get(); }\n";
const HELLO_CPP: &str = "#include <iostream>\n#include <string>\n#include <vector>\n\
int greet(const std::vector<std::string> &names) {\n\
  int n = 0;\n\
  for (const auto &s : names) { std::cout << \"hello \" << s << '\\n'; n += s.size(); }\n\
  return n;\n\
}\n";
const WARN_C: &str = "#include <stddef.h>\nstatic int helper(int unused_param) { return 0; }\n\
int count(const int *v, size_t n) {\n  int unused_local;\n  int c = 0;\n\
  for (int i = 0; i < n; i++)\n    c += v[i];\n  return c + helper(1);\n}\n";

const CASES: &[Case] = &[
    Case {
        name: "c_plain",
        argv: &["gcc", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "cc_driver_name",
        argv: &["cc", "-O1", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "o2_g_o_subdir",
        argv: &["gcc", "-O2", "-g", "-c", "a.c", "-o", "obj/a.o"],
        dirs: &["obj"],
        ..BASE
    },
    Case {
        name: "md_o_subdir",
        files: SRC_TREE,
        dirs: &["obj"],
        argv: &["gcc", "-MD", "-c", "src/a.c", "-o", "obj/a.o", "-Isrc"],
        ..BASE
    },
    Case {
        name: "md_no_o",
        files: SRC_TREE,
        argv: &["gcc", "-MD", "-Isrc", "-c", "src/a.c"],
        ..BASE
    },
    Case {
        name: "mmd_mf_mt",
        dirs: &["deps"],
        argv: &[
            "gcc",
            "-MMD",
            "-MF",
            "deps/a.dep",
            "-MT",
            "custom target",
            "-c",
            "a.c",
            "-o",
            "a.o",
        ],
        ..BASE
    },
    Case {
        name: "md_mq_mp",
        argv: &["gcc", "-MD", "-MQ", "$(OBJ)/a.o", "-MP", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "wp_md_kernel_style",
        argv: &["gcc", "-Wp,-MD,.a.o.d", "-c", "a.c", "-o", "a.o"],
        ..BASE
    },
    Case {
        name: "wp_mmd_subdirs",
        dirs: &["deps", "obj"],
        argv: &["gcc", "-Wp,-MMD,deps/a.d", "-c", "a.c", "-o", "obj/a.o"],
        ..BASE
    },
    Case {
        name: "include_imacros",
        files: &[
            ("v.c", T("int v(void) { return CFG_VALUE + MAC_VALUE; }\n")),
            (
                "cfg.h",
                T("#define CFG_VALUE 10\nint from_cfg = CFG_VALUE;\n"),
            ),
            ("mac.h", T("#define MAC_VALUE 5\nint not_emitted = 1;\n")),
        ],
        argv: &["gcc", "-include", "cfg.h", "-imacros", "mac.h", "-c", "v.c"],
        ..BASE
    },
    Case {
        name: "x_cxx",
        files: &[("poly.c", T(POLY))],
        argv: &["gcc", "-x", "c++", "-c", "poly.c", "-o", "poly.o"],
        ..BASE
    },
    Case {
        name: "gxx_compiles_dot_c_as_cxx",
        files: &[("poly.c", T(POLY))],
        argv: &["g++", "-c", "poly.c"],
        ..BASE
    },
    Case {
        name: "asm_output_s",
        argv: &["gcc", "-S", "-O2", "a.c"],
        ..BASE
    },
    Case {
        name: "save_temps",
        argv: &["gcc", "-save-temps", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "save_temps_obj",
        dirs: &["obj"],
        argv: &[
            "gcc",
            "-save-temps=obj",
            "-O1",
            "-c",
            "a.c",
            "-o",
            "obj/a.o",
        ],
        ..BASE
    },
    Case {
        name: "gsplit_dwarf",
        dirs: &["obj"],
        argv: &["gcc", "-g", "-gsplit-dwarf", "-c", "a.c", "-o", "obj/a.o"],
        ..BASE
    },
    Case {
        name: "fstack_usage",
        dirs: &["obj"],
        argv: &["gcc", "-O2", "-fstack-usage", "-c", "a.c", "-o", "obj/a.o"],
        ..BASE
    },
    Case {
        name: "response_file",
        files: &[
            ("a.c", T(A_C)),
            ("lib.h", T(LIB_H)),
            ("build.rsp", T("-O1 -c a.c\n-o \"obj dir/a.o\" -DEXTRA=7\n")),
        ],
        dirs: &["obj dir"],
        argv: &["gcc", "@build.rsp"],
        ..BASE
    },
    Case {
        name: "response_file_nested",
        files: &[
            ("a.c", T(A_C)),
            ("lib.h", T(LIB_H)),
            ("outer.rsp", T("-c @inner.rsp -o a.o\n")),
            ("inner.rsp", T("a.c -DFROM_INNER=1\n")),
        ],
        argv: &["gcc", "@outer.rsp"],
        ..BASE
    },
    Case {
        name: "symlinked_include_dir",
        files: &[
            (
                "u.c",
                T("#include \"h.h\"\nint u(void) { return H_VALUE; }\n"),
            ),
            ("real/inc/h.h", T("#define H_VALUE 41\n")),
            ("inc", L("real/inc")),
        ],
        argv: &["gcc", "-Iinc", "-MD", "-c", "u.c"],
        ..BASE
    },
    Case {
        name: "relative_parent_include",
        files: &[("src/a.c", T(A_C)), ("inc/lib.h", T(LIB_H))],
        dirs: &["obj"],
        cwd: "src",
        argv: &[
            "gcc",
            "-I../inc",
            "-MMD",
            "-g",
            "-c",
            "a.c",
            "-o",
            "../obj/a.o",
        ],
        ..BASE
    },
    Case {
        // `sub/link/../h.h` is `deep/h.h` for the kernel (the link is resolved first), not
        // `sub/h.h` as a lexical clean-up would have it.
        name: "dotdot_after_symlinked_dir",
        files: &[
            (
                "m.c",
                T("#include \"sub/link/../h.h\"\nint where = WHERE;\n"),
            ),
            ("deep/dir/keep.h", T("/* keeps the directory */\n")),
            ("deep/h.h", T("#define WHERE 1\n")),
            ("sub/h.h", T("#define WHERE 2\n")),
            ("sub/link", L("../deep/dir")),
        ],
        argv: &["gcc", "-MD", "-c", "m.c"],
        ..BASE
    },
    Case {
        name: "has_include_of_unincluded_file",
        files: &[
            (
                "h.c",
                T(
                    "#if __has_include(\"opt.h\")\nint have_opt = 1;\n#else\nint have_opt = 0;\n#endif\n\
#if __has_include(<sys/nonexistent_e2e.h>)\nint have_sys = 1;\n#else\nint have_sys = 0;\n#endif\n",
                ),
            ),
            ("opt.h", T("#error opt.h must not be included\n")),
        ],
        argv: &["gcc", "-c", "h.c"],
        ..BASE
    },
    Case {
        name: "date_time_source_date_epoch",
        files: &[("d.c", T("const char *when = __DATE__ \" \" __TIME__;\n"))],
        argv: &["gcc", "-c", "d.c"],
        ..BASE
    },
    Case {
        // __TIMESTAMP__ is the source's mtime: offload may ship it or compile here.
        name: "timestamp_macro",
        files: &[(
            "d.c",
            T("const char *stamp = __TIMESTAMP__;\nconst char *file = __FILE__;\n"),
        )],
        argv: &["gcc", "-c", "d.c"],
        expect: Any,
        ..BASE
    },
    Case {
        name: "date_time_other_epoch",
        files: &[("d.c", T("const char *when = __DATE__ \" \" __TIME__;\n"))],
        env: &[("SOURCE_DATE_EPOCH", "1000000000")],
        argv: &["gcc", "-c", "d.c"],
        ..BASE
    },
    Case {
        name: "cxx_iostream_o2_g",
        files: &[("hello.cpp", T(HELLO_CPP))],
        argv: &["g++", "-O2", "-g", "-c", "hello.cpp"],
        ..BASE
    },
    Case {
        name: "cxx_driver_cplusplus",
        files: &[("hello.cpp", T(HELLO_CPP))],
        argv: &[
            "c++",
            "-std=c++17",
            "-MMD",
            "-c",
            "hello.cpp",
            "-o",
            "hello.o",
        ],
        ..BASE
    },
    Case {
        name: "warning_wall_wextra",
        files: &[("w.c", T(WARN_C))],
        argv: &["gcc", "-Wall", "-Wextra", "-c", "w.c"],
        ..BASE
    },
    Case {
        name: "werror_fails",
        files: &[("w.c", T(WARN_C))],
        argv: &["gcc", "-Wall", "-Werror", "-c", "w.c"],
        rc: 1,
        expect: Rerun,
        ..BASE
    },
    Case {
        name: "error_exit_1",
        files: &[(
            "e.c",
            T("int f(void) { return undeclared_name; }\nint g(void) { return 1 }\n"),
        )],
        argv: &["gcc", "-c", "e.c"],
        rc: 1,
        expect: Rerun,
        ..BASE
    },
    Case {
        name: "error_in_header",
        files: &[
            ("e.c", T("#include \"bad.h\"\nint x;\n")),
            ("bad.h", T("int y = ;\n")),
        ],
        argv: &["gcc", "-c", "e.c"],
        rc: 1,
        expect: Rerun,
        ..BASE
    },
    Case {
        name: "cxx_template_error",
        files: &[(
            "t.cpp",
            T(
                "#include <vector>\nstruct NoLess {};\n#include <algorithm>\n\
void f() { std::vector<NoLess> v(3); std::sort(v.begin(), v.end()); }\n",
            ),
        )],
        argv: &["g++", "-c", "t.cpp"],
        rc: 1,
        expect: Rerun,
        ..BASE
    },
    Case {
        // The host's dependency scan fails too: where it runs is offload's choice.
        name: "missing_header",
        files: &[("m.c", T("#include \"nope.h\"\nint x;\n"))],
        argv: &["gcc", "-c", "m.c"],
        expect: Any,
        rc: 1,
        ..BASE
    },
    Case {
        name: "absolute_include_dir",
        files: &[
            (
                "u.c",
                T("#include <h.h>\nint u(void) { return H_VALUE; }\n"),
            ),
            ("inc/h.h", T("#define H_VALUE 5\n")),
        ],
        argv: &[
            "gcc",
            "-I{root}/inc",
            "-MD",
            "-c",
            "{root}/u.c",
            "-o",
            "{root}/u.o",
        ],
        ..BASE
    },
    Case {
        name: "isystem_iquote_idirafter",
        files: &[
            (
                "q.c",
                T(
                    "#include \"q.h\"\n#include <s.h>\n#include <late.h>\nint q(void) { return Q + S + LATE; }\n",
                ),
            ),
            ("quote/q.h", T("#define Q 1\n")),
            (
                "sys/s.h",
                T("#define S 2\nstatic int unused_in_system_header;\n"),
            ),
            ("after/late.h", T("#define LATE 3\n")),
        ],
        argv: &[
            "gcc",
            "-Wall",
            "-iquote",
            "quote",
            "-isystem",
            "sys",
            "-idirafter",
            "after",
            "-MMD",
            "-c",
            "q.c",
        ],
        ..BASE
    },
    Case {
        name: "include_next",
        files: &[
            (
                "n.c",
                T("#include <limits.h>\nint n(void) { return WRAPPED_LIMITS + (INT_MAX > 0); }\n"),
            ),
            (
                "wrap/limits.h",
                T("#define WRAPPED_LIMITS 1\n#include_next <limits.h>\n"),
            ),
        ],
        argv: &["gcc", "-Iwrap", "-MD", "-c", "n.c"],
        ..BASE
    },
    Case {
        name: "define_with_spaces_and_quotes",
        files: &[("m.c", T("const char *msg = MSG;\nint n = N;\n"))],
        argv: &["gcc", "-DMSG=\"a b 'c'\"", "-D", "N=(1 + 2)", "-c", "m.c"],
        ..BASE
    },
    Case {
        name: "space_and_utf8_in_paths",
        files: &[("dir ü/a b.c", T(A_C)), ("dir ü/lib.h", T(LIB_H))],
        dirs: &["out dir"],
        argv: &[
            "gcc",
            "-g",
            "-MD",
            "-c",
            "dir ü/a b.c",
            "-o",
            "out dir/a b.o",
        ],
        ..BASE
    },
    Case {
        name: "cpath_env",
        files: &[
            (
                "u.c",
                T("#include <h.h>\nint u(void) { return H_VALUE; }\n"),
            ),
            ("envinc/h.h", T("#define H_VALUE 9\n")),
        ],
        env: &[("CPATH", "{root}/envinc")],
        argv: &["gcc", "-MD", "-c", "u.c"],
        expect: Any,
        ..BASE
    },
    Case {
        name: "asm_with_cpp",
        files: &[
            (
                "start.S",
                T(
                    "#include \"defs.h\"\n\t.text\n\t.globl entry\nentry:\n\tmovl $VALUE, %eax\n\tret\n",
                ),
            ),
            ("defs.h", T("#define VALUE 42\n")),
        ],
        argv: &["gcc", "-MD", "-c", "start.S"],
        ..BASE
    },
    Case {
        name: "plain_asm",
        files: &[("raw.s", T("\t.text\n\t.globl entry\nentry:\n\tret\n"))],
        argv: &["gcc", "-c", "raw.s"],
        expect: Any,
        ..BASE
    },
    Case {
        name: "pragma_once_through_symlink",
        files: &[
            (
                "p.c",
                T("#include \"inc/once.h\"\n#include \"alias.h\"\nint p(void) { return ONCE; }\n"),
            ),
            (
                "inc/once.h",
                T("#pragma once\n#define ONCE 7\nstruct once_only { int x; };\n"),
            ),
            ("alias.h", L("inc/once.h")),
        ],
        argv: &["gcc", "-MD", "-c", "p.c"],
        ..BASE
    },
    Case {
        name: "output_is_a_symlink",
        files: &[
            ("a.c", T(A_C)),
            ("lib.h", T(LIB_H)),
            ("objs/real.o", T("old\n")),
            ("a.o", L("objs/real.o")),
        ],
        argv: &["gcc", "-c", "a.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "pwd_through_symlink",
        files: &[
            ("real/a.c", T(A_C)),
            ("real/lib.h", T(LIB_H)),
            ("link", L("real")),
        ],
        cwd: "link",
        env: &[("PWD", "{root}/link")],
        argv: &["gcc", "-g", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "missing_include_dir_warning",
        argv: &["gcc", "-Wmissing-include-dirs", "-Inope", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "debug_prefix_map",
        argv: &[
            "gcc",
            "-g",
            "-fdebug-prefix-map={root}=/src",
            "-O1",
            "-c",
            "a.c",
        ],
        ..BASE
    },
    Case {
        name: "dwarf4_pic_flags",
        argv: &[
            "gcc",
            "-O2",
            "-gdwarf-4",
            "-fPIC",
            "-fno-omit-frame-pointer",
            "-c",
            "a.c",
        ],
        ..BASE
    },
    Case {
        name: "clang_md_g",
        argv: &["clang", "-MD", "-g", "-O1", "-c", "a.c", "-o", "obj/a.o"],
        dirs: &["obj"],
        ..BASE
    },
    Case {
        name: "clangxx_iostream_o2_g",
        files: &[("hello.cpp", T(HELLO_CPP))],
        argv: &["clang++", "-O2", "-g", "-c", "hello.cpp"],
        ..BASE
    },
    // clang resolves the host CPU in its driver: the worker runs the host driver's -cc1.
    Case {
        name: "clang_march_native_cc1",
        argv: &[
            "clang",
            "-O2",
            "-g",
            "-march=native",
            "-mtune=native",
            "-MD",
            "-c",
            "a.c",
            "-o",
            "obj/a.o",
        ],
        dirs: &["obj"],
        ..BASE
    },
    Case {
        name: "clangxx_march_native_cc1",
        files: &[("hello.cpp", T(HELLO_CPP))],
        argv: &["clang++", "-O2", "-march=native", "-c", "hello.cpp"],
        ..BASE
    },
    // A driver warning (an unused linker input) is printed by the driver, not by -cc1.
    Case {
        name: "clang_march_native_driver_warning",
        argv: &["clang", "-march=native", "-c", "a.c", "-lm"],
        expect: Any,
        ..BASE
    },
    // Outputs that are not plain files: a compile writes into them, a rename would replace
    // them (run_case also checks that /dev/null is still the device).
    Case {
        name: "output_dev_null",
        argv: &["gcc", "-c", "a.c", "-o", "/dev/null"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "depfile_dev_null",
        argv: &["gcc", "-MD", "-MF", "/dev/null", "-c", "a.c"],
        expect: Rerun,
        ..BASE
    },
    Case {
        name: "output_is_a_fifo",
        files: &[("a.c", T(A_C)), ("lib.h", T(LIB_H)), ("out.o", Fifo)],
        argv: &[
            "sh",
            "-c",
            "cat out.o > copy.o & gcc -pipe -c a.c -o out.o; s=$?; wait; exit $s",
        ],
        // The assembler cannot seek in a FIFO: the point is that it stays one.
        rc: 1,
        expect: Local,
        ..BASE
    },
    // Character-set conversion: cc1 loads glibc's conversion modules.
    Case {
        name: "input_charset_latin1",
        argv: &["gcc", "-finput-charset=ISO-8859-1", "-c", "a.c"],
        ..BASE
    },
    Case {
        name: "exec_charset_ebcdic",
        files: &[("s.c", T("const char *s = \"caf\u{e9} \\u00e9t\u{e9}\";\n"))],
        argv: &["gcc", "-fexec-charset=IBM1047", "-c", "s.c"],
        ..BASE
    },
    Case {
        name: "wide_exec_charset_utf16be",
        files: &[(
            "w.c",
            T("#include <stddef.h>\nconst wchar_t *w = L\"caf\u{e9}\";\n"),
        )],
        argv: &[
            "gcc",
            "-fwide-exec-charset=UTF-16BE",
            "-fshort-wchar",
            "-c",
            "w.c",
        ],
        ..BASE
    },
    // clang 14 takes __DATE__ from the wall clock even with SOURCE_DATE_EPOCH: local (only
    // the date is used, so both runs agree unless midnight passes between them).
    Case {
        name: "clang_ignores_source_date_epoch_local",
        files: &[("d.c", T("const char *day = __DATE__;\n"))],
        env: &[("SOURCE_DATE_EPOCH", "1000000000")],
        argv: &["clang", "-c", "d.c"],
        expect: Local,
        ..BASE
    },
    // Local by design.
    Case {
        name: "preprocess_e_local",
        argv: &["gcc", "-E", "a.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "deps_only_m_local",
        argv: &["gcc", "-M", "a.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "link_local",
        files: &[("a.c", T(A_C)), ("lib.h", T(LIB_H)), ("main.c", T(MAIN_C))],
        argv: &["gcc", "main.c", "a.c", "-o", "prog"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "two_sources_local",
        files: &[("a.c", T(A_C)), ("b.c", T(B_C)), ("lib.h", T(LIB_H))],
        argv: &["gcc", "-c", "a.c", "b.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "march_native_local",
        argv: &["gcc", "-march=native", "-O2", "-c", "a.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "stdin_local",
        files: &[],
        stdin: Some("int from_stdin(void) { return 3; }\n"),
        argv: &["gcc", "-x", "c", "-c", "-", "-o", "stdin.o"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "syntax_only_local",
        files: &[("w.c", T(WARN_C))],
        argv: &["gcc", "-Wall", "-fsyntax-only", "w.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "lto_local",
        argv: &["gcc", "-flto", "-frandom-seed=e2e", "-O2", "-c", "a.c"],
        expect: Local,
        ..BASE
    },
    Case {
        name: "output_to_stdout_local",
        argv: &["gcc", "-S", "a.c", "-o", "-"],
        expect: Local,
        ..BASE
    },
];

fn write_case(case: &Case, root: &std::path::Path) {
    std::fs::create_dir_all(root).unwrap();
    for d in case.dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (rel, f) in case.files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match f {
            T(text) => std::fs::write(&p, text).unwrap(),
            L(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
            Fifo => {
                let st = std::process::Command::new("mkfifo")
                    .arg(&p)
                    .status()
                    .unwrap();
                assert!(st.success(), "mkfifo {}", p.display());
            }
        }
    }
    std::fs::create_dir_all(root.join(case.cwd)).unwrap();
    fix_mtimes(root);
}

fn run_case(name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let worker = NetnsWorker::start(1);
    let both = run_twice(&Twice {
        name: &format!("case-{name}"),
        materialize: &|root| write_case(case, root),
        cwd: case.cwd,
        argv: case.argv.iter().map(|s| s.to_string()).collect(),
        env: case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stdin: case.stdin.map(|s| s.as_bytes().to_vec()),
        offload_args: via_all_remote(&worker),
    });
    assert_eq!(
        both.plain.status,
        Status::Code(case.rc),
        "case {name} is broken: the plain run should exit with {}\n{}",
        case.rc,
        both.context()
    );
    match case.expect {
        Remote => both.assert_counts(1, 0),
        Local => both.assert_counts(0, 1),
        Any => assert_eq!(
            both.summary.calls,
            1,
            "expected one compiler call\n{}",
            both.context()
        ),
        Rerun => assert_eq!(
            (both.summary.calls, both.summary.fell_back),
            (1, 1),
            "expected one compiler call that failed remotely and ran again here\n{}",
            both.context()
        ),
    }
    dev_null_untouched();
}

/// `/dev/null` is still the character device, whatever a case wrote to it.
fn dev_null_untouched() {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "/dev/null was replaced: {meta:?}"
    );
}

macro_rules! cases {
    ($($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                run_case(stringify!($name));
            }
        )*

        #[test]
        fn every_case_has_a_test() {
            let tests = [$(stringify!($name)),*];
            for c in CASES {
                assert!(tests.contains(&c.name), "case {} has no test in cases! {{…}}", c.name);
            }
            assert_eq!(tests.len(), CASES.len());
        }
    };
}

cases! {
    c_plain cc_driver_name o2_g_o_subdir md_o_subdir md_no_o mmd_mf_mt md_mq_mp wp_md_kernel_style
    wp_mmd_subdirs include_imacros x_cxx gxx_compiles_dot_c_as_cxx asm_output_s save_temps
    save_temps_obj gsplit_dwarf fstack_usage response_file response_file_nested
    symlinked_include_dir relative_parent_include dotdot_after_symlinked_dir
    has_include_of_unincluded_file date_time_source_date_epoch date_time_other_epoch timestamp_macro
    cxx_iostream_o2_g cxx_driver_cplusplus warning_wall_wextra werror_fails error_exit_1
    error_in_header cxx_template_error missing_header absolute_include_dir
    isystem_iquote_idirafter include_next define_with_spaces_and_quotes space_and_utf8_in_paths
    cpath_env asm_with_cpp plain_asm pragma_once_through_symlink output_is_a_symlink pwd_through_symlink missing_include_dir_warning
    debug_prefix_map dwarf4_pic_flags clang_md_g clangxx_iostream_o2_g clang_march_native_cc1
    clangxx_march_native_cc1 clang_march_native_driver_warning preprocess_e_local deps_only_m_local link_local
    two_sources_local march_native_local stdin_local syntax_only_local lto_local
    output_to_stdout_local output_dev_null depfile_dev_null output_is_a_fifo input_charset_latin1
    exec_charset_ebcdic wide_exec_charset_utf16be clang_ignores_source_date_epoch_local
}
