//! Lent, not given: a worker whose owner takes its cores back mid-build refuses new jobs at
//! once and stops its running ones within the give-back grace; the host runs them again
//! (elsewhere or here) and the build is identical to a plain one, no compile lost.

use std::time::Duration;

use offload_e2e::logs::{second_of_day, seconds_after};
use offload_e2e::twice::{Both, run_twice_during};
use offload_e2e::{NetnsWorker, Twice, projects};

/// Builds Lua (`-O2 -g`, `make -j4`) plainly and through `worker`; once the worker has
/// compiled two of the build's units (after the toolchain probe's two), with more
/// running, `act` runs and its value is kept. `None`: the build ended before that.
fn lua_through_acting<T>(
    worker: &NetnsWorker,
    name: &str,
    act: impl FnOnce() -> T,
) -> (Both, Option<T>, projects::Project) {
    let project = projects::lua("-O2", true);
    let mut acted = None;
    let both = run_twice_during(
        &Twice {
            name,
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(4, "gcc"),
            env: vec![],
            stdin: None,
            offload_args: crate::via(worker),
        },
        |_, run| {
            while worker.log_text().matches("job done").count() < 4 {
                if run.finished() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            acted = Some(act());
        },
    );
    (both, acted, project)
}

/// The owner pauses lending (the control API, as the menu-bar app does) while a Lua build
/// runs there: running jobs are stopped and handed back within 2 s of the pause, nothing
/// more runs there, the host compiles the rest itself, and every object and `.d` file is
/// the plain build's.
#[test]
fn a_worker_taken_back_mid_build_hands_its_jobs_back_within_2_s() {
    // A short grace, so that jobs running at the pause are stopped rather than finished.
    let worker = NetnsWorker::start_with_args(3, &["--give-back-ms", "100"]);
    let (both, paused, project) = lua_through_acting(&worker, "worker_taken_back", || {
        let out = worker.control(&["pause"]);
        out.assert_success("pausing the worker");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    both.assert_plain_succeeded();
    let said = paused.unwrap_or_else(|| {
        panic!(
            "the build ended before the worker compiled two units\n{}",
            both.context()
        )
    });
    assert!(said.contains("not lending (paused-by-user)"), "{said}");
    both.assert_partly_remote(&project, "the pause");
    // From the worker's log: the pause, then every job it handed back, within 2 s.
    let log = worker.log_text();
    let at = log
        .lines()
        .find(|l| l.contains("lending changed") && l.contains("donating=false"))
        .and_then(second_of_day)
        .unwrap_or_else(|| panic!("the worker never stopped lending:\n{log}"));
    let handed: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("job given back"))
        .filter_map(second_of_day)
        .collect();
    for t in &handed {
        let after = seconds_after(*t, at);
        assert!(
            (0.0..2.0).contains(&after),
            "a job was handed back {after:.2} s after the pause:\n{log}"
        );
    }
    // Nothing ran there after the pause: each job it got since was handed back.
    assert!(
        !log.lines().any(|l| l.contains("job done")
            && second_of_day(l).is_some_and(|t| seconds_after(t, at) > 2.0)),
        "the paused worker kept compiling:\n{log}"
    );
    assert!(
        both.summary_text.contains("gave its cores back") || handed.is_empty(),
        "the host did not say why it compiled the rest itself\n{}",
        both.context()
    );
}

/// A worker that stalls mid-build with its connections open (every process of it
/// stopped: its kernel still acknowledges, so TCP sees nothing wrong): the jobs it holds
/// run past this host's measured time for them, are run here too once a local slot is
/// spare, and the local runs win. The build ends in seconds, identical to a plain one.
#[test]
fn jobs_a_stalled_worker_holds_are_rerun_here_and_win() {
    let worker = NetnsWorker::start(2);
    let (both, stalled, project) = lua_through_acting(&worker, "worker_stalls", || {
        worker.signal_all(libc::SIGSTOP);
        std::time::Instant::now()
    });
    let after = stalled.map(|t| t.elapsed());
    worker.signal_all(libc::SIGCONT);
    both.assert_plain_succeeded();
    let after = after.unwrap_or_else(|| {
        panic!(
            "the build ended before the worker compiled two units\n{}",
            both.context()
        )
    });
    both.assert_partly_remote(&project, "the stall");
    let text = &both.summary_text;
    let second: u64 = text
        .split("slow remote jobs also run here: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(second >= 1, "no job was run here again\n{}", both.context());
    assert!(
        text.contains("re-run here: the worker was slow"),
        "no second run won\n{}",
        both.context()
    );
    // The rest of the build compiles here in about ten seconds on this 2-core machine; a
    // build waiting for the stalled worker would wait for the job's time limit (10 min).
    assert!(
        after < Duration::from_secs(90),
        "the build ran {after:?} after the worker stalled\n{}",
        both.context()
    );
}
