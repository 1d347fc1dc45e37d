//! The worker images (`docker/build.sh`), each in a container on a private Docker network.
//! arm64 (under qemu-user here, natively on an Apple-Silicon Mac): its x86_64-targeting
//! cross gcc and its multi-target clang compile for this x86_64 host, and every object
//! equals the host's own. amd64: the image's compilers are the host's own.

use offload_e2e::container::{ContainerWorker, image};
use offload_e2e::{Twice, projects, run_twice};

fn via(w: &ContainerWorker) -> Vec<String> {
    // Every result must come from the container, however slow qemu makes it.
    vec![
        "--worker".into(),
        w.worker_arg(),
        "-j".into(),
        "1".into(),
        "--remote-only".into(),
    ]
}

/// `project` built with `cc` entirely on a worker container from `image`: every object and
/// dependency file identical to the host's own build, and the program links and runs.
fn all_remote_in(image: &str, name: &str, project: &projects::Project, cc: &str) {
    // One container per test: tests run in parallel, and each must see its compiles land.
    let worker = ContainerWorker::start(image, 2);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| project.materialize(root),
        cwd: ".",
        // As many make jobs as worker slots: each finds a free slot on the worker.
        argv: project.make_argv(2, cc),
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    let s = &both.summary;
    assert!(
        s.remote == project.objects as u64 && s.fell_back == 0,
        "every compile must run in {image}\n{}\nworker log:\n{}",
        both.context(),
        worker.logs()
    );
}

/// Lua (third-party C) built with `cc` and `flags` entirely on the arm64 worker.
fn lua_through_arm64(name: &str, cc: &str, flags: &str) {
    all_remote_in(&image("arm64"), name, &projects::lua(flags, true), cc);
}

/// gcc: the cross gcc-12 with the host's headers and `.ident`, with debug information.
#[test]
fn arm64_worker_builds_lua_with_gcc_o2_g() {
    lua_through_arm64("cross_arm64_lua_gcc", "gcc", "-O2 -g");
}

/// gcc without debug information (no DW_AT_producer, other section layout).
#[test]
fn arm64_worker_builds_lua_with_gcc_o2() {
    lua_through_arm64("cross_arm64_lua_gcc_nog", "gcc", "-O2");
}

/// clang: the worker's arm64 clang runs the host driver's `-cc1` command.
#[test]
fn arm64_worker_builds_lua_with_clang_o2_g() {
    lua_through_arm64("cross_arm64_lua_clang", "clang", "-O2 -g");
}

/// clang without debug information.
#[test]
fn arm64_worker_builds_lua_with_clang_o1() {
    lua_through_arm64("cross_arm64_lua_clang_nog", "clang", "-O1");
}

/// C++ with the standard library, -O1 -g, and a dependency file, with `cxx`.
fn cxx_through_arm64(name: &str, cxx: &str) {
    let worker = ContainerWorker::start(&image("arm64"), 1);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| {
            std::fs::create_dir_all(root.join("obj")).expect("root");
            std::fs::write(
                root.join("c.cc"),
                "#include <map>\n#include <string>\n\
                 std::size_t f(const std::map<std::string, int> &m) { return m.size() + m.count(\"x\"); }\n",
            )
            .expect("c.cc");
            offload_e2e::paths::fix_mtimes(root);
        },
        cwd: ".",
        argv: [cxx, "-O1", "-g", "-MMD", "-c", "c.cc", "-o", "obj/c.o"]
            .map(String::from)
            .to_vec(),
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    assert!(
        both.summary.remote == 1,
        "the compile must run on the arm64 worker\n{}\nworker log:\n{}",
        both.context(),
        worker.logs()
    );
}

#[test]
fn arm64_worker_builds_cxx_with_gxx() {
    cxx_through_arm64("cross_arm64_gxx", "g++");
}

#[test]
fn arm64_worker_builds_cxx_with_clangxx() {
    cxx_through_arm64("cross_arm64_clangxx", "clang++");
}

/// The amd64 image (the worker as it runs on a Linux box or an Intel Mac): its Debian
/// compilers are the host's own, so zstd (C with a `.S` file) builds entirely there.
#[test]
fn amd64_image_worker_builds_zstd() {
    all_remote_in(
        &image("amd64"),
        "container_amd64_zstd",
        &projects::zstd("-O2 -g"),
        "gcc",
    );
}
