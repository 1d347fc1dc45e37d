//! Measured speeds: seconds per unit of a job's estimated cost, for this host's compiles
//! and for each worker's (transfers included), as a moving average. They tell the
//! scheduler which workers are much slower than this host, and tell a job how long it
//! should take, so that one running far past that is run again here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::sched::Place;

/// A job's cost beyond its source's size (a process, headers, the compiler's start).
const BASE_COST: f64 = 8192.0;
/// The weight of the newest sample.
const WEIGHT: f64 = 0.25;
/// The least time a worker gets before a second run starts here.
const MIN_PATIENCE: Duration = Duration::from_millis(500);
/// The time a worker gets when nothing is measured yet.
const UNMEASURED_PATIENCE: Duration = Duration::from_secs(20);
/// How often a job past its patience looks for a spare local slot.
pub const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The units a job of `cost` (its source's bytes) counts for.
fn units(cost: u64) -> f64 {
    cost as f64 + BASE_COST
}

/// Speeds by place.
#[derive(Debug, Default)]
pub struct Speeds {
    by_place: Mutex<HashMap<Place, f64>>,
}

impl Speeds {
    /// Records that a job of `cost` took `took` at `place`; the new average.
    pub fn record(&self, place: &Place, cost: u64, took: Duration) -> f64 {
        let sample = took.as_secs_f64() / units(cost);
        let mut m = self.by_place.lock().unwrap_or_else(|p| p.into_inner());
        let v = m
            .entry(place.clone())
            .and_modify(|v| *v = *v * (1.0 - WEIGHT) + sample * WEIGHT)
            .or_insert(sample);
        *v
    }

    /// How long a job of `cost` should take at `place`, once measured there.
    pub fn estimate(&self, place: &Place, cost: u64) -> Option<Duration> {
        let m = self.by_place.lock().unwrap_or_else(|p| p.into_inner());
        m.get(place)
            .map(|v| Duration::from_secs_f64((v * units(cost)).clamp(0.0, 86_400.0)))
    }

    /// How long a job of `cost` may run on `place` before it is run here too: twice this
    /// host's measured time for a job of that size (never under [`MIN_PATIENCE`]); before
    /// this host has measured one, three times the worker's own; before either,
    /// [`UNMEASURED_PATIENCE`].
    pub fn patience(&self, place: &Place, cost: u64) -> Duration {
        match (
            self.estimate(&Place::Local, cost),
            self.estimate(place, cost),
        ) {
            (Some(local), _) => (local * 2).max(MIN_PATIENCE),
            (None, Some(remote)) => (remote * 3).max(MIN_PATIENCE),
            (None, None) => UNMEASURED_PATIENCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::executor::WorkerId;

    #[test]
    fn estimates_follow_the_samples() {
        let s = Speeds::default();
        let w = Place::Remote(WorkerId::new("w"));
        assert_eq!(s.estimate(&Place::Local, 1000), None);
        s.record(&Place::Local, 8192, Duration::from_millis(100));
        let e = s.estimate(&Place::Local, 8192).expect("an estimate");
        assert!((e.as_secs_f64() - 0.1).abs() < 1e-9, "{e:?}");
        // Bigger jobs take longer, in proportion to their units.
        let big = s.estimate(&Place::Local, 8192 * 3).expect("an estimate");
        assert!((big.as_secs_f64() - 0.2).abs() < 1e-9, "{big:?}");
        // A moving average: one slow sample moves it a quarter of the way.
        s.record(&Place::Local, 8192, Duration::from_millis(500));
        let e = s.estimate(&Place::Local, 8192).expect("an estimate");
        assert!((e.as_secs_f64() - 0.2).abs() < 1e-9, "{e:?}");
        assert_eq!(s.estimate(&w, 1), None);
    }

    #[test]
    fn patience_follows_this_host_then_the_worker() {
        let s = Speeds::default();
        let w = Place::Remote(WorkerId::new("w"));
        assert_eq!(s.patience(&w, 0), UNMEASURED_PATIENCE);
        // The worker's own time, three times, before this host has measured one.
        s.record(&w, 8192, Duration::from_secs(1));
        assert_eq!(s.patience(&w, 8192), Duration::from_secs(3));
        // Then twice this host's, never under the floor.
        s.record(&Place::Local, 8192, Duration::from_secs(2));
        assert_eq!(s.patience(&w, 8192), Duration::from_secs(4));
        let tiny = Speeds::default();
        tiny.record(&Place::Local, 8192, Duration::from_millis(10));
        assert_eq!(tiny.patience(&w, 8192), MIN_PATIENCE);
    }
}
