//! Attacks from inside a job (a shipped "compiler" that is a busybox script, as a paired
//! but malicious host can send): outputs that lead out of the job root, a directory of the
//! worker's toolchain marked writable, outputs too large to return, processes left behind,
//! the network, commands a host never sends. Each ends with a legitimate compile from a new
//! connection, identical to a local one. The attacks that also run against the worker
//! containers (`hostile_container`) are written once in `offload_e2e::attacks`.

use offload_e2e::NetnsWorker;
use offload_e2e::attacks::{self, Netns};
use offload_e2e::peer::{self, JobReply, Peer};

fn legit(worker: &NetnsWorker) {
    attacks::legit(&Netns(worker));
}

/// Finding 3: a job swaps a writable directory for a link to `/etc` and plants links to a
/// secret among its outputs: only its own plain file comes back.
#[test]
fn outputs_are_never_read_through_links() {
    attacks::outputs_are_never_read_through_links(&Netns(&NetnsWorker::start(1)));
}

/// Finding 3: a job that marks a directory of the worker's own toolchain writable would get
/// the toolchain's files back as outputs; it is refused.
#[test]
fn a_writable_toolchain_directory_is_refused() {
    let worker = NetnsWorker::start(1);
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let cc1 = std::process::Command::new("/usr/bin/gcc")
        .arg("-print-prog-name=cc1")
        .output()
        .expect("gcc");
    let cc1 = String::from_utf8_lossy(&cc1.stdout).trim().to_owned();
    let libexec = std::path::Path::new(&cc1)
        .parent()
        .expect("dir")
        .to_string_lossy()
        .into_owned();
    let dir = offload_e2e::twice::fresh_dir("hostile-writable-tc");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-c", "a.c", "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/a.c"), b"int x;\n")
        .dir(&libexec, true);
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let reply = p.job(&spec.job, &spec.blobs);
    let JobReply::Rejected(reason) = &reply else {
        panic!("expected a refusal: {}", reply.summary());
    };
    assert!(reason.contains("writable"), "{reason}");
    legit(&worker);
}

/// Finding 5: outputs announced at more than a job may return (sparse: they cost the job
/// nothing) are refused from their sizes, before they are read, and the worker stays small.
/// One file of 4 GiB stops at the sandbox's file-size limit; two of 600 MiB each pass it
/// and add up to more than the harvest's budget.
#[test]
fn an_oversized_output_is_refused_before_it_is_read() {
    let worker = NetnsWorker::start(1);
    let pid = worker.pid().expect("pid");
    let dir = offload_e2e::twice::fresh_dir("hostile-sparse");
    let d = dir.to_string_lossy().into_owned();
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let run = |p: &mut Peer, name: &str, script: &str| {
        let (cc, bundle) = peer::hostile_toolchain(name, script);
        p.ship(&cc, &bundle).expect("ship");
        let out = format!("{d}/a.o");
        let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &out]);
        spec.file(&format!("{d}/a.c"), b"int x;\n");
        p.job(&spec.job, &spec.blobs)
    };
    let one = run(&mut p, "sparse-one", "busybox truncate -s 4G \"$4\"");
    match &one {
        JobReply::Done { done, files, .. } => {
            assert_ne!(done.status, offload_shared::protocol::ExitStatus::Code(0));
            assert!(
                files.values().all(|b| b.len() < 1 << 30),
                "{}",
                one.summary()
            );
        }
        JobReply::Rejected(_) => {}
        other => panic!("{}", other.summary()),
    }
    let two = run(
        &mut p,
        "sparse-two",
        "busybox truncate -s 600M \"$4\"; busybox truncate -s 600M \"$4.more\"",
    );
    let JobReply::Rejected(reason) = &two else {
        panic!("expected a refusal: {}", two.summary());
    };
    assert!(reason.contains("exceed"), "{reason}");
    // The peak: an output read and dropped again would not show in the current size.
    let rss = peer::peak_rss_kib(pid);
    assert!(rss < 200 << 10, "the worker grew to {rss} KiB");
    legit(&worker);
}

/// Finding 4: commands and environments a host never sends are refused before anything
/// runs.
#[test]
fn commands_and_environments_a_host_never_sends_are_refused() {
    attacks::commands_and_environments_a_host_never_sends_are_refused(&Netns(&NetnsWorker::start(
        1,
    )));
}

/// Finding 4: a daemon the job leaves does not survive it.
#[test]
fn a_job_leaves_no_process_behind() {
    attacks::a_job_leaves_no_process_behind(&Netns(&NetnsWorker::start(1)));
}

/// Finding 4: a job reaches no network: a listener on the host side of the worker's link
/// accepts nothing from it.
#[test]
fn a_job_connects_nowhere() {
    attacks::a_job_connects_nowhere(&Netns(&NetnsWorker::start(1)));
}

/// Findings 4 and 5: a job that never ends, and a fork bomb, end at the time limit with
/// nothing left running.
#[test]
fn endless_jobs_and_fork_bombs_end_at_the_limit() {
    attacks::endless_jobs_and_fork_bombs_end_at_the_limit(&Netns(&NetnsWorker::start(1)));
}
