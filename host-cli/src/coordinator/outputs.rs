//! Writes a remote compile's outputs on the host, after checking that the worker wrote only
//! where the compile may write: directly inside a writable directory, never over an input.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use offload_shared::tree::is_normal_absolute;

/// Why an existing file at an output path must not be replaced by a rename: a compile
/// writes *into* a device, FIFO, socket or through a link, and keeps a hard link's other
/// names; a rename would replace them. `None` for a new name or a plain file.
pub fn not_replaceable(path: &Path) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if !t.is_file() {
        Some("not a regular file")
    } else if meta.nlink() > 1 {
        Some("a file with several hard links")
    } else {
        None
    }
}

/// Checks every output path first, then writes each file atomically (a temporary file in
/// the same directory, renamed) with mode `0666 & !umask`, as the compiler would. An output
/// path that holds anything but a plain file ([`not_replaceable`]) is refused before
/// anything is written: the compile then runs locally and writes it as it would.
pub fn write(
    outputs: &[(String, Vec<u8>)],
    writable: &HashSet<PathBuf>,
    inputs: &HashSet<PathBuf>,
    umask: u32,
) -> Result<(), String> {
    for (path, _) in outputs {
        let p = Path::new(path);
        let ok = is_normal_absolute(path)
            && p.parent().is_some_and(|d| writable.contains(d))
            && !inputs.contains(p);
        if !ok {
            return Err(format!(
                "the worker returned an output at a forbidden path: {path}"
            ));
        }
        if let Some(what) = not_replaceable(p) {
            return Err(format!("the output {path} is {what}"));
        }
    }
    for (path, bytes) in outputs {
        let p = Path::new(path);
        let dir = p.parent().unwrap_or(Path::new("/"));
        let fail = |e: std::io::Error| format!("writing {path}: {e}");
        let mut tmp = tempfile::Builder::new()
            .prefix(".offload-")
            .tempfile_in(dir)
            .map_err(fail)?;
        tmp.write_all(bytes).map_err(fail)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))
            .map_err(fail)?;
        tmp.persist(p).map_err(|e| fail(e.error))?;
    }
    Ok(())
}

/// Whether a failed remote compile failed because of the worker (a missing file, a killed
/// compiler) rather than because of the source: then it is compiled again locally. The
/// dependency scan already succeeded on the host, so a missing file remotely means the
/// job's tree was incomplete, never a user error.
pub fn looks_like_infrastructure(stderr: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[
        b"No such file or directory",
        b"Permission denied",
        b"cannot open",
        b"can't open",
        b"cannot find",
        b"not found",
        b"internal compiler error",
        b"Killed signal",
        b"terminated signal",
        b"No space left on device",
        b"Read-only file system",
        b"Cannot allocate memory",
        b"out of memory",
    ];
    MARKERS
        .iter()
        .any(|m| memchr::memmem::find(stderr, m).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_outside_writable_dirs() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let writable: HashSet<PathBuf> = [dir.clone()].into();
        let inputs: HashSet<PathBuf> = [dir.join("a.c")].into();
        let ok = vec![(format!("{}/a.o", dir.display()), b"obj".to_vec())];
        write(&ok, &writable, &inputs, 0o022).unwrap();
        assert_eq!(std::fs::read(dir.join("a.o")).unwrap(), b"obj");
        let mode = std::fs::metadata(dir.join("a.o"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        for bad in [
            "/etc/passwd".to_string(),
            format!("{}/a.c", dir.display()),
            format!("{}/../x.o", dir.display()),
            format!("{}/sub/x.o", dir.display()),
            "relative.o".to_string(),
        ] {
            let err = write(&[(bad.clone(), vec![])], &writable, &inputs, 0o022).unwrap_err();
            assert!(err.contains("forbidden"), "{bad}: {err}");
        }
    }

    #[test]
    fn never_replaces_anything_but_a_plain_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let writable: HashSet<PathBuf> = [dir.clone(), PathBuf::from("/dev")].into();
        let none = HashSet::new();
        std::fs::write(dir.join("target"), b"keep").unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("link.o")).unwrap();
        std::fs::hard_link(dir.join("target"), dir.join("hard.o")).unwrap();
        std::fs::create_dir(dir.join("dir.o")).unwrap();
        let fifo = std::ffi::CString::new(format!("{}/fifo.o", dir.display())).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for name in ["link.o", "hard.o", "dir.o", "fifo.o"] {
            let out = vec![(format!("{}/{name}", dir.display()), b"obj".to_vec())];
            let err = write(&out, &writable, &none, 0o022).unwrap_err();
            assert!(err.contains("the output"), "{name}: {err}");
        }
        let err = write(&[("/dev/null".into(), b"x".to_vec())], &writable, &none, 0).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"keep");
        // Nothing was written, not even the outputs before the refused one.
        let both = vec![
            (format!("{}/new.o", dir.display()), b"obj".to_vec()),
            (format!("{}/fifo.o", dir.display()), b"obj".to_vec()),
        ];
        write(&both, &writable, &none, 0o022).unwrap_err();
        assert!(!dir.join("new.o").exists());
    }

    #[test]
    fn infrastructure_markers() {
        assert!(looks_like_infrastructure(
            b"a.c:1:10: fatal error: x.h: No such file or directory"
        ));
        assert!(looks_like_infrastructure(
            b"gcc: internal compiler error: Killed signal terminated program cc1"
        ));
        assert!(!looks_like_infrastructure(
            b"a.c:1:9: error: expected expression before ';' token"
        ));
    }
}
