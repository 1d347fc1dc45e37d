//! A peer that speaks the worker's frames directly (`offload_shared::protocol`), for the
//! hostile-peer tests: it can send anything a well-behaved host would and anything it would
//! not (a job with any argv, environment or tree, a toolchain query naming any path, a
//! bundle of its own making), and reads the worker's answers as they are.
//!
//! [`legit_compile`] is the check every attack test ends with: an ordinary compile sent the
//! way the host sends it, whose object must equal a local compile of the same command.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use offload_secure::Identity;
use offload_shared::Digest;
use offload_shared::protocol::frame::{read_frame_blocking, write_frame_blocking};
use offload_shared::protocol::{
    Blobs, CompilerRef, FrameError, Hello, JobDone, JobRequest, Limits, Message, PROTOCOL_NAME,
    PROTOCOL_VERSION, ToolchainBundle, ToolchainInfo, ToolchainOffer, Welcome, payload,
};
use offload_shared::tree::{EntryKind, TreeEntry};

/// How long a reply may take before the peer gives up (a hung worker fails the test).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// One connection to a worker, greeted.
#[derive(Debug)]
pub struct Peer {
    /// The stream, for tests that write raw bytes.
    pub stream: TcpStream,
    /// The worker's answer to the greeting.
    pub welcome: Welcome,
}

/// How the worker answered a job.
#[derive(Debug)]
pub enum JobReply {
    /// It ran: the report, stdout, stderr and the output files by path.
    Done {
        /// The report.
        done: JobDone,
        /// Standard output.
        stdout: Vec<u8>,
        /// Standard error.
        stderr: Vec<u8>,
        /// Output files by host path.
        files: BTreeMap<String, Vec<u8>>,
    },
    /// It declined, with this reason.
    Rejected(String),
    /// It answered with a protocol error (and closes the connection).
    Error(String),
    /// It closed the connection without an answer.
    Closed,
}

impl JobReply {
    /// The output file at `path`, if the job ran and made it.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self {
            JobReply::Done { files, .. } => files.get(path).map(Vec::as_slice),
            _ => None,
        }
    }

    /// The reply, shortened for a failure message.
    pub fn summary(&self) -> String {
        let s = format!("{self:?}");
        s.chars().take(3000).collect()
    }

    /// Every byte the worker sent back (report text, streams, files, reasons), to look for
    /// secrets in.
    pub fn all_bytes(&self) -> Vec<u8> {
        match self {
            JobReply::Done {
                done,
                stdout,
                stderr,
                files,
            } => {
                let mut v = format!("{done:?}").into_bytes();
                v.extend_from_slice(stdout);
                v.extend_from_slice(stderr);
                for (p, b) in files {
                    v.extend_from_slice(p.as_bytes());
                    v.extend_from_slice(b);
                }
                v
            }
            JobReply::Rejected(r) | JobReply::Error(r) => r.clone().into_bytes(),
            JobReply::Closed => Vec::new(),
        }
    }
}

impl Peer {
    /// Connects as the tests' host (which the workers trust), runs the secure handshake
    /// and greets with this build's protocol version.
    pub fn connect(addr: SocketAddr) -> Result<Peer, String> {
        Peer::hello_over(secure(addr, crate::keys::host_identity())?)
    }

    /// [`Peer::connect`] from the local address `from` (another peer, to the worker).
    pub fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<Peer, String> {
        let tcp = connect_from(addr, from)?;
        Peer::hello_over(secure_pipe(tcp, crate::keys::host_identity())?)
    }

