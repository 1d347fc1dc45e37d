//! The judgement: samples and the time they were taken in, a verdict out. Pure: no clock,
//! no I/O, so every transition is tested with scripted samples and times.
//!
//! Hysteresis: the owner's return (input within [`Settings::idle_after`] on an unlocked
//! screen), battery, low-power mode and heat make the machine busy at the sample that
//! shows them; load and memory pressure only after [`Settings::busy_samples`] samples in
//! a row (one compile's spike does not stop lending). A busy machine lends again once
//! every input has allowed it for [`Settings::resume_after`] (on top of the input-idle
//! timeout for the owner), so a load hovering at the threshold does not flap.

use std::time::Duration;

use crate::sample::Sample;
use crate::settings::Settings;
use crate::why::{IDLE, Reason};

/// Whether the machine may lend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may.
    Idle,
    /// It may not, for these reasons (at least one, in priority order).
    Busy(Vec<Reason>),
}

impl Verdict {
    /// Whether it may lend.
    pub fn is_idle(&self) -> bool {
        matches!(self, Verdict::Idle)
    }

    /// The token the worker reports: `idle`, or the first reason's.
    pub fn token(&self) -> &'static str {
        match self {
            Verdict::Idle => IDLE,
            Verdict::Busy(r) => r.first().map_or(IDLE, |r| r.as_str()),
        }
    }

    /// Every reason's token, comma-separated (`idle` when idle).
    pub fn describe(&self) -> String {
        match self {
            Verdict::Idle => IDLE.to_owned(),
            Verdict::Busy(r) => r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        }
    }
}

/// The engine's state between samples.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: Settings,
    verdict: Verdict,
    /// Consecutive samples over the load threshold, and over the memory one.
    load_over: u32,
    memory_over: u32,
    /// Since when every input allows lending (while busy).
    clear_since: Option<Duration>,
}

