//! Attacks through toolchains: a peer's strings taken for paths, a bundle that fails its
//! check, a bundle that would poison other hosts' compiles, identity reads of devices and
//! FIFOs. Each ends with a legitimate compile from a new connection, identical to a local
//! one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use offload_e2e::NetnsWorker;
use offload_e2e::attacks::{self, Netns};
use offload_e2e::peer::{self, BundleEntry, Peer};
use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ToolchainKind};

fn legit(worker: &NetnsWorker) {
    attacks::legit(&Netns(worker));
}

/// Finding 1: a bundle without the offered driver is refused and deleted, and no string
/// of the peer's makes the worker run or read anything.
#[test]
fn a_refused_bundle_leaves_nothing_and_a_version_is_never_a_path() {
    attacks::a_refused_bundle_leaves_nothing_and_a_version_is_never_a_path(&Netns(
        &NetnsWorker::start(1),
    ));
}

/// Finding 2: a bundle holding the real gcc driver (so its digest checks out) and a cc1
/// that is a script neither shadows the worker's own gcc — for the peer that shipped it —
/// nor serves any other connection. Another host's compile stays identical to a local one.
/// (Bundles are content-addressed and no index of them by compiler is kept, so a restart
/// cannot bring the poisoning back either.)
#[test]
fn a_poisoned_bundle_never_serves_another_host_and_never_shadows_native() {
    let worker = NetnsWorker::start(1);
    let gcc = "/usr/bin/gcc";
    let mut entries = peer::real_toolchain_entries(gcc);
    let cc1 = entries
        .keys()
        .find(|p| p.file_name().is_some_and(|n| n == "cc1"))
        .cloned()
        .expect("gcc has a cc1");
    entries.insert(
        cc1,
        BundleEntry::File(
            b"#!/bin/busybox sh\nbusybox echo poisoned >&2; exit 1\n".to_vec(),
            true,
        ),
    );
    entries.insert(
        PathBuf::from("/bin/busybox"),
        BundleEntry::File(std::fs::read("/bin/busybox").expect("busybox-static"), true),
    );
    let bundle = peer::pack_entries(&entries);
    let real = peer::compiler_ref(gcc);
    let mut attacker = Peer::connect(worker.addr()).expect("connect");
    let info = attacker.ship(&real, &bundle).expect("ship");
    // Whether it took the bundle or not, the worker's own gcc answers for this compiler.
    let answer = attacker.query(&real).expect("query");
    assert_eq!(
        answer.kind,
        ToolchainKind::Native,
        "after {info:?}: {answer:?}"
    );
    legit(&worker);
}

/// A shipped toolchain at a path the worker has no compiler for serves the connection that
/// shipped it and no other.
#[test]
fn a_shipped_toolchain_serves_only_its_connection() {
    let worker = NetnsWorker::start(1);
    let (cc, bundle) = peer::hostile_toolchain("owned", "busybox echo obj > \"$4\"");
    let mut owner = Peer::connect(worker.addr()).expect("connect");
    let info = owner.ship(&cc, &bundle).expect("ship");
    assert_eq!(
        info.kind,
        ToolchainKind::Shipped,
        "{info:?}\n{}",
        worker.log_text()
    );
    let mut other = Peer::connect(worker.addr()).expect("connect");
    // The worker's own gcc may answer for it (another build of "12.2.0"), never the bundle.
    let theirs = other.query(&cc).expect("query");
    assert_ne!(theirs.kind, ToolchainKind::Shipped, "{theirs:?}");
    let dir = offload_e2e::twice::fresh_dir("hostile-owned");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", "a.o"]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    let reply = other.job(&spec.job, &spec.blobs);
    assert_ne!(
        reply.file(&format!("{d}/a.o")),
        Some(&b"obj\n"[..]),
        "another connection ran the shipped toolchain: {reply:?}"
    );
    let mine = owner.job(&spec.job, &spec.blobs);
    assert_eq!(
        mine.file(&format!("{d}/a.o")),
        Some(&b"obj\n"[..]),
        "{mine:?}"
    );
    legit(&worker);
}

/// Finding 5, identity reads: a compiler "at" `/dev/zero`, a FIFO or a directory is
/// answered at once (nothing is read, nothing hangs) and the worker stays small.
#[test]
fn identity_reads_of_devices_and_fifos_neither_hang_nor_exhaust() {
    let worker = NetnsWorker::start(1);
    let pid = worker.pid().expect("pid");
    let fifo = "/run/offload-e2e-fifo-gcc";
    let _ = std::fs::remove_file(fifo);
    let c = std::ffi::CString::new(fifo).expect("path");
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut p = Peer::connect(worker.addr()).expect("connect");
    for path in ["/dev/zero", fifo, "/dev/urandom", "/proc/self/mem", "/"] {
        let t0 = Instant::now();
        let info = p
            .query(&CompilerRef {
                path: path.into(),
                digest: Digest([1; 32]),
                version: "12.2.0 x86_64-linux-gnu".into(),
                ident: String::new(),
            })
            .expect("query");
        // Unavailable, or the worker's own gcc as a cross compiler at that job path.
        assert_ne!(info.kind, ToolchainKind::Shipped, "{path}: {info:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            t0.elapsed()
        );
    }
    let _ = std::fs::remove_file(fifo);
    let rss = peer::rss_kib(pid);
    assert!(rss < 200 << 10, "the worker grew to {rss} KiB");
    legit(&worker);
}
