//! Lent, not given: a worker whose owner takes its cores back mid-build refuses new jobs at
//! once and stops its running ones within the give-back grace; the host runs them again
//! (elsewhere or here) and the build is identical to a plain one, no compile lost.

use std::time::Duration;

use offload_e2e::logs::{second_of_day, seconds_after};
use offload_e2e::twice::run_twice_during;
use offload_e2e::{NetnsWorker, Twice, projects};

/// The owner pauses lending (the control API, as the menu-bar app does) while a Lua build
/// runs there: running jobs are stopped and handed back within 2 s of the pause, nothing
/// more runs there, the host compiles the rest itself, and every object and `.d` file is
/// the plain build's.
#[test]
fn a_worker_taken_back_mid_build_hands_its_jobs_back_within_2_s() {
    // A short grace, so that jobs running at the pause are stopped rather than finished.
    let worker = NetnsWorker::start_with_args(3, &["--give-back-ms", "100"]);
    let project = projects::lua("-O2", true);
    let mut paused = None;
    let both = run_twice_during(
        &Twice {
            name: "worker_taken_back",
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(4, "gcc"),
            env: vec![],
            stdin: None,
            offload_args: crate::via(&worker),
        },
        |_, run| {
            // Once the worker has compiled two of the build's units (after the toolchain
            // probe's two), with more running.
            while worker.log_text().matches("job done").count() < 4 {
                if run.finished() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let out = worker.control(&["pause"]);
            out.assert_success("pausing the worker");
            paused = Some(String::from_utf8_lossy(&out.stdout).into_owned());
        },
    );
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
