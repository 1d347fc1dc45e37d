//! `offload pair WORKER` and `offload unpair WORKER`: the host's side of pairing.
//!
//! Pairing connects, runs the handshake and sends a pairing request; both sides now show
//! the same six-digit code unless someone is in the middle. The worker's owner allows the
//! code there (`offload worker allow CODE`, or the menu-bar app); the user here confirms
//! that the worker shows this code. Only when both have said yes is the worker's key pinned
//! here (and this host's there).

use std::future::Future;

use offload_secure::{Fingerprint, PublicKey};
use offload_shared::protocol::frame::{read_frame, write_frame};
use offload_shared::protocol::{
    Limits, Message, PROTOCOL_VERSION, PairConfirm, PairRequest, PairResult,
};
use tokio::io::AsyncWriteExt;

use crate::auth::HostAuth;
use crate::coordinator::remote::{self, RemoteError};

/// How long the worker's owner has to decide, as seen from here (the worker gives up first).
const DECISION_LIMIT: std::time::Duration = std::time::Duration::from_secs(150);

/// Why pairing did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// The worker could not be reached or broke off.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The worker's owner said no (or did not answer in time).
    #[error("worker {worker} refused: {reason}")]
    Refused {
        /// Its name.
        worker: String,
        /// Its reason.
        reason: String,
    },
    /// The user here did not confirm the code.
    #[error("not confirmed here: nothing was paired")]
    NotConfirmed,
    /// The worker sent something else.
    #[error("worker {addr} answered the pairing request with something else")]
    Unexpected {
        /// Where.
        addr: String,
    },
    /// The worker's owner took too long.
    #[error("the worker's owner did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The pin could not be saved.
    #[error("saving the pairing: {0}")]
    Pin(#[from] offload_secure::PinError),
}

/// What pairing established.
#[derive(Debug, Clone)]
pub struct Paired {
    /// The worker's key.
    pub key: PublicKey,
    /// Its name.
    pub name: String,
    /// True if it had paired with this host before (nothing changed there).
    pub already: bool,
}

/// The worker's next frame, within [`DECISION_LIMIT`].
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    addr: &str,
) -> Result<Option<(Message, Vec<u8>)>, PairError> {
    tokio::time::timeout(DECISION_LIMIT, read_frame::<_, Message>(r, Limits::DEFAULT))
        .await
        .map_err(|_| PairError::Timeout(DECISION_LIMIT))?
        .map_err(|source| {
            PairError::Remote(RemoteError::Frame {
                addr: addr.to_owned(),
                source,
            })
        })
}

/// The worker's [`PairResult`] if it accepted; its refusal, or what else it sent, as the
/// error.
fn accepted(frame: Option<(Message, Vec<u8>)>, addr: &str) -> Result<PairResult, PairError> {
    match frame {
        Some((Message::PairResult(p), _)) if p.accepted => Ok(p),
        Some((Message::PairResult(p), _)) => Err(PairError::Refused {
            worker: p.worker,
            reason: p.reason,
        }),
        Some((Message::Error(e), _)) => Err(PairError::Refused {
            worker: addr.to_owned(),
            reason: e.message,
        }),
        _ => Err(PairError::Unexpected {
            addr: addr.to_owned(),
        }),
    }
}

/// Pairs with the worker at `addr`. `show` is told the worker's fingerprint and the code as
/// soon as the handshake is done; `confirm` is the user's answer here (run at the same time
/// as the worker's owner decides). The worker's key is pinned only if both agree.
pub async fn pair<S, C>(
    addr: &str,
    auth: &HostAuth,
    show: S,
    confirm: C,
) -> Result<Paired, PairError>
where
    S: FnOnce(&Fingerprint, &str),
    C: Future<Output = bool>,
{
    let (stream, session) = remote::dial(addr, auth.identity()).await?;
    show(&session.remote.fingerprint(), &session.code.to_string());
    let (mut r, mut w) = tokio::io::split(stream);
    let lim = Limits::DEFAULT;
    let frame_err = |source| RemoteError::Frame {
        addr: addr.to_owned(),
        source,
    };
    let req = Message::PairRequest(PairRequest {
        version: PROTOCOL_VERSION,
        host: remote::hostname(),
    });
    write_frame(&mut w, &req, &[], lim)
        .await
        .map_err(frame_err)?;
    {
        let answer = read_answer(&mut r, addr);
        tokio::pin!(answer, confirm);
        // Both must say yes; either's no ends it at once (saying no, or closing the
        // connection, withdraws the request on the worker, which then pins nothing).
        let (mut confirmed, mut allowed) = (false, false);
        while !confirmed || !allowed {
            tokio::select! {
                yes = &mut confirm, if !confirmed => {
                    if !yes {
                        let no = Message::PairConfirm(PairConfirm { confirmed: false });
                        let _ = write_frame(&mut w, &no, &[], lim).await;
                        let _ = w.shutdown().await;
                        return Err(PairError::NotConfirmed);
                    }
                    confirmed = true;
                }
                a = &mut answer, if !allowed => {
                    accepted(a?, addr)?;
                    allowed = true;
                }
            }
        }
    }
    let yes = Message::PairConfirm(PairConfirm { confirmed: true });
    write_frame(&mut w, &yes, &[], lim)
        .await
        .map_err(frame_err)?;
    // The worker's final word: it pinned this host.
    let result = accepted(read_answer(&mut r, addr).await?, addr)?;
    let already = auth.check(&session.remote, None).is_ok();
    auth.pin(session.remote, &result.worker, addr)?;
    let _ = w.shutdown().await;
    Ok(Paired {
        key: session.remote,
        name: result.worker,
        already,
    })
}
