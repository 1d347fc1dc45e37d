//! Attacks on the worker's connections (finding 5 of issue 13) and the lifecycle of its
//! jobs: silent and slow peers, floods of idle connections and of jobs, a peer that leaves
//! or cancels mid-job, and a worker told to stop. Each asserts the attack was contained
//! (connections cut in bounded time, refusals that say why, no process left, the worker's
//! memory and descriptors bounded) and that a legitimate job is served after, or during.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use offload_e2e::NetnsWorker;
use offload_e2e::peer::{self, JobReply, Peer};
use offload_e2e::procs::processes_with;
use offload_shared::protocol::{Cancel, ExitStatus, Message};

fn legit(worker: &NetnsWorker) {
    peer::legit_compile(worker.addr()).unwrap_or_else(|e| panic!("{e}\n{}", worker.log_text()));
}

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// How long until the worker closes `s` (reads until end of stream or a reset), at most
/// `limit`; `None` if it is still open then.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(t0.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if t0.elapsed() >= limit {
                    return None;
                }
            }
            Err(_) => return Some(t0.elapsed()),
        }
    }
}

/// A frame's 8-byte prefix announcing `header` and `payload` bytes.
fn prefix(header: u32, payload: u32) -> Vec<u8> {
    let mut v = header.to_be_bytes().to_vec();
    v.extend_from_slice(&payload.to_be_bytes());
    v
}

