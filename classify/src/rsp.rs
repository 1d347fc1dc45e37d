//! `@file` response files, expanded as gcc's driver does (libiberty `expandargv` /
//! `buildargv`), with the file reading injected so this module stays IO-free.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// How deeply response files may include other response files.
pub const MAX_RESPONSE_DEPTH: usize = 32;

/// How many `@file` arguments one expansion may process in total (libiberty's limit).
pub const MAX_RESPONSE_FILES: usize = 2000;

/// Why response-file expansion failed. gcc itself fails on these too, so the caller should run
/// the command locally and let gcc report the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RspError {
    /// Response files nest deeper than [`MAX_RESPONSE_DEPTH`] (e.g. a file includes itself).
    #[error("response file {} nests deeper than {limit} levels", .path.display())]
    TooDeep {
        /// The response file that would exceed the limit.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_RESPONSE_FILES`] `@file` arguments.
    #[error("more than {limit} response files")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// An `@file` names a directory (gcc: "@-file refers to a directory").
    #[error("response file {} is a directory", .0.display())]
    IsDirectory(PathBuf),
}

/// Expands every `@file` argument in place, recursively (nested `@file`s are allowed), as
/// libiberty's `expandargv` does. An `@file` that cannot be read is kept literally, as gcc
/// does. `read(path)` returns a file's bytes; paths are as written after the `@`, relative to
/// the compiler's cwd (the caller resolves them), also for nested files.
///
/// Returns the expanded arguments and the response files that were read, deduplicated in
/// first-read order (they must be shipped to the worker, which sees the original argv).
pub fn expand_response_files(
    args: &[OsString],
    read: &mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
) -> Result<(Vec<OsString>, Vec<PathBuf>), RspError> {
    let mut expansion = Expansion {
        read,
        args: Vec::with_capacity(args.len()),
        files: Vec::new(),
        seen: 0,
    };
    expansion.expand(args, 0)?;
    Ok((expansion.args, expansion.files))
}

struct Expansion<'r> {
    read: &'r mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
    args: Vec<OsString>,
    files: Vec<PathBuf>,
    /// `@file` arguments processed so far, readable or not.
    seen: usize,
}

impl Expansion<'_> {
    fn expand(&mut self, args: &[OsString], depth: usize) -> Result<(), RspError> {
        for arg in args {
            let Some(name) = arg.as_bytes().strip_prefix(b"@") else {
                self.args.push(arg.clone());
                continue;
            };
            self.seen += 1;
            if self.seen > MAX_RESPONSE_FILES {
                return Err(RspError::TooMany {
                    limit: MAX_RESPONSE_FILES,
                });
            }
            if name.is_empty() {
                self.args.push(arg.clone());
                continue;
            }
            let path = PathBuf::from(OsStr::from_bytes(name));
            let contents = match (self.read)(&path) {
                Ok(contents) => contents,
                Err(err) if err.kind() == io::ErrorKind::IsADirectory => {
                    return Err(RspError::IsDirectory(path));
                }
                Err(_) => {
                    self.args.push(arg.clone());
                    continue;
                }
            };
            if depth >= MAX_RESPONSE_DEPTH {
                return Err(RspError::TooDeep {
                    path,
                    limit: MAX_RESPONSE_DEPTH,
                });
            }
            if !self.files.contains(&path) {
                self.files.push(path);
            }
            self.expand(&parse_response_file(&contents), depth + 1)?;
        }
        Ok(())
    }
}

