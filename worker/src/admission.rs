//! Which jobs the worker runs at all: the command a host would send remote, nothing else
//! (see [`offload_classify::admit`]), with its response files read from the job's own tree.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use offload_classify::admit::{Refusal, admit};
use offload_shared::protocol::JobRequest;
use offload_shared::tree::EntryKind;

use crate::store::Store;

/// Largest response file read (command lines are kilobytes).
const MAX_RESPONSE_FILE: u64 = 1 << 20;

/// Checks the job's working directory, its command, its `-cc1` command and its environment.
pub fn check(job: &JobRequest, store: &Store) -> Result<(), Refusal> {
    check_cwd(job)?;
    let mut read = |p: &Path| read_from_tree(job, store, p);
    admit(&job.argv, &job.cc1_argv, &job.env, &mut read)
}

/// Checks the job's working directory alone (before its blobs are fetched).
pub fn check_cwd(job: &JobRequest) -> Result<(), Refusal> {
    if !working_directory_ok(&job.cwd) {
        return Err(Refusal::WorkingDirectory(job.cwd.clone()));
    }
    Ok(())
}

/// Whether `cwd` is absolute and normalised (or `/`): the compiler changes to it after its
/// `chroot`, which leaves the working directory outside the root, so only an absolute one
/// lands inside.
fn working_directory_ok(cwd: &str) -> bool {
    cwd == "/" || offload_shared::tree::is_normal_absolute(cwd)
}

/// A response file's bytes: the tree's file at that path (relative to the job's directory),
/// from the store.
fn read_from_tree(job: &JobRequest, store: &Store, rel: &Path) -> io::Result<Vec<u8>> {
    let want = Path::new(&job.cwd).join(rel);
    let want = normal(&want);
    let digest = job
        .tree
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::File { digest, .. } if Path::new(&e.path) == want => Some(*digest),
            _ => None,
        })
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(store.path(&digest))?;
    let mut bytes = Vec::new();
    f.take(MAX_RESPONSE_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RESPONSE_FILE {
        return Err(io::Error::other("response file too large"));
    }
    Ok(bytes)
}

/// `path` without `.` components and with `..` applied lexically (the tree's paths are
/// normal and link-free on the way, as `tree::validate` checks).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_normal_working_directories() {
        for (cwd, ok) in [
            ("/", true),
            ("/tmp/b", true),
            (".", false),
            ("", false),
            ("../../..", false),
            ("src", false),
            ("/a/../..", false),
            ("/a//b", false),
            ("/a\0b", false),
        ] {
            assert_eq!(working_directory_ok(cwd), ok, "{cwd:?}");
        }
    }

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(normal(Path::new("/a/b/./../c")), PathBuf::from("/a/c"));
        assert_eq!(normal(Path::new("/../x")), PathBuf::from("/x"));
    }
}
