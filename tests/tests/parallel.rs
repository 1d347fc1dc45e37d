//! The build's parallelism when the user gives none: offload is make's jobserver, with as
//! many tokens as compile slots here and on live workers, and the count follows the
//! workers as they come and go; an explicit `-j` is the user's.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use offload_e2e::cmd::Cmd;
use offload_e2e::twice::fresh_dir;
use offload_e2e::{NetnsWorker, offload_bin};

/// Sources that take a noticeable time to compile (about 0.3 s each at -O2), and a
/// Makefile whose every compile logs its start and end (seconds since the epoch).
fn write_project(dir: &Path, files: usize) {
    for n in 0..files {
        let mut src = format!("int f{n}(int x) {{ int a = x;\n");
        for i in 0..1000 {
            src.push_str(&format!(
                "a = a * {} + (a >> {}) ^ {};\n",
                i * 7 + n + 3,
                i % 13 + 1,
                i
            ));
        }
        src.push_str("return a; }\n");
        std::fs::write(dir.join(format!("u{n}.c")), src).expect("writing a source");
    }
    std::fs::write(
        dir.join("Makefile"),
        "OBJS := $(patsubst %.c,%.o,$(sort $(wildcard *.c)))\n\
         all: $(OBJS)\n\
         %.o: %.c\n\
         \t@echo \"start $@ $$(date +%s.%N)\" >> events.log\n\
         \t@gcc -O2 -c $< -o $@\n\
         \t@echo \"end $@ $$(date +%s.%N)\" >> events.log\n",
    )
    .expect("writing the Makefile");
}

/// The compiles' (start, end) times from the log.
fn events(dir: &Path) -> Vec<(f64, bool)> {
    let text = std::fs::read_to_string(dir.join("events.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let kind = w.next()?;
            let _target = w.next()?;
            let t: f64 = w.next()?.parse().ok()?;
            Some((t, kind == "start"))
        })
        .collect()
}

/// The most compiles running at once among those that started in `[from, to)`, counting
/// the ones already running at `from`.
fn most_at_once(ev: &[(f64, bool)], from: f64, to: f64) -> usize {
    let mut ev = ev.to_vec();
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0usize, 0usize);
    for (t, start) in ev {
        if start {
            now += 1;
        } else {
            now = now.saturating_sub(1);
        }
        if t >= from && t < to {
            most = most.max(now);
        }
    }
    most
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn offload_make(dir: &Path, worker: &NetnsWorker, make: &[&str]) -> Cmd {
    let mut argv: Vec<String> = [
        offload_bin().to_string_lossy().as_ref(),
        "build",
        "-v",
        "--no-discover",
        "--worker",
        &worker.worker_arg(),
        "-j",
        "1",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(make.iter().map(|s| s.to_string()));
    Cmd::new(argv, dir).env("XDG_CACHE_HOME", &dir.join(".cache").to_string_lossy())
}

/// Compilers (`cc1`) running now below process `here` and below any of `there`.
fn compilers_running(here: u32, there: &[u32]) -> (usize, usize) {
    let mut parent = std::collections::HashMap::new();
    let mut cc1 = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after its `)`.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent.insert(pid, ppid);
        }
        if head.ends_with("(cc1") {
            cc1.push(pid);
        }
    }
    let below = |mut p: u32, roots: &[u32]| {
        for _ in 0..64 {
            if roots.contains(&p) {
                return true;
            }
            match parent.get(&p) {
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let here_n = cc1.iter().filter(|p| below(**p, &[here])).count();
    let there_n = cc1.iter().filter(|p| below(**p, there)).count();
    (here_n, there_n)
}

/// `make` with no `-j` through a worker with two slots: make gets four jobs at once (one
/// local slot, two worker slots, one queued there). The owner takes the worker back
/// mid-build: from then on one compiler runs at a time, here. (make keeps the tokens it
/// holds: a GNU make jobserver cannot be shrunk under a busy make, which reads every
/// token it returns before anyone else can; the jobs beyond the slots wait for one in
/// the coordinator.) Every unit is compiled once.
#[test]
fn make_without_j_follows_the_live_slot_count() {
    let worker = NetnsWorker::start(2);
    let dir = fresh_dir("jobserver_follows");
    let files = 60;
    write_project(&dir, files);
    let mut run = offload_make(&dir, &worker, &["make"]).spawn();
    // Once a few compiles are done, with the worker in use.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while events(&dir).iter().filter(|e| !e.1).count() < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "the build made no progress"
        );
        assert!(!run.finished(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker
        .control(&["pause"])
        .assert_success("pausing the worker");
    let paused = now_secs();
    // Compilers at once from a moment after the pause (the worker stops the jobs it runs
    // within its 1 s grace) for as long as the worker stays paused for the host (30 s
    // before it asks again).
    let (mut here_most, mut there_most) = (0, 0);
    let worker_pids = worker.pids();
    while !run.finished() {
        let t = now_secs();
        if t > paused + 2.5 && t < paused + 25.0 {
            let (here, there) = compilers_running(run.pid(), &worker_pids);
            here_most = here_most.max(here);
            there_most = there_most.max(there);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run.wait();
    out.assert_success("the build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("make got 4 jobs at once"),
        "offload did not give make its jobserver:\n{stderr}"
    );
    let ev = events(&dir);
    let ends = ev.iter().filter(|e| !e.1).count();
    assert_eq!(ends, files, "every unit compiled once\n{stderr}");
    let last = ev.iter().map(|e| e.0).fold(0.0, f64::max);
    assert!(
        last > paused + 4.0,
        "too little of the build was left after the pause to judge ({:.1} s)",
        last - paused
    );
    let before = most_at_once(&ev, 0.0, paused);
    assert_eq!(before, 4, "make's jobs at once with the worker\n{stderr}");
    assert!(
        here_most <= 1 && there_most == 0,
        "after the pause: {here_most} compilers at once here, {there_most} on the worker\n{stderr}"
    );
}

/// An explicit `make -j2` is the user's: two compiles at once, never more, though the
/// slots would allow four.
#[test]
fn an_explicit_j_is_respected() {
    let worker = NetnsWorker::start(2);
    let dir = fresh_dir("jobserver_explicit");
    write_project(&dir, 12);
    let out = offload_make(&dir, &worker, &["make", "-j2"]).run();
    out.assert_success("the build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the build's parallelism is its own: -j given on the command line"),
        "{stderr}"
    );
    let most = most_at_once(&events(&dir), 0.0, f64::MAX);
    assert_eq!(most, 2, "compiles at once under make -j2\n{stderr}");
}
