//! Attacks through a job's tree and the paths it names: entries that leave the job root or
//! take the worker's own places in it, links out of the root, outputs outside the writable
//! directories, devices, and compiles that name the worker's files by absolute path. Each
//! asserts the attack was refused or contained (a marker outside the worker's private
//! `/tmp` never appears, a secret's bytes come back in no reply) and ends with a legitimate
//! compile from a new connection, identical to a local one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use offload_e2e::NetnsWorker;
use offload_e2e::attacks::{self, Netns};
use offload_e2e::peer::{self, JobReply, JobSpec, Peer};
use offload_shared::Digest;
use offload_shared::protocol::{CompilerRef, ExitStatus, ToolchainKind};
use offload_shared::tree::EntryKind;

fn legit(worker: &NetnsWorker) {
    attacks::legit(&Netns(worker));
}

/// A path outside the worker's private `/tmp` (so visible here) that must never appear.
fn marker(name: &str) -> PathBuf {
    let p = PathBuf::from(format!("/run/offload-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// A secret in the worker's `/etc` (the worker shares the host's root file system outside
/// its private `/tmp`), as C that would compile if a job could read it: its path and the
/// identifier that would show in any reply that read it.
fn plant_secret(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(format!(
        "/etc/offload-e2e-secret-{name}-{}.h",
        std::process::id()
    ));
    let needle = format!(
        "offload_secret_{name}_{:x}",
        std::process::id() as u64 * 2654435761
    );
    std::fs::write(&path, format!("int {needle};\n")).expect("write secret");
    (path, needle)
}

/// The job was refused, or ran and failed without returning any output.
fn assert_failed_without_outputs(reply: &JobReply) {
    match reply {
        JobReply::Done { done, files, .. } => {
            assert_ne!(done.status, ExitStatus::Code(0), "{}", reply.summary());
            assert!(files.is_empty(), "{}", reply.summary());
        }
        JobReply::Rejected(_) => {}
        other => panic!("{}", other.summary()),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Where the worker keeps job roots, which no refusal may name.
const WORKER_DIR: &str = "/tmp/offload-worker";

/// Attack 1: tree entries whose paths climb out of the job root (`..`), are relative,
/// empty, `/`, or not normalised are refused, naming the path, never the worker's.
#[test]
fn tree_paths_that_leave_the_root_are_refused() {
    attacks::tree_paths_that_leave_the_root_are_refused(&Netns(&NetnsWorker::start(1)));
}

/// Attack 1: tree entries at the job root's own places — the worker's `/.offload` (where a
/// cross toolchain's real assembler lives) and the job's `/tmp` — as links out of the root
/// (to a directory the test made), files and directories. Each is refused before anything
/// is made, with a reason that names the path and not the worker's directories, and nothing
/// appears in the directory the links point to.
#[test]
fn tree_entries_at_the_worker_s_own_paths_are_refused() {
    let worker = NetnsWorker::start(1);
    let target = marker("reserved");
    std::fs::create_dir_all(&target).expect("mkdir");
    let t = target.to_string_lossy().into_owned();
    let cc = peer::compiler_ref("/usr/bin/gcc");
    // A job directory outside `/tmp` (the tree's alone: nothing is read from it here), so
    // that the tree's `/tmp` has nothing below it.
    let d = format!("/srv/offload-e2e-reserved-{}", std::process::id());
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let link = |t: &str| EntryKind::Symlink { target: t.into() };
    let cases: Vec<(&str, Option<EntryKind>)> = vec![
        ("/tmp", Some(link(&t))),
        ("/tmp", None),
        ("/.offload", Some(link(&t))),
        ("/.offload", Some(EntryKind::Dir { writable: true })),
        ("/.offload/as", None),
    ];
    let mut replies = Vec::new();
    for (path, kind) in cases {
        let mut spec = peer::gcc_job(&cc, &d);
        if path == "/.offload/as" {
            spec.raw_entry("/.offload", EntryKind::Dir { writable: false });
        }
        let kind = kind.unwrap_or_else(|| spec.file_kind(b"#!/bin/sh\n"));
        spec.raw_entry(path, kind.clone());
        replies.push((path, kind, p.job(&spec.job, &spec.blobs)));
    }
    let left: Vec<_> = std::fs::read_dir(&target)
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .collect();
    let _ = std::fs::remove_dir_all(&target);
    assert!(
        left.is_empty(),
        "the worker wrote through a job's link: {left:?}"
    );
    for (path, kind, reply) in &replies {
        let JobReply::Rejected(reason) = reply else {
            panic!("{path} as {kind:?} was not refused: {}", reply.summary());
        };
        assert!(reason.contains("reserved"), "{path} {kind:?}: {reason}");
        assert!(!reason.contains(WORKER_DIR), "{path} {kind:?}: {reason}");
    }
    legit(&worker);
}

/// Attack 1: a job whose working directory is not an absolute path (`.`, `../../..`, a
/// relative name, empty). `chroot` leaves the working directory where it was, so a
/// relative one would start the compiler outside its root: the shipped "compiler" reads
/// the worker's `/etc` and writes to the shared `/dev/shm` through `..`. Refused: the
/// secret comes back in no reply and the marker never appears.
#[test]
fn a_working_directory_outside_the_root_is_refused() {
    let worker = NetnsWorker::start(1);
    let (secret_path, needle) = plant_secret("cwd");
    let mark = PathBuf::from(format!("/dev/shm/offload-e2e-cwd-{}", std::process::id()));
    let _ = std::fs::remove_file(&mark);
    let ups = "../".repeat(24);
    let (cc, bundle) = peer::hostile_toolchain(
        "cwd",
        &format!(
            "busybox cat {ups}{s}; busybox touch {ups}{m}; busybox echo obj > \"$4\"",
            s = secret_path.to_string_lossy().trim_start_matches('/'),
            m = mark.to_string_lossy().trim_start_matches('/'),
        ),
    );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let dir = offload_e2e::twice::fresh_dir("tree-cwd");
    let d = dir.to_string_lossy().into_owned();
    let mut replies = Vec::new();
    for cwd in [".", "../../..", "tree-cwd", ""] {
        let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
        spec.file(&format!("{d}/a.c"), b"int x;\n");
        spec.job.cwd = cwd.to_owned();
        let reply = p.job(&spec.job, &spec.blobs);
        replies.push((cwd, reply));
    }
    let _ = std::fs::remove_file(&secret_path);
    let escaped = mark.exists();
    let _ = std::fs::remove_file(&mark);
    for (cwd, reply) in &replies {
        assert!(
            !contains(&reply.all_bytes(), &needle),
            "cwd {cwd:?}: the worker's secret came back: {}",
            reply.summary()
        );
        let JobReply::Rejected(reason) = reply else {
            panic!("cwd {cwd:?} was not refused: {}", reply.summary());
        };
        assert!(reason.contains("working directory"), "{cwd:?}: {reason}");
    }
    assert!(
        !escaped,
        "a job wrote outside its root through its working directory"
    );
    legit(&worker);
}

/// Attack 2: entries below links in the tree that point out of the root are refused, and
/// nothing appears where the links point.
#[test]
fn entries_below_a_link_out_of_the_root_are_refused() {
    attacks::entries_below_a_link_out_of_the_root_are_refused(&Netns(&NetnsWorker::start(1)));
}

/// Attack 2: a compiler the worker serves with another build of its gcc (a cross
/// compiler: the host's path, the worker's gcc version and target, another digest) is put
/// at the host's path in the job root; the tree makes that path's parent a link to a
/// directory outside the root. Creating the compiler's file there would write the worker's
/// gcc outside the root: refused, and nothing appears in that directory.
#[test]
fn the_compiler_s_own_path_is_never_made_through_a_link() {
    let worker = NetnsWorker::start(1);
    let pid = std::process::id();
    let target = marker("alias");
    std::fs::create_dir_all(&target).expect("mkdir");
    let real = peer::compiler_ref("/usr/bin/gcc");
    let top = format!("/opt/offload-e2e-alias-{pid}");
    let cc = CompilerRef {
        path: format!("{top}/bin/gcc"),
        digest: Digest([9; 32]),
        ..real
    };
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let info = p.query(&cc).expect("query");
    assert_eq!(info.kind, ToolchainKind::CrossGcc, "{info:?}");
    let dir = offload_e2e::twice::fresh_dir("tree-alias");
    let d = dir.to_string_lossy().into_owned();
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/a.c"), b"int x;\n")
        .symlink(&top, &target.to_string_lossy());
    let reply = p.job(&spec.job, &spec.blobs);
    let left: Vec<_> = std::fs::read_dir(&target)
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .collect();
    let _ = std::fs::remove_dir_all(&target);
    assert!(
        left.is_empty(),
        "the worker wrote through the job's link: {left:?}"
    );
    let JobReply::Rejected(reason) = &reply else {
        panic!("not refused: {}", reply.summary());
    };
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(!reason.contains(WORKER_DIR), "{reason}");
    // A cross compiler at a path gcc finds its parts from (beside the worker's own driver:
    // a relocated gcc finds no cc1) makes its root (the driver at the host's path, the real
    // assembler in the worker's `/.offload`) and compiles.
    let cc = CompilerRef {
        path: "/usr/bin/gcc-99".into(),
        ..cc
    };
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/a.c"), b"int x;\n");
    let reply = p.job(&spec.job, &spec.blobs);
    let JobReply::Done { done, .. } = &reply else {
        panic!("{}\n{}", reply.summary(), worker.log_text());
    };
    assert_eq!(done.status, ExitStatus::Code(0), "{}", reply.summary());
    assert!(
        reply.file(&format!("{d}/a.o")).is_some(),
        "{}",
        reply.summary()
    );
    legit(&worker);
}

/// Attack 2: links whose targets are absolute (`/etc/…`) or climb above the root
/// (`../../../etc/…`) are resolved inside the job root only: a compile that includes
/// through them gets the tree's own decoy at that path, never the worker's file of the
/// same name (whose identifier would show in the object), and a link to a file only the
/// worker has fails to compile.
#[test]
fn absolute_links_resolve_inside_the_root() {
    let worker = NetnsWorker::start(1);
    let (secret_path, needle) = plant_secret("link");
    let (only_worker, needle2) = plant_secret("link-absent");
    let s = secret_path.to_string_lossy().into_owned();
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let dir = offload_e2e::twice::fresh_dir("tree-abs-links");
    let d = dir.to_string_lossy().into_owned();
    let up = "../".repeat(24);
    let mut spec = JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-c", "a.c", "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&s, b"int decoy_in_job_root;\n")
        .symlink(&format!("{d}/abs.h"), &s)
        .symlink(
            &format!("{d}/up.h"),
            &format!("{up}{}", s.trim_start_matches('/')),
        )
        .file(
            &format!("{d}/a.c"),
            b"#include \"abs.h\"\n#include \"up.h\"\nint x;\n",
        );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let reply = p.job(&spec.job, &spec.blobs);
    let mut spec2 = JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-c", "b.c", "-o", "b.o"]);
    spec2
        .system_includes("/usr/bin/gcc")
        .symlink(&format!("{d}/gone.h"), &only_worker.to_string_lossy())
        .file(&format!("{d}/b.c"), b"#include \"gone.h\"\nint y;\n");
    let reply2 = p.job(&spec2.job, &spec2.blobs);
    let _ = std::fs::remove_file(&secret_path);
    let _ = std::fs::remove_file(&only_worker);
    assert!(
        !contains(&reply.all_bytes(), &needle),
        "{}",
        reply.summary()
    );
    let obj = reply
        .file(&format!("{d}/a.o"))
        .unwrap_or_else(|| panic!("no object: {}", reply.summary()));
    assert!(
        contains(obj, "decoy_in_job_root"),
        "the object was not compiled from the tree's file"
    );
    assert!(
        !contains(&reply2.all_bytes(), &needle2),
        "{}",
        reply2.summary()
    );
    assert_failed_without_outputs(&reply2);
    legit(&worker);
}

/// Attack 3: a shipped "compiler" writes into the root of the job, its `/tmp`, the
/// toolchain's `/bin`, a directory of the tree that is not writable (and tries to make it
/// writable), a subdirectory it makes inside a writable directory, and finally its own
/// output. Only that output comes back. Then the real gcc writes its `-o` into a directory
/// that is not writable: it fails and nothing comes back.
#[test]
fn outputs_outside_writable_directories_never_come_back() {
    let worker = NetnsWorker::start(1);
    let dir = offload_e2e::twice::fresh_dir("tree-outside");
    let d = dir.to_string_lossy().into_owned();
    let ro = format!("{d}/ro");
    let evil = "EVIL-OUTPUT-BYTES";
    let (cc, bundle) = peer::hostile_toolchain(
        "outside",
        &format!(
            "for f in /root.o /tmp/tmp.o /bin/bin.o {ro}/ro.o; do busybox echo {evil} > $f; done; \
             busybox chmod 0777 {ro}; busybox echo {evil} > {ro}/ro2.o; \
             busybox mkdir {d}/new; busybox echo {evil} > {d}/new/nested.o; \
             busybox echo obj > \"$4\""
        ),
    );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n").dir(&ro, false);
    let reply = p.job(&spec.job, &spec.blobs);
    let JobReply::Done { files, .. } = &reply else {
        panic!("{}", reply.summary());
    };
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names, [&format!("{d}/a.o")], "{}", reply.summary());
    assert_eq!(reply.file(&format!("{d}/a.o")), Some(&b"obj\n"[..]));
    for (path, bytes) in files {
        assert!(!contains(bytes, evil), "{path} holds the job's stray bytes");
    }

    let gcc = peer::compiler_ref("/usr/bin/gcc");
    let out = format!("{ro}/a.o");
    let mut spec = JobSpec::new(&gcc, &d, &["/usr/bin/gcc", "-c", "a.c", "-o", &out]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/a.c"), b"int x;\n")
        .dir(&ro, false);
    let reply = p.job(&spec.job, &spec.blobs);
    assert!(reply.file(&out).is_none(), "{}", reply.summary());
    assert_failed_without_outputs(&reply);
    legit(&worker);
}

/// Attack 4: a shipped "compiler" reads disks and kernel devices, makes block and
/// character device nodes (in its output directory and `/tmp`) and reads them, and leaves
/// a FIFO as its output. The job root has no device (only what the tree holds: its
/// `/dev/sda` is the tree's plain file), no node can be made, and the FIFO output is not
/// read: the reply comes back at once with no output. A tree entry that claims to be a
/// device (a kind the protocol does not have) is not run at all.
#[test]
fn devices_are_out_of_reach() {
    let worker = NetnsWorker::start(1);
    let dir = offload_e2e::twice::fresh_dir("tree-devices");
    let d = dir.to_string_lossy().into_owned();
    let (cc, bundle) = peer::hostile_toolchain(
        "devices",
        "busybox cat /dev/sda; \
         for dev in /dev/vda /dev/nvme0n1 /dev/mem /dev/kmem /dev/port /dev/kmsg /dev/console /dev/tty; do \
           busybox head -c 16 $dev && busybox echo READ-OK-$dev; done; \
         d=$(busybox dirname \"$4\"); \
         busybox mknod $d/blk.o b 8 0 && busybox echo MKNOD-OK-block; \
         busybox mknod /tmp/blk b 8 0 && busybox echo MKNOD-OK-tmp; \
         busybox head -c 16 /tmp/blk && busybox echo READ-OK-tmp; \
         busybox mknod $d/chr.o c 1 1 && busybox echo MKNOD-OK-char; \
         busybox mkfifo $d/fifo.o; \
         busybox rm -f \"$4\"; busybox mkfifo \"$4\"",
    );
    let mut p = Peer::connect(worker.addr()).expect("connect");
    p.ship(&cc, &bundle).expect("ship");
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n")
        .file("/dev/sda", b"DECOY-SDA-FROM-THE-TREE\n");
    let t0 = Instant::now();
    let reply = p.job(&spec.job, &spec.blobs);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "the job took {took:?}");
    let JobReply::Done { stdout, files, .. } = &reply else {
        panic!("{}", reply.summary());
    };
    assert!(
        contains(stdout, "DECOY-SDA-FROM-THE-TREE"),
        "{}",
        reply.summary()
    );
    assert!(
        !contains(stdout, "MKNOD-OK") && !contains(stdout, "READ-OK"),
        "the job reached a device: {}",
        String::from_utf8_lossy(stdout)
    );
    assert!(files.is_empty(), "{}", reply.summary());

    // The same tree with `/dev/sda` claimed as a block device, in a frame of its own making.
    let mut spec = JobSpec::new(&cc, &d, &[&cc.path, "-c", "a.c", "-o", &format!("{d}/a.o")]);
    spec.file(&format!("{d}/a.c"), b"int x;\n")
        .dir("/dev", false);
    let mut msg = serde_json::to_value(offload_shared::protocol::Message::Job(Box::new(
        spec.job.clone(),
    )))
    .expect("json");
    let tree = msg["body"]["tree"].as_array_mut().expect("tree");
    tree.push(serde_json::json!({
        "path": "/dev/sda",
        "kind": {"device": {"block": true, "major": 8, "minor": 0}}
    }));
    let mut q = Peer::connect(worker.addr()).expect("connect");
    offload_shared::protocol::frame::write_frame_blocking(
        &mut q.stream,
        &msg,
        &[],
        offload_shared::protocol::Limits::DEFAULT,
    )
    .expect("send");
    match q.recv() {
        Ok(None) | Err(_) => {}
        Ok(Some((offload_shared::protocol::Message::Error(_), _))) => {}
        Ok(Some(other)) => panic!("a device entry was taken: {other:?}"),
    }
    legit(&worker);
}

/// Attack 5: the real gcc is told to read a secret of the worker's `/etc` by absolute
/// path, in every way a command line or a source can name one: `#include "/etc/…"`,
/// `-include`, `-imacros`, `--sysroot`, `-I`/`-isystem`/`-iquote`/`-idirafter /etc`, the
/// secret as the input itself, a response file `@/etc/…`, `-fdebug-prefix-map`, and
/// through `/proc/self/root` and `/proc/1/root` with a `/proc` in the tree. The file is not
/// in the job root: each job is refused or fails, and the secret's bytes appear in no reply.
#[test]
fn absolute_paths_to_the_worker_s_files_read_nothing() {
    let worker = NetnsWorker::start(1);
    let (secret_path, needle) = plant_secret("include");
    let s = secret_path.to_string_lossy().into_owned();
    let name = secret_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let rsp = PathBuf::from(format!("/etc/offload-e2e-rsp-{}", std::process::id()));
    std::fs::write(&rsp, format!("-include {s} -D{needle}=1\n")).expect("write rsp");
    let r = rsp.to_string_lossy().into_owned();
    let cc = peer::compiler_ref("/usr/bin/gcc");
    let dir = offload_e2e::twice::fresh_dir("tree-abs-include");
    let d = dir.to_string_lossy().into_owned();
    let inc = |p: &str| format!("#include \"{p}\"\nint x;\n");
    let plain = "int x;\n".to_owned();
    let by_name = inc(&name);
    let cases: Vec<(Vec<String>, String, bool)> = vec![
        (vec![], inc(&s), false),
        (vec!["-include".into(), s.clone()], plain.clone(), false),
        (vec![format!("-include{s}")], plain.clone(), false),
        (vec!["-imacros".into(), s.clone()], plain.clone(), false),
        (
            vec!["--sysroot=/etc".into()],
            format!("#include <{name}>\n"),
            false,
        ),
        (vec!["-I/etc".into()], by_name.clone(), false),
        (
            vec!["-isystem".into(), "/etc".into()],
            by_name.clone(),
            false,
        ),
        (
            vec!["-iquote".into(), "/etc".into()],
            by_name.clone(),
            false,
        ),
        (
            vec!["-idirafter".into(), "/etc".into()],
            by_name.clone(),
            false,
        ),
        (vec![format!("@{r}")], plain.clone(), false),
        (
            vec!["-g".into(), format!("-fdebug-prefix-map=/etc={d}")],
            inc(&s),
            false,
        ),
        (vec![], inc(&format!("/proc/self/root{s}")), true),
        (vec![], inc(&format!("/proc/1/root{s}")), true),
    ];
    let mut p = Peer::connect(worker.addr()).expect("connect");
    let mut replies = Vec::new();
    for (extra, source, proc_dir) in &cases {
        let mut argv: Vec<&str> = vec!["/usr/bin/gcc"];
        argv.extend(extra.iter().map(String::as_str));
        argv.extend(["-c", "a.c", "-o", "a.o"]);
        let mut spec = JobSpec::new(&cc, &d, &argv);
        spec.system_includes("/usr/bin/gcc")
            .file(&format!("{d}/a.c"), source.as_bytes());
        if *proc_dir {
            spec.dir("/proc", false);
        }
        replies.push((argv.join(" "), p.job(&spec.job, &spec.blobs)));
    }
    // The secret itself as the input.
    let mut spec = JobSpec::new(&cc, &d, &["/usr/bin/gcc", "-x", "c", "-c", &s, "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc");
    replies.push((format!("gcc -c {s}"), p.job(&spec.job, &spec.blobs)));
    let _ = std::fs::remove_file(&secret_path);
    let _ = std::fs::remove_file(&rsp);
    for (what, reply) in &replies {
        assert!(
            !contains(&reply.all_bytes(), &needle),
            "{what}: the worker's secret came back: {}",
            reply.summary()
        );
        match reply {
            JobReply::Done { done, files, .. } => {
                assert_ne!(
                    done.status,
                    ExitStatus::Code(0),
                    "{what}: {}",
                    reply.summary()
                );
                assert!(files.is_empty(), "{what}: {}", reply.summary());
            }
            JobReply::Rejected(reason) => {
                assert!(!reason.contains(WORKER_DIR), "{what}: {reason}");
            }
            other => panic!("{what}: {}", other.summary()),
        }
    }
    legit(&worker);
}
