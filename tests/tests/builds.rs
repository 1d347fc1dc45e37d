//! Real third-party C built with make through a worker in its own namespaces, compared with a
//! plain build object by object, `.d` file by `.d` file.
//!
//! make runs with as many jobs as the worker has slots, so that every compile finds a free
//! worker slot: then every object must have been compiled remotely (the summary's R equals the
//! number of objects) and only the link ran locally.

use offload_e2e::cmd::Status;
use offload_e2e::paths::on_path;
use offload_e2e::projects::{self, Project};
use offload_e2e::{NetnsWorker, Twice, run_twice};

use crate::via_all_remote;

const SLOTS: u32 = 3;

fn build(name: &str, project: &Project, cc: &str) {
    let worker = NetnsWorker::start(SLOTS);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(SLOTS as usize, cc),
        env: vec![],
        stdin: None,
        offload_args: via_all_remote(&worker),
    });
    assert_eq!(
        both.plain.status,
        Status::Code(0),
        "the plain build of {} failed, so the comparison proves nothing:\n{}",
        project.name,
        both.plain.describe()
    );
    assert!(
        both.plain.stderr.is_empty(),
        "the plain build of {} printed diagnostics, whose order make -j{SLOTS} does not fix:\n{}",
        project.name,
        both.plain.describe()
    );
    both.assert_counts(project.objects as u64, project.links as u64);
}

fn require(program: &str) -> String {
    on_path(program)
        .unwrap_or_else(|| panic!("{program} is not installed (scripts/test installs it)"));
    program.to_owned()
}

#[test]
fn lua_gcc_o0() {
    build("lua_gcc_o0", &projects::lua("-O0", true), "gcc");
}

#[test]
fn lua_gcc_o0_g() {
    build("lua_gcc_o0_g", &projects::lua("-O0 -g", true), "gcc");
}

#[test]
fn lua_gcc_o2() {
    build("lua_gcc_o2", &projects::lua("-O2", true), "gcc");
}

#[test]
fn lua_gcc_o2_g() {
    build("lua_gcc_o2_g", &projects::lua("-O2 -g", true), "gcc");
}

/// Lua compiles as C++ too (its error handling then uses exceptions).
#[test]
fn lua_gxx_o2_g() {
    build("lua_gxx_o2_g", &projects::lua("-O2 -g", false), "g++");
}

#[test]
fn lua_clang_o2_g() {
    build(
        "lua_clang_o2_g",
        &projects::lua("-O2 -g", true),
        &require("clang"),
    );
}

/// Lua as C++ under clang++: its `<math.h>` and friends come from libstdc++'s wrappers.
#[test]
fn lua_clangxx_o0() {
    // `-x c++`: without it clang++ warns for every `.c` file, and parallel compiles would
    // interleave the warnings in no fixed order.
    build(
        "lua_clangxx_o0",
        &projects::lua("-O0 -x c++", false),
        &require("clang++"),
    );
}

#[test]
fn zstd_gcc_o2_g() {
    build("zstd_gcc_o2_g", &projects::zstd("-O2 -g"), "gcc");
}

/// One 9 MB translation unit: a large job tree and a large object.
#[test]
fn sqlite_gcc_o0_g() {
    build("sqlite_gcc_o0_g", &projects::sqlite("-O0 -g"), "gcc");
}

/// A build that fails: make -k goes on past the error, so stderr holds a warning and an error
/// from compiles that ran remotely, in make's order; exit status 2 on both sides.
#[test]
fn failing_build_keeps_diagnostics_and_status() {
    let worker = NetnsWorker::start(1);
    let files: &[(&str, &str)] = &[
        (
            "Makefile",
            "CFLAGS = -Wall -O1\nall: ok.o warn.o bad.o\n%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
        ),
        ("ok.c", "int ok(void) { return 1; }\n"),
        ("warn.c", "int warn(void) { int unused; return 2; }\n"),
        ("bad.c", "int bad(void) { return undeclared_name; }\n"),
    ];
    let both = run_twice(&Twice {
        name: "failing_build",
        materialize: &|root| {
            std::fs::create_dir_all(root).unwrap();
            for (n, t) in files {
                std::fs::write(root.join(n), t).unwrap();
            }
            offload_e2e::paths::fix_mtimes(root);
        },
        cwd: ".",
        argv: ["make", "-s", "-k", "-j1", "CC=gcc"]
            .map(String::from)
            .to_vec(),
        env: vec![],
        stdin: None,
        offload_args: via_all_remote(&worker),
    });
    assert_eq!(both.plain.status, Status::Code(2), "{}", both.context());
    let err = String::from_utf8_lossy(&both.plain.stderr);
    assert!(
        err.contains("-Wunused-variable") && err.contains("undeclared_name"),
        "{}",
        both.context()
    );
    // The failing compile ran remotely, then here: the build sees the local failure.
    let s = &both.summary;
    assert_eq!(
        (s.calls, s.remote, s.local, s.fell_back),
        (3, 2, 0, 1),
        "expected 2 remote compiles and the failing one compiled again here\n{}",
        both.context()
    );
}
