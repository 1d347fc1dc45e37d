//! Attacks from inside a job (a shipped "compiler" that is a busybox script, as a paired
//! but malicious host can send): outputs that lead out of the job root, a directory of the
//! worker's toolchain marked writable, outputs too large to return. Each ends with a
//! legitimate compile from a new connection, identical to a local one.

use offload_e2e::NetnsWorker;
use offload_e2e::peer::{self, JobReply, Peer};

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
        panic!("expected a refusal: {}", reply_summary(&reply));
    };
    assert!(reason.contains("writable"), "{reason}");
    legit(&worker);
}

/// Finding 5: an output announced at 4 GiB (sparse: it costs the job nothing) is refused
/// from its size, before it is read, and the worker stays small.
#[test]
fn an_oversized_output_is_refused_before_it_is_read() {
    let worker = NetnsWorker::start(1);
    let pid = worker.pid().expect("pid");
    let (cc, bundle) = peer::hostile_toolchain("sparse", "busybox truncate -s 4G \"$4\"");
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir("hostile-sparse");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    let reply = p.job(&spec.job, &spec.blobs);
    let JobReply::Rejected(reason) = &reply else {
        panic!("expected a refusal: {}", reply_summary(&reply));
    };
    assert!(reason.contains("exceed"), "{reason}");
    let rss = peer::rss_kib(pid);
    assert!(rss < 200 << 10, "the worker grew to {rss} KiB");
    legit(&worker);
}

fn reply_summary(reply: &JobReply) -> String {
    let s = format!("{reply:?}");
    s.chars().take(2000).collect()
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
    let attacks: Vec<(Vec<&str>, Vec<(&str, &str)>)> = vec![
        (vec!["/usr/bin/gcc", "-wrapper", &wrapper, "-c", "a.c"], vec![]),
        (vec!["/usr/bin/gcc", "-fplugin=/usr/lib/x.so", "-c", "a.c"], vec![]),
        (vec!["/usr/bin/gcc", "-specs=/etc/x.specs", "-c", "a.c"], vec![]),
        (vec!["/usr/bin/gcc", "a.c", "-o", "a.out"], vec![]),
        (vec!["/usr/bin/gcc", "-c", "a.c"], vec![("LD_PRELOAD", "/x.so")]),
        (vec!["/usr/bin/gcc", "-c", "a.c"], vec![("GCC_EXEC_PREFIX", "/tmp/")]),
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
            panic!("{argv:?} {env:?} was not refused: {}", reply_summary(&reply));
        };
        assert!(
            reason.contains("not a remote compile") || reason.contains("not allowed"),
            "{argv:?}: {reason}"
        );
    }
    assert!(!std::path::Path::new(&mark).exists(), "the wrapper ran");
    legit(&worker);
}
