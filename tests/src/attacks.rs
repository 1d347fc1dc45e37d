//! The hostile-peer attacks that make sense wherever a worker runs (in a network namespace
//! of this machine, in a Docker container, under qemu-user), written once over [`Target`]:
//! what an attack needs from the place it attacks (its address, a secret planted in its
//! file system, an address its own processes reach, the sandbox layers it reports).
//!
//! Each attack panics with its name when the worker fails to contain it, and ends with a
//! legitimate compile from a new connection whose object equals a local one
//! ([`peer::legit_compile`]). What an attack expects may depend on the layers: a worker
//! without a network namespace and without seccomp cannot keep a job off the network; the
//! attack then asserts that it does reach it, so the expectation is stated, not skipped.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ExitStatus, ToolchainKind};
use offload_shared::tree::EntryKind;

use crate::container::ContainerWorker;
use crate::netns::NetnsWorker;
use crate::peer::{self, JobReply, JobSpec, Peer};
use crate::procs::processes_with;

/// A worker under attack, wherever it runs.
pub trait Target {
    /// A short name, unique among the targets of one test run: it names the attacks' test
    /// directories (targets attacked at once must not share them) and their messages.
    fn tag(&self) -> &str;
    /// The worker's address.
    fn addr(&self) -> SocketAddr;
    /// What the worker logged, for failure messages.
    fn log_text(&self) -> String;
    /// The worker's work directory as it names it, which no refusal may reveal.
    fn work_dir(&self) -> &str;
    /// Writes `bytes` at `path` in the worker's own file system (outside any job root).
    fn plant(&self, path: &str, bytes: &[u8]);
    /// Removes `path` from the worker's file system, if it is there.
    fn remove(&self, path: &str);
    /// Whether `path` exists in the worker's file system.
    fn exists(&self, path: &str) -> bool;
    /// An address of this machine that processes beside the worker reach (the host end
    /// of its link, its Docker network's gateway): what a job would connect to.
    fn neighbour(&self) -> IpAddr;
    /// Connects to `addr` from beside the worker, outside any job: the control that shows
    /// a listener there reachable, so that a job's failure to reach it means something.
    fn reach_from_beside(&self, addr: SocketAddr) -> Result<(), String>;
    /// The sandbox layers the worker is expected to report (`mount`, `pid`, `net`, …).
    fn layers(&self) -> &[&str];
    /// The uid of slot 0's jobs.
    fn job_uid(&self) -> u32;
    /// Zombies the worker never reaped (each holds a pid, and one of its job user's
    /// processes, until it is).
    fn zombies(&self) -> Vec<String>;

    /// Whether the worker is expected to apply `layer`.
    fn has(&self, layer: &str) -> bool {
        self.layers().contains(&layer)
    }
}

/// The uid jobs of a worker started as root without `--job-user` run as (host-cli's
/// default: a range no distribution uses).
const DEFAULT_JOB_UID: u32 = 1_900_000_000;

/// A [`NetnsWorker`] as a [`Target`]: it shares this machine's root file system (outside
/// its private `/tmp`) and runs as root with every layer but the user namespace.
#[derive(Debug)]
pub struct Netns<'a>(pub &'a NetnsWorker);

