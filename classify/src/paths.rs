//! gcc's default file names and the directories a compile writes to (pure string work).

use std::path::{Path, PathBuf};

/// The part of `path` after its last `/`.
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `name` without its last suffix, as gcc strips it: a leading dot is not a suffix.
fn strip_suffix(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// The output gcc writes without `-o`: the source's basename with its suffix replaced by `.o`
/// (or `.s` for `-S`), in cwd.
pub(crate) fn default_output(source: &str, assembly: bool) -> PathBuf {
    let ext = if assembly { "s" } else { "o" };
    PathBuf::from(format!("{}.{ext}", strip_suffix(basename(source))))
}

/// The dependency file of `-MD`/`-MMD` without `-MF`: the `-o` value with its suffix replaced
/// by `.d` (`obj/a.o` → `obj/a.d`, `obj/a` → `obj/a.d`), else the source's basename with `.d`
/// in cwd. Verified against gcc 12.
pub(crate) fn default_dep_file(output_flag: Option<&str>, source: &str) -> PathBuf {
    match output_flag {
        Some(output) => {
            let name = basename(output);
            let dir = output.strip_suffix(name).unwrap_or_default();
            PathBuf::from(format!("{dir}{}.d", strip_suffix(name)))
        }
        None => PathBuf::from(format!("{}.d", strip_suffix(basename(source)))),
    }
}

/// The directory `file` is written into, as written; `"."` when it has none.
pub(crate) fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `"."` followed by the parent directories of `files`, deduplicated in first-seen order.
pub(crate) fn output_dirs<'a>(files: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    for file in files {
        let dir = parent_dir(file);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_outputs() {
        assert_eq!(default_output("src/a.c", false), PathBuf::from("a.o"));
        assert_eq!(default_output("src/a.c", true), PathBuf::from("a.s"));
        assert_eq!(
            default_output("/abs/x.y/a.cpp", false),
            PathBuf::from("a.o")
        );
        assert_eq!(
            default_output("foo.bar.baz", false),
            PathBuf::from("foo.bar.o")
        );
        assert_eq!(default_output("foo", false), PathBuf::from("foo.o"));
        assert_eq!(default_output("d/.a.c", false), PathBuf::from(".a.o"));
    }

    #[test]
    fn default_dep_files() {
        let dep = |o, s| default_dep_file(o, s);
        assert_eq!(dep(Some("obj/a.o"), "src/a.c"), PathBuf::from("obj/a.d"));
        assert_eq!(dep(Some("obj/a.obj"), "a.c"), PathBuf::from("obj/a.d"));
        assert_eq!(dep(Some("obj/aa"), "a.c"), PathBuf::from("obj/aa.d"));
        assert_eq!(dep(Some("x.dir/aa"), "a.c"), PathBuf::from("x.dir/aa.d"));
        assert_eq!(dep(Some("obj/a.b.o"), "a.c"), PathBuf::from("obj/a.b.d"));
        assert_eq!(dep(Some(".a.o"), "a.c"), PathBuf::from(".a.d"));
        assert_eq!(dep(None, "src/a.c"), PathBuf::from("a.d"));
    }

    #[test]
    fn dirs() {
        let files = [
            Path::new("obj/a.o"),
            Path::new("a.o"),
            Path::new("obj/a.d"),
            Path::new("/abs/deps/a.d"),
            Path::new("./x.o"),
        ];
        assert_eq!(
            output_dirs(files),
            [".", "obj", "/abs/deps"].map(PathBuf::from).to_vec()
        );
    }
}
