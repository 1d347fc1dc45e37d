//! A LAN made of network namespaces, for real mDNS: a "switch" namespace holding a bridge,
//! and nodes, each a namespace with one veth (`eth0`) plugged into it, with an IPv4
//! (`10.232.0.N/24`) and an IPv6 (`fd32::N/64`) address. Nothing is added to the
//! machine's own namespace, so the multicast stays on this LAN and tests in other
//! processes (which make LANs of their own, with the same addresses) cannot see it.
//!
//! Dropping the [`Lan`] kills what runs in its namespaces and deletes them, also when a
//! test fails; namespaces of test processes that died are removed by the next [`Lan`].

#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub mod rawdns;

const PREFIX: &str = "odisc-";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Whether the tests can make namespaces; prints why not when they cannot.
pub fn can_run() -> bool {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED: the mDNS tests create network namespaces and must run as root (CI does)"
        );
        return false;
    }
    true
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

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("setting up the test LAN: {e}");
    }
}

/// SIGKILLs every process in `ns`.
fn kill_all_in(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if pid as u32 == std::process::id() {
                continue;
            }
            // SAFETY: plain syscall; these are processes this test started in its own
            // namespaces.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Deletes `odisc-PID-…` namespaces whose process is gone.
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
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

/// One machine on the test LAN.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its namespace.
    pub ns: String,
    /// Its IPv4 address on `eth0`.
    pub v4: Ipv4Addr,
    /// Its IPv6 (ULA) address on `eth0`.
    pub v6: Ipv6Addr,
}

impl Node {
    /// Its addresses on the LAN.
    pub fn addrs(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.v4), IpAddr::V6(self.v6)]
    }

    /// Runs `f` on a thread of its own inside this node's namespace, and returns what it
    /// returns. Threads `f` starts (mdns-sd's daemon) are in the namespace too: a new
    /// thread inherits its creator's namespaces.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        let handle = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: plain syscall on an fd we own; it moves only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Starts `cmd` inside this node's namespace (through `ip netns exec`).
    pub fn spawn(&self, program: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Child {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        c.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
    }
}

/// A bridge and its nodes. Dropping it removes them all.
pub struct Lan {
    switch: String,
    nodes: Vec<Node>,
}

impl Lan {
    /// A LAN of `n` nodes (at most 250).
    pub fn new(n: usize) -> Lan {
        assert!(n <= 250);
        remove_stale();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{seq}", std::process::id());
        let mut lan = Lan {
            switch: format!("{base}-sw"),
            nodes: Vec::new(),
        };
        // From here on a panic deletes what was made (Drop).
        must(&["netns", "add", &lan.switch]);
        lan.bridge(0);
        for i in 0..n {
            let node = Node {
                ns: format!("{base}-{i}"),
                v4: Lan::v4(0, i),
                v6: Lan::v6(0, i),
            };
            must(&["netns", "add", &node.ns]);
            lan.nodes.push(node.clone());
            // No duplicate address detection: addresses are usable at once. (Through
            // /proc, which shows the namespace of its reader: `sysctl` may be missing.)
            let dad = Command::new("ip")
                .args(["netns", "exec", &node.ns, "sh", "-c"])
                .arg(
                    "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && \
                     echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad",
                )
                .status();
            assert!(
                dad.map(|s| s.success()).unwrap_or(false),
                "turning off IPv6 DAD in {}",
                node.ns
            );
            must(&["-n", &node.ns, "link", "set", "lo", "up"]);
            lan.plug(0, i);
            // mdns-sd picks the interface of each multicast send itself; a plain socket
            // (the hostile sender's) needs a route.
            must(&["-n", &node.ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        // The link-local IPv6 addresses appear once the links are up.
        std::thread::sleep(Duration::from_millis(100));
        lan
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Adds a second segment: a bridge `br1` of its own, and in each of `nodes` an
    /// interface `eth1` plugged into it, with `10.233.0.N/24` and `fd33::N/64`
    /// ([`Lan::v4`], [`Lan::v6`] with segment 1).
    pub fn add_segment(&self, nodes: &[usize]) {
        self.bridge(1);
        for &i in nodes {
            self.plug(1, i);
        }
    }

    /// Creates segment `seg`'s bridge, `br<seg>`, in the switch namespace.
    fn bridge(&self, seg: u8) {
        let br = format!("br{seg}");
        let sw = self.switch.as_str();
        must(&[
            "-n",
            sw,
            "link",
            "add",
            &br,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        must(&["-n", sw, "link", "set", &br, "up"]);
    }

    /// Plugs node `i` into segment `seg`: a veth from the bridge to `eth<seg>` in the
    /// node, with the node's addresses on that segment.
    fn plug(&self, seg: u8, i: usize) {
        let node = &self.nodes[i];
        let (sw, ns) = (self.switch.as_str(), node.ns.as_str());
        let port = format!("s{seg}n{i}");
        let dev = format!("eth{seg}");
        let br = format!("br{seg}");
        must(&[
            "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns", ns,
        ]);
        must(&["-n", sw, "link", "set", &port, "master", &br]);
        must(&["-n", sw, "link", "set", &port, "up"]);
        let v4 = format!("{}/24", Lan::v4(seg, i));
        let v6 = format!("{}/64", Lan::v6(seg, i));
        must(&["-n", ns, "addr", "add", &v4, "dev", &dev]);
        must(&["-n", ns, "addr", "add", &v6, "dev", &dev, "nodad"]);
        must(&["-n", ns, "link", "set", &dev, "multicast", "on", "up"]);
    }

    /// Node `i`'s IPv4 address on segment `seg` (0: `eth0`, 1: `eth1`).
    pub fn v4(seg: u8, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 232 + seg, 0, u8::try_from(i + 1).unwrap_or(u8::MAX))
    }

    /// Node `i`'s IPv6 address on segment `seg`.
    pub fn v6(seg: u8, i: usize) -> Ipv6Addr {
        let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
        Ipv6Addr::new(0xfd32 + u16::from(seg), 0, 0, 0, 0, 0, 0, n)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.nodes {
            kill_all_in(&n.ns);
        }
        for n in &self.nodes {
            let _ = ip(&["netns", "del", &n.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}
