//! A worker in a Docker container from the project's image (`docker/build.sh`), on a
//! private Docker network: its own file system and its own address. The arm64 image runs
//! under qemu-user here, as a Mac's Linux container runs natively.
//!
//! The container runs the image's own entrypoint (`offload worker --work-dir /work
//! --job-user 1000:1000`: slot N's jobs as uid 1000 + N) under a chosen [`Security`]
//! profile, with `OFFLOAD_LOG=info` so that the worker's `sandbox: …; missing: …` line is in
//! its log.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::paths::{repo_root, require_root};

/// How much the container may do, as `docker run` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Docker's default seccomp profile and capabilities: how docker/README.md runs it.
    DockerDefault,
    /// The least-privilege profile of `../shared/MEASURED.md` (Docker's default plus
    /// clone, clone3, unshare, mount, umount2, pivot_root; no added capability), made by
    /// `docker/seccomp-profile.py`. `/proc` stays masked as Docker masks it.
    LeastPrivilege,
    /// [`Security::LeastPrivilege`] with `--security-opt systempaths=unconfined` (an
    /// unmasked `/proc`, which a fresh procfs mount in a user namespace needs).
    LeastPrivilegeUnmasked,
}

impl Security {
    /// The `docker run` options.
    fn options(self) -> Vec<String> {
        let profile = || format!("seccomp={}", least_privilege_profile().display());
        match self {
            Security::DockerDefault => vec![],
            Security::LeastPrivilege => vec!["--security-opt".into(), profile()],
            Security::LeastPrivilegeUnmasked => vec![
                "--security-opt".into(),
                profile(),
                "--security-opt".into(),
                "systempaths=unconfined".into(),
            ],
        }
    }
}