/// Silent, slow and stalled peers are cut: one that never starts the secure handshake, one
/// that completes it and never says hello, one that sends a frame a byte at a time (inside
/// the channel), one whose job frame stalls half way (announcing 16 MiB of header,
/// which it never gets to allocate), one that says hello and then nothing. A legitimate
/// host (from another address) is served while they hold their connections.
#[test]
fn silent_and_slow_peers_are_cut_in_bounded_time() {
    let worker = NetnsWorker::start_with_args(
        1,
        &[
            "--handshake-secs",
            "2",
            "--stall-secs",
            "2",
            "--idle-secs",
            "3",
        ],
    );
    let attacker = worker.second_host_ip();
    let connect = || peer::connect_from(worker.addr(), attacker).expect("connect");
    // Raw: it never starts the secure handshake; through the channel: it never says hello.
    let mut silent = connect();
    let mut silent_inside =
        peer::secure_pipe(connect(), offload_e2e::keys::host_identity()).expect("handshake");
    let mut trickle =
        peer::secure_pipe(connect(), offload_e2e::keys::host_identity()).expect("handshake");
    let mut stalled = Peer::connect_from(worker.addr(), attacker).expect("hello");
    let mut idle = Peer::connect_from(worker.addr(), attacker).expect("hello");
    // One byte of a prefix every 700 ms: it never completes a hello in 2 s.
    let trickler = {
        let mut t = trickle.try_clone().expect("clone");
        std::thread::spawn(move || {
            for b in prefix(100, 0) {
                if t.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    let mut half = prefix(16 << 20, 0);
    half.extend_from_slice(br#"{"type":"job","body":{"job_id":1,"#);
    stalled.stream.write_all(&half).expect("write");
    legit(&worker);
    let bound = Duration::from_secs(8);
    let cut = [
        ("silent", closed_within(&mut silent, bound)),
        (
            "silent inside the channel",
            closed_within(&mut silent_inside, bound),
        ),
        ("trickle", closed_within(&mut trickle, bound)),
        ("stalled", closed_within(&mut stalled.stream, bound)),
        ("idle", closed_within(&mut idle.stream, bound)),
    ];
    let _ = trickler.join();
    for (what, after) in cut {
        assert!(
            after.is_some(),
            "the {what} connection was still open after {bound:?}:\n{}",
            worker.log_text()
        );
    }
    let log = worker.log_text();
    assert!(log.contains("no secure handshake within"), "{log}");
    assert!(log.contains("no hello within"), "{log}");
    assert!(log.contains("stalled"), "{log}");
    legit(&worker);
}

/// 200 idle connections from one peer: past its share they are refused at once with a
/// reason; the worker's descriptors stay bounded; a host at another address is served
/// while they are held.
#[test]
fn a_flood_of_idle_connections_is_capped_per_peer() {
    let worker = NetnsWorker::start_with_args(1, &["--idle-secs", "60"]);
    let pid = worker.pid().expect("pid");
    let before = fds(pid);
    let attacker = worker.second_host_ip();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match Peer::connect_from(worker.addr(), attacker) {
            Ok(p) => held.push(p),
            Err(e) => {
                assert!(e.contains("too many connections"), "{e}");
                refused += 1;
            }
        }
    }
    // One slot: a share of 2 × 1 + 8 connections.
    assert_eq!(held.len(), 10, "held {} refused {refused}", held.len());
    let during = fds(pid);
    assert!(
        during <= before + 10 + 8,
        "descriptors {before} → {during} while 10 connections are held"
    );
    legit(&worker);
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let again = Peer::connect_from(worker.addr(), attacker)
        .expect("the peer's share is given back when its connections close");
    drop(again.stream.shutdown(std::net::Shutdown::Both));
    // The worker closes each as it sees the end (within seconds on a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = fds(pid);
    while after > before + 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = fds(pid);
    }
    assert!(after <= before + 2, "descriptors {before} → {after}");
}

/// 1,000 jobs at once from one peer, each on its own connection: each gets an answer (a
/// compiled object or a refusal that says why), none hangs, the worker stays within a
/// memory bound and its descriptors return to where they were.
#[test]
fn a_thousand_concurrent_jobs_from_one_peer() {
    let worker = NetnsWorker::start(2);
    let pid = worker.pid().expect("pid");
    let before = fds(pid);
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let dir = offload_e2e::twice::fresh_dir("hostile-thousand");
    let d = dir.to_string_lossy().into_owned();
    let addr = worker.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(peer::rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let threads: Vec<_> = (0..1000)
        .map(|i| {
            let (cc, d) = (cc.clone(), d.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let src = format!("{d}/j{i}.c");
                    let out = format!("{d}/j{i}.o");
                    let mut spec =
                        peer::JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-c", &src, "-o", &out]);
                    spec.system_includes("/usr/bin/gcc").file(
                        &src,
                        format!("int f{i}(void) {{ return {i}; }}\n").as_bytes(),
                    );
                    spec.job.job_id = i;
                    let mut p = match Peer::connect(addr) {
                        Ok(p) => p,
                        Err(e) => return Err(e),
                    };
                    Ok((p.job(&spec.job, &spec.blobs), out))
                })
                .expect("thread")
        })
        .collect();
    let mut done = 0;
    let mut refused = 0;
    for t in threads {
        match t.join().expect("join") {
            Ok((JobReply::Done { done: d, files, .. }, out)) => {
                assert_eq!(d.status, ExitStatus::Code(0));
                assert!(files.get(&out).is_some_and(|b| !b.is_empty()), "{out}");
                done += 1;
            }
            Ok((other, _)) => panic!("a job got {other:?}"),
            Err(e) => {
                assert!(e.contains("too many connections"), "{e}");
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    eprintln!("1000 jobs: {done} compiled, {refused} refused; worker peak RSS {peak} KiB");
    assert_eq!(done + refused, 1000);
    assert!(done >= 12, "only {done} compiled");
    assert!(peak < 300 << 10, "the worker grew to {peak} KiB");
    std::thread::sleep(Duration::from_millis(500));
    let after = fds(pid);
    assert!(after <= before + 2, "descriptors {before} → {after}");
    legit(&worker);
}

/// A job whose compiler sleeps `seconds`: started on `p`, running once this returns. The
/// command line that finds its process.
fn start_sleeper(p: &mut Peer, name: &str, seconds: u32, job_id: u64) -> String {
    // A fraction unique to the job names its process.
    let needle = format!("sleep {seconds}.{job_id:03}{seconds:03}");
    let (cc, bundle) = peer::hostile_toolchain(
        name,
        &format!("busybox {needle}; busybox echo obj > \"$4\""),
    );
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir(&format!("hostile-{name}"));
    let d = dir.to_string_lossy().into_owned();
    let out = format!("{d}/a.o");
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &out]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    spec.job.job_id = job_id;
    spec.job.timeout_secs = 600;
    p.start_job(&spec.job, &spec.blobs)
        .unwrap_or_else(|r| panic!("{r:?}"));
    let t0 = Instant::now();
    while processes_with(&needle).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the job did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    needle
}

/// Waits until no process has `needle` in its command line.
fn gone_within(needle: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if processes_with(needle).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A peer that leaves mid-job stops it (its processes are gone at once), and a `Cancel`
/// stops a job and leaves the connection serving the next one.
#[test]
fn a_job_ends_when_its_peer_leaves_or_cancels() {
    let worker = NetnsWorker::start(1);
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let leaver = start_sleeper(&mut p, "leaver", 600, 1);
    drop(p);
    assert!(
        gone_within(&leaver, Duration::from_secs(3)),
        "the job outlived its connection: {:?}",
        processes_with(&leaver)
    );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let cancelled = start_sleeper(&mut p, "canceller", 600, 7);
    let t0 = Instant::now();
    p.send(&Message::Cancel(Cancel { job_id: 7 }), &[])
        .expect("cancel");
    let reply = p.finish_job();
    assert!(
        matches!(&reply, JobReply::Rejected(r) if r.contains("cancelled")),
        "{reply:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(gone_within(&cancelled, Duration::from_secs(3)));
    // The same connection serves the next job.
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let dir = offload_e2e::twice::fresh_dir("hostile-after-cancel");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-c", "b.c"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/b.c"), b"int b;\n")
        .dir(&d, true);
    let next = p.job(&spec.job, &spec.blobs);
    assert!(matches!(next, JobReply::Done { .. }), "{next:?}");
    legit(&worker);
}

/// SIGTERM drains: the listener closes at once, a running job that finishes within the
/// grace time returns its result, one that does not is stopped (answered, its processes
/// gone) and the worker exits cleanly.
#[test]
fn sigterm_drains_running_jobs_then_exits() {
    let worker = NetnsWorker::start_with_args(2, &["--drain-secs", "3"]);
    let mut quick = Peer::connect(worker.addr()).expect("connect");
    let mut slow = Peer::connect(worker.addr()).expect("connect");
    start_sleeper(&mut quick, "drain-quick", 2, 1);
    let slow_job = start_sleeper(&mut slow, "drain-slow", 600, 2);
    let t0 = Instant::now();
    let waiter = std::thread::spawn({
        let addr = worker.addr();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
        }
    });
    let status = std::thread::scope(|s| {
        let term = s.spawn(|| worker.terminate(Duration::from_secs(10)));
        let quick_reply = quick.finish_job();
        assert!(
            matches!(&quick_reply, JobReply::Done { files, .. } if !files.is_empty()),
            "{quick_reply:?}"
        );
        let slow_reply = slow.finish_job();
        assert!(
            matches!(&slow_reply, JobReply::Rejected(r) if r.contains("stopping")),
            "{slow_reply:?}"
        );
        term.join().expect("terminate")
    });
    let elapsed = t0.elapsed();
    assert!(
        waiter.join().expect("join"),
        "new connections were accepted while draining"
    );
    let status = status.unwrap_or_else(|| panic!("still running:\n{}", worker.log_text()));
    assert!(status.success(), "{status}\n{}", worker.log_text());
    assert!(elapsed < Duration::from_secs(7), "{elapsed:?}");
    assert!(gone_within(&slow_job, Duration::from_secs(2)));
}
