//! The comma-separated values of `-Wa,` and `-Wp,`.

/// Whether every item of a `-Wa,` value is an assembler option known to read and write no
/// files (so the remote object is identical). Anything else (`-a...=listing`, `-I dir`,
/// `--MD file`, `@file`, an empty item...) is rejected.
pub(crate) fn assembler_args_ok(value: &str) -> bool {
    value.split(',').all(assembler_arg_ok)
}

fn assembler_arg_ok(item: &str) -> bool {
    match item {
        "--noexecstack"
        | "--execstack"
        | "--compress-debug-sections"
        | "--nocompress-debug-sections"
        | "-mrelax-relocations=yes"
        | "-mrelax-relocations=no"
        | "-mx86-used-note=yes"
        | "-mx86-used-note=no"
        | "--fatal-warnings"
        | "--warn"
        | "--no-warn"
        | "-W"
        | "--32"
        | "--64"
        | "--x32"
        | "-g"
        | "--gen-debug"
        | "--gdwarf-sections" => true,
        _ => {
            if let Some(kind) = item.strip_prefix("--compress-debug-sections=") {
                matches!(kind, "none" | "zlib" | "zlib-gnu" | "zlib-gabi" | "zstd")
            } else if let Some(level) = item.strip_prefix("-O") {
                level == "s" || level.bytes().all(|b| b.is_ascii_digit())
            } else if let Some(version) = item
                .strip_prefix("--gdwarf-")
                .or_else(|| item.strip_prefix("-gdwarf-"))
            {
                matches!(version, "2" | "3" | "4" | "5")
            } else {
                false
            }
        }
    }
}

/// The dependency file of a `-Wp,-MD,file` / `-Wp,-MMD,file` value; `None` for any other
/// `-Wp,` value (those pass raw options to the preprocessor and run locally).
pub(crate) fn preprocessor_dep_file(value: &str) -> Option<&str> {
    let (flag, file) = value.split_once(',')?;
    let ok = matches!(flag, "-MD" | "-MMD") && !file.is_empty() && !file.contains(',');
    ok.then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_allow_list() {
        for ok in [
            "--noexecstack",
            "-mrelax-relocations=no",
            "--compress-debug-sections=zlib",
            "--compress-debug-sections",
            "-mx86-used-note=yes",
            "-O2",
            "-O",
            "--noexecstack,-O1",
            "--gdwarf-5",
        ] {
            assert!(assembler_args_ok(ok), "{ok}");
        }
        for bad in [
            "-adhln=x.lst",
            "-al",
            "--noexecstack,-adhln",
            "-Iinc",
            "--MD,x.d",
            "",
            "--noexecstack,",
            "-mrelax-relocations=maybe",
            "-Ofoo",
            "--compress-debug-sections=lzma",
        ] {
            assert!(!assembler_args_ok(bad), "{bad}");
        }
    }

    #[test]
    fn preprocessor_dep_files() {
        assert_eq!(preprocessor_dep_file("-MD,.a.o.d"), Some(".a.o.d"));
        assert_eq!(preprocessor_dep_file("-MMD,dir/x.d"), Some("dir/x.d"));
        assert_eq!(preprocessor_dep_file("-MD"), None);
        assert_eq!(preprocessor_dep_file("-MD,"), None);
        assert_eq!(preprocessor_dep_file("-MD,a,b"), None);
        assert_eq!(preprocessor_dep_file("-DFOO"), None);
        assert_eq!(preprocessor_dep_file("-MT,x"), None);
    }
}
