//! The single pass over argv: one table lookup per option word, filling a [`Compile`] or
//! finding the [`LocalReason`] it must run locally.

use std::ffi::OsString;
use std::path::PathBuf;

use super::lang::{self, Driver, InputKind};
use super::table::{self, Attach, Meaning, Stage};
use super::{Classification, Compile, IncludeDirKind, Language, LocalReason, paths, subopts};

/// Classify one invocation. `args` excludes argv\[0\] and has response files already expanded
/// (see [`expand_response_files`](super::expand_response_files)). `compiler` is the basename of
/// the compiler as invoked (e.g. `gcc`, `x86_64-linux-gnu-g++-12`, `clang++`, `cc`): it selects
/// the gcc table or gcc plus the clang overlay, and whether this is a C++ driver (which, like
/// `g++`, compiles `.c` as C++ and `.i` as preprocessed C++ unless `-x` says otherwise).
///
/// When several things force a local run, the reason reported is, in order: an informational
/// flag, preprocess-only, linking, the first problem option, then problems with the inputs.
pub fn classify(compiler: &str, args: &[OsString]) -> Classification {
    let driver = match Driver::from_name(compiler) {
        Ok(driver) => driver,
        Err(reason) => return Classification::Local(reason),
    };
    let Some(words) = args
        .iter()
        .map(|arg| arg.to_str())
        .collect::<Option<Vec<_>>>()
    else {
        return Classification::Local(LocalReason::NonUtf8);
    };
    let mut walk = Walk::new(driver);
    walk.run(&words);
    match walk.finish() {
        Ok(compile) => Classification::Remote(compile),
        Err(reason) => Classification::Local(reason),
    }
}

/// One non-option argument and what gcc would do with it.
struct Input<'a> {
    path: &'a str,
    kind: InputKind,
}

/// Everything the pass has seen so far.
struct Walk<'a> {
    driver: Driver,
    /// `-c`, `-S`, and `-E`/`-M`/`-MM` seen.
    object: bool,
    assembly: bool,
    preprocess: bool,
    /// Every `-o` value.
    outputs: Vec<&'a str>,
    /// `-MD` or `-MMD` seen.
    dep_gen: bool,
    /// The last `-MF` value.
    dep_file: Option<&'a str>,
    /// Files of `-Wp,-MD,file` / `-Wp,-MMD,file`.
    wp_dep_files: Vec<&'a str>,
    /// The language set by the last `-x` (`None`: by suffix).
    language: Option<InputKind>,
    inputs: Vec<Input<'a>>,
    scan_args: Vec<OsString>,
    include_dirs: Vec<(IncludeDirKind, PathBuf)>,
    nostdinc: bool,
    nostdincxx: bool,
    host_cpu: bool,
    /// The first informational flag.
    informational: Option<LocalReason>,
    /// The first option that forces a local run.
    problem: Option<LocalReason>,
}

impl<'a> Walk<'a> {
    fn new(driver: Driver) -> Self {
        Self {
            driver,
            object: false,
            assembly: false,
            preprocess: false,
            outputs: Vec::new(),
            dep_gen: false,
            dep_file: None,
            wp_dep_files: Vec::new(),
            language: None,
            inputs: Vec::new(),
            scan_args: Vec::new(),
            include_dirs: Vec::new(),
            nostdinc: false,
            nostdincxx: false,
            host_cpu: false,
            informational: None,
            problem: None,
        }
    }

    /// Records the first problem; later ones are ignored.
    fn note(&mut self, reason: LocalReason) {
        self.problem.get_or_insert(reason);
    }

    fn local_only(&mut self, flag: &str, why: &'static str) {
        self.note(LocalReason::LocalOnlyFlag {
            flag: flag.to_owned(),
            why,
        });
    }

