//! Toolchain shipping: a worker of the host's architecture without the host's gcc gets the
//! host's toolchain as a bundle, once, and then compiles everything byte-identically.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use offload_e2e::cmd::{Cmd, Status};
use offload_e2e::paths::{TEST_ROOT, on_path};
use offload_e2e::{NetnsWorker, Twice, projects, run_twice};
use offload_shared::Digest;
use offload_shared::protocol::PROTOCOL_VERSION;
use serde_json::{Value, json};

use crate::via_all_remote;

const SLOTS: u32 = 3;

/// The host gcc's driver binary and the directory holding its `cc1`
/// (`/usr/lib/gcc/x86_64-linux-gnu` on Debian 12).
fn host_gcc() -> (PathBuf, PathBuf) {
    let gcc = on_path("gcc").expect("gcc is not installed");
    let driver = std::fs::canonicalize(&gcc).expect("resolving gcc");
    let out = Cmd::new(["gcc", "-print-prog-name=cc1"], Path::new("/")).run();
    assert_eq!(out.status, Status::Code(0), "{}", out.describe());
    let cc1 = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // …/x86_64-linux-gnu/12/cc1 → …/x86_64-linux-gnu
    let libdir = cc1
        .ancestors()
        .nth(2)
        .filter(|d| d.is_absolute() && d.components().count() > 2)
        .unwrap_or_else(|| panic!("unexpected cc1 path {}", cc1.display()))
        .to_owned();
    (driver, libdir)
}

/// A worker whose gcc is not the host's: the driver is `/bin/false` and the compiler's own
/// directory is empty, in the worker's mount namespace only.
fn worker_without_gcc() -> NetnsWorker {
    let (driver, libdir) = host_gcc();
    NetnsWorker::start_with_setup(
        SLOTS,
        &format!(
            "mount -t tmpfs tmpfs {} && mount --bind /bin/false {}",
            libdir.display(),
            driver.display()
        ),
    )
}

/// Lua built twice against one worker that lacks gcc: the first build ships the toolchain
/// once (not per job) and compiles every object remotely; the second ships nothing.
#[test]
fn toolchain_is_shipped_once_to_a_worker_without_gcc() {
    let worker = worker_without_gcc();
    // The host's bundle cache for this test: empty, so the first build makes the bundle.
    let cache = PathBuf::from(TEST_ROOT).join("ship-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let project = projects::lua("-O2 -g", true);
    let build = |name: &str| {
        run_twice(&Twice {
            name,
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(SLOTS as usize, "gcc"),
            env: vec![("XDG_CACHE_HOME".into(), cache.display().to_string())],
            stdin: None,
            offload_args: via_all_remote(&worker),
        })
    };

    let first = build("ship_first");
    first.assert_plain_succeeded();
    first.assert_counts(project.objects as u64, project.links as u64);
    assert!(
        first.summary_text.contains("(1 toolchain shipped, "),
        "the first build must ship the toolchain exactly once\n{}",
        first.context()
    );
    let bundles: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(
        bundles.len(),
        1,
        "one bundle in the host's cache: {bundles:?}"
    );

    let second = build("ship_second");
    second.assert_counts(project.objects as u64, project.links as u64);
    assert!(
        !second.summary_text.contains("shipped"),
        "the worker keeps the toolchain: nothing is shipped again\n{}",
        second.context()
    );
    assert!(
        worker.log_text().contains("shipped toolchain installed"),
        "{}",
        worker.log_text()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

// ---- hostile offers ---------------------------------------------------------------------

fn send(s: &mut TcpStream, header: &Value, payload: &[u8]) {
    let h = header.to_string();
    let mut v = (h.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(payload);
    s.write_all(&v).expect("writing to the worker");
}

/// The next frame's header; `None` when the worker closed the connection.
fn receive(s: &mut TcpStream) -> Option<Value> {
    let mut prefix = [0u8; 8];
    s.read_exact(&mut prefix).ok()?;
    let h = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let p = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    assert!(h <= 1 << 20 && p <= 1 << 20, "implausible frame {h} {p}");
    let mut buf = vec![0u8; h + p];
    s.read_exact(&mut buf).expect("frame");
    Some(serde_json::from_slice(&buf[..h]).expect("JSON header"))
}

fn greet(addr: SocketAddr) -> TcpStream {
    let mut s =
        offload_e2e::peer::secure(addr, offload_e2e::keys::host_identity()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let hello = json!({"type": "hello", "body": {"protocol": "offload", "version": PROTOCOL_VERSION, "client": "e2e"}});
    send(&mut s, &hello, b"");
    let welcome = receive(&mut s).expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["body"]["arch"], std::env::consts::ARCH, "{welcome}");
    s
}

fn offer(bundle: &Digest, size: u64) -> Value {
    json!({"type": "toolchain_offer", "body": {
        "compiler": {"path": "/opt/e2e/bin/cc", "digest": Digest::of(b"driver").to_hex(),
                     "version": "1.0 x86_64-linux-gnu", "ident": "CC 1.0"},
        "bundle": bundle.to_hex(), "size": size}})
}

/// Asserts that `answer` is a toolchain answer of "unavailable" whose detail says `why`.
fn assert_refused(answer: Option<Value>, why: &str) {
    let a = answer.expect("the worker closed the connection instead of answering");
    assert_eq!(a["type"], "toolchain_info", "{a}");
    assert_eq!(a["body"]["kind"], "unavailable", "{a}");
    let detail = a["body"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(why), "expected {why:?} in {a}");
}

/// Offers a worker must refuse: too large (before any byte is sent), bytes that are not
/// the offered bundle, bytes that are no bundle, and more bytes than offered (which ends the
/// connection). Refusals are answers on a connection that goes on.
#[test]
fn hostile_toolchain_offers_are_refused() {
    let worker = NetnsWorker::start(1);
    let mut s = greet(worker.addr());

    send(&mut s, &offer(&Digest::of(b"huge"), 300 << 20), b"");
    assert_refused(receive(&mut s), "exceeds this worker's limit");

    let bytes = b"these bytes are not the bundle that was offered";
    send(
        &mut s,
        &offer(&Digest::of(b"another bundle"), bytes.len() as u64),
        b"",
    );
    let need = receive(&mut s).expect("need_toolchain");
    assert_eq!(need["type"], "need_toolchain", "{need}");
    let announce = json!({"type": "toolchain_bundle", "body": {"bundle": Digest::of(b"another bundle").to_hex()}});
    send(&mut s, &announce, bytes);
    assert_refused(receive(&mut s), "toolchain bundle digest is");

    let digest = Digest::of(bytes);
    send(&mut s, &offer(&digest, bytes.len() as u64), b"");
    assert_eq!(receive(&mut s).expect("need")["type"], "need_toolchain");
    let announce = json!({"type": "toolchain_bundle", "body": {"bundle": digest.to_hex()}});
    send(&mut s, &announce, bytes);
    assert_refused(receive(&mut s), "reading toolchain bundle");

    // More bytes than offered: an error frame, then the connection ends.
    send(&mut s, &offer(&digest, 10), b"");
    assert_eq!(receive(&mut s).expect("need")["type"], "need_toolchain");
    send(&mut s, &announce, bytes);
    let err = receive(&mut s).expect("an error frame");
    assert_eq!(err["type"], "error", "{err}");
    assert!(receive(&mut s).is_none(), "the connection must end");

    // The worker goes on serving.
    let _ = greet(worker.addr());
}
