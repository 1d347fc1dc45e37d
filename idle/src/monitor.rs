//! Samples a [`Source`] every period on a thread of its own (backends may block on
//! D-Bus or IOKit), runs the [`Engine`] and publishes each new verdict on a watch channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::{Engine, Verdict};
use crate::settings::Settings;
use crate::source::Source;

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The settings are out of range.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// Its thread could not be started.
    #[error("starting the idle monitor's thread: {0}")]
    Thread(std::io::Error),
}

/// The running monitor; stops when dropped.
#[derive(Debug)]
pub struct Monitor {
    rx: watch::Receiver<Verdict>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Samples `source` now and then every [`Settings::period`].
    pub fn start(source: Box<dyn Source>, settings: Settings) -> Result<Monitor, MonitorError> {
        Monitor::with_callback(source, settings, |_| {})
    }

    /// [`Monitor::start`], calling `on_change` on the monitor's thread with each new
    /// verdict (the first one too), before it is published.
    pub fn with_callback(
        mut source: Box<dyn Source>,
        settings: Settings,
        mut on_change: impl FnMut(&Verdict) + Send + 'static,
    ) -> Result<Monitor, MonitorError> {
        settings.check()?;
        let (tx, rx) = watch::channel(Verdict::Idle);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let period = settings.period();
        let mut engine = Engine::new(settings);
        let thread = std::thread::Builder::new()
            .name("offload-idle".into())
            .spawn(move || {
                let start = Instant::now();
                let mut next = start;
                let mut first = true;
                while !stopping.load(Ordering::Relaxed) {
                    let sample = source.sample();
                    let verdict = engine.step(&sample, start.elapsed()).clone();
                    tracing::trace!(?sample, verdict = verdict.describe(), "idle sample");
                    if std::mem::take(&mut first) || *tx.borrow() != verdict {
                        on_change(&verdict);
                    }
                    tx.send_if_modified(|cur| {
                        if *cur == verdict {
                            return false;
                        }
                        tracing::debug!(
                            from = cur.describe(),
                            to = verdict.describe(),
                            ?sample,
                            "idle policy verdict"
                        );
                        *cur = verdict;
                        true
                    });
                    // A slow sample starts the next period from now rather than catch up.
                    next = (next + period).max(Instant::now());
                    while !stopping.load(Ordering::Relaxed) {
                        let left = next.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::park_timeout(left);
                    }
                }
            })
            .map_err(MonitorError::Thread)?;
        Ok(Monitor {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// Follows the verdicts.
    pub fn subscribe(&self) -> watch::Receiver<Verdict> {
        self.rx.clone()
    }

    /// The verdict now.
    pub fn current(&self) -> Verdict {
        self.rx.borrow().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A sample in progress may take a moment; never wait long for it.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;
    use crate::why::Reason;

    /// A real monitor on a scripted source: the owner's return is published within a
    /// period, and dropping the monitor stops its thread.
    #[test]
    fn verdicts_are_published_within_a_period() {
        let back = Arc::new(AtomicBool::new(false));
        let flag = back.clone();
        let source = move || Sample {
            input_idle: Some(if flag.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                Duration::from_secs(3600)
            }),
            ..Sample::default()
        };
        let settings = Settings {
            period_ms: 50,
            ..Settings::default()
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let m = Monitor::with_callback(Box::new(source), settings, move |v| {
            log.lock().expect("lock").push(v.clone())
        })
        .expect("start");
        let mut rx = m.subscribe();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(m.current(), Verdict::Idle);
        let at = Instant::now();
        back.store(true, Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| !v.is_idle()))
                .await
                .expect("busy within 2 s")
                .map(|v| v.clone())
                .expect("monitor alive")
        });
        assert_eq!(got, Verdict::Busy(vec![Reason::BusyOwner]));
        assert!(
            at.elapsed() < Duration::from_millis(500),
            "{:?}",
            at.elapsed()
        );
        drop(m);
        assert!(
            rx.has_changed().is_err(),
            "the monitor's thread outlived it"
        );
        assert_eq!(
            *seen.lock().expect("lock"),
            [Verdict::Idle, Verdict::Busy(vec![Reason::BusyOwner])],
            "the callback saw the first verdict and each change once"
        );
    }
}
