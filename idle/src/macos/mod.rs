//! The macOS backend: the HID system's idle time (IOKit `HIDIdleTime`), the providing
//! power source (IOPowerSources), the thermal state and low-power mode
//! (`NSProcessInfo`), and the screen lock (`CGSessionCopyCurrentDictionary`'s
//! `CGSSessionScreenIsLocked`). Other load and memory pressure are not read here yet
//! (unknown: they never make the machine busy).
//!
//! The worker itself runs in a Linux container on a Mac; this backend serves the macOS
//! side (the menu-bar app), which drives the container's worker through its control API.

use std::time::Duration;

use core_foundation::base::{CFType, TCFType, kCFAllocatorDefault};
use core_foundation::boolean::CFBoolean;
use core_foundation::dictionary::CFDictionary;
use core_foundation::number::CFNumber;
use core_foundation::string::CFString;
use core_foundation_sys::base::CFTypeRef;
use core_foundation_sys::dictionary::CFDictionaryRef;
use core_foundation_sys::string::CFStringRef;
use objc2_foundation::{NSProcessInfo, NSProcessInfoThermalState};

use crate::sample::{Sample, Thermal};
use crate::source::Source;

#[link(name = "IOKit", kind = "framework")]
unsafe extern "C" {
    fn IOPSCopyPowerSourcesInfo() -> CFTypeRef;
    fn IOPSGetProvidingPowerSourceType(snapshot: CFTypeRef) -> CFStringRef;
}

#[link(name = "CoreGraphics", kind = "framework")]
unsafe extern "C" {
    fn CGSessionCopyCurrentDictionary() -> CFDictionaryRef;
}

/// Reads this Mac.
#[derive(Debug, Default)]
pub struct MacSource {}

impl MacSource {
    /// This Mac.
    pub fn new() -> MacSource {
        MacSource {}
    }
}

impl Source for MacSource {
    fn sample(&mut self) -> Sample {
        let info = NSProcessInfo::processInfo();
        Sample {
            input_idle: hid_idle(),
            screen_locked: screen_locked(),
            on_ac: on_ac(),
            low_power: Some(info.isLowPowerModeEnabled()),
            thermal: thermal(info.thermalState()),
            other_load: None,
            memory_pressure: None,
        }
    }
}

/// Time since the last HID input (nanoseconds in the IOHIDSystem's `HIDIdleTime`).
fn hid_idle() -> Option<Duration> {
    use io_kit_sys::{
        IOObjectRelease, IORegistryEntryCreateCFProperty, IOServiceGetMatchingService,
        IOServiceMatching, kIOMasterPortDefault,
    };
    // SAFETY: IOKit calls with valid arguments; the matching dictionary is consumed by
    // IOServiceGetMatchingService, the service released, the property owned (create rule).
    unsafe {
        let matching = IOServiceMatching(c"IOHIDSystem".as_ptr());
        if matching.is_null() {
            return None;
        }
        let service = IOServiceGetMatchingService(kIOMasterPortDefault, matching as _);
        if service == 0 {
            return None;
        }
        let key = CFString::from_static_string("HIDIdleTime");
        let prop = IORegistryEntryCreateCFProperty(
            service,
            key.as_concrete_TypeRef(),
            kCFAllocatorDefault,
            0,
        );
        IOObjectRelease(service);
        if prop.is_null() {
            return None;
        }
        let value = CFType::wrap_under_create_rule(prop);
        let ns = value.downcast::<CFNumber>()?.to_i64()?;
        Some(Duration::from_nanos(u64::try_from(ns).ok()?))
    }
}

/// Whether the power comes from the mains ("AC Power"; "Battery Power" or "UPS Power"
/// otherwise).
fn on_ac() -> Option<bool> {
    // SAFETY: the snapshot is owned (create rule) and outlives the type string, which is
    // borrowed from it (get rule).
    unsafe {
        let snapshot = IOPSCopyPowerSourcesInfo();
        if snapshot.is_null() {
            return None;
        }
        let snapshot = CFType::wrap_under_create_rule(snapshot);
        let kind = IOPSGetProvidingPowerSourceType(snapshot.as_CFTypeRef());
        if kind.is_null() {
            return None;
        }
        let kind = CFString::wrap_under_get_rule(kind).to_string();
        Some(kind == "AC Power")
    }
}

/// Whether the login session's screen is locked; `None` outside a GUI session.
fn screen_locked() -> Option<bool> {
    // SAFETY: the dictionary is owned (create rule).
    let dict = unsafe {
        let d = CGSessionCopyCurrentDictionary();
        if d.is_null() {
            return None;
        }
        CFDictionary::<CFString, CFType>::wrap_under_create_rule(d)
    };
    let key = CFString::from_static_string("CGSSessionScreenIsLocked");
    Some(
        dict.find(&key)
            .and_then(|v| v.downcast::<CFBoolean>())
            .is_some_and(bool::from),
    )
}

fn thermal(t: NSProcessInfoThermalState) -> Option<Thermal> {
    if t == NSProcessInfoThermalState::Nominal {
        Some(Thermal::Nominal)
    } else if t == NSProcessInfoThermalState::Fair {
        Some(Thermal::Fair)
    } else if t == NSProcessInfoThermalState::Serious {
        Some(Thermal::Serious)
    } else if t == NSProcessInfoThermalState::Critical {
        Some(Thermal::Critical)
    } else {
        None
    }
}
