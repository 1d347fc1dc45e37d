//! Snapshots of directory trees and readable reports of how two of them differ.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file: permission bits and content.
    File {
        /// `st_mode & 0o7777`.
        mode: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// A directory.
    Dir,
    /// Anything else (fifo, socket, device).
    Other,
}

/// Every entry under `root`, by path relative to it.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for e in rd {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            let meta =
                std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let ft = meta.file_type();
            let entry = if ft.is_symlink() {
                Entry::Symlink(std::fs::read_link(&p).expect("readlink"))
            } else if ft.is_dir() {
                stack.push(p.clone());
                Entry::Dir
            } else if ft.is_file() {
                Entry::File {
                    mode: meta.permissions().mode() & 0o7777,
                    bytes: std::fs::read(&p)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display())),
                }
            } else {
                Entry::Other
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// Compares the trees under `plain` and `offload`: the same entries, types, modes, link
/// targets and bytes. `Err` holds a report of every difference.
pub fn compare_trees(plain: &Path, offload: &Path) -> Result<usize, String> {
    let a = snapshot(plain);
    let b = snapshot(offload);
    let mut report = String::new();
    for (rel, ea) in &a {
        match b.get(rel) {
            None => {
                let _ = writeln!(
                    report,
                    "MISSING from the offload build: {} ({})",
                    rel.display(),
                    kind(ea)
                );
            }
            Some(eb) if eb != ea => report.push_str(&describe_entry_diff(rel, ea, eb)),
            Some(_) => {}
        }
    }
    for (rel, eb) in &b {
        if !a.contains_key(rel) {
            let _ = writeln!(
                report,
                "EXTRA in the offload build: {} ({}){}",
                rel.display(),
                kind(eb),
                match eb {
                    Entry::File { bytes, .. } if looks_textual(bytes) =>
                        format!(":\n{}", String::from_utf8_lossy(bytes)),
                    _ => String::new(),
                }
            );
        }
    }
    if report.is_empty() {
        Ok(a.len())
    } else {
        Err(format!(
            "trees differ\n  plain:   {}\n  offload: {}\n{report}",
            plain.display(),
            offload.display()
        ))
    }
}

fn kind(e: &Entry) -> String {
    match e {
        Entry::File { mode, bytes } => format!("file, mode {mode:o}, {} bytes", bytes.len()),
        Entry::Symlink(t) => format!("symlink -> {}", t.display()),
        Entry::Dir => "directory".into(),
        Entry::Other => "special file".into(),
    }
}

fn describe_entry_diff(rel: &Path, a: &Entry, b: &Entry) -> String {
    match (a, b) {
        (
            Entry::File {
                mode: ma,
                bytes: ba,
            },
            Entry::File {
                mode: mb,
                bytes: bb,
            },
        ) => {
            let mut s = String::new();
            if ma != mb {
                let _ = writeln!(
                    s,
                    "MODE differs: {}: plain {ma:o}, offload {mb:o}",
                    rel.display()
                );
            }
            if ba != bb {
                s.push_str(&describe_bytes_diff(&rel.display().to_string(), ba, bb));
            }
            s
        }
        _ => format!(
            "TYPE differs: {}: plain {}, offload {}\n",
            rel.display(),
            kind(a),
            kind(b)
        ),
    }
}

fn looks_textual(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && !b.contains(&0)
}

/// Text: both sides in full and the first differing line. Binary: sizes, the first
/// differing offset with a hex window, and for ELF files the section headers side by side.
pub fn describe_bytes_diff(label: &str, plain: &[u8], offload: &[u8]) -> String {
    let mut s = String::new();
    if looks_textual(plain) && looks_textual(offload) {
        let (ta, tb) = (
            String::from_utf8_lossy(plain),
            String::from_utf8_lossy(offload),
        );
        let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
        let _ = writeln!(
            s,
            "CONTENT differs: {label} (text, {} vs {} bytes)",
            plain.len(),
            offload.len()
        );
        if let Some(i) = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)) {
            let _ = writeln!(
                s,
                "  first difference at line {}:\n  plain:   {:?}\n  offload: {:?}",
                i + 1,
                la.get(i).copied().unwrap_or("<EOF>"),
                lb.get(i).copied().unwrap_or("<EOF>")
            );
        } else {
            let _ = writeln!(
                s,
                "  the lines are equal; line endings or the final newline differ"
            );
        }
        let _ = writeln!(s, "  ---- plain ----\n{}", cap(&ta));
        let _ = writeln!(s, "  ---- offload ----\n{}", cap(&tb));
        return s;
    }
    let first = plain
        .iter()
        .zip(offload)
        .position(|(x, y)| x != y)
        .unwrap_or(plain.len().min(offload.len()));
    let ndiff = plain.iter().zip(offload).filter(|(x, y)| x != y).count();
    let _ = writeln!(
        s,
        "CONTENT differs: {label} (binary, {} vs {} bytes; first difference at offset {first:#x}; {ndiff} differing bytes in the common length)",
        plain.len(),
        offload.len()
    );
    let lo = first.saturating_sub(16);
    let _ = writeln!(
        s,
        "  plain   @{lo:#x}: {}",
        hex(&plain[lo.min(plain.len())..(lo + 48).min(plain.len())])
    );
    let _ = writeln!(
        s,
        "  offload @{lo:#x}: {}",
        hex(&offload[lo.min(offload.len())..(lo + 48).min(offload.len())])
    );
    if plain.starts_with(b"\x7fELF") && offload.starts_with(b"\x7fELF") {
        s.push_str(&elf_sections_diff(plain, offload));
    }
    s
}

