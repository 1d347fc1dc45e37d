//! `offload build --verify RATE`: a share of the remote results is compared with a local
//! compile. Against an honest worker every comparison agrees; against a worker that lies
//! about the build's objects (a proxy that changes one byte of each result; the toolchain
//! probe, compiled elsewhere, it leaves alone) the lie is caught, the local result is used, the worker gets no more jobs for that compiler, and
//! the end of the build says so; either way the build equals a plain one.

use offload_e2e::liar::LyingWorker;
use offload_e2e::{NetnsWorker, Twice, projects, run_twice};

fn lua_through(name: &str, worker_arg: String, rate: &str) -> offload_e2e::twice::Both {
    let project = projects::lua("-O2", true);
    let both = run_twice(&Twice {
        name,
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(3, "gcc"),
        env: vec![],
        stdin: None,
        offload_args: vec![
            "--worker".into(),
            worker_arg,
            "-j".into(),
            "1".into(),
            "--verify".into(),
            rate.into(),
        ],
    });
    both.assert_plain_succeeded();
    both
}

/// The count in `verified N remote result(s)`.
fn verified(summary: &str) -> Option<u64> {
    summary
        .split("verified ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn an_honest_worker_passes_every_comparison() {
    let worker = NetnsWorker::start(2);
    let both = lua_through("verify_honest", worker.worker_arg(), "25%");
    let text = &both.summary_text;
    assert!(text.contains("all identical"), "{}", both.context());
    let n = verified(text).unwrap_or_else(|| panic!("no verification line\n{}", both.context()));
    let remote = both.summary.remote;
    // A quarter of the remote results, spread evenly (the count is rounded down).
    assert_eq!(
        n,
        remote / 4,
        "{n} verified of {remote} remote\n{}",
        both.context()
    );
    assert!(
        n >= 3,
        "too few remote results to verify\n{}",
        both.context()
    );
}

#[test]
fn a_lying_worker_is_caught_and_taken_out() {
    let worker = NetnsWorker::start(2);
    // Every compile of the build names `obj/…`; the probe's does not.
    let liar = LyingWorker::start(worker.addr(), "obj/");
    let both = lua_through("verify_liar", liar.worker_arg(), "100%");
    let text = &both.summary_text;
    let lied = liar.lied_about().len();
    assert!(lied >= 1, "the liar never lied\n{}", both.context());
    // Each lie is caught (those in flight when the first was found too), and only those.
    assert!(
        text.contains(&format!("{lied} differed (the local results were used)")),
        "{lied} lies, not all caught\n{}",
        both.context()
    );
    assert!(
        text.contains("it got no more /usr/bin/gcc jobs"),
        "the report does not say the worker was taken out\n{}",
        both.context()
    );
    assert!(
        text.contains("failed verification for this compiler"),
        "later compiles did not avoid the worker\n{}",
        both.context()
    );
    assert!(
        both.summary.remote <= lied as u64 + 2,
        "the worker kept getting jobs after its lie was caught\n{}",
        both.context()
    );
}
