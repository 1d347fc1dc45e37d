//! Times in logs: `tracing`'s lines start with an RFC 3339 UTC timestamp; tests compare
//! them with each other and with the test's own clock (seconds of the day, across
//! midnight too).

/// Seconds since midnight UTC of a log line's timestamp (`…THH:MM:SS.ffffffZ …`).
pub fn second_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split('T').nth(1)?;
    let mut parts = time.trim_end_matches('Z').split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Seconds since midnight UTC of `t`.
pub fn second_of_day_at(t: std::time::SystemTime) -> f64 {
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    since.as_secs_f64() % 86_400.0
}

/// Seconds from `at` to `t` (both seconds of the day): negative if `t` is earlier.
pub fn seconds_after(t: f64, at: f64) -> f64 {
    let d = t - at;
    if d < -43_200.0 {
        d + 86_400.0
    } else if d > 43_200.0 {
        d - 86_400.0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_midnight() {
        let line = "2026-12-03T11:15:14.300454Z  INFO offload_worker::donation: lending changed";
        let t = second_of_day(line).expect("a time");
        assert!((t - 40_514.300454).abs() < 1e-6);
        assert_eq!(second_of_day("no time here"), None);
        assert!((seconds_after(2.0, 86_399.0) - 3.0).abs() < 1e-9);
        assert!((seconds_after(86_399.0, 2.0) + 3.0).abs() < 1e-9);
        assert!((seconds_after(10.5, 10.0) - 0.5).abs() < 1e-9);
    }
}
