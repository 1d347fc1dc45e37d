//! Which environment variables a remote compile gets, and which force a local one.
//! A table: one row per variable (or prefix), as the domain is a table.

/// What to do with a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Passed to the remote compile unchanged.
    Forward,
    /// Its presence makes the compile local (it changes how the compiler finds its parts
    /// or writes files the worker cannot know about).
    LocalOnly,
    /// A locale variable: forwarded if the worker can reproduce it, see [`locale_for_worker`].
    Locale,
}

/// `(name, is_prefix, rule)`. Variables not listed are dropped.
const TABLE: &[(&str, bool, Rule)] = &[
    ("COLUMNS", false, Rule::Forward),
    ("COMPILER_PATH", false, Rule::LocalOnly),
    ("CPATH", false, Rule::Forward),
    ("CPLUS_INCLUDE_PATH", false, Rule::Forward),
    ("C_INCLUDE_PATH", false, Rule::Forward),
    ("DEPENDENCIES_OUTPUT", false, Rule::LocalOnly),
    ("GCC_COLORS", false, Rule::Forward),
    ("GCC_COMPARE_DEBUG", false, Rule::LocalOnly),
    ("GCC_EXEC_PREFIX", false, Rule::LocalOnly),
    ("GCC_URLS", false, Rule::Forward),
    ("GCONV_PATH", false, Rule::LocalOnly),
    ("LANG", false, Rule::Locale),
    ("LANGUAGE", false, Rule::Forward),
    ("LC_", true, Rule::Locale),
    ("LD_LIBRARY_PATH", false, Rule::LocalOnly),
    ("LD_PRELOAD", false, Rule::LocalOnly),
    ("LOCPATH", false, Rule::LocalOnly),
    ("OBJC_INCLUDE_PATH", false, Rule::Forward),
    // gcc names the compile directory after PWD when it is the same directory as "." (a
    // path through a link); the job's tree reproduces the links on the way to it.
    ("PWD", false, Rule::Forward),
    ("SOURCE_DATE_EPOCH", false, Rule::Forward),
    ("SUNPRO_DEPENDENCIES", false, Rule::LocalOnly),
    ("TERM", false, Rule::Forward),
    ("TERM_URLS", false, Rule::Forward),
    ("TZ", false, Rule::Forward),
];

/// The value of `name` in an environment given as pairs.
pub fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The rule for `name`, or `None` when it is dropped.
pub fn rule(name: &str) -> Option<Rule> {
    TABLE
        .iter()
        .find(|(n, prefix, _)| {
            if *prefix {
                name.starts_with(n)
            } else {
                name == *n
            }
        })
        .map(|(_, _, r)| *r)
}

/// The value a locale variable gets on the worker, or `None` when the worker cannot give
/// the same messages and quoting. C, POSIX and C.UTF-8 are the same everywhere; an English
/// UTF-8 locale prints what C.UTF-8 prints (English text, UTF-8 quotes), so it maps to it.
/// A locale the host does not have (`host_has` false) makes the host's compiler fall back
/// to C, so the worker gets C.
pub fn locale_for_worker(value: &str, host_has: &dyn Fn(&str) -> bool) -> Option<&'static str> {
    match value {
        v if !v.is_empty() && !host_has(v) => Some("C"),
        "" => Some(""),
        "C" => Some("C"),
        "POSIX" => Some("POSIX"),
        "C.UTF-8" | "C.utf8" => Some("C.UTF-8"),
        v if v.starts_with("en_") && (v.ends_with(".UTF-8") || v.ends_with(".utf8")) => {
            Some("C.UTF-8")
        }
        _ => None,
    }
}

/// Builds the remote environment from the wrapper's, or names the variable that forces a
/// local compile. `PATH` is set to the worker's standard one.
pub fn remote_env(
    env: &[(String, String)],
    host_has: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned())];
    for (k, v) in env {
        match rule(k) {
            None => {}
            Some(Rule::Forward) => out.push((k.clone(), v.clone())),
            Some(Rule::LocalOnly) => return Err(format!("environment variable {k} is set")),
            Some(Rule::Locale) => match locale_for_worker(v, host_has) {
                Some(l) => out.push((k.clone(), l.to_owned())),
                None => return Err(format!("locale {k}={v}")),
            },
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn env_cases() {
        let e = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let all = |_: &str| true;
        let ok = remote_env(
            &e(&[
                ("HOME", "/root"),
                ("LC_ALL", "en_US.UTF-8"),
                ("SOURCE_DATE_EPOCH", "1"),
                ("CPATH", "/x"),
            ]),
            &all,
        )
        .unwrap();
        assert_eq!(
            ok,
            e(&[
                ("CPATH", "/x"),
                ("LC_ALL", "C.UTF-8"),
                ("PATH", "/usr/local/bin:/usr/bin:/bin"),
                ("SOURCE_DATE_EPOCH", "1"),
            ])
        );
        assert!(
            remote_env(&e(&[("LANG", "de_DE.UTF-8")]), &all)
                .unwrap_err()
                .contains("locale")
        );
        assert!(
            remote_env(&e(&[("GCC_EXEC_PREFIX", "/x")]), &all)
                .unwrap_err()
                .contains("GCC_EXEC_PREFIX")
        );
        assert!(remote_env(&e(&[("LD_PRELOAD", "x.so")]), &all).is_err());
        let none = |_: &str| false;
        assert_eq!(
            remote_env(&e(&[("LANG", "de_DE.UTF-8")]), &none).unwrap()[0],
            ("LANG".to_string(), "C".to_string())
        );
    }
}
