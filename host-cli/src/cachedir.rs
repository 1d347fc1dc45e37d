//! Where offload keeps its per-user caches (probe results, toolchain bundles):
//! `$XDG_CACHE_HOME/offload`, else `$HOME/.cache/offload`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The directory, or `None` when neither variable names an absolute directory other than `/`.
pub fn offload_cache_dir() -> Option<PathBuf> {
    offload_cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn offload_cache_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let abs = |v: Option<OsString>| {
        v.map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.as_os_str().len() > 1)
    };
    abs(xdg)
        .or_else(|| abs(home).map(|h| h.join(".cache")))
        .map(|c| c.join("offload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_then_home() {
        let d = |x: Option<&str>, h: Option<&str>| {
            offload_cache_dir_from(x.map(Into::into), h.map(Into::into))
        };
        assert_eq!(d(Some("/c"), Some("/h")), Some(PathBuf::from("/c/offload")));
        assert_eq!(
            d(Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.cache/offload"))
        );
        assert_eq!(
            d(None, Some("/h")),
            Some(PathBuf::from("/h/.cache/offload"))
        );
        assert_eq!(d(None, Some("/")), None);
        assert_eq!(d(None, None), None);
    }
}