/// libiberty's `ISSPACE`.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits one response file's contents into arguments exactly as libiberty's `buildargv`:
/// whitespace separates; a backslash takes the next byte literally everywhere, even inside
/// quotes; single and double quotes group and are removed (the other quote character is
/// literal inside them); `""` gives an empty argument; an unterminated quote runs to the end.
/// The contents end at the first NUL byte (C string); only whitespace gives no arguments.
///
/// `-c a.c -o "rsp out.o"\n-DFROM_RSP=7 -Wall` → `[-c, a.c, -o, rsp out.o, -DFROM_RSP=7, -Wall]`.
pub fn parse_response_file(contents: &[u8]) -> Vec<OsString> {
    let text = match contents.iter().position(|&b| b == 0) {
        Some(nul) => contents.get(..nul).unwrap_or_default(),
        None => contents,
    };
    let mut args = Vec::new();
    let mut bytes = text.iter().copied().peekable();
    loop {
        while bytes.next_if(|&b| is_space(b)).is_some() {}
        if bytes.peek().is_none() {
            return args;
        }
        let (mut squote, mut dquote, mut escaped) = (false, false, false);
        let mut arg = Vec::new();
        while let Some(byte) = bytes.next_if(|&b| !is_space(b) || squote || dquote || escaped) {
            if escaped {
                escaped = false;
                arg.push(byte);
            } else if byte == b'\\' {
                escaped = true;
            } else if squote {
                if byte == b'\'' {
                    squote = false;
                } else {
                    arg.push(byte);
                }
            } else if dquote {
                if byte == b'"' {
                    dquote = false;
                } else {
                    arg.push(byte);
                }
            } else if byte == b'\'' {
                squote = true;
            } else if byte == b'"' {
                dquote = true;
            } else {
                arg.push(byte);
            }
        }
        args.push(OsString::from_vec(arg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse(text: &str) -> Vec<OsString> {
        parse_response_file(text.as_bytes())
    }

    #[test]
    fn buildargv_cases() {
        let cases: &[(&str, &[&str])] = &[
            (
                "-c a.c -o \"rsp out.o\"\n-DFROM_RSP=7 -Wall",
                &["-c", "a.c", "-o", "rsp out.o", "-DFROM_RSP=7", "-Wall"],
            ),
            ("a simple command line", &["a", "simple", "command", "line"]),
            (
                "arg 'foo' is single quoted",
                &["arg", "foo", "is", "single", "quoted"],
            ),
            ("arg \"foo bar\" x", &["arg", "foo bar", "x"]),
            // libiberty's own test strings: backslash escapes inside quotes too.
            (r"arg 'Jack said \'hi\'' x", &["arg", "Jack said 'hi'", "x"]),
            (
                r#"arg 'Jack said \"hi\"' x"#,
                &["arg", "Jack said \"hi\"", "x"],
            ),
            (r#"'a"b' "c'd""#, &["a\"b", "c'd"]),
            (r"a\ b c\\d \x", &["a b", "c\\d", "x"]),
            ("ab\"c d\"e f", &["abc de", "f"]),
            ("\"\" x ''", &["", "x", ""]),
            ("  \t\r\n lead-and-trail \x0b\x0c ", &["lead-and-trail"]),
            ("a\r\nb\r\n", &["a", "b"]),
            ("'unterminated quote", &["unterminated quote"]),
            ("trailing\\", &["trailing"]),
            ("", &[]),
            (" \n\t ", &[]),
            ("a b\0c d", &["a", "b"]),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), os(want), "{text:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let args = parse_response_file(b"-DX=\xff y");
        assert_eq!(args[0].as_bytes(), b"-DX=\xff");
        assert_eq!(args[1], OsString::from("y"));
    }

    /// Expands with an in-memory file system.
    fn expand(
        args: &[&str],
        files: &[(&str, &str)],
    ) -> Result<(Vec<OsString>, Vec<PathBuf>), RspError> {
        let files: HashMap<PathBuf, Vec<u8>> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect();
        let mut read = |path: &Path| -> io::Result<Vec<u8>> {
            if path == Path::new("dir") {
                return Err(io::Error::from(io::ErrorKind::IsADirectory));
            }
            files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        expand_response_files(&os(args), &mut read)
    }

    #[test]
    fn expands_in_place() {
        let (args, files) =
            expand(&["-c", "@a.rsp", "-Wall"], &[("a.rsp", "a.c -o 'x y.o'")]).unwrap();
        assert_eq!(args, os(&["-c", "a.c", "-o", "x y.o", "-Wall"]));
        assert_eq!(files, vec![PathBuf::from("a.rsp")]);
    }

    #[test]
    fn nested_and_repeated() {
        let fs = [
            ("outer", "-O2 @inner -g"),
            ("inner", "-DINNER @sub/leaf"),
            ("sub/leaf", "-DLEAF"),
        ];
        let (args, files) = expand(&["@outer", "a.c", "@inner"], &fs).unwrap();
        assert_eq!(
            args,
            os(&["-O2", "-DINNER", "-DLEAF", "-g", "a.c", "-DINNER", "-DLEAF"])
        );
        assert_eq!(
            files,
            ["outer", "inner", "sub/leaf"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn unreadable_and_empty_names_stay_literal() {
        let (args, files) =
            expand(&["@missing", "@", "@empty", "x@y"], &[("empty", " \n")]).unwrap();
        assert_eq!(args, os(&["@missing", "@", "x@y"]));
        assert_eq!(files, vec![PathBuf::from("empty")]);
        // A quoted "@file" inside a response file is expanded too, like libiberty.
        let (args, _) = expand(&["@a"], &[("a", "'@missing'")]).unwrap();
        assert_eq!(args, os(&["@missing"]));
    }

    #[test]
    fn depth_limit() {
        let err = expand(&["@self"], &[("self", "-x @self")]).unwrap_err();
        assert_eq!(
            err,
            RspError::TooDeep {
                path: PathBuf::from("self"),
                limit: MAX_RESPONSE_DEPTH
            }
        );
        // Exactly MAX_RESPONSE_DEPTH levels are fine.
        let names: Vec<String> = (0..MAX_RESPONSE_DEPTH).map(|i| format!("f{i}")).collect();
        let contents: Vec<String> = (0..MAX_RESPONSE_DEPTH)
            .map(|i| match names.get(i + 1) {
                Some(next) => format!("-D{i} @{next}"),
                None => format!("-D{i}"),
            })
            .collect();
        let fs: Vec<(&str, &str)> = names
            .iter()
            .zip(&contents)
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect();
        let (args, files) = expand(&["@f0"], &fs).unwrap();
        assert_eq!(args.len(), MAX_RESPONSE_DEPTH);
        assert_eq!(files.len(), MAX_RESPONSE_DEPTH);
    }

    #[test]
    fn count_limit() {
        let many = vec!["@missing"; MAX_RESPONSE_FILES + 1];
        let err = expand(&many, &[]).unwrap_err();
        assert_eq!(
            err,
            RspError::TooMany {
                limit: MAX_RESPONSE_FILES
            }
        );
        assert!(expand(&many[1..], &[]).is_ok());
    }

    #[test]
    fn directory_is_an_error() {
        assert_eq!(
            expand(&["@dir"], &[]).unwrap_err(),
            RspError::IsDirectory(PathBuf::from("dir"))
        );
    }
}
