//! Runs one compile inside its job root, in a sandbox of independent layers. Each layer is
//! probed once ([`Layers::probe`]); one the kernel refuses (no `CAP_SYS_ADMIN` in a
//! container, qemu-user, …) is left out and reported missing, the others still apply.
//!
//! - Namespaces: mount (`/` made private before the `chroot`), PID (a small init is PID 1
//!   and the compiler PID 2; when init exits the kernel kills everything the job left),
//!   network (a loopback interface only, left down), IPC and UTS (hostname `offload-job`).
//!   A user namespace only when the worker is not root or plain namespaces are refused.
//!   The UTS layer counts only where the job's hostname can be set (Docker's default
//!   seccomp profile refuses `sethostname` without `CAP_SYS_ADMIN`, even inside a user
//!   namespace of the job's own).
//! - A fresh `/proc` (layer `proc`) only when the job root already has a `/proc` directory,
//!   and only where the kernel lets the job mount one: in a user namespace it refuses while
//!   the worker's own `/proc` has paths masked (Docker masks some unless
//!   `--security-opt systempaths=unconfined`). Without it such a job's `/proc` stays empty.
//! - The compiler: `chroot`, the host's working directory, an unprivileged user,
//!   `PR_SET_NO_NEW_PRIVS`, rlimits ([`RLIMITS`] and CPU = timeout + 1 s), no descriptor
//!   but 0–2, and a seccomp deny-list ([`DENIED_SYSCALLS`] fail with `EPERM`).
//! - The worker: a wall-clock timeout and [`OUTPUT_LIMIT`] per stream; either kills the job.
//!
//! Deliberately absent: cgroups (memory and CPU are bounded by rlimits only), an
//! allow-list seccomp policy, a `/dev`, and any network interface but a down loopback.
//! Without the PID layer (a container with Docker's default profile, qemu-user) a job's
//! leftovers are ended by its uid instead: the slot's user is the job's alone, so when the
//! compiler ends (or the job is killed) every process of that uid is killed
//! ([`kill_user`]), `setsid` daemons included, and init, a subreaper then, reaps them.
//! Without a user of the job's own they are killed by process group only (`setsid`
//! escapes).
//!
//! Between `clone` and `execve` the children make raw system calls only, on memory
//! prepared before the `clone` (the worker is multithreaded: no allocation, no locks, and
//! no glibc `setuid`, whose all-threads broadcast would act on threads the child lacks).
//! Every job's init is cloned from one thread that lives as long as the worker: its
//! parent-death signal follows that thread, not the runtime thread that asked.

use std::ffi::{CString, c_int, c_uint};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use offload_shared::protocol::ExitStatus;
use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use crate::jobroot::JobUser;

/// The most either output stream may hold; more kills the job.
pub const OUTPUT_LIMIT: u64 = 16 << 20;

/// System calls the compiler's seccomp filter makes fail with `EPERM`.
pub const DENIED_SYSCALLS: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("personality", libc::SYS_personality),
    // Its requests open and connect sockets past the `socket` rule below.
    ("io_uring_setup", libc::SYS_io_uring_setup),
];

/// The only socket families a compile may open (`socket` fails with `EPERM` for any
/// other): local sockets and the kernel's netlink, never a network. Where the worker
/// cannot give jobs a network namespace (Docker's default profile) this is what keeps
/// them off the container's network.
pub const SOCKET_FAMILIES: [c_int; 2] = [libc::AF_UNIX, libc::AF_NETLINK];

/// Resource limits of the compiler besides `RLIMIT_CPU`: (resource, soft = hard limit).
pub const RLIMITS: [(c_int, u64); 5] = [
    (libc::RLIMIT_AS as c_int, 8 << 30),
    (libc::RLIMIT_FSIZE as c_int, 1 << 30),
    (libc::RLIMIT_NPROC as c_int, 256),
    (libc::RLIMIT_CORE as c_int, 0),
    (libc::RLIMIT_NOFILE as c_int, 4096),
];

/// The hostname a job sees.
const HOSTNAME: &[u8] = b"offload-job";

/// What a compile did.
#[derive(Debug)]
pub struct RunOutcome {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a compile could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A string with a NUL byte.
    #[error("argument or path contains a NUL byte")]
    Nul,
    /// Spawning failed: the sandbox could not be set up, or the compiler could not be
    /// executed (a missing program is `ErrorKind::NotFound`, never an exit code 127).
    #[error("cannot start the compiler: {0}")]
    Spawn(io::Error),
    /// It ran too long and was killed.
    #[error("the compile ran longer than {0:?} and was killed")]
    Timeout(Duration),
    /// It wrote more than the limit to one stream and was killed.
    #[error("the compile wrote more than {limit} bytes to {stream} and was killed")]
    OutputTooLarge {
        /// `"stdout"` or `"stderr"`.
        stream: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// Waiting failed.
    #[error("waiting for the compiler: {0}")]
    Wait(io::Error),
}

/// One compile to run.
#[derive(Debug)]
pub struct RunSpec<'a> {
    /// The job root.
    pub root: &'a Path,
    /// argv; `argv[0]` is the name the process sees.
    pub argv: &'a [String],
    /// The program to execute, an absolute path inside the root.
    pub program: &'a str,
    /// Working directory inside the root.
    pub cwd: &'a str,
    /// The complete environment.
    pub env: &'a [(String, String)],
    /// Who to run as, when the worker is root.
    pub user: Option<JobUser>,
    /// Wall-clock limit.
    pub timeout: Duration,
}

/// Which sandbox layers this worker applies, as found by [`Layers::probe`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layers {
    /// A mount namespace with `/` private.
    pub mount: bool,
    /// A PID namespace.
    pub pid: bool,
    /// A network namespace.
    pub net: bool,
    /// An IPC namespace.
    pub ipc: bool,
    /// A UTS namespace.
    pub uts: bool,
    /// A user namespace (used only when the others need one: not root, or refused).
    pub user: bool,
    /// The seccomp deny-list.
    pub seccomp: bool,
    /// A fresh procfs on a tree's `/proc` (needs the mount and PID layers).
    pub proc: bool,
}

/// What a probe child checks besides the `clone` itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    MountPrivate,
    Hostname,
    Proc,
    Seccomp,
}

const NAMESPACES: [(&str, c_int, Check); 5] = [
    ("mount", libc::CLONE_NEWNS, Check::MountPrivate),
    ("pid", libc::CLONE_NEWPID, Check::None),
    ("net", libc::CLONE_NEWNET, Check::None),
    ("ipc", libc::CLONE_NEWIPC, Check::None),
    ("uts", libc::CLONE_NEWUTS, Check::Hostname),
];

impl Layers {
    fn named(&self) -> [(&'static str, bool); 8] {
        [
            ("mount", self.mount),
            ("pid", self.pid),
            ("net", self.net),
            ("ipc", self.ipc),
            ("uts", self.uts),
            ("user", self.user),
            ("seccomp", self.seccomp),
            ("proc", self.proc),
        ]
    }

    /// The layers in effect.
    pub fn present(&self) -> Vec<&'static str> {
        self.named()
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }

