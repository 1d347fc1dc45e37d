//! The arm64 worker: the project's `offload-worker:arm64` image (under qemu-user here, as on
//! an Apple-Silicon Mac natively) compiles for this x86_64 host with its x86_64-targeting
//! cross compilers, and every object equals the host's own.

use offload_e2e::container::ContainerWorker;
use offload_e2e::{Twice, projects, run_twice};

fn via(w: &ContainerWorker) -> Vec<String> {
    vec!["--worker".into(), w.worker_arg(), "-j".into(), "1".into()]
}

/// A small C project with -O2 -g: every compile remote, every object identical.
#[test]
fn arm64_worker_builds_c_for_the_x86_64_host() {
    let worker = ContainerWorker::start("offload-worker:arm64", 2);
    let project = projects::tiny(4);
    let both = run_twice(&Twice {
        name: "cross_arm64_c",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        // As many make jobs as worker slots: each finds a free slot on the worker.
        argv: project.make_argv(2, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    let s = &both.summary;
    assert!(
        s.remote == project.objects as u64 && s.fell_back == 0,
        "every compile must run on the arm64 worker\n{}\nworker log:\n{}",
        both.context(),
        worker.logs()
    );
}

/// C++ with the standard library, -O1 -g, and a dependency file.
#[test]
fn arm64_worker_builds_cxx_for_the_x86_64_host() {
    let worker = ContainerWorker::start("offload-worker:arm64", 1);
    let both = run_twice(&Twice {
        name: "cross_arm64_cxx",
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
        argv: ["g++", "-O1", "-g", "-MMD", "-c", "c.cc", "-o", "obj/c.o"]
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
