//! The worker's local control API: a Unix socket (`STATE/control.sock`, mode 0600, in a
//! directory of mode 0700) taking one JSON request per line and answering one JSON line.
//! Only the worker's own user (or root) may use it: the socket's mode, and the peer's
//! credentials checked on every connection. `offload worker pairings|allow|deny|revoke`
//! and the menu-bar app speak it.
//!
//! ```text
//! → {"op":"pairings"}
//! ← {"result":"pairings","pending":[{"code":"042917","host":"…","name":"laptop",…}],"paired":[…]}
//! → {"op":"allow","code":"042917"}
//! ← {"result":"decided","request":{…}}
//! → {"op":"revoke","host":"laptop"}
//! ← {"result":"revoked","host":{…}}
//! → {"op":"pause"}                       (also "resume", "status")
//! ← {"result":"lending","donating":false,"why":"paused-by-user","since_secs":0}
//! ← {"result":"error","message":"no pairing request waits with code 123456"}
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::donation::Donation;
use crate::pairing::{Decision, PairedView, Pairings, PendingView};

/// The socket's name in the state directory.
pub const SOCKET_NAME: &str = "control.sock";
/// The longest request line read.
const MAX_LINE: u64 = 4096;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// The waiting requests and the paired hosts. (A struct variant, so that unknown
    /// fields are refused as for the others.)
    Pairings {},
    /// Allow the request showing this code.
    Allow {
        /// Its code.
        code: String,
    },
    /// Deny the request showing this code.
    Deny {
        /// Its code.
        code: String,
    },
    /// Unpair a host, by fingerprint or name.
    Revoke {
        /// The host.
        host: String,
    },
    /// Stop lending (the owner's pause).
    Pause {},
    /// Lend again, as the idle policy allows.
    Resume {},
    /// Whether the worker lends now.
    Status {},
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlReply {
    /// To [`ControlRequest::Pairings`].
    Pairings {
        /// Waiting requests.
        pending: Vec<PendingView>,
        /// Paired hosts.
        paired: Vec<PairedView>,
    },
    /// To allow or deny.
    Decided {
        /// The request answered.
        request: PendingView,
    },
    /// To revoke.
    Revoked {
        /// The host unpaired.
        host: PairedView,
    },
    /// To pause, resume and status: the lending state after it.
    Lending {
        /// Whether jobs are taken.
        donating: bool,
        /// Why (a token).
        why: String,
        /// Seconds the state has held.
        since_secs: u64,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why the control API could not be served or reached.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be made or reached.
    #[error("control socket {path}: {source}")]
    Socket {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The worker answered something that is not a reply.
    #[error("control socket {path}: bad answer: {why}")]
    BadAnswer {
        /// Where.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Listens on `DIR/control.sock` (replacing a stale socket) and serves requests until the
/// task is dropped.
pub fn listen(
    dir: &Path,
    pairings: Arc<Pairings>,
    donation: Arc<Donation>,
) -> Result<ControlServer, ControlError> {
    let path = dir.join(SOCKET_NAME);
    let err = |source| ControlError::Socket {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let task = tokio::spawn(accept_loop(listener, Targets { pairings, donation }));
    Ok(ControlServer { path, task })
}

/// The running control API; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// The socket.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the control API acts on.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The pairings.
    pub pairings: Arc<Pairings>,
    /// The lending state.
    pub donation: Arc<Donation>,
}

async fn accept_loop(listener: UnixListener, targets: Targets) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let targets = targets.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, &targets).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

/// Whether the peer is this process's user or root.
fn peer_allowed(stream: &UnixStream) -> bool {
    // SAFETY: plain syscall.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == me || c.uid() == 0)
}

async fn serve_one(stream: UnixStream, targets: &Targets) -> std::io::Result<()> {
    if !peer_allowed(&stream) {
        tracing::warn!("control socket: a connection from another user was refused");
        return Ok(());
    }
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r.take(MAX_LINE * 64)).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = if line.len() as u64 > MAX_LINE {
            ControlReply::Error {
                message: format!("a request is at most {MAX_LINE} bytes"),
            }
        } else {
            match serde_json::from_str::<ControlRequest>(&line) {
                Ok(req) => handle(targets, req),
                Err(e) => ControlReply::Error {
                    message: format!("bad request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}

/// Carries out one request.
pub fn handle(targets: &Targets, req: ControlRequest) -> ControlReply {
    let error = |e: crate::pairing::PairingError| ControlReply::Error {
        message: e.to_string(),
    };
    let pairings = &targets.pairings;
    let lending = |d: &Donation| {
        let now = d.current();
        ControlReply::Lending {
            donating: now.donating,
            why: now.why,
            since_secs: d.since().elapsed().as_secs(),
        }
    };
    match req {
        ControlRequest::Pause {} => {
            targets.donation.set_paused(true);
            lending(&targets.donation)
        }
        ControlRequest::Resume {} => {
            targets.donation.set_paused(false);
            lending(&targets.donation)
        }
        ControlRequest::Status {} => lending(&targets.donation),
        ControlRequest::Pairings {} => {
            let (pending, paired) = pairings.list();
            ControlReply::Pairings { pending, paired }
        }
        ControlRequest::Allow { code } => pairings
            .decide(&code, Decision::Allowed)
            .map_or_else(error, |request| ControlReply::Decided { request }),
        ControlRequest::Deny { code } => pairings
            .decide(&code, Decision::Denied)
            .map_or_else(error, |request| ControlReply::Decided { request }),
        ControlRequest::Revoke { host } => pairings
            .revoke(&host)
            .map_or_else(error, |host| ControlReply::Revoked { host }),
    }
}

/// Sends one request to the worker whose control socket is `path`.
pub async fn call(path: &Path, req: &ControlRequest) -> Result<ControlReply, ControlError> {
    let sock = |source| ControlError::Socket {
        path: path.to_owned(),
        source,
    };
    let stream = UnixStream::connect(path).await.map_err(sock)?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| sock(std::io::Error::other(e)))?;
    line.push(b'\n');
    w.write_all(&line).await.map_err(sock)?;
    w.shutdown().await.map_err(sock)?;
    let mut answer = String::new();
    BufReader::new(r.take(1 << 20))
        .read_line(&mut answer)
        .await
        .map_err(sock)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::BadAnswer {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_secure::{PeerRole, PinStore};

    #[test]
    fn requests_parse_or_are_refused() {
        let cases: &[(&str, Option<ControlRequest>)] = &[
            (r#"{"op":"pairings"}"#, Some(ControlRequest::Pairings {})),
            (
                r#"{"op":"allow","code":"042917"}"#,
                Some(ControlRequest::Allow {
                    code: "042917".into(),
                }),
            ),
            (
                r#"{"op":"deny","code":"1"}"#,
                Some(ControlRequest::Deny { code: "1".into() }),
            ),
            (
                r#"{"op":"revoke","host":"laptop"}"#,
                Some(ControlRequest::Revoke {
                    host: "laptop".into(),
                }),
            ),
            (r#"{"op":"allow"}"#, None),
            (r#"{"op":"format_disk"}"#, None),
            (r#"{"op":"pairings","extra":1}"#, None),
            (r#"{"op":"pause"}"#, Some(ControlRequest::Pause {})),
            (r#"{"op":"status","x":1}"#, None),
            ("not json", None),
        ];
        for (line, want) in cases {
            let got = serde_json::from_str::<ControlRequest>(line).ok();
            assert_eq!(&got, want, "{line}");
        }
    }

    #[tokio::test]
    async fn the_socket_answers_its_owner() {
        let d = tempfile::tempdir().expect("tempdir");
        let pins = PinStore::open(d.path(), PeerRole::Hosts).expect("pins");
        let pairings = Arc::new(Pairings::new(pins, Vec::new()));
        let donation = Arc::new(Donation::new(crate::donation::Lending::yes("idle")));
        let server = listen(&d.path().join("state"), pairings, donation.clone()).expect("listen");
        let mode = std::fs::metadata(server.path())
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the socket is not private");
        let reply = call(server.path(), &ControlRequest::Pairings {})
            .await
            .expect("answer");
        assert_eq!(
            reply,
            ControlReply::Pairings {
                pending: vec![],
                paired: vec![]
            }
        );
        let reply = call(
            server.path(),
            &ControlRequest::Allow {
                code: "123456".into(),
            },
        )
        .await
        .expect("answer");
        assert!(
            matches!(&reply, ControlReply::Error { message } if message.contains("123456")),
            "{reply:?}"
        );
        // Pause and resume reach the lending state.
        let reply = call(server.path(), &ControlRequest::Pause {})
            .await
            .expect("answer");
        assert!(
            matches!(&reply, ControlReply::Lending { donating: false, why, .. } if why == "paused-by-user"),
            "{reply:?}"
        );
        assert!(!donation.current().donating);
        let reply = call(server.path(), &ControlRequest::Resume {})
            .await
            .expect("answer");
        assert!(
            matches!(reply, ControlReply::Lending { donating: true, .. }),
            "{reply:?}"
        );
        let path = server.path().to_owned();
        drop(server);
        assert!(!path.exists(), "the socket outlived its server");
    }
}
