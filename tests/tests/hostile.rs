//! The hostile-peer suite's own check: a peer speaking raw frames
//! (`offload_e2e::peer`) gets an ordinary compile done, identical to a local one. Each
//! attack test (`hostile_*` modules) ends with the same check.

use offload_e2e::NetnsWorker;
use offload_e2e::peer;

#[test]
fn a_raw_peer_gets_a_legitimate_compile() {
    let worker = NetnsWorker::start(1);
    peer::legit_compile(worker.addr()).unwrap_or_else(|e| panic!("{e}\n{}", worker.log_text()));
}

#[test]
fn a_hostile_toolchain_runs_its_script_in_a_job() {
    let worker = NetnsWorker::start(1);
    let (cc, bundle) = peer::hostile_toolchain(
        "smoke",
        "busybox echo from-the-job; busybox echo obj > \"$4\"",
    );
    let mut p = peer::Peer::connect(worker.addr()).expect("connect");
    let info = p.ship(&cc, &bundle).expect("ship");
    assert_eq!(
        info.kind,
        offload_shared::protocol::ToolchainKind::Shipped,
        "{info:?}\n{}",
        worker.log_text()
    );
    let dir = offload_e2e::twice::fresh_dir("hostile-smoke");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", "a.o"]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    let reply = p.job(&spec.job, &spec.blobs);
    let peer::JobReply::Done { stdout, .. } = &reply else {
        panic!("{reply:?}\n{}", worker.log_text());
    };
    assert_eq!(stdout, b"from-the-job\n");
    assert_eq!(reply.file(&format!("{d}/a.o")), Some(&b"obj\n"[..]));
    peer::legit_compile(worker.addr()).unwrap_or_else(|e| panic!("{e}\n{}", worker.log_text()));
}