    /// The layers not in effect (`user` too when the worker, being root, needs none).
    pub fn missing(&self) -> Vec<&'static str> {
        self.named()
            .into_iter()
            .filter_map(|(n, on)| (!on).then_some(n))
            .collect()
    }

    fn set(&mut self, name: &str) {
        match name {
            "mount" => self.mount = true,
            "pid" => self.pid = true,
            "net" => self.net = true,
            "ipc" => self.ipc = true,
            "uts" => self.uts = true,
            _ => {}
        }
    }

    fn clone_flags(&self) -> c_int {
        let mut f = 0;
        for (on, flag) in [
            (self.mount, libc::CLONE_NEWNS),
            (self.pid, libc::CLONE_NEWPID),
            (self.net, libc::CLONE_NEWNET),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.uts, libc::CLONE_NEWUTS),
            (self.user, libc::CLONE_NEWUSER),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }

    /// Tries each layer once in a throwaway child. Namespaces refused with the worker's own
    /// privileges are tried again inside a new user namespace.
    pub fn probe() -> Layers {
        let mut layers = Layers::default();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut refused = Vec::new();
        for (name, flag, check) in NAMESPACES {
            match probe_clone(flag, check) {
                Ok(()) => layers.set(name),
                Err(e) => {
                    tracing::debug!("sandbox probe: {name} namespace: {e}");
                    refused.push((name, flag, check));
                }
            }
        }
        if !refused.is_empty() && (!root || probe_clone(libc::CLONE_NEWUSER, Check::None).is_ok()) {
            for (name, flag, check) in refused {
                match probe_clone(libc::CLONE_NEWUSER | flag, check) {
                    Ok(()) => {
                        layers.set(name);
                        layers.user = true;
                    }
                    Err(e) => tracing::debug!("sandbox probe: {name} in a user namespace: {e}"),
                }
            }
        }
        // With the namespaces a job gets, as it gets them.
        layers.proc = layers.mount
            && layers.pid
            && match probe_clone(layers.clone_flags(), Check::Proc) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!("sandbox probe: mounting a fresh /proc: {e}");
                    false
                }
            };
        layers.seccomp = seccomp_program().is_some()
            && match probe_clone(0, Check::Seccomp) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!("sandbox probe: seccomp: {e}");
                    false
                }
            };
        layers
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = self.present();
        let missing = self.missing();
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".into()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "sandbox: {}; missing: {}",
            list(&present),
            list(&missing)
        )
    }
}

/// The layers [`run`] applies, probed on first use and logged then.
pub fn layers() -> &'static Layers {
    static LAYERS: OnceLock<Layers> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let l = Layers::probe();
        tracing::info!("{l}");
        l
    })
}

/// `clone(2)` used as `fork(2)`, with namespace flags: the child is in the new namespaces
/// from its first instruction (PID 1 of a new PID namespace).
///
/// # Safety
/// The child shares no lock state with the other threads of the parent: it must make only
/// raw system calls on memory prepared before, and end with `_exit`.
unsafe fn clone_fork(flags: c_int) -> io::Result<libc::pid_t> {
    // SAFETY: without CLONE_VM and with no new stack the child runs on a copy of the
    // caller's stack, exactly as after fork(2); flags, stack, and three null pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as libc::pid_t)
    }
}

fn errno() -> c_int {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Makes every mount of the caller's (new) mount namespace private, so that nothing it
/// mounts reaches the worker's.
///
/// # Safety
/// A raw system call (callable after `clone`).
unsafe fn make_root_private() -> bool {
    // SAFETY: a raw syscall on static strings.
    unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
    }
}

/// Mounts a procfs (of the caller's PID namespace) on `dir`.
///
/// # Safety
/// A raw system call (callable after `clone`); `dir` is a C string.
unsafe fn mount_proc(dir: *const libc::c_char) -> bool {
    // SAFETY: a raw syscall on C strings.
    unsafe {
        libc::mount(
            c"proc".as_ptr(),
            dir,
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) == 0
    }
}

/// Clones a child with `flags` that performs `check` and exits with 0 or the errno.
fn probe_clone(flags: c_int, check: Check) -> io::Result<()> {
    let program = seccomp_program();
    let fprog = program.map(|p| libc::sock_fprog {
        len: p.len() as u16,
        filter: p.as_ptr().cast_mut(),
    });
    // SAFETY: the child makes raw system calls on prepared memory and calls _exit.
    let pid = unsafe { clone_fork(flags)? };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let ok = match check {
                Check::None => true,
                Check::MountPrivate => make_root_private(),
                Check::Hostname => libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) == 0,
                // Over the probe's own `/proc`, in its private mount namespace.
                Check::Proc => make_root_private() && mount_proc(c"/proc".as_ptr()),
                Check::Seccomp => match &fprog {
                    Some(p) => {
                        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                            && libc::syscall(
                                libc::SYS_seccomp,
                                libc::SECCOMP_SET_MODE_FILTER,
                                0,
                                p as *const libc::sock_fprog,
                            ) == 0
                    }
                    None => false,
                },
            };
            libc::_exit(if ok { 0 } else { errno().clamp(1, 255) });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: reaps our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, e) => Err(io::Error::from_raw_os_error(e)),
        _ => Err(io::Error::other(format!(
            "probe child ended with {status:#x}"
        ))),
    }
}

/// The deny-list as a classic BPF program, built once.
fn seccomp_program() -> Option<&'static [libc::sock_filter]> {
    static PROGRAM: OnceLock<Option<Vec<libc::sock_filter>>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| match build_seccomp_program() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("sandbox: cannot build the seccomp filter: {e}");
                None
            }
        })
        .as_deref()
}

fn build_seccomp_program() -> Result<Vec<libc::sock_filter>, seccompiler::Error> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    // Denied when the family is none of them (the conditions of one rule all hold).
    let other_family = SOCKET_FAMILIES
        .iter()
        .map(|&f| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f as u64))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_socket, vec![SeccompRule::new(other_family)?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let program: BpfProgram = filter.try_into()?;
    #[allow(unused_mut)]
    let mut out: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    // The x32 ABI numbers syscalls from 0x4000_0000 under the x86_64 audit arch: refuse
    // them all after the arch check (the first three instructions), or they bypass the list.
    #[cfg(target_arch = "x86_64")]
    if out.len() >= 3 {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let check = [
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: 0x4000_0000,
            },
            stmt(
                libc::BPF_RET | libc::BPF_K,
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            ),
        ];
        out.splice(3..3, check);
    }
    Ok(out)
}

// Steps a child reports failing, with the errno.
const ST_STDIO: u32 = 0;
const ST_USERNS: u32 = 1;
const ST_PRIVATE: u32 = 2;
const ST_PROC: u32 = 3;
const ST_HOSTNAME: u32 = 4;
const ST_PIPE: u32 = 5;
const ST_FORK: u32 = 6;
const ST_WAIT: u32 = 7;
const ST_CHROOT: u32 = 8;
const ST_CHDIR: u32 = 9;
const ST_SETGROUPS: u32 = 10;
const ST_SETGID: u32 = 11;
const ST_SETUID: u32 = 12;
const ST_NO_NEW_PRIVS: u32 = 13;
const ST_RLIMIT: u32 = 14;
const ST_EXEC: u32 = 15;
const ST_CAPS: u32 = 16;
const STAGES: [&str; 17] = [
    "stdio",
    "user namespace",
    "private /",
    "mounting /proc",
    "hostname",
    "pipe",
    "fork",
    "wait",
    "chroot",
    "chdir to the working directory",
    "setgroups",
    "setgid",
    "setuid",
    "no_new_privs",
    "rlimit",
    "exec",
    "dropping capabilities",
];

// What init reports on the status pipe: tag, then two values.
const TAG_CODE: u32 = 1;
const TAG_SIGNAL: u32 = 2;
const TAG_FAILED: u32 = 3;

/// Everything the children use, prepared before the `clone`.
struct Prepared {
    layers: Layers,
    root: CString,
    cwd: CString,
    program: CString,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env: Vec<*const libc::c_char>,
    proc_dir: Option<CString>,
    user: Option<JobUser>,
    cpu_secs: u64,
    seccomp: Option<libc::sock_fprog>,
    devnull: RawFd,
    out_w: RawFd,
    err_w: RawFd,
    status_w: RawFd,
    sync_r: RawFd,
    /// Descriptors init keeps besides 0–2, ascending, -1 for none.
    init_keeps: [RawFd; 2],
    /// The uid whose processes all end with the job (no PID namespace does it).
    sweep: Option<libc::uid_t>,
}