    /// Says hello over a connected stream.
    pub fn hello_over(stream: TcpStream) -> Result<Peer, String> {
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut p = Peer {
            stream,
            welcome: Welcome {
                version: 0,
                worker: String::new(),
                slots: 0,
                arch: String::new(),
            },
        };
        p.send(
            &Message::Hello(Hello {
                protocol: PROTOCOL_NAME.into(),
                version: PROTOCOL_VERSION,
                client: "hostile-peer".into(),
            }),
            &[],
        )
        .map_err(|e| format!("hello: {e}"))?;
        match p.recv() {
            Ok(Some((Message::Welcome(w), _))) => {
                p.welcome = w;
                Ok(p)
            }
            other => Err(format!("expected welcome, got {other:?}")),
        }
    }

    /// Sends one frame.
    pub fn send(&mut self, msg: &Message, payload: &[u8]) -> Result<(), FrameError> {
        write_frame_blocking(&mut self.stream, msg, payload, Limits::DEFAULT)
    }

    /// Reads one frame (`None`: the worker closed the connection between frames).
    pub fn recv(&mut self) -> Result<Option<(Message, Vec<u8>)>, FrameError> {
        read_frame_blocking(&mut self.stream, Limits::DEFAULT)
    }

    /// Asks how the worker would run `compiler`.
    pub fn query(&mut self, compiler: &CompilerRef) -> Result<ToolchainInfo, String> {
        self.send(&Message::ToolchainQuery(compiler.clone()), &[])
            .map_err(|e| e.to_string())?;
        match self.recv() {
            Ok(Some((Message::ToolchainInfo(i), _))) => Ok(i),
            other => Err(format!("expected toolchain info, got {other:?}")),
        }
    }

    /// Offers `bundle` (a tar.zst, see `offload_shared::bundle`) as `compiler`'s toolchain
    /// and sends its bytes if asked; the worker's final answer.
    pub fn ship(&mut self, compiler: &CompilerRef, bundle: &[u8]) -> Result<ToolchainInfo, String> {
        let digest = Digest::of(bundle);
        let offer = ToolchainOffer {
            compiler: compiler.clone(),
            bundle: digest,
            size: bundle.len() as u64,
        };
        self.send(&Message::ToolchainOffer(offer), &[])
            .map_err(|e| e.to_string())?;
        match self.recv() {
            Ok(Some((Message::ToolchainInfo(i), _))) => return Ok(i),
            Ok(Some((Message::NeedToolchain(_), _))) => {}
            other => return Err(format!("expected need_toolchain, got {other:?}")),
        }
        self.send(
            &Message::ToolchainBundle(ToolchainBundle { bundle: digest }),
            bundle,
        )
        .map_err(|e| e.to_string())?;
        match self.recv() {
            Ok(Some((Message::ToolchainInfo(i), _))) => Ok(i),
            other => Err(format!("expected toolchain info, got {other:?}")),
        }
    }

    /// Sends `job`, then the blobs the worker asks for (from `blobs`), and reads the answer.
    pub fn job(&mut self, job: &JobRequest, blobs: &BTreeMap<Digest, Vec<u8>>) -> JobReply {
        if let Err(reply) = self.start_job(job, blobs) {
            return *reply;
        }
        self.finish_job()
    }

    /// Sends `job` and the blobs the worker asks for: the job then runs. An early answer
    /// (a refusal) is the error.
    pub fn start_job(
        &mut self,
        job: &JobRequest,
        blobs: &BTreeMap<Digest, Vec<u8>>,
    ) -> Result<(), Box<JobReply>> {
        if let Err(e) = self.send(&Message::Job(Box::new(job.clone())), &[]) {
            return Err(Box::new(JobReply::Error(format!("sending the job: {e}"))));
        }
        let first = match self.recv() {
            Ok(Some(m)) => m,
            Ok(None) | Err(FrameError::Truncated) => return Err(Box::new(JobReply::Closed)),
            Err(e) => return Err(Box::new(JobReply::Error(format!("reading: {e}")))),
        };
        let (Message::NeedBlobs(need), _) = first else {
            return Err(Box::new(Self::decode_answer(first)));
        };
        if !need.digests.is_empty() {
            let mut parts = Vec::new();
            let mut list = Vec::new();
            for d in &need.digests {
                let bytes = blobs.get(d).cloned().unwrap_or_default();
                list.push((*d, bytes.len() as u64));
                parts.push(bytes);
            }
            let packed = payload::pack(parts.iter().map(Vec::as_slice));
            let msg = Message::Blobs(Blobs {
                job_id: job.job_id,
                blobs: list,
            });
            if let Err(e) = self.send(&msg, &packed) {
                return Err(Box::new(JobReply::Error(format!("sending blobs: {e}"))));
            }
        }
        Ok(())
    }

