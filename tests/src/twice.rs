//! The one comparison every test makes: build plainly at a fixed path, move the tree aside,
//! build the same tree at the same path through `offload build`, move it aside, and compare
//! exit status, stdout, stderr (less offload's summary) and both trees byte for byte.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cmd::{Cmd, Output, Running, Summary, split_summary};
use crate::compare::{compare_trees, describe_bytes_diff};
use crate::paths::{TEST_ROOT, offload_bin};

/// What to build, and how to call offload.
pub struct Twice<'a> {
    /// Unique among tests: the tree is built at `/tmp/offload-e2e/NAME/w`.
    pub name: &'a str,
    /// Writes the inputs at the given root (called twice, must be deterministic).
    pub materialize: &'a dyn Fn(&Path),
    /// Working directory relative to the root.
    pub cwd: &'a str,
    /// The command; `{root}` in an argument is replaced by the root.
    pub argv: Vec<String>,
    /// Extra environment for both runs; `{root}` is replaced in values.
    pub env: Vec<(String, String)>,
    /// Standard input for both runs.
    pub stdin: Option<Vec<u8>>,
    /// Arguments of `offload build` before `--` (e.g. `--worker`, `-j`); `-v` is always added.
    pub offload_args: Vec<String>,
}

/// The outcome of a comparison that found no difference.
#[derive(Debug)]
pub struct Both {
    /// The plain run.
    pub plain: Output,
    /// The run through offload, with the summary still in its stderr.
    pub offload: Output,
    /// The summary's counts.
    pub summary: Summary,
    /// The summary line and offload's `-v` lines, for messages.
    pub summary_text: String,
    /// `/tmp/offload-e2e/NAME`; removed on drop unless the thread panics.
    pub dir: PathBuf,
}

impl Both {
    /// The plain tree.
    pub fn plain_tree(&self) -> PathBuf {
        self.dir.join("plain")
    }

    /// A build of `project` that lost its worker partway (`what` says how, for messages):
    /// every compiler call counted once, some compiled remotely, not all.
    pub fn assert_partly_remote(&self, project: &crate::projects::Project, what: &str) {
        let s = &self.summary;
        assert_eq!(
            s.calls,
            (project.objects + project.links) as u64,
            "every compiler call is counted once\n{}",
            self.context()
        );
        assert!(
            s.remote >= 1,
            "nothing was compiled remotely before {what}\n{}",
            self.context()
        );
        assert!(
            s.remote < project.objects as u64,
            "every object compiled remotely despite {what}\n{}",
            self.context()
        );
    }

    /// Everything offload printed about itself, and the command's outputs, for messages.
    pub fn context(&self) -> String {
        format!(
            "offload's summary:\n{}\nplain run: {}\noffload run: {}",
            self.summary_text,
            self.plain.describe(),
            self.offload.describe()
        )
    }

    /// Asserts that the plain run succeeded: a comparison with a failed build proves little.
    pub fn assert_plain_succeeded(&self) {
        assert_eq!(
            self.plain.status,
            crate::cmd::Status::Code(0),
            "the plain run failed, so the comparison proves nothing\n{}",
            self.context()
        );
    }

    /// Asserts that exactly `remote` calls ran remotely, `local` locally, none fell back.
    pub fn assert_counts(&self, remote: u64, local: u64) {
        let want = Summary {
            calls: remote + local,
            remote,
            local,
            fell_back: 0,
        };
        assert_eq!(
            self.summary,
            want,
            "expected {remote} remote and {local} local compiler calls, none fell back\n{}",
            self.context()
        );
    }
}

impl Drop for Both {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn subst(s: &str, root: &Path) -> String {
    s.replace("{root}", &root.to_string_lossy())
}

/// Makes `/tmp/offload-e2e/NAME` empty.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(TEST_ROOT).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// [`run_twice_during`] with nothing to do during the offload run.
pub fn run_twice(spec: &Twice<'_>) -> Both {
    run_twice_during(spec, |_, _| {})
}

/// Runs the comparison; `during(root, run)` runs on this thread while the offload run is in
/// progress (to kill a worker mid-build, say). Panics with a full report on any difference.
pub fn run_twice_during(spec: &Twice<'_>, during: impl FnOnce(&Path, &mut Running)) -> Both {
    let dir = fresh_dir(spec.name);
    let root = dir.join("w");
    let cmd = |root: &Path| {
        let mut c = Cmd::new(
            spec.argv.iter().map(|a| subst(a, root)),
            &root.join(spec.cwd),
        );
        for (k, v) in &spec.env {
            c = c.env(k, &subst(v, root));
        }
        c.stdin = spec.stdin.clone();
        c
    };

    (spec.materialize)(&root);
    let plain_cmd = cmd(&root);
    let plain = plain_cmd.run();
    let plain_tree = dir.join("plain");
    std::fs::rename(&root, &plain_tree).expect("moving the plain tree aside");

    (spec.materialize)(&root);
    let mut prefix: Vec<OsString> = vec![offload_bin().into(), "build".into(), "-v".into()];
    // Builds given workers use those, not what else the LAN (other tests) offers.
    if spec.offload_args.iter().any(|a| a == "--worker") {
        prefix.push("--no-discover".into());
    }
    prefix.extend(spec.offload_args.iter().map(OsString::from));
    prefix.push("--".into());
    let mut offload_cmd = cmd(&root).prefixed(&prefix);
    // Each test keeps offload's per-user caches (probe results) to itself unless it asks.
    if !spec.env.iter().any(|(k, _)| k == "XDG_CACHE_HOME") {
        let cache = dir.join("cache");
        offload_cmd = offload_cmd.env("XDG_CACHE_HOME", &cache.to_string_lossy());
    }
    let mut running = offload_cmd.spawn();
    during(&root, &mut running);
    let offload = running.wait();
    let offload_tree = dir.join("offload");
    std::fs::rename(&root, &offload_tree).expect("moving the offload tree aside");

    let header = format!(
        "test tree: {}\nplain command:   {}\noffload command: {}\n",
        dir.display(),
        plain_cmd.display(),
        offload_cmd.display()
    );
    let (stderr, summary, summary_text) = match split_summary(&offload.stderr) {
        Ok(x) => x,
        Err(e) => panic!(
            "{header}{e}\nplain run: {}\noffload run: {}",
            plain.describe(),
            offload.describe()
        ),
    };
    let mut problems = Vec::new();
    if plain.status != offload.status {
        problems.push(format!(
            "EXIT STATUS differs: plain {}, offload {}",
            plain.status, offload.status
        ));
    }
    if plain.stdout != offload.stdout {
        problems.push(describe_bytes_diff(
            "stdout",
            &plain.stdout,
            &offload.stdout,
        ));
    }
    if plain.stderr != stderr {
        problems.push(describe_bytes_diff(
            "stderr (offload's summary removed)",
            &plain.stderr,
            &stderr,
        ));
    }
    if let Err(e) = compare_trees(&plain_tree, &offload_tree) {
        problems.push(e);
    }
    assert!(
        problems.is_empty(),
        "{header}offload's summary:\n{summary_text}\n{}\n\nplain run: {}\noffload run: {}",
        problems.join("\n"),
        plain.describe(),
        offload.describe()
    );
    Both {
        plain,
        offload,
        summary,
        summary_text,
        dir,
    }
}
