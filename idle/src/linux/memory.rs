//! Memory pressure from PSI (`/proc/pressure/memory`): `some avg10`, the share of the last
//! 10 s in which some task stalled on memory. Kernels without PSI say nothing.

use std::path::Path;

/// `some avg10` from the file's text.
pub fn parse_psi(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("some "))?
        .split_ascii_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// Memory pressure now; `None` without PSI.
pub fn pressure(proc: &Path) -> Option<f64> {
    parse_psi(&std::fs::read_to_string(proc.join("pressure/memory")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_lines() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.70 total=123456\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_psi(text), Some(12.5));
        assert_eq!(parse_psi("full avg10=1.00\n"), None);
        assert_eq!(parse_psi(""), None);
        assert_eq!(parse_psi("some avg10=x"), None);
    }
}