impl Target for Netns<'_> {
    fn tag(&self) -> &str {
        "netns"
    }
    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
    fn log_text(&self) -> String {
        self.0.log_text()
    }
    fn work_dir(&self) -> &str {
        "/tmp/offload-worker"
    }
    fn plant(&self, path: &str, bytes: &[u8]) {
        assert!(
            !path.starts_with("/tmp"),
            "{path}: the worker's /tmp is private"
        );
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    fn remove(&self, path: &str) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_dir_all(path);
    }
    fn exists(&self, path: &str) -> bool {
        match self.0.pid() {
            Some(pid) if path.starts_with("/tmp") => peer::exists_in_mount_ns(pid, path),
            _ => Path::new(path).exists(),
        }
    }
    fn neighbour(&self) -> IpAddr {
        let IpAddr::V4(w) = self.0.addr().ip() else {
            panic!("IPv4 worker address expected");
        };
        let [a, b, c, _] = w.octets();
        IpAddr::from([a, b, c, 1])
    }
    fn reach_from_beside(&self, addr: SocketAddr) -> Result<(), String> {
        let script = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.0.netns(), "bash", "-c", &script])
            .output()
            .map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    }
    fn layers(&self) -> &[&str] {
        &["mount", "pid", "net", "ipc", "uts", "seccomp", "proc"]
    }
    fn job_uid(&self) -> u32 {
        DEFAULT_JOB_UID
    }
    fn zombies(&self) -> Vec<String> {
        self.0
            .pid()
            .map(crate::procs::zombie_children)
            .unwrap_or_default()
    }
}

/// A [`ContainerWorker`] as a [`Target`], with the layers its variant is expected to
/// report: its file system is the container's (reached with `docker exec`), its neighbour
/// the Docker network's gateway, its job user the image's (`--job-user 1000:1000`).
#[derive(Debug)]
pub struct Container<'a> {
    /// The worker.
    pub worker: &'a ContainerWorker,
    /// Its name in messages and directories (`amd64-default`, …).
    pub tag: &'a str,
    /// The layers its `sandbox:` line names.
    pub layers: &'a [&'a str],
}

/// The image's `--job-user 1000:1000`.
const IMAGE_JOB_UID: u32 = 1000;

impl Target for Container<'_> {
    fn tag(&self) -> &str {
        self.tag
    }
    fn addr(&self) -> SocketAddr {
        self.worker.addr()
    }
    fn log_text(&self) -> String {
        self.worker.logs()
    }
    fn work_dir(&self) -> &str {
        "/work"
    }
    fn plant(&self, path: &str, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("planted bytes are text");
        let script = format!(
            "printf %s {} > {}",
            crate::cmd::shell_quote(text),
            crate::cmd::shell_quote(path)
        );
        self.worker
            .exec(&script)
            .unwrap_or_else(|e| panic!("planting {path}: {e}"));
    }
    fn remove(&self, path: &str) {
        let _ = self
            .worker
            .exec(&format!("rm -rf {}", crate::cmd::shell_quote(path)));
    }
    fn exists(&self, path: &str) -> bool {
        self.worker
            .exec(&format!("test -e {}", crate::cmd::shell_quote(path)))
            .is_ok()
    }
    fn neighbour(&self) -> IpAddr {
        self.worker.gateway()
    }
    fn reach_from_beside(&self, addr: SocketAddr) -> Result<(), String> {
        let script = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
        self.worker
            .exec(&format!("bash -c {}", crate::cmd::shell_quote(&script)))
            .map(drop)
    }
    fn layers(&self) -> &[&str] {
        self.layers
    }
    fn job_uid(&self) -> u32 {
        IMAGE_JOB_UID
    }
    /// Every zombie in the container: the worker is its PID 1, every orphan's parent.
    fn zombies(&self) -> Vec<String> {
        let found = self
            .worker
            .exec("grep -l '^State:.*Z' /proc/[0-9]*/status; true")
            .unwrap_or_else(|e| panic!("{}: listing zombies: {e}", self.tag));
        found.lines().map(str::to_owned).collect()
    }
}

/// The check that ends every attack.
pub fn legit(t: &dyn Target) {
    peer::legit_compile(t.addr()).unwrap_or_else(|e| panic!("{}: {e}\n{}", t.tag(), t.log_text()));
}

/// A test directory of this target's (targets attacked at once get different ones).
fn dir_of(t: &dyn Target, name: &str) -> String {
    crate::twice::fresh_dir(&format!("{name}-{}", t.tag()))
        .to_string_lossy()
        .into_owned()
}

