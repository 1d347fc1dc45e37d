//! How many jobs the build command runs at once, when the user did not say: offload knows
//! how many compiles it can run (local slots plus live worker slots), and tells the build
//! tool in the tool's own way. An explicit `-j` (on the command line or in `MAKEFLAGS`)
//! always wins.
//!
//! The tools, by the program's name (table [`TOOLS`]):
//! - make and what reads `MAKEFLAGS` (a GNU make jobserver): offload is the jobserver, and
//!   the token count follows the live slot count during the build ([`crate::jobserver`]);
//! - `dpkg-buildpackage`, `debuild`: `DEB_BUILD_OPTIONS=parallel=N` (debhelper passes it
//!   on as `-jN`), fixed at the start;
//! - ninja, `cmake --build`, `meson compile`/`ninja`-based `samu`: `-j N` added, fixed at
//!   the start.
//!
//! Pure: no IO; [`plan`] returns what to change.

use std::path::Path;

/// How a tool is told its parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// GNU make: a jobserver in `MAKEFLAGS`.
    Make,
    /// `DEB_BUILD_OPTIONS=parallel=N`.
    Debian,
    /// `-j N` after the program's own subcommand words (`cmake --build DIR`: after all).
    JobsFlag,
}

/// One tool: its program names, how it is told, and the words that must follow the
/// program for the rule to apply (`cmake` only parallelises `--build`).
struct Tool {
    names: &'static [&'static str],
    style: Style,
    /// The first argument must be one of these (empty: any).
    subcommands: &'static [&'static str],
}

/// The tools offload gives a parallelism to.
const TOOLS: &[Tool] = &[
    Tool {
        names: &["make", "gmake", "remake"],
        style: Style::Make,
        subcommands: &[],
    },
    Tool {
        names: &["dpkg-buildpackage", "debuild"],
        style: Style::Debian,
        subcommands: &[],
    },
    Tool {
        names: &["ninja", "samu"],
        style: Style::JobsFlag,
        subcommands: &[],
    },
    Tool {
        names: &["cmake"],
        style: Style::JobsFlag,
        subcommands: &["--build"],
    },
    Tool {
        names: &["meson"],
        style: Style::JobsFlag,
        subcommands: &["compile"],
    },
];

/// What to do to the build command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Leave it as it is, and why.
    AsIs(&'static str),
    /// Be its jobserver with `n` jobs at the start.
    Jobserver { n: usize },
    /// Set `DEB_BUILD_OPTIONS` to this value.
    DebBuildOptions(String),
    /// Append these arguments.
    Append(Vec<String>),
}

/// What to do for `argv` (the build command) given the environment variables `env`
/// reads (`MAKEFLAGS`, `DEB_BUILD_OPTIONS`) and `n`, the jobs offload can run now.
pub fn plan(argv: &[String], env: &dyn Fn(&str) -> Option<String>, n: usize) -> Plan {
    let Some((program, args)) = argv.split_first() else {
        return Plan::AsIs("no command");
    };
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let Some(tool) = TOOLS.iter().find(|t| {
        t.names.contains(&name)
            && (t.subcommands.is_empty()
                || args
                    .first()
                    .is_some_and(|a| t.subcommands.contains(&a.as_str())))
    }) else {
        return Plan::AsIs("not a build tool offload knows how to parallelise");
    };
    let n = n.max(1);
    match tool.style {
        Style::Make => {
            if args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| make_jobs_arg(a))
            {
                return Plan::AsIs("-j given on the command line");
            }
            if env("MAKEFLAGS").is_some_and(|f| makeflags_have_jobs(&f)) {
                return Plan::AsIs("-j given in MAKEFLAGS");
            }
            Plan::Jobserver { n }
        }
        Style::Debian => {
            if args
                .iter()
                .any(|a| a.starts_with("-j") || a.starts_with("--jobs"))
            {
                return Plan::AsIs("-j given on the command line");
            }
            let opts = env("DEB_BUILD_OPTIONS").unwrap_or_default();
            if opts.split_whitespace().any(|o| o.starts_with("parallel=")) {
                return Plan::AsIs("parallel= given in DEB_BUILD_OPTIONS");
            }
            let joined = if opts.trim().is_empty() {
                format!("parallel={n}")
            } else {
                format!("{} parallel={n}", opts.trim())
            };
            Plan::DebBuildOptions(joined)
        }
        Style::JobsFlag => {
            let given = args.iter().any(|a| {
                a == "-j"
                    || a == "--parallel"
                    || a == "--jobs"
                    || a.starts_with("--jobs=")
                    || a.starts_with("--parallel=")
                    || (a.starts_with("-j") && a[2..].chars().all(|c| c.is_ascii_digit()))
            });
            if given {
                return Plan::AsIs("-j given on the command line");
            }
            if args.iter().any(|a| a == "--") {
                // Native tool arguments follow `--` (cmake --build … -- ARGS): a flag
                // appended after them would go to the wrong program.
                return Plan::AsIs("arguments after -- go to another tool");
            }
            Plan::Append(vec!["-j".into(), n.to_string()])
        }
    }
}

