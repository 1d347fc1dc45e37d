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
}