    /// Reads the answer to a started job.
    pub fn finish_job(&mut self) -> JobReply {
        match self.recv() {
            Ok(Some(m)) => Self::decode_answer(m),
            Ok(None) | Err(FrameError::Truncated) => JobReply::Closed,
            Err(e) => JobReply::Error(format!("reading: {e}")),
        }
    }

    fn decode_answer(answer: (Message, Vec<u8>)) -> JobReply {
        match answer {
            (Message::JobDone(done), bytes) => {
                let mut sizes = vec![done.stdout_len, done.stderr_len];
                sizes.extend(done.outputs.iter().map(|o| o.size));
                let parts = match payload::unpack(&bytes, &sizes, 1 << 31) {
                    Ok(p) => p,
                    Err(e) => return JobReply::Error(format!("bad result payload: {e}")),
                };
                let mut it = parts.into_iter();
                let stdout = it.next().unwrap_or_default();
                let stderr = it.next().unwrap_or_default();
                let files = done
                    .outputs
                    .iter()
                    .map(|o| o.path.clone())
                    .zip(it)
                    .collect();
                JobReply::Done {
                    done,
                    stdout,
                    stderr,
                    files,
                }
            }
            (Message::JobRejected(r), _) => JobReply::Rejected(r.reason),
            (Message::Error(e), _) => JobReply::Error(e.message),
            other => JobReply::Error(format!("unexpected answer {other:?}")),
        }
    }
}