/// Whether a make argument sets the job count: `-j`, `-j8`, `--jobs`, `--jobs=8`, or a
/// cluster of short flags with `j` in it (`-kj8`), but not a long option that merely
/// contains a `j`, nor a variable assignment.
fn make_jobs_arg(a: &str) -> bool {
    if a == "--jobs" || a.starts_with("--jobs=") {
        return true;
    }
    if a.starts_with("--") || a.contains('=') {
        return false;
    }
    let Some(flags) = a.strip_prefix('-') else {
        return false;
    };
    // Short flags up to the first one taking an argument (-C DIR, -f FILE, -I DIR, -o, -W).
    for c in flags.chars() {
        match c {
            'j' => return true,
            'C' | 'f' | 'I' | 'o' | 'W' | 'l' | 'O' => return false,
            _ => {}
        }
    }
    false
}

/// Whether `MAKEFLAGS` sets a job count: a `j` among its leading single-letter flags
/// (`"kj8"`, `" -j4"`), a `-j`/`--jobs` word, or a jobserver of another make.
fn makeflags_have_jobs(flags: &str) -> bool {
    let mut words = flags.split_whitespace();
    let first = words.next().unwrap_or("");
    // GNU make puts its single-letter flags first, without a dash ("ks").
    if !first.starts_with('-') && !first.contains('=') && first.contains('j') {
        return true;
    }
    std::iter::once(first).chain(words).any(|w| {
        w.starts_with("--jobserver-auth")
            || w.starts_with("--jobserver-fds")
            || (w.starts_with('-') && !w.starts_with("--") && make_jobs_arg(w))
            || w == "--jobs"
            || w.starts_with("--jobs=")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    type Vars = &'static [(&'static str, &'static str)];

    fn with(vars: Vars) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn each_tool_is_told_its_way_unless_the_user_said() {
        let none = with(&[]);
        let cases: &[(&str, Plan)] = &[
            ("make", Plan::Jobserver { n: 6 }),
            ("/usr/bin/make -k all", Plan::Jobserver { n: 6 }),
            ("make -C src", Plan::Jobserver { n: 6 }),
            ("make -j4", Plan::AsIs("-j given on the command line")),
            ("make -j", Plan::AsIs("-j given on the command line")),
            ("make -kj8", Plan::AsIs("-j given on the command line")),
            ("make --jobs=3", Plan::AsIs("-j given on the command line")),
            ("make CFLAGS=-j", Plan::Jobserver { n: 6 }),
            ("make -Cj", Plan::Jobserver { n: 6 }),
            (
                "dpkg-buildpackage -b -uc -us",
                Plan::DebBuildOptions("parallel=6".into()),
            ),
            (
                "dpkg-buildpackage -b -j2",
                Plan::AsIs("-j given on the command line"),
            ),
            ("ninja", Plan::Append(argv("-j 6"))),
            ("ninja -C build", Plan::Append(argv("-j 6"))),
            ("ninja -j2", Plan::AsIs("-j given on the command line")),
            ("cmake --build build", Plan::Append(argv("-j 6"))),
            (
                "cmake --build build --parallel 3",
                Plan::AsIs("-j given on the command line"),
            ),
            (
                "cmake --build build -- -k",
                Plan::AsIs("arguments after -- go to another tool"),
            ),
            (
                "cmake -S . -B build",
                Plan::AsIs("not a build tool offload knows how to parallelise"),
            ),
            ("meson compile -C build", Plan::Append(argv("-j 6"))),
            (
                "meson setup build",
                Plan::AsIs("not a build tool offload knows how to parallelise"),
            ),
            (
                "./build.sh",
                Plan::AsIs("not a build tool offload knows how to parallelise"),
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(&plan(&argv(cmd), &none, 6), want, "{cmd}");
        }
    }

    #[test]
    fn the_environment_can_say_it_too() {
        let cases: &[(Vars, &str, Plan)] = &[
            (
                &[("MAKEFLAGS", "kj8")],
                "make",
                Plan::AsIs("-j given in MAKEFLAGS"),
            ),
            (
                &[("MAKEFLAGS", " -j4")],
                "make",
                Plan::AsIs("-j given in MAKEFLAGS"),
            ),
            (
                &[("MAKEFLAGS", " -j --jobserver-auth=3,4")],
                "make",
                Plan::AsIs("-j given in MAKEFLAGS"),
            ),
            (&[("MAKEFLAGS", "k")], "make", Plan::Jobserver { n: 2 }),
            (&[("MAKEFLAGS", "V=1")], "make", Plan::Jobserver { n: 2 }),
            (
                &[("DEB_BUILD_OPTIONS", "nocheck")],
                "dpkg-buildpackage -b",
                Plan::DebBuildOptions("nocheck parallel=2".into()),
            ),
            (
                &[("DEB_BUILD_OPTIONS", "nocheck parallel=1")],
                "dpkg-buildpackage -b",
                Plan::AsIs("parallel= given in DEB_BUILD_OPTIONS"),
            ),
        ];
        for (vars, cmd, want) in cases {
            assert_eq!(
                &plan(&argv(cmd), &with(vars), 2),
                want,
                "{cmd} with {vars:?}"
            );
        }
    }
}
