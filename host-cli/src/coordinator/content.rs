//! What a source or header's text says that matters for remote compiles: macros expanded
//! from the compiling machine's state, files read behind the preprocessor's back, and
//! `__has_include` probes whose answers depend on files that are not included.

use memchr::memmem;

/// Facts about one file's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentFlags {
    /// Mentions `__TIMESTAMP__` (the file's mtime in local time: not reproducible remotely).
    pub timestamp: bool,
    /// Mentions `__DATE__` or `__TIME__` (reproducible only with SOURCE_DATE_EPOCH).
    pub date_time: bool,
    /// Mentions `incbin` (the assembler reads a file the dependency scan does not list).
    pub incbin: bool,
    /// Mentions `.include` (in preprocessed assembly, the assembler reads that file).
    pub asm_include: bool,
    /// The literal arguments of its `__has_include(...)` / `__has_include_next(...)` calls.
    pub has_include: Vec<HasInclude>,
    /// A `__has_include` call with a non-literal argument.
    pub has_include_computed: bool,
    /// Has `#pragma once`: gcc then lists a header reached under two names only once.
    pub pragma_once: bool,
    /// The literal names of its `#include`, `#include_next` and `#import` directives.
    pub includes: Vec<HasInclude>,
    /// An include directive whose name comes from a macro.
    pub include_computed: bool,
}

/// One `__has_include` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasInclude {
    /// The name between the quotes or angle brackets.
    pub name: String,
    /// `"name"` (true) or `<name>` (false).
    pub quoted: bool,
}

/// Scans `bytes`.
pub fn scan(bytes: &[u8]) -> ContentFlags {
    let mut f = ContentFlags {
        timestamp: memmem::find(bytes, b"__TIMESTAMP__").is_some(),
        date_time: memmem::find(bytes, b"__DATE__").is_some()
            || memmem::find(bytes, b"__TIME__").is_some(),
        incbin: memmem::find(bytes, b"incbin").is_some(),
        asm_include: memmem::find(bytes, b".include").is_some(),
        pragma_once: memmem::find(bytes, b"pragma once").is_some(),
        ..ContentFlags::default()
    };
    (f.includes, f.include_computed) = include_directives(bytes);
    for at in memmem::find_iter(bytes, b"__has_include") {
        let mut rest = &bytes[at + b"__has_include".len()..];
        if let Some(r) = rest.strip_prefix(b"_next") {
            rest = r;
        }
        let rest = skip_space(rest);
        let Some(rest) = rest.strip_prefix(b"(") else {
            // `defined __has_include`, `#ifdef __has_include`: not a call.
            continue;
        };
        match header_name(skip_space(rest)) {
            Some(h) => f.has_include.push(h),
            None => f.has_include_computed = true,
        }
    }
    f
}

/// The literal header name at the start of `s`, `"name"` or `<name>` on one line; `None`
/// when the name is not literal (a macro) or not well formed.
fn header_name(s: &[u8]) -> Option<HasInclude> {
    let (close, quoted) = match s.first() {
        Some(b'"') => (b'"', true),
        Some(b'<') => (b'>', false),
        _ => return None,
    };
    let body = &s[1..];
    let end = body.iter().position(|&c| c == close || c == b'\n')?;
    if body[end] != close {
        return None;
    }
    let name = std::str::from_utf8(&body[..end]).ok()?;
    Some(HasInclude {
        name: name.to_owned(),
        quoted,
    })
}

/// The literal names of `#include`-like directives, one per line that starts with `#`, and
/// whether any directive names its file through a macro.
fn include_directives(bytes: &[u8]) -> (Vec<HasInclude>, bool) {
    let mut out = Vec::new();
    let mut computed = false;
    for line in bytes.split(|&c| c == b'\n') {
        let Some(rest) = skip_space(line).strip_prefix(b"#") else {
            continue;
        };
        let rest = skip_space(rest);
        let Some(rest) = [&b"include_next"[..], b"include", b"import"]
            .iter()
            .find_map(|kw| rest.strip_prefix(*kw))
        else {
            continue;
        };
        // A name that is not literal (a macro, or malformed) counts as computed: the scan
        // cannot be proven reusable then.
        match header_name(skip_space(rest)) {
            Some(h) => out.push(h),
            None => computed = true,
        }
    }
    (out, computed)
}

fn skip_space(mut s: &[u8]) -> &[u8] {
    while let Some((c, rest)) = s.split_first() {
        if c.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let f = scan(b"#if defined __has_include\n#if __has_include(<pstl/pstl_config.h>)\n#define T __has_include_next( \"x.h\" )\n#endif\n");
        assert_eq!(
            f.has_include,
            vec![
                HasInclude {
                    name: "pstl/pstl_config.h".into(),
                    quoted: false
                },
                HasInclude {
                    name: "x.h".into(),
                    quoted: true
                },
            ]
        );
        assert!(!f.has_include_computed && !f.timestamp && !f.date_time && !f.incbin);
        assert!(scan(b"#if __has_include(HDR)\n").has_include_computed);
        assert!(scan(b"const char *d = __DATE__;").date_time);
        assert!(scan(b"__TIMESTAMP__").timestamp);
        assert!(scan(b"asm(\".incbin \\\"x\\\"\");").incbin);
        let f = scan(b"#pragma once\n  #  include \"a.h\"\n#include_next <b/c.h>\n#define X 1\n#include MACRO\n");
        assert!(f.pragma_once);
        assert!(f.include_computed);
        assert!(!scan(b"#include <a.h>\n").include_computed);
        assert_eq!(
            f.includes,
            vec![
                HasInclude {
                    name: "a.h".into(),
                    quoted: true
                },
                HasInclude {
                    name: "b/c.h".into(),
                    quoted: false
                },
            ]
        );
    }
}
