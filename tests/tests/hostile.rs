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
