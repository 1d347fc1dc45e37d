//! Where samples come from: a platform backend, or (in tests) a script.

use std::ops::Range;

use crate::sample::Sample;

/// Something that reads the machine's inputs.
pub trait Source: Send {
    /// The inputs now. Called once per period from the monitor's thread; may block
    /// briefly (a D-Bus call) but should not take a good part of the period.
    fn sample(&mut self) -> Sample;
}

impl<F: FnMut() -> Sample + Send> Source for F {
    fn sample(&mut self) -> Sample {
        self()
    }
}

/// What counts as the worker's own use of the CPUs, left out of "other load": the worker
/// process and every process under it, and every process whose real uid is in the range
/// its jobs run as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnJobs {
    /// The worker's pid (`None`: nothing is the worker's own).
    pub pid: Option<u32>,
    /// The uids its jobs run as.
    pub uids: Option<Range<u32>>,
}

impl OwnJobs {
    /// This process and its descendants, plus processes running as `uids`.
    pub fn this_process(uids: Option<Range<u32>>) -> OwnJobs {
        OwnJobs {
            pid: Some(std::process::id()),
            uids,
        }
    }
}

/// Nothing known: every input unknown (a platform without a backend).
#[derive(Debug, Default)]
pub struct Unknown;

impl Source for Unknown {
    fn sample(&mut self) -> Sample {
        Sample::default()
    }
}

/// This platform's backend, counting `own` as the worker's own load.
pub fn system_source(own: OwnJobs) -> Box<dyn Source> {
    #[cfg(target_os = "linux")]
    {
        Box::new(crate::linux::LinuxSource::new(own))
    }
    #[cfg(target_os = "macos")]
    {
        let _ = own;
        Box::new(crate::macos::MacSource::new())
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = own;
        tracing::debug!("no idle backend for this platform: every input is unknown");
        Box::new(Unknown)
    }
}