/// The host's description of the compiler at `path` (as `offload build` would send it):
/// driver digest after links, `-dumpfullversion -dumpmachine`, `.ident`.
pub fn compiler_ref(path: &str) -> CompilerRef {
    let real = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let bytes = std::fs::read(&real).unwrap_or_else(|e| panic!("{}: {e}", real.display()));
    let ask = |opt: &str| {
        let o = Command::new(path).arg(opt).output().expect("run compiler");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let ident = offload_shared::toolchain::assembly_ident(Path::new(path), &[])
        .ok()
        .flatten()
        .unwrap_or_default();
    CompilerRef {
        path: path.to_owned(),
        digest: Digest::of(&bytes),
        version: format!("{} {}", ask("-dumpfullversion"), ask("-dumpmachine")),
        ident,
    }
}

/// A job under construction: a tree of directories, links and files at absolute paths.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job as it will be sent.
    pub job: JobRequest,
    /// The bytes of each file in the tree.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

impl JobSpec {
    /// A job running `argv` with `compiler` in `cwd` (a writable directory of the tree), with
    /// `PATH` and `LC_ALL=C` as the host sends them.
    pub fn new(compiler: &CompilerRef, cwd: &str, argv: &[&str]) -> JobSpec {
        let mut s = JobSpec {
            job: JobRequest {
                job_id: 1,
                compiler: compiler.clone(),
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                cwd: cwd.to_owned(),
                env: vec![
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("LC_ALL".into(), "C".into()),
                ],
                tree: Vec::new(),
                system_include_dirs: Vec::new(),
                cc1_argv: Vec::new(),
                timeout_secs: 60,
            },
            blobs: BTreeMap::new(),
        };
        s.dir(cwd, true);
        s
    }

    /// Adds a directory (and its missing ancestors as read-only directories).
    pub fn dir(&mut self, path: &str, writable: bool) -> &mut JobSpec {
        self.ancestors(path);
        self.job.tree.retain(|e| e.path != path);
        self.job.tree.push(TreeEntry {
            path: path.to_owned(),
            kind: EntryKind::Dir { writable },
        });
        self
    }

    /// Adds a file with these bytes.
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> &mut JobSpec {
        self.ancestors(path);
        let digest = Digest::of(bytes);
        self.blobs.insert(digest, bytes.to_vec());
        self.job.tree.push(TreeEntry {
            path: path.to_owned(),
            kind: EntryKind::File {
                digest,
                size: bytes.len() as u64,
                executable: false,
            },
        });
        self
    }

    /// Adds an entry exactly as given (no ancestors added, no checks): for trees no host
    /// would send.
    pub fn raw_entry(&mut self, path: &str, kind: EntryKind) -> &mut JobSpec {
        self.job.tree.push(TreeEntry {
            path: path.to_owned(),
            kind,
        });
        self
    }

    /// The kind of a file holding `bytes` (its blob added), for [`JobSpec::raw_entry`].
    pub fn file_kind(&mut self, bytes: &[u8]) -> EntryKind {
        let digest = Digest::of(bytes);
        self.blobs.insert(digest, bytes.to_vec());
        EntryKind::File {
            digest,
            size: bytes.len() as u64,
            executable: false,
        }
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut JobSpec {
        self.ancestors(path);
        self.job.tree.push(TreeEntry {
            path: path.to_owned(),
            kind: EntryKind::Symlink {
                target: target.to_owned(),
            },
        });
        self
    }

    /// Adds the compiler's built-in include directories (as `gcc -E -v` lists them) and
    /// `<stdc-predef.h>`, as the host's tree does for every job.
    pub fn system_includes(&mut self, compiler: &str) -> &mut JobSpec {
        let out = Command::new(compiler)
            .args(["-xc", "-E", "-v", "/dev/null"])
            .env("LC_ALL", "C")
            .output()
            .expect("run compiler");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut on = false;
        for line in text.lines() {
            if line.starts_with("#include <...>") {
                on = true;
            } else if line.starts_with("End of search list") {
                on = false;
            } else if on && let Ok(p) = std::fs::canonicalize(line.trim()) {
                let p = p.to_string_lossy().into_owned();
                self.dir(&p, false);
                self.job.system_include_dirs.push(p);
            }
        }
        if let Ok(bytes) = std::fs::read("/usr/include/stdc-predef.h") {
            self.file("/usr/include/stdc-predef.h", &bytes);
        }
        self
    }

    fn ancestors(&mut self, path: &str) {
        let mut p = PathBuf::from(path);
        let mut missing = Vec::new();
        while p.pop() && p != Path::new("/") {
            let s = p.to_string_lossy().into_owned();
            if !self.job.tree.iter().any(|e| e.path == s) {
                missing.push(s);
            }
        }
        for s in missing.into_iter().rev() {
            self.job.tree.push(TreeEntry {
                path: s,
                kind: EntryKind::Dir { writable: false },
            });
        }
    }
}

/// An ordinary gcc job in `d` (`gcc -c a.c -o a.o` with the host's gcc and its system
/// headers), for hostile trees to be added to.
pub fn gcc_job(cc: &CompilerRef, d: &str) -> JobSpec {
    let mut spec = JobSpec::new(cc, d, &["/usr/bin/gcc", "-c", "a.c", "-o", "a.o"]);
    spec.system_includes("/usr/bin/gcc")
        .file(&format!("{d}/a.c"), b"int x;\n");
    spec
}

/// The check that ends every attack test: the worker compiles an ordinary C file for a
/// new connection, and the object equals a local compile of the same command at the same
/// path. Returns the reply for further checks.
pub fn legit_compile(addr: SocketAddr) -> Result<(), String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = crate::twice::fresh_dir(&format!("legit-after-attack-{}-{n}", std::process::id()));
    let dir_s = dir.to_string_lossy().into_owned();
    let src = b"int answer(int x) { return x * 42 + 1; }\n";
    std::fs::write(dir.join("legit.c"), src).map_err(|e| e.to_string())?;
    let argv = ["/usr/bin/gcc", "-O2", "-c", "legit.c", "-o", "legit.o"];
    let local = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| e.to_string())?;
    if !local.status.success() {
        return Err(format!("local compile failed: {local:?}"));
    }
    let want = std::fs::read(dir.join("legit.o")).map_err(|e| e.to_string())?;
    let cc = compiler_ref("/usr/bin/gcc");
    let mut spec = JobSpec::new(&cc, &dir_s, &argv);
    spec.system_includes(argv[0])
        .file(&format!("{dir_s}/legit.c"), src);
    let mut peer = Peer::connect(addr)?;
    let info = peer.query(&cc)?;
    let reply = peer.job(&spec.job, &spec.blobs);
    match reply.file(&format!("{dir_s}/legit.o")) {
        Some(got) if got == want => Ok(()),
        Some(_) => Err("the worker's object differs from the local compile".into()),
        None => Err(format!(
            "the worker did not compile a legitimate job ({info:?}): {reply:?}"
        )),
    }
}

