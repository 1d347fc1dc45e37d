//! Attacks from inside a job (a shipped "compiler" that is a busybox script, as a paired
//! but malicious host can send): outputs that lead out of the job root, a directory of the
//! worker's toolchain marked writable, outputs too large to return. Each ends with a
//! legitimate compile from a new connection, identical to a local one.

use std::time::{Duration, Instant};

use offload_e2e::NetnsWorker;
use offload_e2e::peer::{self, JobReply, Peer};
use offload_e2e::procs::processes_with;

fn legit(worker: &NetnsWorker) {
    peer::legit_compile(worker.addr()).unwrap_or_else(|e| panic!("{e}\n{}", worker.log_text()));
}

/// A secret in the worker's `/etc` (the worker shares the host's root file system, outside
/// its private `/tmp`): its bytes must appear in no reply.
fn plant_secret(name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let path = std::path::PathBuf::from(format!(
        "/etc/offload-e2e-secret-{name}-{}",
        std::process::id()
    ));
    let secret = format!("SECRET-{name}-{:x}", std::process::id() as u64 * 2654435761).into_bytes();
    std::fs::write(&path, &secret).expect("write secret");
    (path, secret)
}

/// Finding 3: the job swaps a writable directory for a link to `/etc` and plants links to
/// a secret among its outputs; the worker harvests through the handles it opened before
/// the job ran, so only the job's own plain file comes back.
#[test]
fn outputs_are_never_read_through_links() {
    let worker = NetnsWorker::start(1);
    let (secret_path, secret) = plant_secret("harvest");
    let s = secret_path.display();
    let (cc, bundle) = peer::hostile_toolchain(
        "harvest",
        &format!(
            "d=$(busybox dirname \"$4\"); busybox rm -rf $d/sub; busybox ln -s /etc $d/sub; \
             busybox ln -s {s} $d/secret.o; busybox ln -s /etc $d/etc.o; \
             busybox echo obj > \"$4\""
        ),
    );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir("hostile-harvest");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n")
        .dir(&format!("{d}/sub"), true);
    let reply = p.job(&spec.job, &spec.blobs);
    let _ = std::fs::remove_file(&secret_path);
    let JobReply::Done { files, .. } = &reply else {
        panic!("{reply:?}\n{}", worker.log_text());
    };
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names, [&format!("{d}/a.o")], "{reply:?}");
    let all = reply.all_bytes();
    assert!(
        !all.windows(secret.len()).any(|w| w == secret),
        "the secret came back"
    );
    legit(&worker);
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

/// Finding 4: commands a host never sends remote (a wrapper, a plugin, a specs file, a
/// link) and environments it never forwards (`LD_PRELOAD`, `GCC_EXEC_PREFIX`) are refused
/// before anything runs: the wrapper's marker never appears.
#[test]
fn commands_and_environments_a_host_never_sends_are_refused() {
    let worker = NetnsWorker::start(1);
    let mark = format!("/run/offload-e2e-wrapper-{}", std::process::id());
    let _ = std::fs::remove_file(&mark);
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let dir = offload_e2e::twice::fresh_dir("hostile-commands");
    let d = dir.to_string_lossy().into_owned();
    let wrapper = format!("/bin/sh,-c,touch {mark}");
    type Attack<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let attacks: Vec<Attack> = vec![
        (
            vec!["/usr/bin/gcc", "-wrapper", &wrapper, "-c", "a.c"],
            vec![],
        ),
        (
            vec!["/usr/bin/gcc", "-fplugin=/usr/lib/x.so", "-c", "a.c"],
            vec![],
        ),
        (
            vec!["/usr/bin/gcc", "-specs=/etc/x.specs", "-c", "a.c"],
            vec![],
        ),
        (vec!["/usr/bin/gcc", "a.c", "-o", "a.out"], vec![]),
        (
            vec!["/usr/bin/gcc", "-c", "a.c"],
            vec![("LD_PRELOAD", "/x.so")],
        ),
        (
            vec!["/usr/bin/gcc", "-c", "a.c"],
            vec![("GCC_EXEC_PREFIX", "/tmp/")],
        ),
    ];
    let mut p = Peer::connect(worker.addr()).expect("connect");
    for (argv, env) in &attacks {
        let mut spec = peer::JobSpec::new(&cc, &d, argv);
        spec.system_includes("/usr/bin/gcc")
            .file(&format!("{d}/a.c"), b"int x;\n");
        spec.job
            .env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let reply = p.job(&spec.job, &spec.blobs);
        let JobReply::Rejected(reason) = &reply else {
            panic!("{argv:?} {env:?} was not refused: {}", reply.summary());
        };
        assert!(
            reason.contains("not a remote compile") || reason.contains("not allowed"),
            "{argv:?}: {reason}"
        );
    }
    assert!(!std::path::Path::new(&mark).exists(), "the wrapper ran");
    legit(&worker);
}

