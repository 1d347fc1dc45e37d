//! The idle policy in the worker: with `--lend idle` (the CLI's default) a
//! [`Monitor`](offload_idle::Monitor) samples the machine every 500 ms and each new
//! verdict becomes the lending state's policy input (`idle`, or the first busy reason's
//! token: `busy-owner`, `on-battery`, `low-power`, `thermal`, `busy-cpu`,
//! `memory-pressure`), which [`Donation`] logs (`lending changed`), announces and acts on.
//! With `--lend always` nothing is sampled and the policy says `always`.
//!
//! The worker's own CPU time (this process, everything under it, and the uids its slots'
//! jobs run as) is not "other load": its own compiles never make it give its cores back.

use std::sync::Arc;

use offload_idle::{Monitor, OwnJobs, Settings, Verdict, system_source};

use crate::donation::{Donation, IDLE, Lending};
use crate::jobroot::JobUser;

/// The token for lending whatever the machine does.
pub const ALWAYS: &str = "always";

/// When the worker lends.
#[derive(Debug, Clone, PartialEq)]
pub enum Lend {
    /// Always (but for the owner's pause).
    Always,
    /// When the idle policy with these settings allows it.
    Idle(Settings),
}

/// The lending state's policy input for a verdict.
pub fn lending(v: &Verdict) -> Lending {
    match v {
        Verdict::Idle => Lending::yes(IDLE),
        Verdict::Busy(_) => Lending::no(v.token()),
    }
}

/// The policy's first input, before any sample.
pub fn initial(lend: &Lend) -> Lending {
    match lend {
        Lend::Always => Lending::yes(ALWAYS),
        Lend::Idle(_) => Lending::yes(IDLE),
    }
}

/// What counts as the worker's own: this process and its descendants, and the uids of
/// its `slots` job users.
pub fn own_jobs(job_user: Option<JobUser>, slots: u32) -> OwnJobs {
    OwnJobs::this_process(job_user.map(|u| u.uid..u.uid.saturating_add(slots)))
}

/// Starts the policy for `lend` (nothing for [`Lend::Always`]); it feeds `donation` until
/// the returned monitor is dropped.
pub fn start(
    lend: &Lend,
    donation: Arc<Donation>,
    own: OwnJobs,
) -> Result<Option<Monitor>, offload_idle::monitor::MonitorError> {
    let Lend::Idle(settings) = lend else {
        return Ok(None);
    };
    tracing::info!(
        idle_after_secs = settings.idle_after_secs,
        max_other_load = settings.max_other_load,
        "lending when the machine is idle"
    );
    let monitor = Monitor::with_callback(system_source(own), settings.clone(), move |v| {
        if !v.is_idle() {
            tracing::debug!(reasons = v.describe(), "the machine is busy");
        }
        donation.set_policy(lending(v));
    })?;
    Ok(Some(monitor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_idle::Reason;

    #[test]
    fn verdicts_become_lending_tokens() {
        assert_eq!(lending(&Verdict::Idle), Lending::yes("idle"));
        assert_eq!(
            lending(&Verdict::Busy(vec![Reason::BusyCpu, Reason::Thermal])),
            Lending::no("busy-cpu")
        );
        assert_eq!(initial(&Lend::Always), Lending::yes("always"));
        let own = own_jobs(
            Some(JobUser {
                uid: 1_900_000_000,
                gid: 1_900_000_000,
            }),
            4,
        );
        assert_eq!(own.uids, Some(1_900_000_000..1_900_000_004));
        assert_eq!(own.pid, Some(std::process::id()));
    }

    #[test]
    fn always_samples_nothing() {
        let d = Arc::new(Donation::new(initial(&Lend::Always)));
        let m = start(&Lend::Always, d.clone(), OwnJobs::default()).expect("start");
        assert!(m.is_none());
        assert_eq!(d.current(), Lending::yes("always"));
    }
}
