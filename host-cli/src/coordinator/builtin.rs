//! The compiler's built-in include directories, from `CC -x LANG -E -v /dev/null`.

use std::path::PathBuf;

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
