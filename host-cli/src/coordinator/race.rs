//! Speculation: a job a worker holds far past how long this host would take is compiled
//! here too, on a local slot nobody waits for, and the first result wins. The loser is
//! stopped: the worker's job by dropping its connection (the worker kills it), the local
//! run by SIGTERM (the compiler removes what it wrote); the winner's outputs are the only
//! ones left. Both are the same command on the same inputs, so either result is the one a
//! local build gives.
//!
//! How long is "far past": [`super::speed::Speeds::patience`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::executor::Executor;
use super::localrun::{LocalCommand, LocalRun};
use super::sched::{Grant, Place};
use super::speed::LOOK_AGAIN;
use super::{Coordinator, Outcome, terminal};
use crate::classify;
use crate::ipc::CompileRequest;

impl Coordinator {
    /// The command as the wrapper would run it here: its own argv, with what makes a
    /// compiler print as on the wrapper's terminal. `None` if that cannot be reproduced.
    fn local_command(req: &CompileRequest) -> Option<LocalCommand> {
        let mut env = req.env.clone();
        let adapt = terminal::adapt(req, &mut env).ok()?;
        let mut argv = vec![req.compiler.clone()];
        argv.extend(adapt.extra_args.iter().map(|a| a.to_string()));
        argv.extend(req.args.iter().cloned());
        Some(LocalCommand {
            argv,
            cwd: req.cwd.clone(),
            env,
            umask: req.umask,
        })
    }

    /// Runs `req` on `exec` (whose slot `grant` holds), racing a local run against it if
    /// it runs past its patience while this host has a spare slot. A successful remote
    /// result comes back held ([`Outcome::Held`]); a local win as [`Outcome::RanHere`].
    pub(super) async fn race(
        &self,
        exec: &Arc<dyn Executor>,
        grant: Grant,
        req: &CompileRequest,
        compile: &classify::Compile,
        rsp_files: &[PathBuf],
        cost: u64,
    ) -> Outcome {
        let place = grant.place().clone();
        let started = Instant::now();
        // Checking workers: their result is the one wanted, however long it takes.
        if self.config.remote_only {
            let o = self.remote(exec, req, compile, rsp_files, true).await;
            return self.remote_ended(o, &place, cost, started);
        }
        let patience = self.speeds.patience(&place, cost);
        // Boxed, so that dropping it (the worker lost the race) cancels it there and then.
        let mut fetch = Box::pin(self.remote(exec, req, compile, rsp_files, true));
        // The worker alone, until it is past its patience and a local slot is spare.
        let (spare, mut run) = loop {
            let wait = patience.saturating_sub(started.elapsed()).max(LOOK_AGAIN);
            tokio::select! {
                o = &mut fetch => return self.remote_ended(o, &place, cost, started),
                () = tokio::time::sleep(wait) => {}
            }
            if started.elapsed() < patience {
                continue;
            }
            let Some(spare) = self.sched.try_local_spare() else {
                continue;
            };
            let Some(cmd) = Self::local_command(req) else {
                drop(spare);
                let o = fetch.await;
                return self.remote_ended(o, &place, cost, started);
            };
            match LocalRun::start(&cmd, self.config.local_nice) {
                Ok(run) => break (spare, run),
                Err(e) => {
                    tracing::debug!("cannot start a second run here: {e}");
                    drop(spare);
                    let o = fetch.await;
                    return self.remote_ended(o, &place, cost, started);
                }
            }
        };
        tracing::info!(
            worker = exec.label(),
            source = %compile.source.display(),
            after_ms = started.elapsed().as_millis() as u64,
            "running a slow remote job here too"
        );
        self.stats.speculated();
        let local_started = Instant::now();
        tokio::select! {
            o = &mut fetch => match o {
                Outcome::Held(held) => {
                    // The worker won: the local run stops and removes what it wrote.
                    run.stop().await;
                    drop(spare);
                    self.stats.speculation_lost();
                    self.remote_ended(Outcome::Held(held), &place, cost, started)
                }
                // The worker failed: the local run is the answer.
                _ => self.ran_here(run.wait().await, spare, cost, local_started),
            },
            r = run.wait() => {
                // Here first: the worker's job is dropped with its connection. It took at
                // least this long there: learnt as its time, so that a slow worker is seen
                // as slow even though none of its results arrives.
                drop(fetch);
                drop(grant);
                let v = self.speeds.record(&place, cost, started.elapsed());
                self.sched.set_speed(&place, v);
                self.ran_here(r, spare, cost, local_started)
            }
        }
    }

    /// A remote attempt ended: a success teaches the worker's speed.
    fn remote_ended(&self, o: Outcome, place: &Place, cost: u64, started: Instant) -> Outcome {
        if matches!(o, Outcome::Held(_)) {
            let v = self.speeds.record(place, cost, started.elapsed());
            self.sched.set_speed(place, v);
        }
        o
    }

    /// The local run finished first (or alone): its result is the build's.
    fn ran_here(
        &self,
        r: std::io::Result<(offload_shared::protocol::ExitStatus, Vec<u8>, Vec<u8>)>,
        spare: Grant,
        cost: u64,
        started: Instant,
    ) -> Outcome {
        drop(spare);
        match r {
            Ok((status, stdout, stderr)) => {
                let v = self.speeds.record(&Place::Local, cost, started.elapsed());
                self.sched.set_speed(&Place::Local, v);
                Outcome::RanHere {
                    status,
                    stdout,
                    stderr,
                    reason: "re-run here: the worker was slow".into(),
                }
            }
            Err(e) => Outcome::FellBack(format!("the second run here failed to run: {e}")),
        }
    }
}