    fn run(&mut self, words: &[&'a str]) {
        let mut next = 0;
        while let Some(&word) = words.get(next) {
            let start = next;
            next += 1;
            if word.starts_with('@') {
                self.note(LocalReason::UnexpandedResponseFile(word.to_owned()));
                continue;
            }
            if word == "-" || !word.starts_with('-') {
                self.input(word);
                self.keep(&[word]);
                continue;
            }
            let Some(row) = table::lookup(word, self.driver.clang) else {
                self.note(LocalReason::UnknownFlag(word.to_owned()));
                continue;
            };
            let rest = word.get(row.spelling.len()..).unwrap_or_default();
            let value = match row.attach {
                Attach::Flag | Attach::Family => "",
                Attach::Joined => rest,
                Attach::JoinedOrSeparate if !rest.is_empty() => rest,
                Attach::Equals if !rest.is_empty() => rest.strip_prefix('=').unwrap_or(rest),
                Attach::Separate | Attach::JoinedOrSeparate | Attach::Equals => {
                    let Some(&value) = words.get(next) else {
                        self.note(LocalReason::MissingArgument(word.to_owned()));
                        break;
                    };
                    next += 1;
                    if value.starts_with('@') {
                        self.note(LocalReason::UnexpandedResponseFile(value.to_owned()));
                    }
                    value
                }
            };
            if self.apply(word, row.meaning, value) {
                self.keep(words.get(start..next).unwrap_or_default());
            }
        }
    }

    /// Applies one option; returns whether it stays in the dependency-scan arguments.
    fn apply(&mut self, word: &'a str, meaning: Meaning, value: &'a str) -> bool {
        match meaning {
            Meaning::PassThrough | Meaning::IncludeFile => true,
            Meaning::SideOutput | Meaning::ScanQuiet | Meaning::DepOption => false,
            Meaning::Output => {
                self.outputs.push(value);
                false
            }
            Meaning::Mode(stage) => {
                match stage {
                    Stage::Object => self.object = true,
                    Stage::Assembly => self.assembly = true,
                    Stage::Preprocess => self.preprocess = true,
                }
                false
            }
            Meaning::DepGen => {
                self.dep_gen = true;
                false
            }
            Meaning::DepFile => {
                if value == "-" {
                    self.local_only(word, "dependency output to stdout");
                }
                self.dep_file = Some(value);
                false
            }
            Meaning::IncludeDir(kind) => {
                // gcc reads `-I -` as `-I-`.
                if kind == IncludeDirKind::Angle && value == "-" {
                    self.local_only("-I-", "obsolete include-path split");
                }
                self.include_dirs.push((kind, PathBuf::from(value)));
                true
            }
            Meaning::Language => {
                self.language = lang::by_x(value);
                true
            }
            Meaning::NoStdInc => {
                self.nostdinc = true;
                true
            }
            Meaning::NoStdIncCxx => {
                self.nostdincxx = true;
                true
            }
            Meaning::HostCpu => {
                self.host_cpu = true;
                true
            }
            Meaning::AssemblerArgs => {
                if !subopts::assembler_args_ok(value) {
                    self.local_only(word, "assembler option outside the allow-list");
                }
                true
            }
            Meaning::PreprocessorArgs => {
                match subopts::preprocessor_dep_file(value) {
                    Some(file) => self.wp_dep_files.push(file),
                    None => self.local_only(word, "raw preprocessor option"),
                }
                false
            }
            Meaning::OptInfo => {
                if word.contains('=') {
                    self.local_only(word, "writes an optimization report file");
                }
                true
            }
            Meaning::LocalOnly(why) => {
                self.local_only(word, why);
                true
            }
            Meaning::Informational => {
                self.informational
                    .get_or_insert_with(|| LocalReason::Informational(word.to_owned()));
                true
            }
        }
    }

    fn input(&mut self, path: &'a str) {
        let kind = if path == "-" {
            InputKind::Stdin
        } else {
            match &self.language {
                Some(kind) => kind.clone(),
                None => lang::by_suffix(path, self.driver.cxx),
            }
        };
        self.inputs.push(Input { path, kind });
    }

    fn keep(&mut self, words: &[&str]) {
        self.scan_args.extend(words.iter().map(OsString::from));
    }

    /// The one source and its language, or why the inputs rule out a remote compile.
    fn source(&self) -> Result<(&'a str, Language), LocalReason> {
        let mut sources = Vec::new();
        for input in &self.inputs {
            match &input.kind {
                InputKind::Source(language) => sources.push((input.path, *language)),
                InputKind::Stdin => return Err(LocalReason::Stdin),
                InputKind::Header => return Err(LocalReason::PchGeneration(input.path.to_owned())),
                InputKind::Unsupported(what) => {
                    return Err(LocalReason::UnsupportedLanguage(what.clone()));
                }
                InputKind::NotSource => return Err(LocalReason::NotASource(input.path.to_owned())),
            }
        }
        match sources[..] {
            [one] => Ok(one),
            [] => Err(LocalReason::NoSource),
            _ => Err(LocalReason::MultipleSources),
        }
    }

    fn finish(self) -> Result<Compile, LocalReason> {
        if let Some(reason) = self.informational {
            return Err(reason);
        }
        if self.preprocess {
            return Err(LocalReason::PreprocessOnly);
        }
        if !self.object && !self.assembly {
            return Err(LocalReason::Link);
        }
        if let Some(reason) = self.problem {
            return Err(reason);
        }
        let (source, language) = self.source()?;
        let output_flag = match self.outputs[..] {
            [] => None,
            ["-"] => return Err(LocalReason::OutputToStdout),
            [one] => Some(one),
            _ => return Err(LocalReason::DuplicateOutput),
        };
        // `-S` wins over `-c` (checked with gcc 12).
        let output = output_flag.map_or_else(
            || paths::default_output(source, self.assembly),
            PathBuf::from,
        );
        let mut written = vec![output.clone()];
        if self.dep_gen {
            written.push(self.dep_file.map_or_else(
                || paths::default_dep_file(output_flag, source),
                PathBuf::from,
            ));
        }
        written.extend(self.wp_dep_files.iter().map(PathBuf::from));
        Ok(Compile {
            language,
            source: PathBuf::from(source),
            output,
            output_dirs: paths::output_dirs(written.iter().map(PathBuf::as_path)),
            scan_args: self.scan_args,
            include_dirs: self.include_dirs,
            nostdinc: self.nostdinc,
            nostdincxx: self.nostdincxx,
            host_cpu: self.host_cpu,
        })
    }
}
