//! What must not break a build: a worker that dies mid-build, a peer that sends garbage to a
//! worker, no worker at all, a worker that cannot be reached.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use offload_e2e::projects;
use offload_e2e::twice::{Both, run_twice_during};
use offload_e2e::{NetnsWorker, Twice, run_twice};
use offload_shared::protocol::PROTOCOL_VERSION;

use crate::via;

fn objects_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".o"))
                .count()
        })
        .unwrap_or(0)
}

/// Builds Lua -O2 through a worker with 3 slots and, once three objects exist, does
/// `to_worker` to it: the build must still succeed with every object and `.d` file identical
/// to a plain build's, the compiles in flight falling back and the rest running locally.
/// Gives the comparison and how long the build through offload ran after `to_worker`.
fn lose_worker_mid_build(name: &str, to_worker: impl FnOnce(&NetnsWorker)) -> (Both, Duration) {
    let project = projects::lua("-O2", true);
    let worker = NetnsWorker::start(3);
    let mut lost = None;
    let both = run_twice_during(
        &Twice {
            name,
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(3, "gcc"),
            env: vec![],
            stdin: None,
            offload_args: via(&worker),
        },
        |root, run| {
            let obj = root.join("obj");
            while objects_in(&obj) < 3 {
                if run.finished() {
                    // The comparison and the assertions below report how it ended.
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            to_worker(&worker);
            lost = Some((objects_in(&obj), Instant::now()));
        },
    );
    let after = lost.map(|(_, at)| at.elapsed());
    both.assert_plain_succeeded();
    let s = &both.summary;
    let Some((lost_at, _)) = lost else {
        panic!(
            "the build through offload ended before three objects existed, so the worker was never lost\n{}",
            both.context()
        );
    };
    both.assert_partly_remote(
        &project,
        &format!("the loss of the worker after {lost_at} objects"),
    );
    assert!(
        s.fell_back >= 1 || s.local > project.links as u64,
        "after the loss, compiles must fall back or run locally\n{}",
        both.context()
    );
    drop(worker);
    (both, after.unwrap_or_default())
}

/// The worker (and every compile it runs) is SIGKILLed mid-build.
#[test]
fn worker_killed_mid_build() {
    let (_, _) = lose_worker_mid_build("worker_killed", |w| {
        w.kill();
        assert!(!w.is_running());
    });
}

/// The worker's machine leaves the network mid-build without a word (no RST, no FIN: its
/// link goes down): the host notices within seconds through TCP keepalive on its
/// connections, not at the jobs' time limit (10 minutes), and the jobs in flight fall back.
#[test]
fn worker_vanishing_mid_build_is_noticed_within_seconds() {
    let (both, after) = lose_worker_mid_build("worker_vanished", NetnsWorker::vanish);
    // The rest of the build, compiled locally on this 2-core machine, takes ~10 s; a job
    // waiting for a vanished worker would take 660 s.
    assert!(
        after < Duration::from_secs(60),
        "the build ran {after:?} after the worker vanished\n{}",
        both.context()
    );
}

// ---- malformed frames -------------------------------------------------------------------

/// A well-formed hello of this build's protocol version.
fn hello() -> String {
    format!(
        r#"{{"type":"hello","body":{{"protocol":"offload","version":{PROTOCOL_VERSION},"client":"e2e"}}}}"#
    )
}

fn frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(payload);
    v
}

/// A connection through the secure channel (as the tests' host, which the worker trusts):
/// the frames below reach the worker's protocol, not just its handshake.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = offload_e2e::peer::secure(addr, offload_e2e::keys::host_identity())
        .unwrap_or_else(|e| panic!("cannot connect to the worker at {addr}: {e}"));
    // A guard against hanging the suite, not a timing assertion: a worker that keeps a
    // broken connection open would otherwise block the read forever.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads one frame; `None` at a clean end of stream.
fn read_frame(s: &mut TcpStream) -> Option<(serde_json::Value, Vec<u8>)> {
    let mut prefix = [0u8; 8];
    match s.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a frame from the worker: {e}"),
    }
    let h = u32::from_be_bytes(prefix[..4].try_into().unwrap()) as usize;
    let p = u32::from_be_bytes(prefix[4..].try_into().unwrap()) as usize;
    assert!(
        h <= 1 << 20 && p <= 1 << 20,
        "implausible frame lengths {h}, {p} from the worker"
    );
    let mut header = vec![0u8; h];
    let mut payload = vec![0u8; p];
    s.read_exact(&mut header).expect("frame header");
    s.read_exact(&mut payload).expect("frame payload");
    let v = serde_json::from_slice(&header).unwrap_or_else(|e| {
        panic!(
            "the worker sent a header that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&header)
        )
    });
    Some((v, payload))
}

fn greet(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(&frame(hello().as_bytes(), b"")).unwrap();
    let (welcome, _) =
        read_frame(&mut s).expect("the worker closed the connection instead of answering hello");
    assert_eq!(welcome["type"], "welcome", "answer to hello: {welcome}");
    assert_eq!(
        welcome["body"]["version"], PROTOCOL_VERSION,
        "answer to hello: {welcome}"
    );
    s
}