/// A TCP connection to `addr` from the local address `from`.
pub fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<TcpStream, String> {
    use socket2::{Domain, Socket, Type};
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| e.to_string())?;
    s.bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect {addr} from {from}: {e}"))?;
    Ok(s.into())
}

/// Connects to `addr` as `identity` through the secure handshake, without greeting: the
/// plain end of a local pipe whose bytes reach the worker encrypted (see [`secure_pipe`]).
pub fn secure(addr: SocketAddr, identity: &'static Identity) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    secure_pipe(tcp, identity)
}

/// Runs the secure handshake as `identity` over `tcp` (connected to a worker) and gives
/// back a loopback stream whose bytes a proxy thread carries through the encrypted channel,
/// both ways, as they come: so the attacks below write and read the worker's frames (or
/// any bytes, at any pace) with plain sockets, and the worker sees them exactly so, inside
/// the channel. Closing the stream closes the channel (with its authenticated close);
/// the worker closing the channel closes the stream.
pub fn secure_pipe(tcp: TcpStream, identity: &'static Identity) -> Result<TcpStream, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let here = listener.local_addr().map_err(|e| e.to_string())?;
    let local = TcpStream::connect(here).map_err(|e| e.to_string())?;
    let (inner, _) = listener.accept().map_err(|e| e.to_string())?;
    let _ = local.set_nodelay(true);
    let _ = inner.set_nodelay(true);
    let _ = tcp.set_nodelay(true);
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let tokio_of = |s: TcpStream| {
                s.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(s)
            };
            let (tcp, mut inner) = match (tokio_of(tcp), tokio_of(inner)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let shake = offload_secure::initiate(tcp, identity);
            match tokio::time::timeout(Duration::from_secs(15), shake).await {
                Ok(Ok((mut channel, _))) => {
                    let _ = tx.send(Ok(()));
                    let _ = tokio::io::copy_bidirectional(&mut inner, &mut channel).await;
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(format!("secure handshake: {e}")));
                }
                Err(_) => {
                    let _ = tx.send(Err("secure handshake: timed out".into()));
                }
            }
        });
    });
    rx.recv()
        .map_err(|_| "the secure pipe's thread ended".to_string())??;
    Ok(local)
}

/// Connects to `addr` without greeting (for raw-byte attacks).
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(REPLY_TIMEOUT));
    s
}