impl Engine {
    /// An engine that starts idle (the first sample decides at once).
    pub fn new(settings: Settings) -> Engine {
        Engine {
            settings,
            verdict: Verdict::Idle,
            load_over: 0,
            memory_over: 0,
            clear_since: None,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The verdict of the last sample.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Judges `s`, taken at `now` (any monotonic clock, the same for every call).
    pub fn step(&mut self, s: &Sample, now: Duration) -> &Verdict {
        let set = &self.settings;
        let mut reasons = Vec::new();
        let locked = set.idle_when_locked && s.screen_locked == Some(true);
        if !locked && s.input_idle.is_some_and(|d| d < set.idle_after()) {
            reasons.push(Reason::BusyOwner);
        }
        if set.require_ac && s.on_ac == Some(false) {
            reasons.push(Reason::OnBattery);
        }
        if !set.lend_in_low_power && s.low_power == Some(true) {
            reasons.push(Reason::LowPower);
        }
        if s.thermal.is_some_and(|t| t > set.max_thermal) {
            reasons.push(Reason::Thermal);
        }
        let load_high = s.other_load.is_some_and(|l| l > set.max_other_load);
        let memory_high = s
            .memory_pressure
            .is_some_and(|m| m > set.max_memory_pressure);
        self.load_over = if load_high { self.load_over + 1 } else { 0 };
        self.memory_over = if memory_high { self.memory_over + 1 } else { 0 };
        if self.load_over >= set.busy_samples {
            reasons.push(Reason::BusyCpu);
        }
        if self.memory_over >= set.busy_samples {
            reasons.push(Reason::MemoryPressure);
        }
        let clear = reasons.is_empty() && !load_high && !memory_high;
        let resume_after = set.resume_after();
        self.verdict = match (&self.verdict, reasons.is_empty()) {
            (_, false) => {
                self.clear_since = None;
                Verdict::Busy(reasons)
            }
            (Verdict::Idle, true) => Verdict::Idle,
            (Verdict::Busy(before), true) => {
                if !clear {
                    // Over a threshold, not yet for long enough: still busy, not clear.
                    self.clear_since = None;
                    Verdict::Busy(before.clone())
                } else {
                    let since = *self.clear_since.get_or_insert(now);
                    if now.saturating_sub(since) >= resume_after {
                        self.clear_since = None;
                        Verdict::Idle
                    } else {
                        Verdict::Busy(before.clone())
                    }
                }
            }
        };
        &self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Thermal;

    const PERIOD: Duration = Duration::from_millis(500);
    /// The worker's default give-back grace: running jobs get it once the verdict is busy.
    const GRACE: Duration = Duration::from_millis(1000);
    /// The requirement: the cores are free within this of the owner's return.
    const BOUND: Duration = Duration::from_secs(2);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A machine nobody touches: everything known and allowing lending.
    fn quiet() -> Sample {
        Sample {
            input_idle: Some(secs(3600.0)),
            screen_locked: Some(false),
            on_ac: Some(true),
            low_power: Some(false),
            thermal: Some(Thermal::Nominal),
            other_load: Some(0.02),
            memory_pressure: Some(0.0),
        }
    }

    fn busy(r: &[Reason]) -> Verdict {
        Verdict::Busy(r.to_vec())
    }

    /// From idle, one sample: which inputs make the machine busy at once.
    #[test]
    fn each_input_alone() {
        let cases: Vec<(&str, Sample, Verdict)> = vec![
            ("quiet", quiet(), Verdict::Idle),
            ("all unknown", Sample::default(), Verdict::Idle),
            (
                "recent input",
                Sample {
                    input_idle: Some(secs(3.0)),
                    ..quiet()
                },
                busy(&[Reason::BusyOwner]),
            ),
            (
                "recent input, locked",
                Sample {
                    input_idle: Some(secs(3.0)),
                    screen_locked: Some(true),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                "input just under the timeout",
                Sample {
                    input_idle: Some(secs(299.9)),
                    ..quiet()
                },
                busy(&[Reason::BusyOwner]),
            ),
            (
                "input at the timeout",
                Sample {
                    input_idle: Some(secs(300.0)),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                "battery",
                Sample {
                    on_ac: Some(false),
                    ..quiet()
                },
                busy(&[Reason::OnBattery]),
            ),
            (
                "low power",
                Sample {
                    low_power: Some(true),
                    ..quiet()
                },
                busy(&[Reason::LowPower]),
            ),
            (
                "fair is fine",
                Sample {
                    thermal: Some(Thermal::Fair),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                "serious",
                Sample {
                    thermal: Some(Thermal::Serious),
                    ..quiet()
                },
                busy(&[Reason::Thermal]),
            ),
            (
                "critical",
                Sample {
                    thermal: Some(Thermal::Critical),
                    ..quiet()
                },
                busy(&[Reason::Thermal]),
            ),
            (
                "one sample of load is not enough",
                Sample {
                    other_load: Some(0.9),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                "one sample of memory pressure is not enough",
                Sample {
                    memory_pressure: Some(80.0),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                "everything at once, in priority order",
                Sample {
                    input_idle: Some(secs(1.0)),
                    on_ac: Some(false),
                    low_power: Some(true),
                    thermal: Some(Thermal::Critical),
                    ..quiet()
                },
                busy(&[
                    Reason::BusyOwner,
                    Reason::OnBattery,
                    Reason::LowPower,
                    Reason::Thermal,
                ]),
            ),
        ];
        for (name, sample, want) in cases {
            let mut e = Engine::new(Settings::default());
            assert_eq!(e.step(&sample, secs(100.0)), &want, "{name}");
        }
    }

    /// Scripts of (time, sample, expected verdict) run through one engine.
    #[test]
    fn transitions_and_hysteresis() {
        let load = |l: f64| Sample {
            other_load: Some(l),
            ..quiet()
        };
        let memory = |m: f64| Sample {
            memory_pressure: Some(m),
            ..quiet()
        };
        let input = |ago: f64| Sample {
            input_idle: Some(secs(ago)),
            ..quiet()
        };
        let cpu = busy(&[Reason::BusyCpu]);
        let owner = busy(&[Reason::BusyOwner]);
        type Script = Vec<(f64, Sample, Verdict)>;
        let scripts: Vec<(&str, Script)> = vec![
            (
                "load goes busy on the second sample, idle 10 s after it ends",
                vec![
                    (0.0, load(0.05), Verdict::Idle),
                    (0.5, load(0.9), Verdict::Idle),
                    (1.0, load(0.9), cpu.clone()),
                    (1.5, load(0.05), cpu.clone()),
                    (11.0, load(0.05), cpu.clone()),
                    (11.5, load(0.05), Verdict::Idle),
                ],
            ),
            (
                "single spikes never make it busy",
                vec![
                    (0.0, load(0.9), Verdict::Idle),
                    (0.5, load(0.1), Verdict::Idle),
                    (1.0, load(0.9), Verdict::Idle),
                    (1.5, load(0.1), Verdict::Idle),
                ],
            ),
            (
                "a spike while recovering restarts the wait",
                vec![
                    (0.0, load(0.9), Verdict::Idle),
                    (0.5, load(0.9), cpu.clone()),
                    (1.0, load(0.1), cpu.clone()),
                    (9.0, load(0.9), cpu.clone()),
                    (9.5, load(0.1), cpu.clone()),
                    (19.0, load(0.1), cpu.clone()),
                    (19.5, load(0.1), Verdict::Idle),
                ],
            ),
            (
                "memory pressure like load",
                vec![
                    (0.0, memory(50.0), Verdict::Idle),
                    (0.5, memory(50.0), busy(&[Reason::MemoryPressure])),
                    (1.0, memory(1.0), busy(&[Reason::MemoryPressure])),
                    (11.0, memory(1.0), Verdict::Idle),
                ],
            ),
            (
                "the owner: busy at once, idle after the input timeout and the wait",
                vec![
                    (0.0, input(3600.0), Verdict::Idle),
                    (0.5, input(0.2), owner.clone()),
                    (100.0, input(60.0), owner.clone()),
                    (340.0, input(300.0), owner.clone()),
                    (349.5, input(309.5), owner.clone()),
                    (350.0, input(310.0), Verdict::Idle),
                ],
            ),
            (
                "locking the screen ends the owner's use (after the wait), unlocking is immediate",
                vec![
                    (0.0, input(1.0), owner.clone()),
                    (
                        1.0,
                        Sample {
                            screen_locked: Some(true),
                            ..input(2.0)
                        },
                        owner.clone(),
                    ),
                    (
                        11.0,
                        Sample {
                            screen_locked: Some(true),
                            ..input(12.0)
                        },
                        Verdict::Idle,
                    ),
                    (11.5, input(0.1), owner.clone()),
                ],
            ),
            (
                "reasons change while busy; the wait starts when the last one ends",
                vec![
                    (
                        0.0,
                        Sample {
                            on_ac: Some(false),
                            ..quiet()
                        },
                        busy(&[Reason::OnBattery]),
                    ),
                    (
                        5.0,
                        Sample {
                            thermal: Some(Thermal::Serious),
                            ..quiet()
                        },
                        busy(&[Reason::Thermal]),
                    ),
                    (6.0, quiet(), busy(&[Reason::Thermal])),
                    (16.0, quiet(), Verdict::Idle),
                ],
            ),
            (
                "unknown inputs allow lending, also when coming back from busy",
                vec![
                    (0.0, input(1.0), owner.clone()),
                    (1.0, Sample::default(), owner.clone()),
                    (11.0, Sample::default(), Verdict::Idle),
                ],
            ),
        ];
        for (name, script) in scripts {
            let mut e = Engine::new(Settings::default());
            for (i, (t, sample, want)) in script.into_iter().enumerate() {
                assert_eq!(e.step(&sample, secs(t)), &want, "{name}: step {i} at {t} s");
            }
        }
    }

    #[test]
    fn settings_change_the_thresholds() {
        let s = Settings {
            idle_after_secs: 60,
            idle_when_locked: false,
            require_ac: false,
            lend_in_low_power: true,
            max_thermal: Thermal::Serious,
            max_other_load: 0.5,
            busy_samples: 1,
            ..Settings::default()
        };
        let cases: Vec<(Sample, Verdict)> = vec![
            (
                Sample {
                    input_idle: Some(secs(61.0)),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                Sample {
                    input_idle: Some(secs(5.0)),
                    screen_locked: Some(true),
                    ..quiet()
                },
                busy(&[Reason::BusyOwner]),
            ),
            (
                Sample {
                    on_ac: Some(false),
                    low_power: Some(true),
                    thermal: Some(Thermal::Serious),
                    other_load: Some(0.4),
                    ..quiet()
                },
                Verdict::Idle,
            ),
            (
                Sample {
                    other_load: Some(0.6),
                    ..quiet()
                },
                busy(&[Reason::BusyCpu]),
            ),
        ];
        for (i, (sample, want)) in cases.into_iter().enumerate() {
            let mut e = Engine::new(s.clone());
            assert_eq!(e.step(&sample, secs(0.0)), &want, "case {i}");
        }
    }

    /// The owner comes back at any moment between two samples: the verdict is busy at the
    /// next sample, so with the give-back grace the cores are free within 2 s. A load
    /// that starts between samples is busy within two more samples, inside the same bound.
    #[test]
    fn the_cores_are_free_within_2_s() {
        for offset_ms in (0..500).step_by(50) {
            let back_at = Duration::from_secs(20) + Duration::from_millis(offset_ms);
            let mut e = Engine::new(Settings::default());
            let mut t = Duration::ZERO;
            let busy_at = loop {
                let sample = if t < back_at {
                    quiet()
                } else {
                    Sample {
                        input_idle: Some(t - back_at),
                        ..quiet()
                    }
                };
                if !e.step(&sample, t).is_idle() {
                    break t;
                }
                t += PERIOD;
                assert!(t < secs(60.0), "never busy");
            };
            assert!(busy_at >= back_at);
            assert!(
                busy_at - back_at + GRACE <= BOUND,
                "owner back at {back_at:?}, busy at {busy_at:?}"
            );
            // A load starting then: the sample after it sees part of it (a full share
            // from the second on); busy by the third at the latest.
            let mut e = Engine::new(Settings::default());
            let mut t = Duration::ZERO;
            let busy_at = loop {
                let share = if t <= back_at {
                    0.0
                } else {
                    ((t - back_at).as_secs_f64() / PERIOD.as_secs_f64()).min(1.0)
                };
                let sample = Sample {
                    other_load: Some(share),
                    ..quiet()
                };
                if !e.step(&sample, t).is_idle() {
                    break t;
                }
                t += PERIOD;
                assert!(t < secs(60.0), "never busy");
            };
            assert!(
                busy_at - back_at <= 3 * PERIOD,
                "load from {back_at:?}, busy at {busy_at:?}"
            );
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(Verdict::Idle.token(), "idle");
        let v = busy(&[Reason::BusyCpu, Reason::MemoryPressure]);
        assert_eq!(v.token(), "busy-cpu");
        assert_eq!(v.describe(), "busy-cpu,memory-pressure");
    }
}