/// The least-privilege seccomp profile, written by `docker/seccomp-profile.py` into
/// `$OFFLOAD_DOCKER_CACHE` (default `/var/cache/offload-docker`, as `docker/build.sh`
/// does) the first time a test needs it.
pub fn least_privilege_profile() -> PathBuf {
    static PROFILE: OnceLock<PathBuf> = OnceLock::new();
    PROFILE
        .get_or_init(|| {
            let cache = std::env::var_os("OFFLOAD_DOCKER_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache/offload-docker"));
            let path = cache.join("seccomp-offload.json");
            if !path.is_file() {
                let script = repo_root().join("docker").join("seccomp-profile.py");
                let out = Command::new("python3")
                    .arg(&script)
                    .arg(&path)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
                assert!(
                    out.status.success() && path.is_file(),
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            path
        })
        .clone()
}

/// The image for `arch` (`amd64`, `arm64`): `$OFFLOAD_IMAGE:ARCH`, as `docker/build.sh`
/// names it (default `offload-worker`).
pub fn image(arch: &str) -> String {
    let name = std::env::var("OFFLOAD_IMAGE").unwrap_or_else(|_| "offload-worker".into());
    format!("{name}:{arch}")
}

/// A running worker container; removed (with its network) on drop.
#[derive(Debug)]
pub struct ContainerWorker {
    name: String,
    network: String,
    addr: SocketAddr,
    /// Its key, made by the test and mounted read-only.
    key_file: std::path::PathBuf,
    fingerprint: offload_secure::Fingerprint,
}

/// Runs `docker ARGS`; its trimmed stdout, or the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ContainerWorker {
    /// Starts `image` (e.g. `offload-worker:arm64`) with `slots` slots and Docker's default
    /// profile, and waits until it accepts connections. Panics with the reason when it
    /// cannot (the image is built by `docker/build.sh`, which `scripts/test` runs first).
    pub fn start(image: &str, slots: u32) -> ContainerWorker {
        ContainerWorker::start_with(image, slots, Security::DockerDefault)
    }

    /// [`ContainerWorker::start`] under `security`.
    pub fn start_with(image: &str, slots: u32, security: Security) -> ContainerWorker {
        require_root();
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("offload-e2e-{}-{seq}", std::process::id());
        let network = format!("{id}-net");
        let _ = docker(&["rm", "-f", &id]);
        let _ = docker(&["network", "rm", &network]);
        docker(&["image", "inspect", image]).unwrap_or_else(|e| {
            panic!("the worker image {image} is missing (run docker/build.sh): {e}")
        });
        docker(&["network", "create", &network]).unwrap_or_else(|e| panic!("{e}"));
        let slots = slots.to_string();
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &id,
            "--network",
            &network,
            "--tmpfs",
            "/work:exec,size=2g",
            "-e",
            "OFFLOAD_LOG=info",
        ]
        .map(String::from)
        .to_vec();
        // Its key is made here and handed in read-only, as the menu-bar app hands the
        // container its key; it trusts the tests' host.
        let key_file = std::path::PathBuf::from(crate::paths::TEST_ROOT).join(format!("{id}.key"));
        std::fs::create_dir_all(crate::paths::TEST_ROOT).expect("creating the test root");
        let fingerprint = crate::keys::new_key_file(&key_file);
        args.extend([
            "-v".to_owned(),
            format!("{}:/keys/worker.key:ro", key_file.display()),
        ]);
        args.extend(security.options());
        args.extend([image, "--listen", "0.0.0.0:7420", "--slots", &slots].map(String::from));
        args.extend([
            "--key-file".to_owned(),
            "/keys/worker.key".to_owned(),
            "--trust-host".to_owned(),
            crate::keys::host_fingerprint().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Removed on drop from here on, whatever fails next.
        let mut w = ContainerWorker {
            name: id,
            network,
            addr: SocketAddr::from(([0, 0, 0, 0], 7420)),
            key_file,
            fingerprint,
        };
        docker(&args).unwrap_or_else(|e| panic!("{e}"));
        let ip = w.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        w.addr = format!("{ip}:7420")
            .parse()
            .unwrap_or_else(|e| panic!("the container's address {ip:?}: {e}"));
        w.wait_listening();
        w
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.name]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn wait_listening(&self) {
        // Under qemu the worker takes a few seconds to find its compilers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the worker container did not start listening within 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `IP:PORT` for `offload build --worker`.
    pub fn worker_arg(&self) -> String {
        format!("{}@{}", self.fingerprint, self.addr)
    }

    /// The worker's address on its Docker network.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the worker printed (`docker logs` gives the container's stdout and stderr on
    /// its own stdout and stderr: both, one after the other).
    pub fn logs(&self) -> String {
        match Command::new("docker").args(["logs", &self.name]).output() {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            Err(e) => format!("cannot run docker logs: {e}"),
        }
    }

    /// The worker's `sandbox: …; missing: …` line (from `sandbox:` on), logged at start.
    pub fn sandbox_line(&self) -> Option<String> {
        self.logs()
            .lines()
            .filter(|l| l.contains("; missing: "))
            // After the log target (`offload_worker::sandbox: `).
            .find_map(|l| l.rfind("sandbox: ").map(|i| l[i..].trim().to_owned()))
    }

    /// Runs `script` with `sh -c` in the container, beside the worker (as the container's
    /// root, in none of the jobs' sandboxes); its stdout.
    pub fn exec(&self, script: &str) -> Result<String, String> {
        docker(&["exec", &self.name, "sh", "-c", script])
    }

    /// The address of the container's network on this machine (the Docker network's
    /// gateway): what every process in the container can connect to.
    pub fn gateway(&self) -> IpAddr {
        let gw = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &self.network,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        gw.parse()
            .unwrap_or_else(|e| panic!("the network's gateway {gw:?}: {e}"))
    }
}

impl Drop for ContainerWorker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- worker container {} ----\n{}", self.name, self.logs());
        }
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = docker(&["network", "rm", &self.network]);
        let _ = std::fs::remove_file(&self.key_file);
    }
}
