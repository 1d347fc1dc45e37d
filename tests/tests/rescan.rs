//! The dependency-scan cache inside one `offload build`: the same compile repeated reuses
//! its scan only while that scan would give the same answer. Each test compiles the same
//! command twice with a change in between that a stale scan would miss; the objects must
//! equal the plain run's and both compiles must have run remotely.

use std::path::Path;

use offload_e2e::{NetnsWorker, Twice, run_twice};

use crate::via;

fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    offload_e2e::paths::fix_mtimes(root);
}

/// Runs `script` (sh) plainly and through offload; asserts `remote` compiles ran remotely
/// and `reused` of them reused a scan. The script first waits a second: a scan of files
/// changed within the second before it is never kept (it could race with their writer).
fn check(name: &str, files: &[(&str, &str)], script: &str, remote: u64, reused: u64) {
    let worker = NetnsWorker::start(1);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| write(root, files),
        cwd: ".",
        argv: vec!["sh".into(), "-ec".into(), format!("sleep 1.2\n{script}")],
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    let s = &both.summary;
    assert!(
        s.remote == remote && s.fell_back == 0,
        "expected {remote} remote compiles and no fallback\n{}",
        both.context()
    );
    let want = format!("dependency scans reused: {reused}\n");
    assert!(
        String::from_utf8_lossy(&both.offload.stderr).contains(&want),
        "expected `{}`\n{}\nstderr:\n{}",
        want.trim(),
        both.context(),
        String::from_utf8_lossy(&both.offload.stderr)
    );
}

const A_C: &str = "#include \"x.h\"\n#include <sub/y.h>\nint v(void) { return X + Y; }\n";

/// A header appearing earlier in the search path shadows the one the first scan found.
#[test]
fn new_shadowing_header_is_seen() {
    check(
        "rescan_shadowing_header",
        &[
            ("a.c", A_C),
            ("d2/x.h", "#define X 2\n"),
            ("d2/sub/y.h", "#define Y 20\n"),
            ("d1/.keep", ""),
        ],
        "gcc -Id1 -Id2 -c a.c -o a1.o\n\
         echo '#define X 1' > d1/x.h\n\
         gcc -Id1 -Id2 -c a.c -o a2.o\n\
         cmp -s a1.o a2.o && exit 3 || true",
        2,
        0,
    );
}

/// A header in a subdirectory that did not exist in an earlier search directory.
#[test]
fn new_subdirectory_header_is_seen() {
    check(
        "rescan_new_subdirectory",
        &[
            ("a.c", A_C),
            ("d2/x.h", "#define X 2\n"),
            ("d2/sub/y.h", "#define Y 20\n"),
            ("d1/.keep", ""),
        ],
        "gcc -Id1 -Id2 -c a.c -o a1.o\n\
         mkdir d1/sub && echo '#define Y 10' > d1/sub/y.h\n\
         gcc -Id1 -Id2 -c a.c -o a2.o\n\
         cmp -s a1.o a2.o && exit 3 || true",
        2,
        0,
    );
}

/// A header that now includes another one.
#[test]
fn edited_header_with_a_new_include_is_seen() {
    check(
        "rescan_edited_header",
        &[
            ("a.c", A_C),
            ("d2/x.h", "#define X 2\n"),
            ("d2/sub/y.h", "#define Y 20\n"),
            ("d2/z.h", "#define Z 5\n"),
        ],
        "gcc -Id2 -c a.c -o a1.o\n\
         printf '#include \"z.h\"\\n#define X Z\\n' > d2/x.h\n\
         gcc -Id2 -c a.c -o a2.o\n\
         cmp -s a1.o a2.o && exit 3 || true",
        2,
        0,
    );
}

/// Unchanged inputs: the repeated compile is identical (and reuses the scan).
#[test]
fn unchanged_repeat_is_identical() {
    check(
        "rescan_unchanged",
        &[
            ("a.c", A_C),
            ("d2/x.h", "#define X 2\n"),
            ("d2/sub/y.h", "#define Y 20\n"),
        ],
        "for i in 1 2 3; do gcc -Id2 -c a.c -o a$i.o; done\ncmp a1.o a3.o",
        3,
        2,
    );
}
