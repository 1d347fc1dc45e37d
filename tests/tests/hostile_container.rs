//! The hostile-peer suite against the worker containers (`docker/build.sh`): amd64 under
//! Docker's default profile, amd64 under the least-privilege profile of
//! `../shared/MEASURED.md` (with and without an unmasked `/proc`), and arm64 under
//! qemu-user. Each variant first asserts the sandbox layers its worker reports (so a
//! regression in what a platform allows is caught), then runs the attacks of
//! `offload_e2e::attacks` against one container, each ending with a legitimate compile
//! identical to a local one. Where a layer is missing the attack says what it expects
//! instead (`attacks::job_reaches_network`).

use offload_e2e::attacks::{self, Container, Target};
use offload_e2e::container::{ContainerWorker, Security, image};

/// One attack of `offload_e2e::attacks`.
type Attack = fn(&dyn Target);

/// One way of running the worker container.
struct Variant {
    /// Its name in messages and test directories.
    tag: &'static str,
    /// The image's architecture.
    arch: &'static str,
    /// The `docker run` security options.
    security: Security,
    /// The worker's expected `sandbox: …; missing: …` line.
    line: &'static str,
}

impl Variant {
    /// The layers named before `; missing:`.
    fn layers(&self) -> Vec<&'static str> {
        self.line
            .strip_prefix("sandbox: ")
            .and_then(|l| l.split("; missing:").next())
            .expect("a sandbox line")
            .split(", ")
            .filter(|l| *l != "none")
            .collect()
    }

    /// Starts the container and checks its layer line.
    fn start(&self) -> ContainerWorker {
        let worker = ContainerWorker::start_with(&image(self.arch), 1, self.security);
        let line = worker.sandbox_line();
        assert_eq!(
            line.as_deref(),
            Some(self.line),
            "{}: the worker's sandbox layers\n{}",
            self.tag,
            worker.logs()
        );
        worker
    }
}

/// Every attack of the suite, in order, against one container of `variant`.
fn suite(variant: &Variant) {
    let worker = variant.start();
    let layers = variant.layers();
    let t = Container {
        worker: &worker,
        tag: variant.tag,
        layers: &layers,
    };
    let attacks: [(&str, Attack); 10] = [
        ("slot user", attacks::jobs_run_as_the_slot_user),
        ("a tree's /proc", attacks::a_tree_s_proc_shows_only_the_job),
        (
            "outputs through links",
            attacks::outputs_are_never_read_through_links,
        ),
        (
            "commands and environments",
            attacks::commands_and_environments_a_host_never_sends_are_refused,
        ),
        ("daemon", attacks::a_job_leaves_no_process_behind),
        ("network", attacks::a_job_connects_nowhere),
        (
            "endless job and fork bomb",
            attacks::endless_jobs_and_fork_bombs_end_at_the_limit,
        ),
        (
            "tree paths out of the root",
            attacks::tree_paths_that_leave_the_root_are_refused,
        ),
        (
            "entries below links out of the root",
            attacks::entries_below_a_link_out_of_the_root_are_refused,
        ),
        (
            "a version that is a path",
            attacks::a_refused_bundle_leaves_nothing_and_a_version_is_never_a_path,
        ),
    ];
    for (name, attack) in attacks {
        eprintln!("{}: {name}", variant.tag);
        attack(&t);
    }
}

#[test]
fn amd64_default_profile() {
    suite(&Variant {
        tag: "amd64-default",
        arch: "amd64",
        security: Security::DockerDefault,
        line: "sandbox: seccomp; missing: mount, pid, net, ipc, uts, user, proc",
    });
}

/// The profile lets the worker make every namespace in a user namespace of the job's own,
/// but not set the job's hostname (`sethostname` needs `CAP_SYS_ADMIN` in Docker's
/// profile) nor mount a fresh `/proc` while Docker masks parts of the container's.
#[test]
fn amd64_least_privilege_profile() {
    suite(&Variant {
        tag: "amd64-least",
        arch: "amd64",
        security: Security::LeastPrivilege,
        line: "sandbox: mount, pid, net, ipc, user, seccomp; missing: uts, proc",
    });
}

/// `systempaths=unconfined` gives the fresh `/proc` back.
#[test]
fn amd64_least_privilege_profile_unmasked() {
    suite(&Variant {
        tag: "amd64-least-unmasked",
        arch: "amd64",
        security: Security::LeastPrivilegeUnmasked,
        line: "sandbox: mount, pid, net, ipc, user, seccomp, proc; missing: uts",
    });
}

/// qemu-user refuses every namespace and seccomp, whatever the profile: only chroot, the
/// slot's uid (and its kill after each job), rlimits and `no_new_privs` remain, so a job
/// reaches the network (a native arm64 kernel is not affected). The shipped "compilers"
/// are x86_64 busybox scripts: the worker takes a bundle of another architecture (hosts
/// alone refuse to ship one), and this x86_64 kernel runs it natively, outside qemu, with
/// the layers the worker set up.
#[test]
fn arm64_under_qemu() {
    suite(&Variant {
        tag: "arm64-qemu",
        arch: "arm64",
        security: Security::DockerDefault,
        line: "sandbox: none; missing: mount, pid, net, ipc, uts, user, seccomp, proc",
    });
}