/// After `what` was sent, the worker must close the connection, having sent nothing or only
/// error frames.
fn expect_closed(mut s: TcpStream, what: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("after {what}, the worker kept the connection open (sent {got:?})")
            }
            Err(e) => panic!("after {what}: {e}"),
        }
    }
    let mut rest = &got[..];
    while !rest.is_empty() {
        assert!(
            rest.len() >= 8,
            "after {what}, the worker sent a partial frame: {got:?}"
        );
        let h = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let p = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert!(
            rest.len() >= 8 + h + p,
            "after {what}, the worker sent a partial frame: {got:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&rest[8..8 + h]).unwrap_or_else(|e| {
            panic!("after {what}, the worker sent a non-JSON header ({e}): {got:?}")
        });
        assert_eq!(v["type"], "error", "after {what}, the worker answered {v}");
        rest = &rest[8 + h + p..];
    }
}

fn send(addr: SocketAddr, bytes: &[u8], half_close: bool) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    s
}

/// Garbage, absurd lengths, truncated frames and unknown messages each end their own
/// connection (with at most an error frame); stalled connections stay harmless; and the
/// worker keeps serving: a build through it afterwards runs every compile remotely.
#[test]
fn malformed_frames_leave_the_worker_serving() {
    let worker = NetnsWorker::start(2);
    let addr = worker.addr();

    // (a) garbage, before the secure handshake (nothing comes back: no frame is readable
    // without the channel) and inside it
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: offload\r\n\r\n"[..],
        &frame(hello().as_bytes(), b""),
        &[0xff; 4096],
    ] {
        let mut raw = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        raw.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        raw.write_all(junk).expect("write");
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        assert!(
            got.len() < 200,
            "the worker answered {} bytes of junk before the handshake",
            got.len()
        );
    }
    expect_closed(
        send(addr, b"GET / HTTP/1.1\r\nHost: offload\r\n\r\n", false),
        "an HTTP request",
    );
    let mut not_json = 16u32.to_be_bytes().to_vec();
    not_json.extend_from_slice(&0u32.to_be_bytes());
    not_json.extend_from_slice(&[0xff; 16]);
    expect_closed(send(addr, &not_json, false), "a 16-byte header of 0xff");
    expect_closed(
        send(addr, &frame(b"{}", b""), false),
        "an empty JSON object",
    );
    expect_closed(
        send(addr, &[0, 0, 0, 0, 0, 0, 0, 0], false),
        "a zero-length header",
    );
    // (b) lengths far beyond any limit: must be refused before anything is allocated or read
    let mut huge_header = u32::MAX.to_be_bytes().to_vec();
    huge_header.extend_from_slice(&0u32.to_be_bytes());
    huge_header.extend_from_slice(b"{\"type\":");
    expect_closed(
        send(addr, &huge_header, false),
        "a length prefix announcing a 4 GiB header",
    );
    let mut huge_payload = (hello().len() as u32).to_be_bytes().to_vec();
    huge_payload.extend_from_slice(&u32::MAX.to_be_bytes());
    huge_payload.extend_from_slice(hello().as_bytes());
    expect_closed(
        send(addr, &huge_payload, false),
        "a hello announcing a 4 GiB payload",
    );
    // (c) a valid hello, then a truncated frame and end of stream
    let mut s = greet(addr);
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&0u32.to_be_bytes());
    truncated.extend_from_slice(br#"{"type":"job","bo"#);
    s.write_all(&truncated).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    expect_closed(s, "hello then a truncated frame");
    let mut s = connect(addr);
    s.write_all(&frame(hello().as_bytes(), b"")[..5]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    expect_closed(s, "a truncated length prefix");
    // (d) valid JSON of an unknown message type, before and after hello
    let unknown = frame(br#"{"type":"reticulate_splines","body":{"n":3}}"#, b"");
    expect_closed(
        send(addr, &unknown, false),
        "an unknown message type instead of hello",
    );
    let mut s = greet(addr);
    s.write_all(&unknown).unwrap();
    expect_closed(s, "hello then an unknown message type");
    // (e) well-formed messages out of place
    let welcome = frame(
        br#"{"type":"welcome","body":{"version":1,"worker":"x","slots":1}}"#,
        b"",
    );
    expect_closed(send(addr, &welcome, false), "a welcome sent to the worker");
    let mut s = greet(addr);
    s.write_all(&frame(hello().as_bytes(), b"")).unwrap();
    expect_closed(s, "a second hello");
    let wrong_version = frame(
        br#"{"type":"hello","body":{"protocol":"offload","version":999,"client":"e2e"}}"#,
        b"",
    );
    expect_closed(
        send(addr, &wrong_version, false),
        "a hello of protocol version 999",
    );
    let extra_field = frame(
        format!(
            r#"{{"type":"hello","body":{{"protocol":"offload","version":{PROTOCOL_VERSION},"client":"e2e","admin":true}}}}"#
        )
        .as_bytes(),
        b"",
    );
    expect_closed(
        send(addr, &extra_field, false),
        "a hello with an unknown field",
    );

    // Stalled peers, held open during the build: a partial prefix, and a greeted connection
    // that never sends a job.
    let stalled_prefix = send(addr, &[0, 0], false);
    let idle = greet(addr);

    assert!(
        worker.is_running(),
        "the worker died:\n{}",
        worker.log_text()
    );
    let project = projects::tiny(6);
    let both = run_twice(&Twice {
        name: "after_malformed_frames",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(2, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: crate::via_all_remote(&worker),
    });
    both.assert_plain_succeeded();
    both.assert_counts(project.objects as u64, project.links as u64);
    drop(greet(addr));
    drop((stalled_prefix, idle));
    assert!(
        worker.is_running(),
        "the worker died:\n{}",
        worker.log_text()
    );
}

/// With no `--worker`, `offload build` starts a worker of its own and still compiles
/// remotely (make -j1, so a worker slot is always free).
#[test]
fn no_worker_given_starts_a_local_worker() {
    let project = projects::lua("-O0", true);
    let both = run_twice(&Twice {
        name: "no_worker_given",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(1, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: vec!["-j".into(), "1".into(), "--remote-only".into()],
    });
    both.assert_plain_succeeded();
    both.assert_counts(project.objects as u64, project.links as u64);
}

/// A worker address where nothing listens: the build succeeds, every compile ran here.
#[test]
fn unreachable_worker_builds_locally() {
    let project = projects::tiny(8);
    let both = run_twice(&Twice {
        name: "unreachable_worker",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(3, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: vec![
            "--worker".into(),
            "127.0.0.1:1".into(),
            "-j".into(),
            "2".into(),
        ],
    });
    both.assert_plain_succeeded();
    let s = both.summary;
    assert!(
        s.remote == 0 && s.calls == (project.objects + project.links) as u64,
        "expected every one of {} compiler calls to run here\n{}",
        project.objects + project.links,
        both.context()
    );
}

/// The premise of every other test: the worker sees neither the host's `/tmp` (where all
/// test trees live) nor the host's network beyond its veth link.
#[test]
fn netns_worker_is_isolated() {
    let marker = offload_e2e::twice::fresh_dir("isolation-marker");
    std::fs::write(marker.join("host-only"), "x").unwrap();
    let worker = NetnsWorker::start(1);
    let pid = worker.pid().expect("worker pid").to_string();
    let probe = offload_e2e::cmd::Cmd::new(
        [
            "nsenter",
            "--target",
            &pid,
            "--mount",
            "--net",
            "--",
            "sh",
            "-c",
            "ls -A /tmp; test ! -e /tmp/offload-e2e/isolation-marker/host-only && \
             ip -4 -o addr show | grep -c 'inet '",
        ],
        Path::new("/"),
    )
    .run();
    probe.assert_success("looking at the worker's /tmp from its namespaces");
    let out = String::from_utf8_lossy(&probe.stdout);
    let mut lines: Vec<&str> = out.lines().collect();
    let addresses = lines.pop().unwrap_or_default();
    assert_eq!(
        lines,
        ["offload-worker", "offload-worker-state"],
        "the worker's /tmp should hold only its work and state directories:\n{out}"
    );
    // lo and the veth end, nothing of the host's.
    assert_eq!(addresses, "2", "the worker's network namespace:\n{out}");
    assert!(worker.is_running());
    std::fs::remove_dir_all(&marker).unwrap();
}

/// A compile that fails only on the worker (its charset modules are hidden there, so cc1
/// cannot convert from ISO-8859-1) is compiled again here: the build sees the local
/// result, identical to a plain build's, and the summary shows the re-run.
#[test]
fn a_compile_failing_only_on_the_worker_gives_the_local_result() {
    let worker = NetnsWorker::start_with_setup(
        1,
        "for d in /usr/lib/x86_64-linux-gnu/gconv /usr/lib/aarch64-linux-gnu/gconv; do \
         [ -d $d ] && mount -t tmpfs tmpfs $d; done; true",
    );
    let both = run_twice(&Twice {
        name: "fails_only_on_worker",
        materialize: &|root| {
            std::fs::create_dir_all(root).unwrap();
            std::fs::write(root.join("l.c"), "int latin = 1;\n").unwrap();
            offload_e2e::paths::fix_mtimes(root);
        },
        cwd: ".",
        argv: ["gcc", "-finput-charset=ISO-8859-1", "-c", "l.c"]
            .map(String::from)
            .to_vec(),
        env: vec![],
        stdin: None,
        offload_args: via(&worker),
    });
    both.assert_plain_succeeded();
    assert_eq!(
        (both.summary.calls, both.summary.fell_back),
        (1, 1),
        "expected the compile to fail remotely and run again here\n{}",
        both.context()
    );
}
