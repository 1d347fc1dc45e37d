//! Whether the worker lends its cores now, and why: the owner's pause (control API,
//! menu-bar app) and the idle policy's verdict, combined into one state that every part
//! of the worker follows. When it turns to not lending, new jobs are refused at once,
//! running ones get [`Config::give_back_grace`](crate::Config) to finish and are then
//! stopped (answered [`Message::NotDonating`](offload_shared::protocol::Message)), and
//! the announcement says so; hosts run those jobs elsewhere. Lending resumes by itself
//! when both inputs allow it again.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The token for a pause by the owner (the same as the mDNS record's).
pub const PAUSED_BY_USER: &str = "paused-by-user";
/// The token for lending because the policy allows it.
pub const IDLE: &str = "idle";

/// Lending or not, and why (a token: `idle`, `always`, `busy-owner`, `paused-by-user`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lending {
    /// Whether jobs are taken.
    pub donating: bool,
    /// Why.
    pub why: String,
}

impl Lending {
    /// Lending, for this reason.
    pub fn yes(why: &str) -> Lending {
        Lending {
            donating: true,
            why: why.to_owned(),
        }
    }

    /// Not lending, for this reason.
    pub fn no(why: &str) -> Lending {
        Lending {
            donating: false,
            why: why.to_owned(),
        }
    }
}

#[derive(Debug)]
struct Inputs {
    paused: bool,
    policy: Lending,
    since: Instant,
}

/// The worker's lending state.
#[derive(Debug)]
pub struct Donation {
    inputs: Mutex<Inputs>,
    tx: watch::Sender<Lending>,
}

impl Donation {
    /// Lending as `policy` says, not paused.
    pub fn new(policy: Lending) -> Donation {
        let (tx, _) = watch::channel(policy.clone());
        Donation {
            inputs: Mutex::new(Inputs {
                paused: false,
                policy,
                since: Instant::now(),
            }),
            tx,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Inputs)) {
        let mut i = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut i);
        let now = combine(i.paused, &i.policy);
        let changed = self.tx.send_if_modified(|cur| {
            if *cur == now {
                false
            } else {
                *cur = now.clone();
                true
            }
        });
        if changed {
            i.since = Instant::now();
            tracing::info!(donating = now.donating, why = now.why, "lending changed");
        }
    }

    /// The idle policy's verdict.
    pub fn set_policy(&self, verdict: Lending) {
        self.update(|i| i.policy = verdict);
    }

    /// The owner pauses (or resumes) lending.
    pub fn set_paused(&self, paused: bool) {
        self.update(|i| i.paused = paused);
    }

    /// The state now.
    pub fn current(&self) -> Lending {
        self.tx.borrow().clone()
    }

    /// Since when the state is what it is.
    pub fn since(&self) -> Instant {
        self.inputs.lock().unwrap_or_else(|p| p.into_inner()).since
    }

    /// Follows the state.
    pub fn subscribe(&self) -> watch::Receiver<Lending> {
        self.tx.subscribe()
    }
}

/// A pause wins over the policy.
fn combine(paused: bool, policy: &Lending) -> Lending {
    if paused {
        Lending::no(PAUSED_BY_USER)
    } else {
        policy.clone()
    }
}

/// Completes when the worker stops lending (at once if it is not lending), with why.
pub async fn given_back(rx: &mut watch::Receiver<Lending>) -> String {
    let why = rx.wait_for(|l| !l.donating).await.map(|l| l.why.clone());
    match why {
        Ok(why) => why,
        // The worker is gone: nothing will change any more.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_wins_and_lending_resumes_by_itself() {
        let d = Donation::new(Lending::yes(IDLE));
        let mut rx = d.subscribe();
        assert!(d.current().donating);
        d.set_paused(true);
        assert_eq!(d.current(), Lending::no(PAUSED_BY_USER));
        assert_eq!(given_back(&mut rx).await, PAUSED_BY_USER);
        // The policy turning busy while paused changes nothing visible…
        d.set_policy(Lending::no("busy-owner"));
        assert_eq!(d.current().why, PAUSED_BY_USER);
        // …resuming shows it, and the policy's return to idle resumes lending.
        d.set_paused(false);
        assert_eq!(d.current(), Lending::no("busy-owner"));
        d.set_policy(Lending::yes(IDLE));
        assert_eq!(d.current(), Lending::yes(IDLE));
    }

    #[tokio::test]
    async fn given_back_waits_for_the_change() {
        let d = std::sync::Arc::new(Donation::new(Lending::yes(IDLE)));
        let mut rx = d.subscribe();
        let waiting = tokio::spawn(async move { given_back(&mut rx).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        d.set_policy(Lending::no("busy-cpu"));
        assert_eq!(waiting.await.expect("join"), "busy-cpu");
    }
}