/// A "compiler" of the attacker's making, shipped as a toolchain bundle: `bin/gcc` below a
/// fresh directory is a `busybox sh` script (`script`, run with the job's argv), and the
/// bundle holds it and the static `/bin/busybox` (Debian's busybox-static), so the script
/// can use any busybox applet (`busybox nc`, `busybox ln`, …) inside the job. A paired but
/// malicious host can do exactly this: what the script does is what the sandbox must
/// contain. Returns the compiler as the job must name it and the bundle's bytes.
pub fn hostile_toolchain(name: &str, script: &str) -> (CompilerRef, Vec<u8>) {
    let dir = crate::twice::fresh_dir(&format!("hostile-tc-{name}"));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let gcc = bin.join("gcc");
    let text = format!("#!/bin/busybox sh\n{script}\n");
    std::fs::write(&gcc, &text).expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gcc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut w = offload_shared::walk::PathWalker::new();
    for p in [gcc.as_path(), Path::new("/bin/busybox")] {
        w.resolve(p, Path::new("/"))
            .unwrap_or_else(|e| panic!("{}: {e} (install busybox-static)", p.display()));
    }
    let bundle = offload_shared::bundle::pack(&w.into_nodes()).expect("pack bundle");
    let cc = CompilerRef {
        path: gcc.to_string_lossy().into_owned(),
        digest: Digest::of(text.as_bytes()),
        version: "12.2.0 x86_64-linux-gnu".into(),
        ident: "GCC: (hostile) 12.2.0".into(),
    };
    (cc, bundle)
}

/// One entry of a bundle made by [`pack_entries`].
#[derive(Debug, Clone)]
pub enum BundleEntry {
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Link(String),
    /// A file: its bytes, executable or not.
    File(Vec<u8>, bool),
}

/// A bundle in the worker's format (zstd-compressed tar, paths relative to `/`, parents
/// first) of exactly these entries, at their absolute paths: for bundles that no real
/// compiler's files make, such as a real driver beside a backdoored cc1.
pub fn pack_entries(entries: &BTreeMap<PathBuf, BundleEntry>) -> Vec<u8> {
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    let mut tar = tar::Builder::new(enc);
    for (path, entry) in entries {
        let rel = path.strip_prefix("/").expect("absolute bundle path");
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match entry {
            BundleEntry::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, rel, std::io::empty()).expect("dir");
            }
            BundleEntry::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, rel, target).expect("link");
            }
            BundleEntry::File(bytes, exec) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(bytes.len() as u64);
                tar.append_data(&mut h, rel, &bytes[..]).expect("file");
            }
        }
    }
    tar.into_inner().expect("tar").finish().expect("zstd end")
}

/// The entries of the host's real compiler at `compiler` (as a shipped bundle holds them),
/// for [`pack_entries`].
pub fn real_toolchain_entries(compiler: &str) -> BTreeMap<PathBuf, BundleEntry> {
    let collected = offload_shared::toolchain::collect(compiler)
        .expect("collect the compiler's files")
        .expect("a compiler at that path");
    collected
        .nodes
        .into_iter()
        .filter(|(p, _)| p != Path::new("/"))
        .map(|(p, n)| {
            let e = match n {
                offload_shared::walk::Node::Dir => BundleEntry::Dir,
                offload_shared::walk::Node::Symlink(t) => {
                    BundleEntry::Link(t.to_string_lossy().into_owned())
                }
                offload_shared::walk::Node::File => {
                    use std::os::unix::fs::PermissionsExt;
                    let meta = std::fs::metadata(&p).expect("stat");
                    BundleEntry::File(
                        std::fs::read(&p).expect("read"),
                        meta.permissions().mode() & 0o111 != 0,
                    )
                }
            };
            (p, e)
        })
        .collect()
}

/// Whether `path` exists in the mount namespace of process `pid` (a worker's private
/// `/tmp`, say).
pub fn exists_in_mount_ns(pid: u32, path: &str) -> bool {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "test", "-e", path])
        .status()
        .is_ok_and(|s| s.success())
}

/// The resident set of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The peak resident set of process `pid` so far (`VmHWM`), in KiB: what a process read
/// into memory and freed again still shows here.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