fn cap(t: &str) -> String {
    const MAX: usize = 64 * 1024;
    if t.len() <= MAX {
        t.to_owned()
    } else {
        let mut end = MAX;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n[… {} more bytes]", &t[..end], t.len() - end)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `readelf -S -W` of both sides, the lines that differ.
fn elf_sections_diff(plain: &[u8], offload: &[u8]) -> String {
    let Ok(dir) = tempdir_for_readelf() else {
        return String::new();
    };
    let sections = |name: &str, bytes: &[u8]| -> Option<Vec<String>> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).ok()?;
        let out = std::process::Command::new("readelf")
            .args(["-S", "-W"])
            .arg(&p)
            .output()
            .ok()?;
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.trim_start().starts_with('['))
                .map(str::to_owned)
                .collect(),
        )
    };
    let (Some(a), Some(b)) = (sections("plain.o", plain), sections("offload.o", offload)) else {
        let _ = std::fs::remove_dir_all(&dir);
        return String::new();
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = String::from("  ELF section headers that differ (readelf -S -W):\n");
    let mut any = false;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            any = true;
            let _ = writeln!(s, "    plain:   {}", x.map_or("<none>", String::as_str));
            let _ = writeln!(s, "    offload: {}", y.map_or("<none>", String::as_str));
        }
    }
    if !any {
        s.push_str("    (none: the section contents differ)\n");
    }
    s
}

fn tempdir_for_readelf() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "offload-e2e-readelf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_the_difference() {
        let t = describe_bytes_diff("a.d", b"a.o: a.c\n", b"a.o: a.c b.h\n");
        assert!(t.contains("line 1"), "{t}");
        let b = describe_bytes_diff("a.o", b"\x00\x01\x02", b"\x00\x01\x03\x04");
        assert!(b.contains("offset 0x2"), "{b}");
    }

    #[test]
    fn trees_compare_content_mode_and_links() {
        let base = std::env::temp_dir().join(format!("offload-e2e-cmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (a, b) = (base.join("a"), base.join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/x.o"), b"\x7fELFxx").unwrap();
            std::os::unix::fs::symlink("sub", d.join("link")).unwrap();
        }
        assert_eq!(compare_trees(&a, &b), Ok(3));
        std::fs::write(b.join("sub/x.o"), b"\x7fELFxy").unwrap();
        assert!(compare_trees(&a, &b).unwrap_err().contains("sub/x.o"));
        std::fs::write(b.join("sub/x.o"), b"\x7fELFxx").unwrap();
        std::fs::set_permissions(b.join("sub/x.o"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert!(compare_trees(&a, &b).unwrap_err().contains("MODE"));
        std::fs::set_permissions(b.join("sub/x.o"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(a.join("sub/x.o"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::write(b.join("extra.d"), "x: y\n").unwrap();
        assert!(compare_trees(&a, &b).unwrap_err().contains("EXTRA"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
