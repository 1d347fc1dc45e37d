//! A worker in a Docker container from the project's image (`docker/build.sh`), on a
//! private Docker network: its own file system and its own address. The arm64 image runs
//! under qemu-user here, as a Mac's Linux container runs natively.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::paths::require_root;

/// A running worker container; removed (with its network) on drop.
#[derive(Debug)]
pub struct ContainerWorker {
    name: String,
    network: String,
    addr: String,
}

fn docker(args: &[&str]) -> Result<String, String> {
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
    /// Starts `image` (e.g. `offload-worker:arm64`) with `slots` slots and waits until it
    /// accepts connections. Panics with the reason when it cannot (the image is built by
    /// `docker/build.sh`, which `scripts/test` runs first).
    pub fn start(image: &str, slots: u32) -> ContainerWorker {
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
        docker(&[
            "run",
            "-d",
            "--name",
            &id,
            "--network",
            &network,
            "--tmpfs",
            "/work:exec,size=2g",
            image,
            "--listen",
            "0.0.0.0:7420",
            "--slots",
            &slots,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let addr = format!("{ip}:7420");
        let w = ContainerWorker {
            name: id,
            network,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(sa) = w.addr.parse()
                && std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(500)).is_ok()
            {
                return w;
            }
            if Instant::now() > deadline {
                let logs = docker(&["logs", &w.name]).unwrap_or_default();
                panic!("the worker container did not start listening within 60 s:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `IP:PORT` for `offload build --worker`.
    pub fn worker_arg(&self) -> String {
        self.addr.clone()
    }

    /// The container's own output, for failure messages.
    pub fn logs(&self) -> String {
        docker(&["logs", &self.name]).unwrap_or_else(|e| e)
    }
}

impl Drop for ContainerWorker {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = docker(&["network", "rm", &self.network]);
    }
}
