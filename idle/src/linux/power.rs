//! Power and heat from sysfs: mains or battery (`class/power_supply`), the thermal zones'
//! distance to their trip points (`class/thermal`), and the ACPI platform profile for
//! low-power mode. Each reader takes the sysfs root, so tests give a fake one.

use std::path::Path;

use crate::sample::Thermal;

/// How close to its lowest hot or critical trip point a zone is "serious" (millidegrees).
const SERIOUS_MARGIN: i64 = 10_000;

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether the machine runs on mains power: a `Mains` supply online says yes; mains
/// supplies all offline, or a battery discharging with no mains supply, say no. No power
/// supply at all (a desktop, a server, a VM) is mains.
pub fn on_ac(sys: &Path) -> Option<bool> {
    let supplies = entries(&sys.join("class/power_supply"));
    let mut mains = Vec::new();
    let mut discharging = false;
    for s in &supplies {
        match read(&s.join("type")).as_deref() {
            Some("Mains") => mains.push(read(&s.join("online")).as_deref() == Some("1")),
            Some("Battery") => {
                discharging |= read(&s.join("status")).as_deref() == Some("Discharging");
            }
            _ => {}
        }
    }
    if !mains.is_empty() {
        Some(mains.contains(&true))
    } else {
        Some(!discharging)
    }
}

/// The hottest zone's state: critical at or past its lowest hot or critical trip point,
/// serious within 10 °C of it, else nominal. `None` without a zone that has such a trip.
pub fn thermal(sys: &Path) -> Option<Thermal> {
    let mut worst = None;
    for zone in entries(&sys.join("class/thermal")) {
        let is_zone = zone
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("thermal_zone"));
        if !is_zone {
            continue;
        }
        let Some(temp) = read(&zone.join("temp")).and_then(|t| t.parse::<i64>().ok()) else {
            continue;
        };
        let mut limit: Option<i64> = None;
        for i in 0.. {
            let Some(kind) = read(&zone.join(format!("trip_point_{i}_type"))) else {
                break;
            };
            if kind != "hot" && kind != "critical" {
                continue;
            }
            if let Some(t) = read(&zone.join(format!("trip_point_{i}_temp")))
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|&t| t > 0)
            {
                limit = Some(limit.map_or(t, |l| l.min(t)));
            }
        }
        let Some(limit) = limit else { continue };
        let state = if temp >= limit {
            Thermal::Critical
        } else if temp >= limit - SERIOUS_MARGIN {
            Thermal::Serious
        } else {
            Thermal::Nominal
        };
        worst = Some(worst.map_or(state, |w: Thermal| w.max(state)));
    }
    worst
}

/// Whether the ACPI platform profile is `low-power`; `None` without one.
pub fn low_power(sys: &Path) -> Option<bool> {
    read(&sys.join("firmware/acpi/platform_profile")).map(|p| p == "low-power")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, format!("{text}\n")).expect("write");
    }

    #[test]
    fn power_supplies() {
        type Files<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, Files, Option<bool>)] = &[
            ("nothing: a desktop or a VM", &[], Some(true)),
            (
                "laptop on mains",
                &[
                    ("AC/type", "Mains"),
                    ("AC/online", "1"),
                    ("BAT0/type", "Battery"),
                    ("BAT0/status", "Charging"),
                ],
                Some(true),
            ),
            (
                "laptop unplugged",
                &[
                    ("AC/type", "Mains"),
                    ("AC/online", "0"),
                    ("BAT0/type", "Battery"),
                    ("BAT0/status", "Discharging"),
                ],
                Some(false),
            ),
            (
                "a battery alone, discharging",
                &[("BAT0/type", "Battery"), ("BAT0/status", "Discharging")],
                Some(false),
            ),
            (
                "a battery alone, full",
                &[("BAT0/type", "Battery"), ("BAT0/status", "Full")],
                Some(true),
            ),
            (
                "a USB-C port offline beside mains online",
                &[
                    ("ucsi/type", "USB"),
                    ("ucsi/online", "0"),
                    ("AC/type", "Mains"),
                    ("AC/online", "1"),
                ],
                Some(true),
            ),
        ];
        for (name, files, want) in cases {
            let d = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(d.path().join("class/power_supply")).expect("mkdir");
            for (rel, text) in *files {
                put(d.path(), &format!("class/power_supply/{rel}"), text);
            }
            assert_eq!(on_ac(d.path()), *want, "{name}");
        }
    }

    #[test]
    fn thermal_zones() {
        let zone = |temp: &str, trips: &[(&str, &str)]| {
            let mut v = vec![("temp".to_owned(), temp.to_owned())];
            for (i, (kind, t)) in trips.iter().enumerate() {
                v.push((format!("trip_point_{i}_type"), kind.to_string()));
                v.push((format!("trip_point_{i}_temp"), t.to_string()));
            }
            v
        };
        type Zone = Vec<(String, String)>;
        let cases: Vec<(&str, Vec<Zone>, Option<Thermal>)> = vec![
            ("no zones", vec![], None),
            (
                "no hot trip",
                vec![zone("95000", &[("passive", "80000")])],
                None,
            ),
            (
                "cool",
                vec![zone(
                    "45000",
                    &[("passive", "80000"), ("critical", "100000")],
                )],
                Some(Thermal::Nominal),
            ),
            (
                "near the hot trip",
                vec![zone("86000", &[("hot", "95000"), ("critical", "100000")])],
                Some(Thermal::Serious),
            ),
            (
                "past it",
                vec![zone("101000", &[("critical", "100000")])],
                Some(Thermal::Critical),
            ),
            (
                "the hottest zone counts",
                vec![
                    zone("40000", &[("critical", "100000")]),
                    zone("92000", &[("critical", "100000")]),
                ],
                Some(Thermal::Serious),
            ),
        ];
        for (name, zones, want) in cases {
            let d = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(d.path().join("class/thermal")).expect("mkdir");
            put(d.path(), "class/thermal/cooling_device0/type", "Fan");
            for (i, files) in zones.iter().enumerate() {
                for (rel, text) in files {
                    put(
                        d.path(),
                        &format!("class/thermal/thermal_zone{i}/{rel}"),
                        text,
                    );
                }
            }
            assert_eq!(thermal(d.path()), want, "{name}");
        }
    }

    #[test]
    fn platform_profile() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(low_power(d.path()), None);
        put(d.path(), "firmware/acpi/platform_profile", "balanced");
        assert_eq!(low_power(d.path()), Some(false));
        put(d.path(), "firmware/acpi/platform_profile", "low-power");
        assert_eq!(low_power(d.path()), Some(true));
    }
}
