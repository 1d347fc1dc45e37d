//! A worker under test on a host of its own: a network namespace joined to the host by a
//! veth pair (`10.231.N.1/30` on the host side, `10.231.N.2/30` inside), and a mount
//! namespace of its own with a private tmpfs on `/tmp`, so that it sees none of the test
//! trees (which all live under the host's `/tmp`) and gets every input through the protocol.
//!
//! Workers started on a [`Lan`] share one link instead: their veths are ports of a bridge
//! on the host (`10.233.S.1/24`), as machines on one switch are.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::paths::{TEST_ROOT, require_root, worker_bin};

/// The port the worker listens on inside its namespace.
pub const WORKER_PORT: u16 = 7420;

/// How long the worker may take to start listening before the test gives up on it.
const START_LIMIT: Duration = Duration::from_secs(15);

static SEQ: AtomicU32 = AtomicU32::new(0);
static SETUP: Mutex<()> = Mutex::new(());

/// A worker process in its own network and mount namespaces. Dropping it kills the worker
/// and removes the namespace and the veth pair.
#[derive(Debug)]
pub struct NetnsWorker {
    ns: String,
    host_veth: String,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
    log: PathBuf,
    /// Shell run in the worker's mount namespace before it starts.
    setup: String,
    /// More `offload worker` arguments.
    args: Vec<String>,
    /// Its key file (outside its private `/tmp`), and the key's fingerprint.
    key_file: PathBuf,
    fingerprint: offload_secure::Fingerprint,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Holds an exclusive `flock` on a file, so that concurrent test processes pick distinct
/// subnets.
struct FileLock(File);

impl FileLock {
    fn take(path: &str) -> FileLock {
        let f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {path}: {}", std::io::Error::last_os_error());
        FileLock(f)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: plain syscall on an fd we own.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Removes namespaces `offl-PID-N` left by test processes that no longer run.
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("offl-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(name);
        let _ = ip(&["netns", "del", name]);
    }
}

/// Removes worker logs `worker-offl-PID-N.log` of test processes that no longer run (a
/// failing test keeps its worker's log until then).
fn remove_stale_logs() {
    let Ok(rd) = std::fs::read_dir(TEST_ROOT) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("worker-offl-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// SIGKILLs every process in the namespace, by pid.
fn kill_all_in(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain syscall; these are the worker and its compilers, started by us.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The third octets of `PREFIX.X.0` subnets (`10.231` or `10.233`) in use on the host.
fn used_subnets(prefix: &str) -> Vec<u8> {
    let addrs = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    let prefix = format!("{prefix}.");
    addrs
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

/// Holds both locks that make subnet choices unique: this process's threads and other
/// test processes.
fn subnet_lock() -> (std::sync::MutexGuard<'static, ()>, FileLock) {
    let in_process = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let across_processes = FileLock::take(&format!("{TEST_ROOT}/.netns.lock"));
    remove_stale_namespaces();
    remove_stale_logs();
    (in_process, across_processes)
}

/// One LAN segment on the host: a bridge `obPID-N` in the host's namespace holding
/// `10.233.S.1/24`, whose ports are the veths of the workers started on it
/// ([`NetnsWorker::on_lan`]), at `10.233.S.2`, `.3`, …: the host and those workers share
/// one link, so mDNS from any of them reaches all. Dropping it removes the bridge (drop
/// its workers first).
#[derive(Debug)]
pub struct Lan {
    bridge: String,
    octet: u8,
    next: AtomicU8,
}

impl Lan {
    /// Creates the bridge, up, with the host's address on it.
    pub fn new() -> Lan {
        require_root();
        std::fs::create_dir_all(TEST_ROOT).expect("creating the test root");
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("ob{}n{seq}", std::process::id());
        let _locks = subnet_lock();
        remove_stale_bridges();
        let used = used_subnets("10.233");
        let octet = (1..=254u8)
            .find(|o| !used.contains(o))
            .expect("no free 10.233.X.0/24 subnet");
        let host_ip = format!("10.233.{octet}.1/24");
        let steps: [&[&str]; 3] = [
            // No multicast snooping: the bridge floods mDNS to every port, as a plain
            // switch does.
            &[
                "link",
                "add",
                &bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
            &["addr", "add", &host_ip, "dev", &bridge],
            &["link", "set", &bridge, "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                let _ = ip(&["link", "del", &bridge]);
                panic!("cannot set up the test LAN: {e}");
            }
        }
        Lan {
            bridge,
            octet,
            next: AtomicU8::new(2),
        }
    }
}

impl Default for Lan {
    fn default() -> Lan {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Removes bridges `obPID-N` of test processes that no longer run.
fn remove_stale_bridges() {
    let Ok(list) = ip(&["-o", "link", "show", "type", "bridge"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("ob")
            .and_then(|r| r.split('n').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl NetnsWorker {
    /// Creates the namespaces and starts `offload worker --slots SLOTS` in them; returns once
    /// a TCP connection from the host succeeds. Panics (never skips) when any of it fails.
    pub fn start(slots: u32) -> NetnsWorker {
        NetnsWorker::start_with_setup(slots, "")
    }

    /// [`NetnsWorker::start`], running the shell snippet `setup` inside the worker's own
    /// mount namespace first (after its private `/tmp` is mounted): e.g. a bind mount that
    /// gives the worker a different program than the host's.
    pub fn start_with_setup(slots: u32, setup: &str) -> NetnsWorker {
        NetnsWorker::start_with(slots, setup, &[])
    }

    /// [`NetnsWorker::start`] with more `offload worker` arguments (limits, timeouts).
    pub fn start_with_args(slots: u32, args: &[&str]) -> NetnsWorker {
        NetnsWorker::start_with(slots, "", args)
    }

    /// [`NetnsWorker::start`] with the key in `key_file` (made beforehand, e.g. to pin it
    /// before the worker announces itself); the file is removed with the worker.
    pub fn start_with_key(slots: u32, key_file: &std::path::Path) -> NetnsWorker {
        NetnsWorker::start_keyed(slots, "", &[], Some(key_file), None)
    }

    /// A worker plugged into `lan` (instead of a link of its own), with the key in
    /// `key_file` (removed with the worker).
    pub fn on_lan(lan: &Lan, slots: u32, key_file: &std::path::Path) -> NetnsWorker {
        NetnsWorker::start_keyed(slots, "", &[], Some(key_file), Some(lan))
    }

    fn start_with(slots: u32, setup: &str, args: &[&str]) -> NetnsWorker {
        NetnsWorker::start_keyed(slots, setup, args, None, None)
    }

    fn start_keyed(
        slots: u32,
        setup: &str,
        args: &[&str],
        key: Option<&std::path::Path>,
        lan: Option<&Lan>,
    ) -> NetnsWorker {
        require_root();
        std::fs::create_dir_all(TEST_ROOT).expect("creating the test root");
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = format!("offl-{pid}-{seq}");
        let host_veth = format!("oh{pid}n{seq}");
        let ns_veth = format!("on{pid}n{seq}");
        let log = PathBuf::from(TEST_ROOT).join(format!("worker-{ns}.log"));
        // Outside /tmp, which the worker's mount namespace replaces.
        let (key_file, fingerprint) = match key {
            Some(k) => {
                let id = offload_secure::Identity::from_file(k)
                    .unwrap_or_else(|e| panic!("the key {}: {e}", k.display()));
                (k.to_owned(), id.fingerprint())
            }
            None => {
                let k = PathBuf::from(crate::keys::WORKER_KEYS).join(format!("worker-{ns}.key"));
                let fp = crate::keys::new_key_file(&k);
                (k, fp)
            }
        };

        let ns_addr = {
            let _locks = subnet_lock();
            // The host's side of the veth: a port of the LAN's bridge, or a /30 of its own.
            let (host_side, ns_ip, addr) = match lan {
                Some(lan) => {
                    let n = lan.next.fetch_add(1, Ordering::Relaxed);
                    assert!(n < 255, "the test LAN is full");
                    let addr = format!("10.233.{}.{n}", lan.octet);
                    let plug = ["link", "set", &host_veth, "master", &lan.bridge];
                    (plug.map(String::from), format!("{addr}/24"), addr)
                }
                None => {
                    let used = used_subnets("10.231");
                    let octet = (1..=254u8)
                        .find(|o| !used.contains(o))
                        .expect("no free 10.231.X.0/30 subnet");
                    let addr = format!("10.231.{octet}.2");
                    let host_ip = format!("10.231.{octet}.1/30");
                    let own = ["addr", "add", &host_ip, "dev", &host_veth];
                    (own.map(String::from), format!("{addr}/30"), addr)
                }
            };
            let mut steps: Vec<Vec<&str>> = vec![
                vec!["netns", "add", &ns],
                vec![
                    "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth,
                ],
                vec!["link", "set", &ns_veth, "netns", &ns],
            ];
            steps.extend([
                host_side.iter().map(String::as_str).collect(),
                vec!["link", "set", &host_veth, "up"],
                vec!["-n", &ns, "addr", "add", &ns_ip, "dev", &ns_veth],
                vec!["-n", &ns, "link", "set", &ns_veth, "up"],
                vec!["-n", &ns, "link", "set", "lo", "up"],
            ]);
            for step in &steps {
                if let Err(e) = ip(step) {
                    let _ = ip(&["link", "del", &host_veth]);
                    let _ = ip(&["netns", "del", &ns]);
                    panic!("cannot set up the worker's network namespace: {e}");
                }
            }
            addr
        };
        let addr: SocketAddr = format!("{ns_addr}:{WORKER_PORT}").parse().expect("addr");
        let w = NetnsWorker {
            ns,
            host_veth,
            addr,
            child: Mutex::new(None),
            log,
            setup: setup.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            key_file,
            fingerprint,
        };
        w.spawn(slots);
        w
    }

    fn spawn(&self, slots: u32) {
        let bin = worker_bin();
        let setup = if self.setup.is_empty() {
            String::new()
        } else {
            format!("{} && ", self.setup)
        };
        let mut args: String = self
            .args
            .iter()
            .map(|a| format!(" {}", crate::cmd::shell_quote(a)))
            .collect();
        // The host's compiles load the same CPUs: the idle policy would stop it lending.
        if !self.args.iter().any(|a| a == "--lend") {
            args.push_str(" --lend always");
        }
        let script = format!(
            "mount -t tmpfs tmpfs /tmp && {setup}exec {} worker --listen {} --slots {slots} --work-dir /tmp/offload-worker --state-dir /tmp/offload-worker-state --key-file {} --trust-host {}{args}",
            crate::cmd::shell_quote(&bin.to_string_lossy()),
            self.addr,
            crate::cmd::shell_quote(&self.key_file.to_string_lossy()),
            crate::keys::host_fingerprint(),
        );
        // Appended to: a restarted worker's log follows its predecessor's.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .env(
                "OFFLOAD_LOG",
                std::env::var("OFFLOAD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the worker: {e}"));
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_ok() {
                return;
            }
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "the worker in {} exited before listening ({status}):\n{}",
                    self.ns,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the worker in {} did not accept connections on {} within {START_LIMIT:?}:\n{}",
                self.ns,
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `10.231.N.2:7420`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `--worker` argument: the worker's address, with the fingerprint of the key it
    /// must prove.
    pub fn worker_arg(&self) -> String {
        format!("{}@{}", self.fingerprint, self.addr)
    }

    /// The worker's key file.
    pub fn key_file(&self) -> &std::path::Path {
        &self.key_file
    }

    /// The fingerprint of the worker's key.
    pub fn fingerprint(&self) -> offload_secure::Fingerprint {
        self.fingerprint
    }

    /// The namespace's name.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The worker's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Whether the worker process still runs.
    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the worker and every compile it runs (SIGKILL, as a crash would), and waits
    /// for it. The namespace stays until drop.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_mut() {
            let _ = c.kill();
            kill_all_in(&self.ns);
            let _ = c.wait();
        }
        *guard = None;
    }

    /// Every process in the worker's namespace: the worker and its compiles.
    pub fn pids(&self) -> Vec<u32> {
        ip(&["netns", "pids", &self.ns])
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in the worker's namespace (the worker and its
    /// compiles): `SIGSTOP` makes a worker that stalls with its connections open (its
    /// kernel still answers TCP), `SIGCONT` lets it go on.
    pub fn signal_all(&self, signal: libc::c_int) {
        for pid in self.pids() {
            // SAFETY: plain syscall; these are the worker and its compiles.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Takes the worker's machine off the network without a word, as a powered-off or
    /// unplugged machine leaves: its end of the link goes down, so the host's packets are
    /// dropped and nothing (no RST, no FIN) comes back. The worker keeps running.
    pub fn vanish(&self) {
        let dev = self.host_veth.replacen("oh", "on", 1);
        ip(&["-n", &self.ns, "link", "set", &dev, "down"])
            .unwrap_or_else(|e| panic!("cannot take the worker's link down: {e}"));
    }

    /// Sends SIGTERM to the worker and waits up to `limit` for it to exit: its status, or
    /// `None` if it still runs.
    pub fn terminate(&self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let c = guard.as_mut()?;
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                *guard = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A second address on the host's side, routed to the worker: connections bound to it
    /// come from another peer as the worker sees it.
    pub fn second_host_ip(&self) -> std::net::IpAddr {
        let std::net::IpAddr::V4(v4) = self.addr.ip() else {
            panic!("the worker's address is IPv4");
        };
        let o = v4.octets()[2];
        let second = format!("10.232.{o}.1");
        let ns_veth = self.host_veth.replacen("oh", "on", 1);
        let host = format!("{second}/32");
        let steps: [Vec<&str>; 2] = [
            vec!["addr", "add", &host, "dev", &self.host_veth],
            vec!["-n", &self.ns, "route", "add", &host, "dev", &ns_veth],
        ];
        for step in &steps {
            if let Err(e) = ip(step) {
                panic!("cannot add a second host address: {e}");
            }
        }
        second.parse().expect("address")
    }

    /// Kills the worker as [`NetnsWorker::kill`] does and starts a new one in the same
    /// namespaces (same address, same setup, a fresh private `/tmp`); returns once it accepts
    /// connections.
    pub fn restart(&self, slots: u32) {
        self.kill();
        self.spawn(slots);
    }

    /// The file the worker's stdout and stderr go to (every run of it, appended); removed on
    /// drop unless the thread panics.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// `offload worker ARGS` against this worker's control socket, run in its mount
    /// namespace (its state directory is in its private `/tmp`).
    pub fn control(&self, args: &[&str]) -> crate::cmd::Output {
        let pid = self.pid().expect("the worker runs").to_string();
        let mut argv: Vec<String> = ["nsenter", "-t", &pid, "-m", "--"]
            .map(String::from)
            .to_vec();
        argv.push(worker_bin().to_string_lossy().into_owned());
        argv.push("worker".into());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(["--state-dir".into(), "/tmp/offload-worker-state".into()]);
        crate::cmd::Cmd::new(argv, std::path::Path::new("/")).run()
    }

    /// What the worker printed.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        const TAIL: usize = 16 * 1024;
        if s.len() > TAIL {
            let mut cut = s.len() - TAIL;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s = format!("[… {cut} bytes]\n{}", &s[cut..]);
        }
        s
    }
}

impl Drop for NetnsWorker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- worker log ({}, {}) ----\n{}",
                self.ns,
                self.log.display(),
                self.log_text()
            );
        }
        self.kill();
        kill_all_in(&self.ns);
        let _ = ip(&["netns", "del", &self.ns]);
        // Deleting the namespace destroys the peer and with it the pair; this is for the case
        // where the peer never got moved into it.
        let _ = ip(&["link", "del", &self.host_veth]);
        let _ = std::fs::remove_file(&self.key_file);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