/// Runs `script` as a shipped toolchain's compiler in one job with a time limit of
/// `timeout_secs`; the reply and how long it took.
fn run_script(
    worker: &NetnsWorker,
    name: &str,
    script: &str,
    timeout_secs: u32,
) -> (JobReply, Duration) {
    let (cc, bundle) = peer::hostile_toolchain(name, script);
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir(&format!("hostile-{name}"));
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    spec.job.timeout_secs = timeout_secs;
    let t0 = Instant::now();
    let reply = p.job(&spec.job, &spec.blobs);
    (reply, t0.elapsed())
}

/// Finding 4: a process the job leaves behind (a daemon in a session of its own) does not
/// survive the job: the whole PID namespace goes with it.
#[test]
fn a_job_leaves_no_process_behind() {
    let worker = NetnsWorker::start(1);
    let (reply, _) = run_script(
        &worker,
        "daemon",
        "busybox setsid -f busybox sleep 1031; busybox echo obj > \"$4\"",
        30,
    );
    assert!(
        matches!(reply, JobReply::Done { .. }),
        "{}",
        reply.summary()
    );
    std::thread::sleep(Duration::from_millis(200));
    let left = processes_with("sleep 1031");
    assert!(left.is_empty(), "the job's daemon survived it: {left:?}");
    legit(&worker);
}

/// Finding 4: a job reaches no network: a listener the test opens on the host side of the
/// worker's link accepts nothing.
#[test]
fn a_job_connects_nowhere() {
    let worker = NetnsWorker::start(1);
    let std::net::IpAddr::V4(w) = worker.addr().ip() else {
        panic!("IPv4 worker address expected");
    };
    let [a, b, c, _] = w.octets();
    let host_ip = std::net::Ipv4Addr::new(a, b, c, 1);
    let listener = std::net::TcpListener::bind((host_ip, 0)).expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let (reply, _) = run_script(
        &worker,
        "connect",
        &format!(
            "busybox echo hello | busybox nc -w 2 {host_ip} {port}; busybox echo obj > \"$4\""
        ),
        30,
    );
    assert!(
        matches!(reply, JobReply::Done { .. }),
        "{}",
        reply.summary()
    );
    assert!(
        listener.accept().is_err(),
        "the job connected to the test's listener"
    );
    legit(&worker);
}

/// Findings 4 and 5: a job that never ends, and a fork bomb, end at the time limit with
/// nothing left running.
#[test]
fn endless_jobs_and_fork_bombs_end_at_the_limit() {
    let worker = NetnsWorker::start(1);
    for (name, script) in [
        ("endless", "busybox sleep 1033"),
        ("forkbomb", "b() { b | b & }; b; busybox sleep 1034"),
    ] {
        let (reply, took) = run_script(&worker, name, script, 2);
        assert!(
            matches!(reply, JobReply::Rejected(_)),
            "{name}: {}",
            reply.summary()
        );
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
        std::thread::sleep(Duration::from_millis(300));
        for needle in ["sleep 1033", "sleep 1034", "hostile-tc-forkbomb"] {
            let left = processes_with(needle);
            assert!(left.is_empty(), "{name}: processes left: {left:?}");
        }
    }
    legit(&worker);
}
