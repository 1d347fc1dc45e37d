//! The compiler's built-in include directories, from `CC -x LANG -E -v /dev/null`, and
//! the files its driver probes to choose them.

use std::path::PathBuf;

/// The GCC installation clang's driver selected: it finds it by probing for `crtbegin.o`,
/// so that file must exist in a job root for clang to choose the same C++ headers.
pub fn clang_gcc_probe(stderr: &str) -> Option<PathBuf> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Selected GCC installation: "))
        .map(|dir| PathBuf::from(dir.trim()).join("crtbegin.o"))
}

/// Parses the `-v` output: the directories between `#include "..." search starts here:`
/// (or `<...>`) and `End of search list.`, in order.
pub fn parse_search_list(stderr: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stderr.lines() {
        if line.starts_with("#include ") && line.ends_with("search starts here:") {
            inside = true;
        } else if line.starts_with("End of search list.") {
            inside = false;
        } else if inside {
            let dir = line.trim().trim_end_matches(" (framework directory)");
            if dir.starts_with('/') {
                out.push(PathBuf::from(dir));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clang_selected_installation() {
        let text = "Found candidate GCC installation: /usr/bin/../lib/gcc/x86_64-linux-gnu/12\n\
                    Selected GCC installation: /usr/bin/../lib/gcc/x86_64-linux-gnu/12\n";
        assert_eq!(
            clang_gcc_probe(text),
            Some(PathBuf::from(
                "/usr/bin/../lib/gcc/x86_64-linux-gnu/12/crtbegin.o"
            ))
        );
        assert_eq!(clang_gcc_probe("gcc version 12"), None);
    }

    #[test]
    fn gcc_output() {
        let text = "ignoring nonexistent directory \"/usr/local/include/x86_64-linux-gnu\"\n\
#include \"...\" search starts here:\n\
#include <...> search starts here:\n\
 /usr/lib/gcc/x86_64-linux-gnu/12/include\n\
 /usr/local/include\n\
 /usr/include/x86_64-linux-gnu\n\
 /usr/include\n\
End of search list.\n";
        assert_eq!(
            parse_search_list(text),
            vec![
                PathBuf::from("/usr/lib/gcc/x86_64-linux-gnu/12/include"),
                PathBuf::from("/usr/local/include"),
                PathBuf::from("/usr/include/x86_64-linux-gnu"),
                PathBuf::from("/usr/include"),
            ]
        );
    }
}