/// A running job: its init (PID 1 of the job, or the job's process-group leader).
struct Job {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
    /// [`Prepared::sweep`].
    sweep: Option<libc::uid_t>,
}

impl Job {
    /// Waits for init to exit and reaps it: by then every process of its PID namespace is
    /// gone.
    async fn wait(&mut self) -> io::Result<c_int> {
        loop {
            let mut status = 0;
            // SAFETY: polls our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            if r < 0 && errno() != libc::EINTR {
                return Err(io::Error::last_os_error());
            }
            match &self.pidfd {
                // A pidfd turns readable when the process exits, and stays so.
                Some(fd) => drop(fd.readable().await?),
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    fn kill(&self) {
        if !self.reaped {
            // SAFETY: plain syscalls on our unreaped child (its pid cannot be reused) and
            // the process group it made.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::killpg(self.pid, libc::SIGKILL);
            }
            // After the group: a compiler not yet its user was in it.
            if let Some(uid) = self.sweep {
                // SAFETY: the child kill_user clones makes raw syscalls only.
                if !unsafe { kill_user(uid) } {
                    tracing::warn!("sandbox: cannot end the processes of uid {uid}");
                }
            }
        }
    }

    async fn kill_and_reap(&mut self) {
        self.kill();
        if let Err(e) = self.wait().await {
            tracing::warn!("sandbox: reaping a killed job: {e}");
        }
        if let Some(uid) = self.sweep {
            let _ = tokio::task::spawn_blocking(move || reap_strays(uid)).await;
        }
    }
}

/// Reaps the worker's own children of `uid`, a killed job's processes that outlived its
/// init (killed with it, without a PID namespace to end them first): they come to the
/// worker when it is a container's PID 1, and a zombie of the slot's uid would count
/// against its process limit for good. Waits up to a second for them to die.
fn reap_strays(uid: libc::uid_t) {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut left = 0;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if !e.metadata().is_ok_and(|m| m.uid() == uid) {
                continue;
            }
            // `PID (COMM) STATE PPID …`; COMM may hold anything but ends at the last `)`.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            if rest.split_whitespace().nth(1) != Some(me.as_str()) {
                continue;
            }
            let mut status = 0;
            // SAFETY: reaps a child of ours that is no job's init (those are not of uid).
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != pid {
                left += 1;
            }
        }
        if left == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let (pid, sweep) = (self.pid, self.sweep);
            // A cancelled run: reap off the executor.
            std::thread::spawn(move || {
                let mut status = 0;
                // SAFETY: reaps our own child.
                while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
                if let Some(uid) = sweep {
                    reap_strays(uid);
                }
            });
        }
    }
}

fn cstr(s: &[u8]) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::Nul)
}

/// A pipe with both ends close-on-exec and above the standard descriptors.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicates a descriptor we own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A request to the clone thread: clone with these flags, the child running [`init_main`]
/// on `prepared`.
struct CloneRequest {
    flags: c_int,
    prepared: *const Prepared,
    reply: std::sync::mpsc::SyncSender<io::Result<libc::pid_t>>,
}

// SAFETY: `prepared` is only read, by the clone thread's child, while the requester waits
// for the reply (see `clone_init`).
unsafe impl Send for CloneRequest {}

/// Clones a job's init from the worker's clone thread, which lives as long as the worker.
///
/// Init's `PR_SET_PDEATHSIG` (so that jobs die with the worker) fires when the *thread*
/// that cloned it ends, not the process. A runtime thread may end while its jobs run: tokio
/// ends blocking-pool threads idle for 10 s, and a worker thread that entered
/// `block_in_place` (as the server does before every compile) can become one. A compile
/// started there was SIGKILLed about ten seconds later, and any compile longer than that
/// came back rejected.
fn clone_init(flags: c_int, p: &Prepared) -> io::Result<libc::pid_t> {
    static CLONER: OnceLock<Option<std::sync::mpsc::Sender<CloneRequest>>> = OnceLock::new();
    let cloner = CLONER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<CloneRequest>();
        let spawned = std::thread::Builder::new()
            .name("offload-clone".into())
            .spawn(move || {
                for req in rx {
                    // SAFETY: the child runs init_main, which makes raw syscalls on the
                    // prepared memory (alive: its owner waits for this reply) and never
                    // returns.
                    let r = unsafe { clone_fork(req.flags) };
                    if let Ok(0) = r {
                        // SAFETY: as above.
                        unsafe { init_main(&*req.prepared) }
                    }
                    let _ = req.reply.send(r);
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!("sandbox: cannot start the clone thread: {e}");
                None
            }
        }
    });
    let Some(cloner) = cloner else {
        return Err(io::Error::other(
            "the sandbox's clone thread could not be started",
        ));
    };
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let req = CloneRequest {
        flags,
        prepared: p,
        reply,
    };
    cloner
        .send(req)
        .map_err(|_| io::Error::other("the sandbox's clone thread has ended"))?;
    // Waits for the clone (a fraction of a millisecond): `p` must outlive it.
    answer
        .recv()
        .map_err(|_| io::Error::other("the sandbox's clone thread has ended"))?
}

/// The parent's ends of a started job.
struct Started {
    job: Job,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: OwnedFd,
}

/// Prepares everything, clones init, and (with a user namespace) writes its id maps.
/// Synchronous, so no raw pointer lives across an `.await`.
fn start(spec: &RunSpec<'_>, layers: Layers) -> Result<Started, RunError> {
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect::<Result<_, _>>()?;
    let proc_path = spec.root.join("proc");
    // Never without a PID namespace of the job's own: it would show the worker's processes.
    let proc_dir = if layers.proc
        && layers.pid
        && std::fs::symlink_metadata(&proc_path).is_ok_and(|m| m.is_dir())
    {
        Some(cstr(proc_path.as_os_str().as_bytes())?)
    } else {
        None
    };
    let spawn = RunError::Spawn;
    let devnull =
        above_stdio(std::fs::File::open("/dev/null").map_err(spawn)?.into()).map_err(spawn)?;
    let (out_r, out_w) = pipe().map_err(spawn)?;
    let (err_r, err_w) = pipe().map_err(spawn)?;
    let (status_r, status_w) = pipe().map_err(spawn)?;
    let sync = if layers.user {
        Some(pipe().map_err(spawn)?)
    } else {
        None
    };
    let sync_r = sync.as_ref().map_or(-1, |(r, _)| r.as_raw_fd());
    let mut init_keeps = [status_w.as_raw_fd(), sync_r];
    init_keeps.sort_unstable();
    let argv_ptrs = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs = env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let seccomp = if layers.seccomp {
        seccomp_program().map(|p| libc::sock_fprog {
            len: p.len() as u16,
            filter: p.as_ptr().cast_mut(),
        })
    } else {
        None
    };
    let p = Prepared {
        layers,
        root: cstr(spec.root.as_os_str().as_bytes())?,
        cwd: cstr(spec.cwd.as_bytes())?,
        program: cstr(spec.program.as_bytes())?,
        _argv: argv,
        argv: argv_ptrs,
        _env: env,
        env: env_ptrs,
        proc_dir,
        user: spec.user,
        cpu_secs: spec.timeout.as_secs() + u64::from(spec.timeout.subsec_nanos() > 0) + 1,
        seccomp,
        devnull: devnull.as_raw_fd(),
        out_w: out_w.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        status_w: status_w.as_raw_fd(),
        sync_r,
        init_keeps,
        sweep: sweep_uid(layers, spec.user),
    };
    let pid = clone_init(layers.clone_flags(), &p).map_err(spawn)?;
    drop((devnull, out_w, err_w, status_w));
    // SAFETY: pidfd_open on our own unreaped child.
    let pidfd = match unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } {
        n if n >= 0 => {
            // SAFETY: a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(n as RawFd) };
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open until it is dropped.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        }
        _ => None,
    };
    let job = Job {
        pid,
        pidfd,
        reaped: false,
        sweep: p.sweep,
    };
    if let Some((sync_r, sync_w)) = sync {
        drop(sync_r);
        if let Err(e) = write_id_maps(pid, spec.user) {
            job.kill();
            return Err(RunError::Spawn(io::Error::new(
                e.kind(),
                format!("user namespace id maps: {e}"),
            )));
        }
        // Init waits for this byte before anything that needs the maps.
        let mut f = std::fs::File::from(sync_w);
        if let Err(e) = io::Write::write_all(&mut f, b"1") {
            job.kill();
            return Err(RunError::Spawn(e));
        }
    }
    Ok(Started {
        job,
        stdout: out_r,
        stderr: err_r,
        status: status_r,
    })
}