/// A path in the worker's `/etc` and a secret of `name` for it, planted there: its bytes
/// must appear in no reply.
fn plant_secret(t: &dyn Target, name: &str) -> (String, Vec<u8>) {
    let pid = std::process::id();
    let path = format!("/etc/offload-e2e-secret-{name}-{}-{pid}", t.tag());
    let secret = format!("SECRET-{name}-{:x}", u64::from(pid) * 2654435761).into_bytes();
    t.plant(&path, &secret);
    (path, secret)
}

/// A path in the worker's `/run` that must never appear (nothing there yet).
fn marker(t: &dyn Target, name: &str) -> String {
    let p = format!("/run/offload-e2e-{name}-{}-{}", t.tag(), std::process::id());
    t.remove(&p);
    p
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Ships `script` as a toolchain's compiler over a new connection: the connection and a
/// job running it (`gcc -c a.c -o DIR/a.o`, a.c in a writable DIR) with a time limit of
/// `timeout_secs`.
fn script_job(t: &dyn Target, name: &str, script: &str, timeout_secs: u32) -> (Peer, JobSpec) {
    let (cc, bundle) = peer::hostile_toolchain(&format!("{name}-{}", t.tag()), script);
    let mut p = Peer::connect(t.addr()).expect("connect");
    let info = p.ship(&cc, &bundle).expect("ship");
    assert_eq!(
        info.kind,
        ToolchainKind::Shipped,
        "{}: {name}: the bundle was not taken: {info:?}",
        t.tag()
    );
    let d = dir_of(t, &format!("hostile-{name}"));
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    // ash gives background commands `/dev/null` as stdin: a plain empty file will do.
    spec.file(&format!("{d}/a.c"), b"int x;\n")
        .file("/dev/null", b"");
    spec.job.timeout_secs = timeout_secs;
    (p, spec)
}

/// [`script_job`], run: the reply and how long the job took.
fn run_script(t: &dyn Target, name: &str, script: &str, timeout_secs: u32) -> (JobReply, Duration) {
    let (mut p, spec) = script_job(t, name, script, timeout_secs);
    let t0 = Instant::now();
    let reply = p.job(&spec.job, &spec.blobs);
    (reply, t0.elapsed())
}

/// Finding 3: the job swaps a writable directory for a link to `/etc` and plants links to
/// a secret among its outputs; the worker harvests through the handles it opened before
/// the job ran, so only the job's own plain file comes back.
pub fn outputs_are_never_read_through_links(t: &dyn Target) {
    let (secret_path, secret) = plant_secret(t, "harvest");
    let (cc, bundle) = peer::hostile_toolchain(
        &format!("harvest-{}", t.tag()),
        &format!(
            "d=$(busybox dirname \"$4\"); busybox rm -rf $d/sub; busybox ln -s /etc $d/sub; \
             busybox ln -s {secret_path} $d/secret.o; busybox ln -s /etc $d/etc.o; \
             busybox echo obj > \"$4\""
        ),
    );
    let mut p = Peer::connect(t.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let d = dir_of(t, "hostile-harvest");
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n")
        .dir(&format!("{d}/sub"), true);
    let reply = p.job(&spec.job, &spec.blobs);
    t.remove(&secret_path);
    let JobReply::Done { files, .. } = &reply else {
        panic!("{}: {}\n{}", t.tag(), reply.summary(), t.log_text());
    };
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(
        names,
        [&format!("{d}/a.o")],
        "{}: {}",
        t.tag(),
        reply.summary()
    );
    assert!(
        !contains(&reply.all_bytes(), &secret),
        "{}: the secret came back",
        t.tag()
    );
    legit(t);
}

/// Finding 4: commands a host never sends remote (a wrapper, a plugin, a specs file, a
/// link) and environments it never forwards (`LD_PRELOAD`, `GCC_EXEC_PREFIX`) are refused
/// before anything runs: the wrapper's marker never appears.
pub fn commands_and_environments_a_host_never_sends_are_refused(t: &dyn Target) {
    let mark = marker(t, "wrapper");
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let d = dir_of(t, "hostile-commands");
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
    let mut p = Peer::connect(t.addr()).expect("connect");
    for (argv, env) in &attacks {
        let mut spec = JobSpec::new(&cc, &d, argv);
        spec.system_includes("/usr/bin/gcc")
            .file(&format!("{d}/a.c"), b"int x;\n");
        spec.job
            .env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let reply = p.job(&spec.job, &spec.blobs);
        let JobReply::Rejected(reason) = &reply else {
            panic!(
                "{}: {argv:?} {env:?} was not refused: {}",
                t.tag(),
                reply.summary()
            );
        };
        assert!(
            reason.contains("not a remote compile") || reason.contains("not allowed"),
            "{}: {argv:?}: {reason}",
            t.tag()
        );
    }
    assert!(!t.exists(&mark), "{}: the wrapper ran", t.tag());
    legit(t);
}

/// Whether processes whose command line holds any of `needles` are gone within `limit`
/// (container and job processes are all in this machine's `/proc`); those left otherwise.
/// A `sleep N` command line no other process has, so that a check for what a job left
/// behind sees only that job's: the suites of several targets run at once in one test
/// process, and a daemon another target's job still runs must not count against this one.
fn unique_sleep(kind: u32) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("sleep {kind}{:03}{n:03}", std::process::id() % 1000)
}

fn left_after(needles: &[&str], limit: Duration) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let left: Vec<String> = needles.iter().flat_map(|n| processes_with(n)).collect();
        if left.is_empty() || t0.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finding 4: a process the job leaves behind (a daemon in a session of its own, so that
/// killing the job's process group misses it) does not survive the job: with a PID
/// namespace the kernel ends it with the job's init; without one, the worker ends every
/// process of the job's own uid. The daemon is seen running while the job still runs (the
/// control), and gone once it has ended.
pub fn a_job_leaves_no_process_behind(t: &dyn Target) {
    let needle = unique_sleep(1031);
    // busybox's setsid has no -f: in the background it is no group leader, so it needs none.
    // Its streams are closed, as a daemon's are: the job's pipes do not wait for it.
    let (mut p, spec) = script_job(
        t,
        "daemon",
        &format!(
            "busybox setsid busybox {needle} <&- >&- 2>&- & busybox sleep 3; \
             busybox echo obj > \"$4\""
        ),
        30,
    );
    p.start_job(&spec.job, &spec.blobs)
        .unwrap_or_else(|r| panic!("{}: {}", t.tag(), r.summary()));
    let t0 = Instant::now();
    while processes_with(&needle).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{}: the job's daemon never ran",
            t.tag()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = p.finish_job();
    assert!(
        matches!(reply, JobReply::Done { .. }),
        "{}: {}",
        t.tag(),
        reply.summary()
    );
    let left = left_after(&[&needle], Duration::from_secs(1));
    assert!(
        left.is_empty(),
        "{}: the job's daemon survived it: {left:?}",
        t.tag()
    );
    legit(t);
}

/// Whether a job on `t` is expected to reach a listener beside the worker: only with
/// neither a network namespace nor the seccomp filter (which refuses every socket but a
/// local one).
pub fn job_reaches_network(t: &dyn Target) -> bool {
    !t.has("net") && !t.has("seccomp")
}

/// Finding 4: a job reaches no network: a listener the test opens on the worker's
/// neighbour address, which a process beside the worker does reach (the control),
/// accepts nothing from the job. Where the worker has no layer to stop it
/// ([`job_reaches_network`]), the job's connection is expected to arrive.
pub fn a_job_connects_nowhere(t: &dyn Target) {
    let listener = TcpListener::bind((t.neighbour(), 0)).expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    t.reach_from_beside(addr)
        .unwrap_or_else(|e| panic!("{}: the control cannot reach {addr}: {e}", t.tag()));
    assert!(
        accept_within(&listener, Duration::from_secs(5)),
        "{}: the control's connection never arrived",
        t.tag()
    );
    let (reply, _) = run_script(
        t,
        "connect",
        &format!(
            "busybox echo hello | busybox timeout 3 busybox nc {} {}; busybox echo obj > \"$4\"",
            addr.ip(),
            addr.port()
        ),
        30,
    );
    assert!(
        matches!(reply, JobReply::Done { .. }),
        "{}: {}",
        t.tag(),
        reply.summary()
    );
    let reached = accept_within(&listener, Duration::from_millis(200));
    assert_eq!(
        reached,
        job_reaches_network(t),
        "{}: with layers {:?}, a job reaching the network is {}expected: {}",
        t.tag(),
        t.layers(),
        if job_reaches_network(t) { "" } else { "not " },
        reply.summary()
    );
    legit(t);
}

/// Whether `listener` (non-blocking) accepts a connection within `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if listener.accept().is_ok() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Findings 4 and 5: a job that never ends, and a fork bomb, end at the time limit (a
/// bomb may also collapse before it, every fork failing on the process limit, and fail)
/// with nothing left running.
pub fn endless_jobs_and_fork_bombs_end_at_the_limit(t: &dyn Target) {
    let (endless, bomb) = (unique_sleep(1033), unique_sleep(1034));
    for (name, script) in [
        ("endless", format!("busybox {endless}")),
        ("forkbomb", format!("b() {{ b | b & }}; b; busybox {bomb}")),
    ] {
        let (reply, took) = run_script(t, name, &script, 2);
        let collapsed = name == "forkbomb"
            && matches!(&reply, JobReply::Done { done, .. } if done.status != ExitStatus::Code(0));
        assert!(
            matches!(reply, JobReply::Rejected(_)) || collapsed,
            "{}: {name}: {}",
            t.tag(),
            reply.summary()
        );
        assert!(
            took < Duration::from_secs(10),
            "{}: {name} took {took:?}",
            t.tag()
        );
        let forkbomb_tc = format!("hostile-tc-forkbomb-{}", t.tag());
        let left = left_after(&[&endless, &bomb, &forkbomb_tc], Duration::from_secs(2));
        assert!(
            left.is_empty(),
            "{}: {name}: processes left: {left:?}",
            t.tag()
        );
        let zombies = t.zombies();
        assert!(
            zombies.is_empty(),
            "{}: {name}: zombies left: {zombies:?}",
            t.tag()
        );
    }
    legit(t);
}

/// The job user: slot 0's jobs run as the target's job uid, never as root.
pub fn jobs_run_as_the_slot_user(t: &dyn Target) {
    let (reply, _) = run_script(
        t,
        "whoami",
        "busybox id -u; busybox id -g; busybox echo obj > \"$4\"",
        30,
    );
    let JobReply::Done { stdout, .. } = &reply else {
        panic!("{}: {}", t.tag(), reply.summary());
    };
    let want = format!("{0}\n{0}\n", t.job_uid());
    assert_eq!(String::from_utf8_lossy(stdout), want, "{}", t.tag());
}

/// A tree's `/proc`: with the `proc` layer the job gets a procfs of its own PID namespace
/// (its init, its compiler, the `ls`: a handful of processes, none of the worker's);
/// without it the directory stays empty, and the job still runs.
pub fn a_tree_s_proc_shows_only_the_job(t: &dyn Target) {
    let (mut p, mut spec) =
        script_job(t, "proc", "busybox ls /proc; busybox echo obj > \"$4\"", 30);
    spec.dir("/proc", false);
    let reply = p.job(&spec.job, &spec.blobs);
    let JobReply::Done { stdout, .. } = &reply else {
        panic!("{}: {}", t.tag(), reply.summary());
    };
    let text = String::from_utf8_lossy(stdout);
    let pids: Vec<&str> = text
        .split_whitespace()
        .filter(|e| e.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    if t.has("proc") {
        assert!(
            pids.contains(&"1") && pids.len() < 8 && text.contains("self"),
            "{}: the job's /proc: {text}",
            t.tag()
        );
    } else {
        assert!(
            text.trim().is_empty(),
            "{}: the job's /proc: {text}",
            t.tag()
        );
    }
    legit(t);
}

/// Tree entries whose paths climb out of the job root (`..`), are relative, empty, `/`,
/// or contain NUL, `//`, `.` or a trailing `/` — as a file and as a writable directory.
/// Each is refused with a reason naming the path (never the worker's own directories),
/// and the marker the `..` paths aim at never appears.
pub fn tree_paths_that_leave_the_root_are_refused(t: &dyn Target) {
    let mark = marker(t, "traversal");
    let rel = mark.trim_start_matches('/').to_owned();
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let d = dir_of(t, "tree-traversal");
    let ups = "../".repeat(16);
    let bad = [
        format!("{d}/{ups}{rel}"),
        format!("/{ups}{rel}"),
        format!("{ups}{rel}"),
        rel.clone(),
        String::new(),
        "/".to_owned(),
        format!("{d}/a\0/{ups}{rel}"),
        format!("{d}//{rel}"),
        format!("{d}/./{rel}"),
        format!("/{rel}/"),
    ];
    let mut p = Peer::connect(t.addr()).expect("connect");
    for path in &bad {
        for as_dir in [false, true] {
            let mut spec = peer::gcc_job(&cc, &d);
            let kind = if as_dir {
                EntryKind::Dir { writable: true }
            } else {
                spec.file_kind(b"escaped\n")
            };
            spec.raw_entry(path, kind);
            let reply = p.job(&spec.job, &spec.blobs);
            let JobReply::Rejected(reason) = &reply else {
                panic!("{}: {path:?} was not refused: {}", t.tag(), reply.summary());
            };
            assert!(
                reason.contains("not an absolute normalised path"),
                "{}: {path:?}: {reason}",
                t.tag()
            );
            assert!(
                !reason.contains(t.work_dir()),
                "{}: {path:?}: {reason}",
                t.tag()
            );
        }
    }
    assert!(
        !t.exists(&mark),
        "{}: a tree entry was created outside the job root",
        t.tag()
    );
    legit(t);
}

/// Links in the tree that point out of the root (`/x/link -> /etc`, a relative
/// `../../..`) with entries below them, listed after the link and before it. Creating them
/// would follow the link on the worker: refused, and nothing appears in the worker's
/// `/etc` or `/run`.
pub fn entries_below_a_link_out_of_the_root_are_refused(t: &dyn Target) {
    let pid = std::process::id();
    let evil_name = format!("offload-e2e-evil-{}-{pid}", t.tag());
    let in_etc = format!("/etc/{evil_name}");
    t.remove(&in_etc);
    let in_run = marker(t, "evil");
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let d = dir_of(t, "tree-links-out");
    let up = "../".repeat(16);
    let cases = [
        ("/etc".to_owned(), evil_name),
        (
            up.trim_end_matches('/').to_owned(),
            in_run.trim_start_matches('/').to_owned(),
        ),
    ];
    let mut p = Peer::connect(t.addr()).expect("connect");
    for (target, below) in &cases {
        for link_first in [true, false] {
            for as_dir in [false, true] {
                let mut spec = peer::gcc_job(&cc, &d);
                let link = format!("{d}/x/link");
                let evil = format!("{link}/{below}");
                let kind = if as_dir {
                    EntryKind::Dir { writable: true }
                } else {
                    spec.file_kind(b"evil\n")
                };
                spec.raw_entry(&format!("{d}/x"), EntryKind::Dir { writable: false });
                let l = EntryKind::Symlink {
                    target: target.clone(),
                };
                if link_first {
                    spec.raw_entry(&link, l);
                    spec.raw_entry(&evil, kind);
                } else {
                    spec.raw_entry(&evil, kind);
                    spec.raw_entry(&link, l);
                }
                let reply = p.job(&spec.job, &spec.blobs);
                let JobReply::Rejected(reason) = &reply else {
                    panic!(
                        "{}: {evil} below {target} was not refused: {}",
                        t.tag(),
                        reply.summary()
                    );
                };
                assert!(reason.contains("symbolic link"), "{}: {reason}", t.tag());
                assert!(!reason.contains(t.work_dir()), "{}: {reason}", t.tag());
            }
        }
    }
    assert!(
        !t.exists(&in_etc),
        "{}: the worker created {in_etc}",
        t.tag()
    );
    assert!(
        !t.exists(&in_run),
        "{}: the worker created {in_run}",
        t.tag()
    );
    legit(t);
}

/// Finding 1: a bundle without the offered driver is refused and deleted, and no string
/// of the peer's (a version that is a path, a path into the refused bundle) makes the
/// worker run or read anything: the payload's marker never appears.
pub fn a_refused_bundle_leaves_nothing_and_a_version_is_never_a_path(t: &dyn Target) {
    let shipped = format!("{}/toolchains/shipped", t.work_dir());
    let mark = marker(t, "rce");
    let (cc, bundle) = peer::hostile_toolchain(
        &format!("rce-{}", t.tag()),
        &format!("busybox touch {mark}"),
    );
    let liar = CompilerRef {
        digest: Digest::of(b"not the script"),
        ..cc.clone()
    };
    let mut p = Peer::connect(t.addr()).expect("connect");
    let info = p.ship(&liar, &bundle).expect("offer");
    assert_eq!(
        info.kind,
        ToolchainKind::Unavailable,
        "{}: {info:?}",
        t.tag()
    );
    let digest = Digest::of(&bundle);
    assert!(
        !t.exists(&format!("{shipped}/{}", digest.to_hex())),
        "{}: the refused bundle stayed on the worker's disk",
        t.tag()
    );
    // Every way of naming the script: as the compiler's directory, its version, its target.
    let script_dir = Path::new(&cc.path)
        .parent()
        .expect("bin dir")
        .to_string_lossy()
        .into_owned();
    let in_store = format!("{shipped}/{}{script_dir}", digest.to_hex());
    for (path, version) in [
        (
            "/usr/bin/gcc".to_string(),
            format!("{in_store} x86_64-linux-gnu"),
        ),
        ("/usr/bin/gcc".to_string(), format!("12 {in_store}/gcc")),
        (
            format!("{in_store}/gcc"),
            "12.2.0 x86_64-linux-gnu".to_string(),
        ),
        (
            "/usr/bin/clang".to_string(),
            format!("14 --target=/{in_store}"),
        ),
        (cc.path.clone(), "12.2.0 ../../../../..".to_string()),
    ] {
        let q = CompilerRef {
            path: path.clone(),
            digest: Digest([7; 32]),
            version: version.clone(),
            ident: "GCC: (hostile) 12.2.0".into(),
        };
        // The worker may offer its own gcc (another build of "12.2.0", proved or not by
        // the host's probe); never anything from the refused bundle.
        let info = p.query(&q).expect("query");
        assert_ne!(
            info.kind,
            ToolchainKind::Shipped,
            "{}: {path} {version}: {info:?}",
            t.tag()
        );
        assert!(
            !info.detail.contains(t.work_dir()),
            "{}: the refusal reveals the worker's paths: {}",
            t.tag(),
            info.detail
        );
    }
    assert!(
        !t.exists(&mark),
        "{}: the peer's program ran on the worker",
        t.tag()
    );
    legit(t);
}
