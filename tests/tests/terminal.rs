//! Diagnostics on a terminal: run under `script` (a pseudo-terminal on stdin, stdout and
//! stderr, 60 columns), a warning must look the same through offload — colours (added with
//! a flag objects do not record) and source excerpts fitted to the terminal's width — and
//! the compile must still run remotely.

use offload_e2e::{NetnsWorker, Twice, run_twice};

use crate::via;

const W_C: &str = "int counts(const int *v, unsigned n) {\n    int unused_local_variable_with_a_long_name_to_make_the_line_wider_than_sixty_columns;\n    int c = 0;\n    for (int i = 0; i < n; i++) c += v[i];\n    return c;\n}\n";

fn check(name: &str, compiler: &str, remote: u64) {
    let worker = NetnsWorker::start(1);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| {
            std::fs::create_dir_all(root).expect("root");
            std::fs::write(root.join("w.c"), W_C).expect("w.c");
            offload_e2e::paths::fix_mtimes(root);
        },
        cwd: ".",
        argv: vec![
            "script".into(),
            "-qec".into(),
            format!("stty cols 60; {compiler} -Wall -Wextra -c w.c -o w.o"),
            "/dev/null".into(),
        ],
        env: vec![("TERM".into(), "xterm".into())],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    assert!(
        both.plain.stdout.windows(2).any(|w| w == b"\x1b["),
        "the plain run must print colours on the terminal, or this proves nothing\n{}",
        both.context()
    );
    let s = &both.summary;
    assert!(
        s.remote == remote && s.fell_back == 0,
        "expected {remote} remote\n{}",
        both.context()
    );
}

#[test]
fn gcc_warning_on_a_terminal() {
    check("terminal_gcc", "gcc", 1);
}

#[test]
fn clang_warning_on_a_terminal() {
    if std::process::Command::new("clang")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("clang is not installed (scripts/test installs it)");
    }
    check("terminal_clang", "clang", 1);
}
