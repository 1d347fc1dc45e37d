//! Pairing and discovery, end to end: a host the worker does not know runs nothing there
//! until the code both sides show is allowed on the worker, and nothing again once the
//! worker revokes it; an unpaired peer gets one refusal and nothing else; a paired worker
//! is found on the LAN (real mDNS across the namespaces' link) without being named.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use offload_e2e::cmd::{Cmd, Output, Status};
use offload_e2e::paths::offload_bin;
use offload_e2e::peer::{self, Peer};
use offload_e2e::{NetnsWorker, Twice, projects, run_twice};
use offload_secure::{Identity, PeerRole, Pin, PinStore};
use offload_shared::protocol::{Hello, Message, PROTOCOL_NAME, PROTOCOL_VERSION};

/// `offload ARGS` as the host whose config directory is `config`, in `cwd`.
fn offload(config: &Path, cwd: &Path, args: &[&str]) -> Cmd {
    let mut argv = vec![offload_bin().to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Cmd::new(argv, cwd).env("OFFLOAD_CONFIG_DIR", &config.to_string_lossy())
}

fn control(worker: &NetnsWorker, args: &[&str]) -> Output {
    worker.control(args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory with `a.c`, and the object a local `gcc -O2 -c a.c` makes of it.
fn source(name: &str) -> (PathBuf, Vec<u8>) {
    let dir = offload_e2e::twice::fresh_dir(name);
    std::fs::write(dir.join("a.c"), "int twice(int x) { return 2 * x; }\n").expect("write");
    let out = Cmd::new(["gcc", "-O2", "-c", "a.c", "-o", "local.o"], &dir).run();
    out.assert_success("the local compile");
    let want = std::fs::read(dir.join("local.o")).expect("local object");
    (dir, want)
}

/// Builds `a.c` through `worker` named by address only (so only a pin makes it usable);
/// how many compiles ran remotely, offload's stderr, and whether the object is the local
/// one.
fn build(config: &Path, dir: &Path, worker: &NetnsWorker, want: &[u8]) -> (u64, String) {
    let _ = std::fs::remove_file(dir.join("a.o"));
    let addr = worker.addr().to_string();
    let out = offload(
        config,
        dir,
        &[
            "build",
            "-v",
            "--no-discover",
            "--worker",
            &addr,
            "--",
            "gcc",
            "-O2",
            "-c",
            "a.c",
            "-o",
            "a.o",
        ],
    )
    .run();
    out.assert_success("the build");
    let got = std::fs::read(dir.join("a.o")).expect("object");
    assert_eq!(got, want, "the object differs from the local compile");
    let stderr = text(&out.stderr);
    let remote = stderr
        .lines()
        .find_map(|l| {
            l.split("compiler calls: ")
                .nth(1)?
                .split(" remote")
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary in: {stderr}"));
    (remote, stderr)
}

/// The code of the one pairing request waiting on `worker`, once it shows.
fn waiting_code(worker: &NetnsWorker) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = control(worker, &["pairings"]);
        let listed = text(&out.stdout);
        if let Some(code) = listed
            .lines()
            .find_map(|l| l.strip_prefix("request  code ")?.split_whitespace().next())
        {
            return code.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no pairing request showed on the worker: {listed}{}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The whole life of a pairing: refused before, the same code on both sides, allowed,
/// used, revoked, refused again; and a denied request pins nothing.
#[test]
fn a_host_runs_jobs_only_while_paired() {
    let worker = NetnsWorker::start(1);
    let config = offload_e2e::twice::fresh_dir("pairing-host");
    let (dir, want) = source("pairing-src");
    let addr = worker.addr().to_string();

    let (remote, stderr) = build(&config, &dir, &worker, &want);
    assert_eq!(
        remote, 0,
        "an unpaired host's compile ran remotely:\n{stderr}"
    );
    assert!(stderr.contains("not paired"), "no reason given:\n{stderr}");

    let pairing = offload(&config, &dir, &["pair", "--yes", &addr]).spawn();
    let code = waiting_code(&worker);
    let allowed = control(&worker, &["allow", &code]);
    allowed.assert_success("allowing the code");
    let paired = pairing.wait();
    let said = text(&paired.stdout);
    assert_eq!(
        paired.status,
        Status::Code(0),
        "{said}{}",
        text(&paired.stderr)
    );
    assert!(
        said.contains(&format!("Pairing code: {code}")),
        "the host showed another code than the worker ({code}):\n{said}"
    );
    assert!(said.contains("paired with"), "{said}");

    let (remote, stderr) = build(&config, &dir, &worker, &want);
    assert_eq!(
        remote, 1,
        "the paired host's compile did not run remotely:\n{stderr}"
    );

    let listed = text(&control(&worker, &["pairings"]).stdout);
    let host = listed
        .lines()
        .filter(|l| l.starts_with("paired "))
        .find_map(|l| {
            let fp = l.rsplit('(').next()?.trim_end_matches(')');
            (fp != offload_e2e::keys::host_fingerprint().to_string()).then(|| fp.to_owned())
        })
        .unwrap_or_else(|| panic!("the new host is not listed as paired:\n{listed}"));
    control(&worker, &["revoke", &host]).assert_success("revoking the host");
    let (remote, stderr) = build(&config, &dir, &worker, &want);
    assert_eq!(
        remote, 0,
        "a revoked host's compile ran remotely:\n{stderr}"
    );

    // Another host asks; the worker's owner denies: it pins nothing.
    let other = offload_e2e::twice::fresh_dir("pairing-denied-host");
    let pairing = offload(&other, &dir, &["pair", "--yes", &addr]).spawn();
    let code = waiting_code(&worker);
    control(&worker, &["deny", &code]).assert_success("denying the code");
    let denied = pairing.wait();
    assert_ne!(denied.status, Status::Code(0), "a denied pairing succeeded");
    assert!(
        text(&denied.stderr).contains("refused"),
        "{}",
        text(&denied.stderr)
    );
    let pins = PinStore::open(&other, PeerRole::Workers).expect("pins");
    assert!(
        pins.list().is_empty(),
        "a denied pairing pinned {:?}",
        pins.list()
    );
    // No secret key reached a log or an answer: the worker's and both hosts'.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let secrets = [
        Identity::from_file(worker.key_file()).expect("worker key"),
        Identity::from_file(&config.join("host.key")).expect("host key"),
        Identity::from_file(&other.join("host.key")).expect("other host key"),
    ];
    let seen = format!(
        "{}{}{}{}",
        worker.log_text(),
        said,
        text(&denied.stdout),
        text(&denied.stderr)
    );
    for id in &secrets {
        let secret = hex(id.secret_bytes());
        assert!(!seen.contains(&secret), "a secret key appears in a log");
    }
    // A wrong code is refused by the worker, with a reason.
    let wrong = control(&worker, &["allow", "000000"]);
    assert_ne!(wrong.status, Status::Code(0));
    assert!(
        text(&wrong.stderr).contains("no pairing request"),
        "{}",
        text(&wrong.stderr)
    );
}

/// The worker's owner allows the code; then the host's user answers that the code
/// differs (at a terminal: `offload pair` without `--yes`): the pairing ends on both
/// sides, neither pins the other, and the host still runs nothing there.
#[test]
fn a_code_the_host_rejects_pins_nothing_on_either_side() {
    let worker = NetnsWorker::start(1);
    let config = offload_e2e::twice::fresh_dir("pairing-rejecting-host");
    let (dir, want) = source("pairing-rejecting-src");
    let addr = worker.addr().to_string();
    let answer_now = config.join("answer-now");
    // `script` gives `offload pair` a terminal; its input is held back until the flag.
    let answer = format!(
        "while [ ! -e {0} ]; do sleep 0.05; done; echo n",
        offload_e2e::cmd::shell_quote(&answer_now.to_string_lossy())
    );
    let pair = format!(
        "{} pair {addr}",
        offload_e2e::cmd::shell_quote(&offload_bin().to_string_lossy())
    );
    let pairing = Cmd::new(
        [
            "sh",
            "-c",
            &format!(
                "({answer}) | script -qec {} /dev/null",
                offload_e2e::cmd::shell_quote(&pair)
            ),
        ],
        &dir,
    )
    .env("OFFLOAD_CONFIG_DIR", &config.to_string_lossy())
    .spawn();
    let code = waiting_code(&worker);
    control(&worker, &["allow", &code]).assert_success("allowing the code");
    let listed = text(&control(&worker, &["pairings"]).stdout);
    assert!(
        listed.contains(&format!("allowed  code {code}")),
        "the allowed request does not wait for the host:\n{listed}"
    );
    std::fs::write(&answer_now, "").expect("the flag");
    let rejected = pairing.wait();
    let said = format!("{}{}", text(&rejected.stdout), text(&rejected.stderr));
    assert_ne!(rejected.status, Status::Code(0), "{said}");
    assert!(said.contains(&format!("Pairing code: {code}")), "{said}");
    assert!(said.contains("not confirmed"), "{said}");
    let pins = PinStore::open(&config, PeerRole::Workers).expect("pins");
    assert!(pins.list().is_empty(), "the host pinned {:?}", pins.list());
    let host = Identity::from_file(&config.join("host.key")).expect("the host's key");
    let listed = text(&control(&worker, &["pairings"]).stdout);
    assert!(
        !listed.contains(&host.fingerprint().to_string()),
        "the worker still lists the host:\n{listed}"
    );
    let (remote, stderr) = build(&config, &dir, &worker, &want);
    assert_eq!(
        remote, 0,
        "a host whose user said no ran a compile remotely:\n{stderr}"
    );
}

/// A peer that completes the handshake with a key the worker does not know gets one
/// refusal, whatever it sends first, and nothing else: no welcome, no worker path, no
/// job; the worker still serves its paired host afterwards.
#[test]
fn an_unpaired_peer_gets_one_refusal_and_nothing_else() {
    let worker = NetnsWorker::start(1);
    let stranger: &'static Identity =
        Box::leak(Box::new(Identity::generate().expect("a random key")));
    let hello = Message::Hello(Hello {
        protocol: PROTOCOL_NAME.into(),
        version: PROTOCOL_VERSION,
        client: "stranger".into(),
    });
    let (cc, _) = peer::hostile_toolchain("stranger", "busybox touch /stranger-ran");
    let dir = offload_e2e::twice::fresh_dir("stranger");
    let d = dir.to_string_lossy().into_owned();
    let spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    for first in [hello, Message::Job(Box::new(spec.job.clone()))] {
        let stream = peer::secure(worker.addr(), stranger).expect("the handshake itself succeeds");
        let mut p = Peer {
            stream,
            welcome: offload_shared::protocol::Welcome {
                version: 0,
                worker: String::new(),
                slots: 0,
                arch: String::new(),
            },
        };
        p.send(&first, &[]).expect("send");
        let answer = p.recv();
        let Ok(Some((Message::Error(e), _))) = &answer else {
            panic!("expected one refusal, got {answer:?}");
        };
        assert!(e.message.contains("not paired"), "{}", e.message);
        assert!(
            !e.message.contains("/tmp/"),
            "the refusal names a worker path: {}",
            e.message
        );
        let after = p.recv();
        assert!(
            matches!(after, Ok(None) | Err(_)),
            "the worker sent more after the refusal: {after:?}"
        );
    }
    peer::legit_compile(worker.addr()).unwrap_or_else(|e| panic!("{e}\n{}", worker.log_text()));
}

/// The tests' host key (which the workers trust) in a config directory of its own, with
/// `workers` pinned.
fn lan_host(name: &str, workers: &[&Path]) -> PathBuf {
    let config = offload_e2e::twice::fresh_dir(name);
    std::fs::copy(
        offload_e2e::keys::host_dir().join("host.key"),
        config.join("host.key"),
    )
    .expect("copying the host key");
    let mut pins = PinStore::open(&config, PeerRole::Workers).expect("pins");
    for key_file in workers {
        let key = Identity::from_file(key_file).expect("the worker's key");
        pins.add(Pin::new(*key.public(), "netns")).expect("pin");
    }
    config
}

/// A paired worker that appears while a build runs (on the local worker the build started,
/// as none was found) joins it: the host sees its announcement, checks its key, and sends
/// it jobs (its store fills with the build's files); the objects are identical to a local
/// build's.
#[test]
fn a_worker_that_appears_mid_build_gets_jobs() {
    let key = PathBuf::from(offload_e2e::keys::WORKER_KEYS)
        .join(format!("late-{}.key", std::process::id()));
    offload_e2e::keys::new_key_file(&key);
    // Pinned before it starts, so that its first announcement is usable.
    let config = lan_host("late-host", &[&key]);
    let project = projects::zstd("-O2");
    let mut late = None;
    let both = offload_e2e::twice::run_twice_during(
        &Twice {
            name: "worker_appears_mid_build",
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(4, "gcc"),
            env: vec![(
                "OFFLOAD_CONFIG_DIR".into(),
                config.to_string_lossy().into_owned(),
            )],
            stdin: None,
            offload_args: vec!["-j".into(), "1".into()],
        },
        |root, run| {
            let objects = || walk_count(&root.join("obj"));
            while objects() < 3 {
                if run.finished() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            late = Some(NetnsWorker::start_with_key(2, &key));
        },
    );
    both.assert_plain_succeeded();
    let late = late.unwrap_or_else(|| {
        panic!(
            "the build ended before three objects existed\n{}",
            both.context()
        )
    });
    let n = stored_files(&late);
    assert!(
        n > 10,
        "the worker that appeared mid-build stored {n} files: it got no jobs\n{}\n{}",
        both.context(),
        late.log_text()
    );
}

/// Object files below `dir`, at any depth.
fn walk_count(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_count(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "o"))
            }
        })
        .sum()
}

/// A paired worker is found on the LAN by `offload build` with no worker named: its mDNS
/// record crosses the namespaces' link, the host checks its id is the key it pinned, and
/// the build's compiles run there, identical to a local build.
#[test]
fn a_paired_worker_is_found_on_the_lan() {
    let worker = NetnsWorker::start(2);
    let config = lan_host("lan-host", &[worker.key_file()]);
    let project = projects::lua("-O2", false);
    let both = run_twice(&Twice {
        name: "found_on_the_lan",
        materialize: &|root| project.materialize(root),
        cwd: ".",
        argv: project.make_argv(4, "gcc"),
        env: vec![(
            "OFFLOAD_CONFIG_DIR".into(),
            config.to_string_lossy().into_owned(),
        )],
        stdin: None,
        offload_args: vec!["-j".into(), "1".into()],
    });
    both.assert_plain_succeeded();
    assert!(
        both.summary.remote >= 1,
        "no compile ran on the worker found on the LAN\n{}",
        both.context()
    );
}

/// The slots a worker announces follow its jobs, and the host sees the change: `offload
/// workers` (real mDNS from the host's side of the link) shows the worker's one slot taken
/// while a job runs there and free again after.
#[test]
fn a_worker_s_free_slots_are_seen_by_the_host() {
    let worker = NetnsWorker::start(1);
    let fp = worker.fingerprint().to_string();
    let config = lan_host("slots-host", &[worker.key_file()]);
    let slots_seen = || {
        let out = offload(&config, Path::new("/"), &["workers", "--wait", "1.5"]).run();
        text(&out.stdout)
            .lines()
            .find(|l| l.starts_with(&fp))
            .and_then(|l| {
                l.split_whitespace()
                    .find(|c| c.contains('/'))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("(not listed: {})", text(&out.stdout)))
    };
    assert_eq!(slots_seen(), "1/1", "before the job");
    let (cc, bundle) =
        peer::hostile_toolchain("slow", "busybox sleep 6; busybox echo obj > \"$4\"");
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir("slots-job");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = peer::JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n");
    p.start_job(&spec.job, &spec.blobs)
        .unwrap_or_else(|r| panic!("the job did not start: {}", r.summary()));
    assert_eq!(slots_seen(), "0/1", "while the job runs");
    let reply = p.finish_job();
    assert!(
        matches!(reply, peer::JobReply::Done { .. }),
        "{}",
        reply.summary()
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(slots_seen(), "1/1", "after the job");
}

/// Files in the store of the worker (run in its mount namespace).
fn stored_files(worker: &NetnsWorker) -> usize {
    let pid = worker.pid().expect("the worker runs").to_string();
    let out = Cmd::new(
        [
            "nsenter",
            "-t",
            &pid,
            "-m",
            "--",
            "sh",
            "-c",
            "find /tmp/offload-worker/store -type f | wc -l",
        ],
        Path::new("/"),
    )
    .run();
    text(&out.stdout).trim().parse().unwrap_or(0)
}

/// A host and two workers on one bridge, as on one switch: both are discovered within
/// 2 s; a build uses them without naming them; one leaves the network mid-build without a
/// word (its link goes down: no FIN, no RST) and the host drops it within 5 s (TCP
/// liveness on its connections, not the mDNS TTL), its jobs run elsewhere, the other
/// keeps receiving jobs, and every object is identical to a local build's.
#[test]
fn two_workers_on_one_bridge() {
    let lan = offload_e2e::Lan::new();
    let keys: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|n| {
            let k = PathBuf::from(offload_e2e::keys::WORKER_KEYS)
                .join(format!("bridge-{n}-{}.key", std::process::id()));
            offload_e2e::keys::new_key_file(&k);
            k
        })
        .collect();
    let config = lan_host("bridge-host", &[&keys[0], &keys[1]]);
    let gone = NetnsWorker::on_lan(&lan, 2, &keys[0]);
    let stays = NetnsWorker::on_lan(&lan, 2, &keys[1]);

    // Both listening: each is found, paired and reachable, within 2 s of looking.
    let listed = offload(&config, Path::new("/"), &["workers", "--wait", "2"]).run();
    let table = text(&listed.stdout);
    for w in [&gone, &stays] {
        let fp = w.fingerprint().to_string();
        let row = table
            .lines()
            .find(|l| l.starts_with(&fp))
            .unwrap_or_else(|| panic!("{fp} was not found within 2 s:\n{table}"));
        assert!(row.contains(&w.addr().ip().to_string()), "{row}");
        assert!(row.ends_with("yes"), "not reachable: {row}");
        assert!(row.contains(" yes "), "not shown as paired: {row}");
    }

    let project = projects::lua("-O2", true);
    let log_file = offload_e2e::twice::fresh_dir("bridge-log").join("offload.log");
    let mut vanished = None;
    let both = offload_e2e::twice::run_twice_during(
        &Twice {
            name: "two_workers_on_one_bridge",
            materialize: &|root| project.materialize(root),
            cwd: ".",
            argv: project.make_argv(5, "gcc"),
            env: vec![
                (
                    "OFFLOAD_CONFIG_DIR".into(),
                    config.to_string_lossy().into_owned(),
                ),
                ("OFFLOAD_LOG".into(), "offload_host=info".into()),
                (
                    "OFFLOAD_LOG_FILE".into(),
                    log_file.to_string_lossy().into_owned(),
                ),
            ],
            stdin: None,
            offload_args: vec!["-j".into(), "1".into()],
        },
        |root, run| {
            while walk_count(&root.join("obj")) < 4 {
                if run.finished() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            gone.vanish();
            vanished = Some((std::time::SystemTime::now(), stored_files(&stays)));
        },
    );
    both.assert_plain_succeeded();
    let (at, stored_before) = vanished.unwrap_or_else(|| {
        panic!(
            "the build ended before four objects existed\n{}",
            both.context()
        )
    });
    let log = std::fs::read_to_string(&log_file).expect("offload's log");
    let gone_addr = gone.addr().to_string();
    let used = |w: &NetnsWorker| {
        log.lines()
            .any(|l| l.contains("worker ready") && l.contains(&w.addr().to_string()))
    };
    assert!(
        used(&gone) && used(&stays),
        "the build did not use both workers\n{log}"
    );
    let dropped = log
        .lines()
        .find(|l| l.contains("worker failed") && l.contains(&gone_addr))
        .unwrap_or_else(|| panic!("the vanished worker was never dropped\n{log}"));
    let noticed = offload_e2e::logs::second_of_day(dropped).expect("a timestamp");
    let after = offload_e2e::logs::seconds_after(noticed, offload_e2e::logs::second_of_day_at(at));
    assert!(
        (0.0..5.0).contains(&after),
        "the vanished worker was dropped {after:.1} s after it left:\n{dropped}"
    );
    assert!(
        stored_files(&stays) > stored_before,
        "the remaining worker got no job after the other vanished\n{}",
        both.context()
    );
    assert!(
        both.summary.remote >= 2,
        "too few compiles ran remotely\n{}",
        both.context()
    );
}

/// A forged announcement: a pinned worker's id, announced (from another machine on the
/// link, as anyone on a LAN can) with the address of a worker that holds another key. The
/// host connects, the handshake proves the other key, and the host refuses it: nothing
/// runs there although that worker would serve this host, and the build says why.
#[test]
fn a_worker_id_announced_by_another_key_is_refused() {
    use offload_discovery::{AdvertiseOptions, Advertiser, WorkerAd, WorkerId};
    // Trusts the tests' host key: only the host's check can keep jobs off it.
    let impostor = NetnsWorker::start(1);
    let pinned_key = PathBuf::from(offload_e2e::keys::WORKER_KEYS)
        .join(format!("forged-{}.key", std::process::id()));
    let pinned = offload_e2e::keys::new_key_file(&pinned_key);
    let config = lan_host("forged-host", &[&pinned_key]);
    let _ = std::fs::remove_file(&pinned_key);
    let mut ad = WorkerAd::new(
        offload_shared::protocol::PROTOCOL_VERSION,
        WorkerId::new(pinned.to_string()).expect("a worker id"),
        "forged",
        4,
        impostor.addr().port(),
    );
    ad.epoch = 1;
    let _forger = Advertiser::start(
        ad,
        AdvertiseOptions {
            addresses: Some(vec![impostor.addr().ip()]),
            ..AdvertiseOptions::default()
        },
    )
    .expect("announcing the forged record");
    // Seen on the LAN (by `offload workers`, as the build will see it) before the build.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = offload(&config, Path::new("/"), &["workers", "--wait", "1"]).run();
        let table = text(&listed.stdout);
        if table.lines().any(|l| l.starts_with(&pinned.to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forged announcement never showed:\n{table}"
        );
    }
    let (dir, want) = source("forged-src");
    let out = offload(
        &config,
        &dir,
        &["build", "-v", "--", "gcc", "-O2", "-c", "a.c", "-o", "a.o"],
    )
    .env("OFFLOAD_LOG", "offload_host=debug")
    .run();
    out.assert_success("the build");
    assert_eq!(
        std::fs::read(dir.join("a.o")).expect("object"),
        want,
        "the object differs from the local compile"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("found on the LAN") && stderr.contains(&impostor.addr().to_string()),
        "the forged announcement was not seen, so nothing was tested:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "proved key {}, not {pinned}",
            impostor.fingerprint()
        )),
        "no refusal of the other key:\n{stderr}"
    );
    assert!(
        stderr.contains("compiler calls: 0 remote"),
        "a compile ran on the impostor:\n{stderr}"
    );
    assert_eq!(
        stored_files(&impostor),
        0,
        "the impostor received a job's files"
    );
}
