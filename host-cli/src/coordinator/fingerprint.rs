//! The host compiler's identity for one language: everything that makes its objects what
//! they are — driver binary, version and target, how it was configured, its assembler,
//! its predefined macros (which show defaults such as PIE, stack protector, fortify, CET),
//! the target options it enables, and its built-in include directories.
//!
//! The fingerprint is not the proof (the probe is): it names the toolchain a probe result
//! belongs to, so a result is reused across builds exactly while nothing here changes, and
//! `offload status` can say what the host's compiler is.

use offload_shared::Digest;
use offload_shared::protocol::CompilerRef;

/// One compiler, one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The driver (path, digest, version, `.ident`).
    pub compiler: CompilerRef,
    /// C++ rather than C.
    pub cxx: bool,
    /// gcc's `Configured with:` line, or clang's target and installation lines.
    pub configured: String,
    /// The assembler the driver runs, by its `--version` line (empty for clang's built-in).
    pub assembler: String,
    /// How many macros are predefined.
    pub macros: usize,
    /// Digest of the sorted predefined macros.
    pub macros_digest: Digest,
    /// Code-changing defaults those macros reveal.
    pub defaults: Vec<&'static str>,
    /// Digest of the target options in force (`gcc -Q --help=target`, or the `-cc1`
    /// command clang's driver builds for a canned compile).
    pub target_digest: Digest,
    /// Built-in include directories, in search order.
    pub include_dirs: Vec<String>,
}

impl Fingerprint {
    /// One digest of every field.
    pub fn digest(&self) -> Digest {
        let c = &self.compiler;
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            c.path,
            c.digest,
            c.version,
            c.ident,
            self.cxx,
            self.configured,
            self.assembler,
            self.macros_digest,
            self.target_digest,
            self.include_dirs.join(":"),
            self.macros,
        );
        Digest::of(text.as_bytes())
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let c = &self.compiler;
        let mut s = format!(
            "{} [{}] {}{}, {} predefined macros",
            c.path,
            if self.cxx { "C++" } else { "C" },
            c.version,
            if c.ident.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.ident)
            },
            self.macros
        );
        if !self.defaults.is_empty() {
            s.push_str(", defaults: ");
            s.push_str(&self.defaults.join(" "));
        }
        if !self.assembler.is_empty() {
            s.push_str(", assembler: ");
            s.push_str(&self.assembler);
        }
        s
    }
}

/// Computes the fingerprint of `compiler` for C or C++ (blocking: runs the compiler a few
/// times, in `/` so nothing depends on the build's directory).
pub fn compute(compiler: &CompilerRef, cxx: bool, include_dirs: &[String]) -> Fingerprint {
    let lang = if cxx { "c++" } else { "c" };
    let run = |args: &[&str]| -> (String, String) {
        std::process::Command::new(&compiler.path)
            .args(args)
            .current_dir("/")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| {
                (
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap_or_default()
    };
    let (_, verbose) = run(&["-v"]);
    let (macros_text, _) = run(&["-x", lang, "-dM", "-E", "/dev/null"]);
    let macros = sorted_macros(&macros_text);
    let clang = verbose.contains("clang version");
    let target = if clang {
        run(&["-###", "-x", lang, "-c", "/dev/null", "-o", "/dev/null"]).1
    } else {
        run(&["-Q", "--help=target"]).0
    };
    let assembler = if clang {
        String::new()
    } else {
        let (as_path, _) = run(&["-print-prog-name=as"]);
        std::process::Command::new(as_path.trim())
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    Fingerprint {
        compiler: compiler.clone(),
        cxx,
        configured: configured(&verbose),
        assembler,
        macros: macros.len(),
        macros_digest: Digest::of(macros.join("\n").as_bytes()),
        defaults: notable_defaults(&macros),
        target_digest: Digest::of(target.as_bytes()),
        include_dirs: include_dirs.to_vec(),
    }
}

/// gcc's `Configured with:` line, or clang's `Target:`/`Thread model:`/`InstalledDir:`.
pub fn configured(verbose: &str) -> String {
    verbose
        .lines()
        .filter(|l| {
            [
                "Configured with:",
                "Target:",
                "Thread model:",
                "InstalledDir:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `#define` lines, sorted.
pub fn sorted_macros(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().filter(|l| l.starts_with("#define ")).collect();
    v.sort_unstable();
    v
}

/// The defaults that change code, as the macros show them.
pub fn notable_defaults(macros: &[&str]) -> Vec<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("#define __PIE__ ", "pie"),
        ("#define __PIC__ ", "pic"),
        ("#define __SSP_STRONG__ ", "stack-protector-strong"),
        ("#define __SSP_ALL__ ", "stack-protector-all"),
        ("#define __SSP__ ", "stack-protector"),
        ("#define _FORTIFY_SOURCE ", "fortify-source"),
        ("#define __CET__ ", "cf-protection"),
        ("#define __OPTIMIZE__ ", "optimize"),
        ("#define __FAST_MATH__ ", "fast-math"),
        ("#define __AVX2__ ", "avx2"),
        ("#define __SSE4_2__ ", "sse4.2"),
    ];
    TABLE
        .iter()
        .filter(|(prefix, _)| macros.iter().any(|m| m.starts_with(prefix)))
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_line_and_clang_lines() {
        let gcc = "Using built-in specs.\nCOLLECT_GCC=gcc\nTarget: x86_64-linux-gnu\n\
                   Configured with: ../src/configure -v --enable-default-pie\n\
                   Thread model: posix\ngcc version 12.2.0 (Debian 12.2.0-14)\n";
        assert_eq!(
            configured(gcc),
            "Target: x86_64-linux-gnu\nConfigured with: ../src/configure -v --enable-default-pie\nThread model: posix"
        );
    }

    #[test]
    fn defaults_from_macros() {
        let text = "#define __SSP_STRONG__ 3\n#define __x86_64__ 1\n#define __PIE__ 2\n\
                    #define __pie__ 2\n#define __PIC__ 2\n";
        let m = sorted_macros(text);
        assert_eq!(m.len(), 5);
        assert!(m.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            notable_defaults(&m),
            ["pie", "pic", "stack-protector-strong"]
        );
        assert!(notable_defaults(&sorted_macros("#define __x86_64__ 1\n")).is_empty());
    }

    #[test]
    fn digest_covers_every_field() {
        let fp = Fingerprint {
            compiler: CompilerRef {
                path: "/usr/bin/gcc".into(),
                digest: Digest([1; 32]),
                version: "12.2.0 x86_64-linux-gnu".into(),
                ident: "GCC: (Debian 12.2.0-14) 12.2.0".into(),
            },
            cxx: false,
            configured: "Configured with: x".into(),
            assembler: "GNU assembler 2.40".into(),
            macros: 3,
            macros_digest: Digest([2; 32]),
            defaults: vec!["pie"],
            target_digest: Digest([3; 32]),
            include_dirs: vec!["/usr/include".into()],
        };
        let base = fp.digest();
        let variants: [fn(&mut Fingerprint); 8] = [
            |f| f.compiler.digest = Digest([9; 32]),
            |f| f.compiler.ident.push('x'),
            |f| f.cxx = true,
            |f| f.configured.push('x'),
            |f| f.assembler.push('x'),
            |f| f.macros_digest = Digest([9; 32]),
            |f| f.target_digest = Digest([9; 32]),
            |f| f.include_dirs.push("/x".into()),
        ];
        for change in variants {
            let mut f = fp.clone();
            change(&mut f);
            assert_ne!(f.digest(), base);
        }
        assert!(fp.summary().contains("defaults: pie"));
    }
}