/// The uid whose every process ends with a job that has no PID namespace: the job's own
/// user, unless that is root or the worker's own uid (ending those would end the worker).
fn sweep_uid(layers: Layers, user: Option<JobUser>) -> Option<libc::uid_t> {
    // SAFETY: cannot fail.
    let me = unsafe { libc::geteuid() };
    user.map(|u| u.uid)
        .filter(|&uid| !layers.pid && uid != 0 && uid != me)
}

/// Kills every process of `uid` (in the caller's PID namespace) but the caller: a child
/// takes that uid and sends `kill(-1, SIGKILL)` until none is left to signal (zombies
/// still count, so a few rounds at most). Whether the child could do it.
///
/// # Safety
/// Raw system calls only (callable after `clone`, and from the worker's threads).
unsafe fn kill_user(uid: libc::uid_t) -> bool {
    // SAFETY: the child makes raw syscalls only and ends with _exit.
    unsafe {
        let Ok(pid) = clone_fork(0) else {
            return false;
        };
        if pid == 0 {
            // The raw call: glibc's setuid would wait for threads this child lacks.
            if libc::syscall(libc::SYS_setuid, uid) != 0 {
                libc::_exit(1);
            }
            // A process forking during a round is killed in the next.
            for _ in 0..16 {
                if libc::kill(-1, libc::SIGKILL) != 0 {
                    break;
                }
            }
            libc::_exit(0);
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if errno() != libc::EINTR {
                return false;
            }
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// The id maps of a job's user namespace: the worker's own ids, and as root the job user's.
fn write_id_maps(pid: libc::pid_t, user: Option<JobUser>) -> io::Result<()> {
    // SAFETY: cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let dir = Path::new("/proc").join(pid.to_string());
    let (mut uids, mut gids) = (format!("{uid} {uid} 1\n"), format!("{gid} {gid} 1\n"));
    match user {
        Some(u) if uid == 0 => {
            if u.uid != uid {
                uids.push_str(&format!("{0} {0} 1\n", u.uid));
            }
            if u.gid != gid {
                gids.push_str(&format!("{0} {0} 1\n", u.gid));
            }
        }
        _ if uid != 0 => std::fs::write(dir.join("setgroups"), "deny")?,
        _ => {}
    }
    std::fs::write(dir.join("uid_map"), uids)?;
    std::fs::write(dir.join("gid_map"), gids)
}

/// Closes every descriptor from 3 up except `keep` (ascending; negative entries ignored).
unsafe fn close_except(keep: &[RawFd]) {
    let mut lo: c_uint = 3;
    for &k in keep {
        if k < 3 {
            continue;
        }
        let k = k as c_uint;
        if k > lo {
            // SAFETY: forwarded.
            unsafe { close_range(lo, k - 1) };
        }
        lo = k + 1;
    }
    // SAFETY: forwarded.
    unsafe { close_range(lo, c_uint::MAX) };
}

unsafe fn close_range(lo: c_uint, hi: c_uint) {
    // SAFETY: raw syscalls on descriptors of this process.
    unsafe {
        if libc::syscall(libc::SYS_close_range, lo, hi, 0) == 0 {
            return;
        }
        // Before Linux 5.9: one by one, up to the descriptor limit.
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        let end = rl.rlim_cur.min(u64::from(hi) + 1).min(1 << 20);
        let mut fd = u64::from(lo);
        while fd < end {
            libc::close(fd as c_int);
            fd += 1;
        }
    }
}

/// Writes a 12-byte report to `fd`.
unsafe fn report(fd: RawFd, tag: u32, a: i32, b: i32) {
    let mut msg = [0u8; 12];
    let (t, rest) = msg.split_at_mut(4);
    let (x, y) = rest.split_at_mut(4);
    t.copy_from_slice(&tag.to_ne_bytes());
    x.copy_from_slice(&a.to_ne_bytes());
    y.copy_from_slice(&b.to_ne_bytes());
    // SAFETY: writes our buffer.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// Init reports a failed step and exits.
unsafe fn init_fail(p: &Prepared, stage: u32) -> ! {
    let e = errno();
    // SAFETY: raw syscalls.
    unsafe {
        report(p.status_w, TAG_FAILED, stage as i32, e);
        libc::_exit(1)
    }
}

/// PID 1 of the job: sets up the namespaces, starts the compiler, reaps every process until
/// the compiler ends, reports its status, and exits (which ends the PID namespace).
unsafe fn init_main(p: &Prepared) -> ! {
    // SAFETY: raw syscalls on memory prepared before the clone; see the module doc.
    unsafe {
        if libc::dup2(p.devnull, 0) < 0 || libc::dup2(p.out_w, 1) < 0 || libc::dup2(p.err_w, 2) < 0
        {
            init_fail(p, ST_STDIO);
        }
        // Other jobs' pipes and the worker's sockets, inherited by the clone.
        close_except(&p.init_keeps);
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if p.sweep.is_some() {
            // The job's orphans become init's children, to be reaped after the sweep.
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        if p.layers.user {
            let mut b = 0u8;
            if libc::read(p.sync_r, (&raw mut b).cast(), 1) != 1 {
                init_fail(p, ST_USERNS);
            }
            libc::close(p.sync_r);
        }
        if p.layers.mount && !make_root_private() {
            init_fail(p, ST_PRIVATE);
        }
        if let Some(dir) = &p.proc_dir
            && !mount_proc(dir.as_ptr())
        {
            init_fail(p, ST_PROC);
        }
        if p.layers.uts && libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) != 0 {
            init_fail(p, ST_HOSTNAME);
        }
        let mut ep = [0; 2];
        if libc::pipe2(ep.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            init_fail(p, ST_PIPE);
        }
        let child = match clone_fork(0) {
            Ok(0) => {
                libc::close(ep[0]);
                compiler_main(p, ep[1])
            }
            Ok(pid) => pid,
            Err(_) => init_fail(p, ST_FORK),
        };
        libc::close(ep[1]);
        let mut status = 0;
        loop {
            let r = libc::waitpid(-1, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                init_fail(p, ST_WAIT);
            }
        }
        let mut msg = [0u8; 8];
        let n = libc::read(ep[0], msg.as_mut_ptr().cast(), msg.len());
        if let Some(uid) = p.sweep {
            kill_user(uid);
            // Every child left is of that uid, and killed.
            let mut left = 0;
            while libc::waitpid(-1, &mut left, 0) > 0 || errno() == libc::EINTR {}
        }
        if n == 8 {
            let stage = i32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let e = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
            report(p.status_w, TAG_FAILED, stage, e);
        } else if libc::WIFSIGNALED(status) {
            report(p.status_w, TAG_SIGNAL, libc::WTERMSIG(status), 0);
        } else {
            report(p.status_w, TAG_CODE, libc::WEXITSTATUS(status), 0);
        }
        if !p.layers.pid {
            // No PID namespace to end: the job's process group, init included.
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

/// The compiler reports a failed step to init and exits.
unsafe fn compiler_fail(fd: RawFd, stage: u32) -> ! {
    let e = errno();
    let mut msg = [0u8; 8];
    let (s, x) = msg.split_at_mut(4);
    s.copy_from_slice(&stage.to_ne_bytes());
    x.copy_from_slice(&e.to_ne_bytes());
    // SAFETY: raw syscalls.
    unsafe {
        libc::write(fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Drops every capability from the bounding, ambient, effective, permitted and
/// inheritable sets with raw system calls; 0 or -1.
///
/// # Safety
/// Raw system calls only (callable after `clone`).
unsafe fn drop_capabilities() -> c_int {
    // SAFETY: plain syscalls on stack memory.
    unsafe {
        // The bounding set: capabilities past the kernel's last fail with EINVAL.
        for cap in 0..64 {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        #[repr(C)]
        struct Header {
            version: u32,
            pid: c_int,
        }
        #[repr(C)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let none = [
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        libc::syscall(libc::SYS_capset, &header, none.as_ptr()) as c_int
    }
}

/// PID 2: confines itself and executes the compiler.
unsafe fn compiler_main(p: &Prepared, err_w: RawFd) -> ! {
    // SAFETY: raw syscalls on memory prepared before the clone; see the module doc.
    unsafe {
        if libc::chroot(p.root.as_ptr()) != 0 {
            compiler_fail(err_w, ST_CHROOT);
        }
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            compiler_fail(err_w, ST_CHDIR);
        }
        if let Some(u) = p.user {
            // Raw syscalls: glibc's wrappers would signal the worker's other threads.
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
                compiler_fail(err_w, ST_SETGROUPS);
            }
            if libc::syscall(libc::SYS_setgid, u.gid) != 0 {
                compiler_fail(err_w, ST_SETGID);
            }
            if libc::syscall(libc::SYS_setuid, u.uid) != 0 {
                compiler_fail(err_w, ST_SETUID);
            }
        }
        if p.user.is_none() && drop_capabilities() != 0 {
            // Without a user of its own (a worker in a user namespace), the job is that
            // namespace's root: without capabilities it can neither chroot out, mount,
            // nor override file permissions.
            compiler_fail(err_w, ST_CAPS);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            compiler_fail(err_w, ST_NO_NEW_PRIVS);
        }
        close_except(&[err_w]);
        let cpu = libc::rlimit {
            rlim_cur: p.cpu_secs,
            rlim_max: p.cpu_secs,
        };
        if libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_CPU,
            &cpu,
            std::ptr::null::<libc::rlimit>(),
        ) != 0
        {
            compiler_fail(err_w, ST_RLIMIT);
        }
        for (resource, limit) in RLIMITS {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                resource,
                &rl,
                std::ptr::null::<libc::rlimit>(),
            ) != 0
            {
                compiler_fail(err_w, ST_RLIMIT);
            }
        }
        if let Some(prog) = &p.seccomp {
            // Best effort: the probe found it working; a failure only loses the layer.
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog as *const libc::sock_fprog,
            );
        }
        libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.env.as_ptr());
        compiler_fail(err_w, ST_EXEC)
    }
}

/// Reads a stream to its end, failing past [`OUTPUT_LIMIT`].
async fn read_capped(fd: OwnedFd, stream: &'static str) -> Result<Vec<u8>, RunError> {
    let r = pipe::Receiver::from_owned_fd(fd).map_err(RunError::Wait)?;
    let mut buf = Vec::new();
    r.take(OUTPUT_LIMIT + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(RunError::Wait)?;
    if buf.len() as u64 > OUTPUT_LIMIT {
        return Err(RunError::OutputTooLarge {
            stream,
            limit: OUTPUT_LIMIT,
        });
    }
    Ok(buf)
}

/// Reads init's report once init is reaped.
fn read_status(fd: OwnedFd, init_status: c_int) -> Result<ExitStatus, RunError> {
    let mut msg = [0u8; 12];
    // SAFETY: reads into our buffer; every writer is gone, so this cannot block.
    let n = unsafe { libc::read(fd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
    if n != 12 {
        return Err(RunError::Wait(io::Error::other(format!(
            "the job's init ended ({init_status:#x}) without reporting the compiler's status"
        ))));
    }
    let word = |i: usize| [msg[i], msg[i + 1], msg[i + 2], msg[i + 3]];
    let tag = u32::from_ne_bytes(word(0));
    let a = i32::from_ne_bytes(word(4));
    let b = i32::from_ne_bytes(word(8));
    match tag {
        TAG_CODE => Ok(ExitStatus::Code(a)),
        TAG_SIGNAL => Ok(ExitStatus::Signal(a)),
        _ => {
            let e = io::Error::from_raw_os_error(b);
            let stage = usize::try_from(a)
                .ok()
                .and_then(|i| STAGES.get(i))
                .unwrap_or(&"setup");
            Err(RunError::Spawn(io::Error::new(
                e.kind(),
                format!("{stage}: {e}"),
            )))
        }
    }
}

/// Runs the compile in the sandbox and collects its output. The status is the compiler's
/// own; a compiler that cannot be executed is [`RunError::Spawn`].
pub async fn run(spec: RunSpec<'_>) -> Result<RunOutcome, RunError> {
    run_with(spec, *layers()).await
}

/// [`run`] with the given layers (each must be available).
async fn run_with(spec: RunSpec<'_>, layers: Layers) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let Started {
        mut job,
        stdout,
        stderr,
        status,
    } = start(&spec, layers)?;
    let work = async {
        let (o, e) =
            tokio::try_join!(read_capped(stdout, "stdout"), read_capped(stderr, "stderr"))?;
        let s = job.wait().await.map_err(RunError::Wait)?;
        Ok::<_, RunError>((o, e, s))
    };
    let done = match tokio::time::timeout(spec.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(RunError::Timeout(spec.timeout)),
    };
    let (stdout, stderr, init_status) = match done {
        Ok(d) => d,
        Err(e) => {
            job.kill_and_reap().await;
            return Err(e);
        }
    };
    let status = read_status(status, init_status)?;
    Ok(RunOutcome {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    /// One copy of busybox for every test, hard-linked into each root: a copy made while
    /// another test clones a job would be held open for writing by that child for a moment,
    /// and executing it would fail with ETXTBSY.
    fn busybox() -> &'static Path {
        static COPY: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = COPY.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy("/bin/busybox", dir.path().join("busybox"))
                .expect("busybox-static at /bin/busybox (apt-get install busybox-static)");
            dir
        });
        Box::leak(dir.path().join("busybox").into_boxed_path())
    }

    /// A job root holding only busybox (and `/mnt`, `/tmp`, an empty `/dev/null`).
    fn job_root() -> tempfile::TempDir {
        let busybox = busybox();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["bin", "dev", "mnt", "tmp"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        // ash gives background jobs /dev/null as stdin; a plain empty file does.
        std::fs::write(dir.path().join("dev/null"), "").unwrap();
        std::fs::hard_link(busybox, dir.path().join("bin/busybox")).unwrap();
        dir
    }

    async fn run_in(
        root: &Path,
        argv: &[&str],
        user: Option<JobUser>,
        timeout: Duration,
    ) -> Result<RunOutcome, RunError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env = [("PATH".to_string(), "/bin".to_string())];
        run(RunSpec {
            root,
            argv: &argv,
            program: "/bin/busybox",
            cwd: "/",
            env: &env,
            user,
            timeout,
        })
        .await
    }

    async fn sh(root: &Path, script: &str) -> Result<RunOutcome, RunError> {
        run_in(
            root,
            &["busybox", "sh", "-c", script],
            None,
            Duration::from_secs(20),
        )
        .await
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// A job user of test `n`'s alone (uid = gid = 1 900 000 700 + n): without a PID
    /// namespace the sandbox kills every process of a job's uid, so tests that run at once
    /// must not share one, nor use one the machine uses (`nobody`).
    fn test_user(n: u32) -> JobUser {
        let id = 1_900_000_700 + n;
        JobUser { uid: id, gid: id }
    }

    /// Host processes whose command line is exactly `argv`.
    fn processes(argv: &[&str]) -> Vec<String> {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probe_finds_every_layer_as_root() {
        let _ = busybox();
        let l = layers();
        eprintln!("{l}");
        assert!(l.to_string().starts_with("sandbox: "));
        // SAFETY: cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(l.missing(), ["user"], "{l}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_and_status_pass_through() {
        let root = job_root();
        let out = sh(root.path(), "echo out; echo err >&2; exit 7")
            .await
            .unwrap();
        assert_eq!(text(&out.stdout), "out\n");
        assert_eq!(text(&out.stderr), "err\n");
        assert_eq!(out.status, ExitStatus::Code(7));
        let out = sh(root.path(), "kill -9 $$").await.unwrap();
        assert_eq!(out.status, ExitStatus::Signal(9));
        let out = sh(root.path(), "exit 0").await.unwrap();
        assert_eq!(out.status, ExitStatus::Code(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_compiler_is_a_spawn_error() {
        let root = job_root();
        let argv = vec!["cc".to_string()];
        let err = run(RunSpec {
            root: root.path(),
            argv: &argv,
            program: "/bin/no-such-compiler",
            cwd: "/",
            env: &[],
            user: None,
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap_err();
        match err {
            RunError::Spawn(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
            e => panic!("expected Spawn, got {e}"),
        }
    }

    fn spec_for<'a>(root: &'a Path, argv: &'a [String]) -> RunSpec<'a> {
        RunSpec {
            root,
            argv,
            program: "/bin/busybox",
            cwd: "/",
            env: &[],
            user: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_working_directory_is_a_spawn_error() {
        let root = job_root();
        let argv = vec!["true".to_string()];
        let spec = RunSpec {
            cwd: "/no-such-dir",
            ..spec_for(root.path(), &argv)
        };
        match run(spec).await {
            Err(RunError::Spawn(e)) => assert!(e.to_string().contains("chdir"), "{e}"),
            r => panic!("expected Spawn, got {r:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_daemonized_grandchild_dies_with_the_job() {
        let root = job_root();
        let out = sh(
            root.path(),
            // The pause lets the daemon start before the job ends.
            "busybox setsid busybox sleep 1037 >&- 2>&- & busybox sleep 0.3; echo started",
        )
        .await
        .unwrap();
        assert_eq!(text(&out.stdout), "started\n");
        assert!(out.elapsed < Duration::from_secs(5));
        assert_eq!(
            processes(&["busybox", "sleep", "1037"]),
            Vec::<String>::new()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_never_ends_times_out() {
        let root = job_root();
        let t = Instant::now();
        let r = run_in(
            root.path(),
            &[
                "busybox",
                "sh",
                "-c",
                "busybox sleep 1099 & busybox sleep 1098",
            ],
            None,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(r, Err(RunError::Timeout(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(processes(&["busybox", "sleep", "1099"]).is_empty());
        assert!(processes(&["busybox", "sleep", "1098"]).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_beyond_the_limit_is_refused() {
        let root = job_root();
        for (script, stream) in [
            ("busybox yes | busybox head -c 20971520", "stdout"),
            ("busybox yes | busybox head -c 20971520 >&2", "stderr"),
        ] {
            match sh(root.path(), script).await {
                Err(RunError::OutputTooLarge { stream: s, limit }) => {
                    assert_eq!((s, limit), (stream, OUTPUT_LIMIT));
                }
                r => panic!("expected OutputTooLarge, got {r:?}"),
            }
        }
        // Just under the limit is fine.
        let out = sh(root.path(), "busybox yes | busybox head -c 16777216")
            .await
            .unwrap();
        assert_eq!(out.stdout.len() as u64, OUTPUT_LIMIT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_network_is_only_a_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = job_root();
        let out = sh(
            root.path(),
            &format!("busybox nc -w 2 127.0.0.1 {port} && echo connected"),
        )
        .await
        .unwrap();
        assert!(!text(&out.stdout).contains("connected"), "{out:?}");
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the job reached the test's listener: {accepted:?}"
        );
        let out = sh(root.path(), "busybox ip -o link").await.unwrap();
        let links: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
            .collect();
        assert_eq!(links, ["lo"], "{out:?}");
    }

    /// Without a network namespace (the container's network is the job's) the seccomp
    /// filter still keeps a job off the network: no IPv4 or IPv6 socket opens, so a
    /// listener of this machine's is not reached, and none can listen. Without the filter
    /// the same job connects (the control).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_network_namespace_no_network_socket_opens() {
        if !layers().seccomp {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = job_root();
        // nc waits for the peer to close: the control's connection ends by the timeout.
        let script = format!(
            "busybox timeout 1 busybox nc 127.0.0.1 {port} </dev/null && echo connected; \
             busybox timeout 1 busybox nc ::1 {port} </dev/null && echo connected; \
             busybox timeout 1 busybox nc -l -p 0 </dev/null; true"
        );
        let argv: Vec<String> = ["busybox", "sh", "-c", &script]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for seccomp in [true, false] {
            let layers = Layers {
                net: false,
                seccomp,
                ..*layers()
            };
            let out = run_with(spec_for(root.path(), &argv), layers)
                .await
                .unwrap();
            let accepted = listener.accept();
            if seccomp {
                assert!(!text(&out.stdout).contains("connected"), "{out:?}");
                // Each of the three sockets.
                let refused = text(&out.stderr).matches("not permitted").count();
                assert_eq!(refused, 3, "{out:?}");
                assert!(
                    matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                    "the job reached the test's listener: {accepted:?}"
                );
            } else {
                assert!(accepted.is_ok(), "the control did not connect: {out:?}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inherited_descriptor_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "the secret\n").unwrap();
        let path = CString::new(secret.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscalls; 987 is left open without close-on-exec on purpose.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        assert_eq!(unsafe { libc::dup2(fd, 987) }, 987);
        unsafe { libc::close(fd) };
        let root = job_root();
        let out = sh(root.path(), "busybox cat <&987").await;
        // SAFETY: ours.
        unsafe { libc::close(987) };
        let out = out.unwrap();
        assert!(!text(&out.stdout).contains("secret"), "{out:?}");
        assert_ne!(out.status, ExitStatus::Code(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hostname_is_the_jobs() {
        let root = job_root();
        let out = sh(root.path(), "busybox hostname").await.unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_ne!(text(&out.stdout).trim(), host.trim());
        assert_eq!(text(&out.stdout), "offload-job\n");
    }

    /// A job without a user of its own (a worker in a user namespace runs it as that
    /// namespace's root) has no capability left: it cannot chroot out of its root.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_without_a_user_of_its_own_has_no_capabilities() {
        let root = job_root();
        std::fs::create_dir(root.path().join("proc")).unwrap();
        let out = sh(
            root.path(),
            "busybox grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status; busybox chroot / busybox true; echo rc=$?",
        )
        .await
        .unwrap();
        let so = text(&out.stdout);
        assert!(so.ends_with("rc=1\n"), "{out:?}");
        let caps: Vec<&str> = so.lines().filter(|l| l.starts_with("Cap")).collect();
        assert_eq!(caps.len(), 4, "{out:?}");
        for line in caps {
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn denied_syscalls_fail_with_eperm() {
        let root = job_root();
        let out = sh(root.path(), "busybox mount -t tmpfs none /mnt; echo rc=$?")
            .await
            .unwrap();
        assert!(text(&out.stdout).ends_with("rc=1\n"), "{out:?}");
        // busybox words EPERM so.
        assert!(text(&out.stderr).contains("permission denied"), "{out:?}");
        let out = sh(root.path(), "busybox unshare -n busybox true; echo rc=$?")
            .await
            .unwrap();
        assert!(!text(&out.stdout).ends_with("rc=0\n"), "{out:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_and_the_user_apply() {
        let root = job_root();
        let out = run_in(
            root.path(),
            &[
                "busybox",
                "sh",
                "-c",
                "ulimit -n; ulimit -c; ulimit -t; busybox id -u; busybox id -g",
            ],
            Some(test_user(1)),
            Duration::from_secs(9),
        )
        .await
        .unwrap();
        let id = test_user(1).uid;
        assert_eq!(
            text(&out.stdout),
            format!("4096\n0\n10\n{id}\n{id}\n"),
            "{out:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proc_is_the_jobs_own_and_only_where_asked_for() {
        let root = job_root();
        let out = sh(root.path(), "busybox ls /proc; echo rc=$?")
            .await
            .unwrap();
        assert!(text(&out.stdout).ends_with("rc=1\n"), "{out:?}");
        assert!(!root.path().join("proc").exists());
        std::fs::create_dir(root.path().join("proc")).unwrap();
        let out = sh(root.path(), "busybox ls /proc").await.unwrap();
        let mut pids: Vec<u32> = text(&out.stdout)
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        pids.sort();
        assert_eq!(pids.first(), Some(&1), "{out:?}");
        assert!(pids.iter().all(|&p| p < 10), "{pids:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&*root.path().to_string_lossy()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_layers_jobs_still_run_and_are_killed() {
        let root = job_root();
        let argv: Vec<String> = ["busybox", "sh", "-c", "echo hi; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = run_with(spec_for(root.path(), &argv), Layers::default())
            .await
            .unwrap();
        assert_eq!(
            (text(&out.stdout).as_str(), out.status),
            ("hi\n", ExitStatus::Code(3))
        );
        let argv: Vec<String> = [
            "busybox",
            "sh",
            "-c",
            "busybox sleep 1066 & busybox sleep 1065",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let spec = RunSpec {
            timeout: Duration::from_millis(300),
            ..spec_for(root.path(), &argv)
        };
        let r = run_with(spec, Layers::default()).await;
        assert!(matches!(r, Err(RunError::Timeout(_))), "{r:?}");
        // Without a PID namespace nothing waits for the killed group to be gone.
        let t = Instant::now();
        while !(processes(&["busybox", "sleep", "1066"]).is_empty()
            && processes(&["busybox", "sleep", "1065"]).is_empty())
        {
            assert!(t.elapsed() < Duration::from_secs(2), "the job survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Without a PID namespace, a daemon of the job (in a session of its own, so that the
    /// process-group kill misses it) ends with the job all the same, by its uid: when the
    /// compiler ends, and when the job is killed at its time limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_pid_namespace_the_job_s_user_ends_with_it() {
        // SAFETY: cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let root = job_root();
        let user = Some(test_user(5));
        let layers = Layers {
            pid: false,
            ..*layers()
        };
        let daemon = |n: &str| format!("busybox setsid busybox sleep {n} <&- >&- 2>&- &");
        for (n, rest, timeout) in [
            (
                "1069",
                "busybox sleep 0.2; busybox kill -0 $! && echo alive",
                20_000,
            ),
            ("1070", "busybox sleep 1071", 500),
        ] {
            let argv: Vec<String> = ["busybox", "sh", "-c", &format!("{} {rest}", daemon(n))]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let spec = RunSpec {
                user,
                timeout: Duration::from_millis(timeout),
                ..spec_for(root.path(), &argv)
            };
            match run_with(spec, layers).await {
                Ok(out) => assert_eq!(text(&out.stdout), "alive\n", "{out:?}"),
                Err(e) => assert!(matches!(e, RunError::Timeout(_)), "{e:?}"),
            }
            let t = Instant::now();
            while !processes(&["busybox", "sleep", n]).is_empty() {
                assert!(
                    t.elapsed() < Duration::from_secs(2),
                    "the daemon {n} survived"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Processes of `uid` whose parent is this process (alive or zombies).
    fn children_of_uid(uid: libc::uid_t) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                rest.split_whitespace().nth(1) == Some(me.as_str())
            })
            .collect()
    }

    /// A job without a PID namespace killed at its time limit dies with its init: what it
    /// left comes to the worker when the worker is a container's PID 1 (here: a
    /// subreaper, as PID 1 is), and is reaped, not left a zombie of the slot's uid (each
    /// counts against its process limit until reaped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_job_without_a_pid_namespace_leaves_no_zombie() {
        // SAFETY: cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // SAFETY: plain syscall; orphans of this test process's jobs come to it.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let root = job_root();
        let uid = test_user(6).uid;
        let argv: Vec<String> = [
            "busybox",
            "sh",
            "-c",
            "busybox sleep 1072 & busybox sleep 1072 & busybox sleep 1072",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let spec = RunSpec {
            user: Some(JobUser { uid, gid: uid }),
            timeout: Duration::from_millis(300),
            ..spec_for(root.path(), &argv)
        };
        let layers = Layers {
            pid: false,
            ..*layers()
        };
        let r = run_with(spec, layers).await;
        assert!(matches!(r, Err(RunError::Timeout(_))), "{r:?}");
        let t = Instant::now();
        loop {
            let left = children_of_uid(uid);
            if left.is_empty() {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(2), "left: {left:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_namespace_maps_the_job_user() {
        // SAFETY: cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let root = job_root();
        let argv: Vec<String> = ["busybox", "sh", "-c", "busybox id -u; busybox id -g"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let spec = RunSpec {
            user: Some(test_user(2)),
            ..spec_for(root.path(), &argv)
        };
        let layers = Layers {
            user: true,
            ..*layers()
        };
        let out = run_with(spec, layers).await.unwrap();
        let id = test_user(2).uid;
        assert_eq!(text(&out.stdout), format!("{id}\n{id}\n"), "{out:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_run_kills_the_job() {
        let root = job_root();
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            sh(root.path(), "busybox sleep 1055"),
        )
        .await;
        assert!(r.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(processes(&["busybox", "sleep", "1055"]).is_empty());
    }

    /// The thread that asks for a job's clone may end while the job runs (a runtime thread
    /// that retires: tokio ends idle blocking threads after 10 s, and a worker thread that
    /// entered `block_in_place` becomes one): the job must not die with it. Init's
    /// parent-death signal follows the thread that cloned it, so that is not this one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_outlives_the_thread_that_started_it() {
        let root = job_root();
        let path = root.path().to_owned();
        let handle = tokio::runtime::Handle::current();
        let started = std::thread::spawn(move || {
            let _rt = handle.enter();
            let argv: Vec<String> = ["busybox", "sh", "-c", "busybox sleep 1; echo survived"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let env = [("PATH".to_string(), "/bin".to_string())];
            let spec = RunSpec {
                root: &path,
                argv: &argv,
                program: "/bin/busybox",
                cwd: "/",
                env: &env,
                user: None,
                timeout: Duration::from_secs(10),
            };
            let started = start(&spec, *layers());
            // As a runtime thread would: it goes on for a while, then ends.
            std::thread::sleep(Duration::from_millis(300));
            started
        })
        .join()
        .unwrap()
        .unwrap();
        // The thread has ended; the job goes on.
        let Started {
            mut job,
            stdout,
            stderr,
            status,
        } = started;
        let (out, err) =
            tokio::try_join!(read_capped(stdout, "stdout"), read_capped(stderr, "stderr")).unwrap();
        let init = job.wait().await.unwrap();
        let status = read_status(status, init);
        assert!(
            matches!(status, Ok(ExitStatus::Code(0))),
            "{status:?} {}",
            text(&err)
        );
        assert_eq!(text(&out), "survived\n");
    }

    /// A job root holding the host's gcc (its files as a job root gets them, charset
    /// modules left out), `<stdc-predef.h>`, a writable `/w` with `s.c`, and `/tmp`.
    fn gcc_root() -> tempfile::TempDir {
        use offload_shared::walk::Node;
        let collected = offload_shared::toolchain::collect("/usr/bin/gcc")
            .unwrap()
            .expect("gcc at /usr/bin/gcc");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut nodes = collected.nodes;
        nodes.insert("/usr/include/stdc-predef.h".into(), Node::File);
        for (path, node) in &nodes {
            if offload_shared::toolchain::is_charset_module(path) {
                continue;
            }
            let dst = root.join(path.strip_prefix("/").unwrap_or(path));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            match node {
                Node::Dir => std::fs::create_dir_all(&dst).unwrap(),
                Node::Symlink(t) => std::os::unix::fs::symlink(t, &dst).unwrap(),
                Node::File => {
                    std::fs::copy(path, &dst).unwrap();
                }
            }
        }
        for (d, mode) in [("tmp", 0o1777), ("w", 0o777)] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::write(root.join("w/s.c"), "int f_1(void) { return 1; }\n").unwrap();
        dir
    }

    /// What the sandbox does to a real compile: `gcc -O2 -c` of a one-function file in a
    /// job root holding gcc, spawned plainly (fork, chroot, exec, as root) and through
    /// [`run_with`] with every layer and with one layer left out at a time, alternating,
    /// `OFFLOAD_OVERHEAD_RUNS` (default 100) of each; medians and p95 printed. A measurement
    /// for `bench/overhead.sh`, not a test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; run by bench/overhead.sh"]
    async fn compile_overhead_by_layer() {
        let dir = gcc_root();
        let root = dir.path();
        let all = *layers();
        let n: usize = std::env::var("OFFLOAD_OVERHEAD_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        let argv: Vec<String> = ["gcc", "-O2", "-c", "s.c", "-o", "s.o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = [
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
        ];
        let user = Some(test_user(3));
        let mut variants: Vec<(&str, Option<Layers>)> = vec![
            ("plain chroot spawn", None),
            ("sandbox, every layer", Some(all)),
        ];
        let without = |f: fn(&mut Layers)| {
            let mut l = all;
            f(&mut l);
            Some(l)
        };
        variants.extend([
            ("sandbox without seccomp", without(|l| l.seccomp = false)),
            (
                "sandbox without the PID namespace",
                without(|l| l.pid = false),
            ),
            (
                "sandbox without the network namespace",
                without(|l| l.net = false),
            ),
            (
                "sandbox without the mount namespace",
                without(|l| l.mount = false),
            ),
            (
                "sandbox, no layer (chroot, user, rlimits)",
                Some(Layers::default()),
            ),
        ]);
        let root_c = CString::new(root.as_os_str().as_bytes()).unwrap();
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
        for _ in 0..n {
            for (i, (_, layers)) in variants.iter().enumerate() {
                let _ = std::fs::remove_file(root.join("w/s.o"));
                let t = Instant::now();
                match layers {
                    None => {
                        let mut cmd = std::process::Command::new("/usr/bin/gcc");
                        cmd.args(&argv[1..]).env_clear().envs(env.iter().cloned());
                        let r = root_c.clone();
                        // SAFETY: chroot and chdir only.
                        unsafe {
                            cmd.pre_exec(move || {
                                if libc::chroot(r.as_ptr()) != 0 || libc::chdir(c"/w".as_ptr()) != 0
                                {
                                    return Err(io::Error::last_os_error());
                                }
                                Ok(())
                            });
                        }
                        let out = tokio::process::Command::from(cmd).output().await.unwrap();
                        assert!(out.status.success(), "{out:?}");
                    }
                    Some(l) => {
                        let spec = RunSpec {
                            root,
                            argv: &argv,
                            program: "/usr/bin/gcc",
                            cwd: "/w",
                            env: &env,
                            user,
                            timeout: Duration::from_secs(30),
                        };
                        let out = run_with(spec, *l).await.unwrap();
                        assert_eq!(out.status, ExitStatus::Code(0), "{}", text(&out.stderr));
                    }
                }
                times[i].push(t.elapsed());
                assert!(root.join("w/s.o").is_file());
            }
        }
        eprintln!("compile_overhead_by_layer: gcc -O2 -c, {n} runs of each, alternating");
        let base = percentile(&mut times[0].clone(), 50);
        for ((name, _), t) in variants.iter().zip(&mut times) {
            let (p50, p95) = (percentile(t, 50), percentile(t, 95));
            eprintln!(
                "  {name}: median {:.2} ms, p95 {:.2} ms, median − plain {:+.2} ms",
                p50.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3,
                (p50.as_secs_f64() - base.as_secs_f64()) * 1e3
            );
        }
    }

    /// The nearest-rank percentile `p` (0–100) of `v`, which it sorts.
    fn percentile(v: &mut [Duration], p: usize) -> Duration {
        v.sort();
        v[(v.len() * p).div_ceil(100).clamp(1, v.len()) - 1]
    }

    /// Per-job cost: `/bin/true` in a minimal root, plain chroot spawn vs the sandbox (as
    /// the worker runs a job: every layer, an unprivileged user), alternating, `N` of each
    /// (`OFFLOAD_OVERHEAD_RUNS`, default 200). Prints the median and p95 of both and of
    /// their per-pair difference; `bench/overhead.sh` runs it pinned to one CPU.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overhead() {
        let root = job_root();
        let _ = layers();
        let n: usize = std::env::var("OFFLOAD_OVERHEAD_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let user = Some(test_user(4));
        let root_c = CString::new(root.path().as_os_str().as_bytes()).unwrap();
        let (mut plain, mut sandboxed, mut diff) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            let mut cmd = std::process::Command::new("/bin/busybox");
            cmd.arg0("true").env_clear();
            let r = root_c.clone();
            // SAFETY: chroot and chdir only.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(r.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let out = tokio::process::Command::from(cmd).output().await.unwrap();
            assert!(out.status.success());
            let p = t.elapsed();
            let t = Instant::now();
            let out = run_in(root.path(), &["true"], user, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(out.status, ExitStatus::Code(0));
            let s = t.elapsed();
            plain.push(p);
            sandboxed.push(s);
            diff.push(s.saturating_sub(p));
        }
        let (p50, s50, d50) = (
            percentile(&mut plain, 50),
            percentile(&mut sandboxed, 50),
            percentile(&mut diff, 50),
        );
        let (p95, s95, d95) = (
            percentile(&mut plain, 95),
            percentile(&mut sandboxed, 95),
            percentile(&mut diff, 95),
        );
        eprintln!(
            "overhead ({n} runs of each, alternating; {}): plain chroot spawn median {p50:?} p95 {p95:?}; \
             sandboxed median {s50:?} p95 {s95:?}; difference per pair median {d50:?} p95 {d95:?}",
            layers()
        );
        assert!(s50.saturating_sub(p50) < Duration::from_millis(50));
    }
}
