//! Spare job roots: the toolchain's part of a job root (its files, links and directories,
//! and `/tmp`), made in the background once a job of that toolchain has been answered (or
//! the toolchain was asked about), so that the next job of that toolchain only adds the
//! host's tree ([`JobRoot::create_in`]). On disk the toolchain's part is most of a root's
//! cost (its `mkdir`s and `symlink`s).
//!
//! A spare is made fresh under `jobs/` (as job roots are: the worker clears `jobs/` at every
//! start), through a handle with `O_NOFOLLOW` as a whole root is, from the worker's own
//! prepared toolchain only; no job has run in it, and it is handed out once, by value
//! ([`Spares::take`]): a job's root is removed after its job, never given back. The pool
//! holds at most `per_toolchain` spares of one toolchain and `max` in all (the oldest goes
//! first); [`Spares::close`] (at shutdown, and when the pool is dropped) removes every
//! spare, and one finished after that is removed at once.
//!
//! [`JobRoot::create_in`]: crate::jobroot::JobRoot::create_in

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::jobroot::SpareRoot;
use crate::toolchain::Toolchain;

/// What a spare was made for: the prepared toolchain (by identity) and whether it holds
/// the charset modules.
type Key = (usize, bool);

fn key(toolchain: &Arc<Toolchain>, charsets: bool) -> Key {
    (Arc::as_ptr(toolchain) as usize, charsets)
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first.
    ready: VecDeque<SpareRoot>,
    /// Spares being made now.
    building: Vec<Key>,
    closed: bool,
}

impl State {
    fn count(&self, k: Key) -> usize {
        self.ready.iter().filter(|s| s.fits_key(k)).count()
            + self.building.iter().filter(|b| **b == k).count()
    }
}

/// The worker's spare roots.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    per_toolchain: usize,
    max: usize,
    next: AtomicU64,
    state: Mutex<State>,
}

impl Spares {
    /// Spares made in `dir` (the worker's `jobs/`): at most `per_toolchain` for one
    /// toolchain, `max` in all; none at all when `per_toolchain` is 0.
    pub fn new(dir: PathBuf, per_toolchain: usize, max: usize) -> Spares {
        Spares {
            dir,
            per_toolchain,
            max: max.max(per_toolchain),
            next: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A spare made for `toolchain` and `charsets`, taken out of the pool (no other job
    /// gets it); `None` when there is none.
    pub fn take(&self, toolchain: &Arc<Toolchain>, charsets: bool) -> Option<SpareRoot> {
        let k = key(toolchain, charsets);
        let mut st = self.lock();
        let i = st.ready.iter().position(|s| s.fits_key(k))?;
        st.ready.remove(i)
    }

    /// Makes one spare for `toolchain` and `charsets` unless the pool has enough of them
    /// (or is closed). Blocking: call from a blocking thread.
    pub fn replenish(&self, toolchain: &Arc<Toolchain>, charsets: bool) {
        let k = key(toolchain, charsets);
        let evicted = {
            let mut st = self.lock();
            if st.closed || st.count(k) >= self.per_toolchain {
                return;
            }
            st.building.push(k);
            // Room for it: the oldest spare of another toolchain goes.
            if st.ready.len() + st.building.len() > self.max {
                st.ready.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            remove(old);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let made = SpareRoot::create(
            &self.dir.join(format!("spare-{n}")),
            toolchain.clone(),
            charsets,
        );
        let mut st = self.lock();
        if let Some(i) = st.building.iter().position(|b| *b == k) {
            st.building.swap_remove(i);
        }
        match made {
            Ok(spare) if !st.closed => st.ready.push_back(spare),
            Ok(spare) => {
                drop(st);
                remove(spare);
            }
            Err(e) => tracing::warn!("cannot make a spare job root: {e}"),
        }
    }

    /// Spares ready now.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Removes every spare; none is made or kept from now on. Blocking.
    pub fn close(&self) {
        let all: Vec<SpareRoot> = {
            let mut st = self.lock();
            st.closed = true;
            st.ready.drain(..).collect()
        };
        all.into_iter().for_each(remove);
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.close();
    }
}

fn remove(spare: SpareRoot) {
    let path = spare.path().to_owned();
    if let Err(e) = spare.remove() {
        tracing::warn!("cannot remove the spare root {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobroot::JobRoot;
    use crate::jobroot::tests::{listing, toolchain};
    use crate::store::Store;

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_spare_is_handed_out_once_and_only_for_its_toolchain() {
        let t = tempfile::tempdir().unwrap();
        let jobs = t.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        let a = Arc::new(toolchain(&t.path().join("a"), "/usr/bin/cc"));
        let b = Arc::new(toolchain(&t.path().join("b"), "/usr/bin/cc"));
        let spares = Spares::new(jobs.clone(), 1, 2);
        assert!(spares.take(&a, false).is_none());
        spares.replenish(&a, false);
        spares.replenish(&a, false);
        assert_eq!(spares.ready(), 1, "one per toolchain");
        assert!(spares.take(&b, false).is_none(), "another toolchain's");
        assert!(spares.take(&a, true).is_none(), "made without the charsets");
        let s = spares.take(&a, false).unwrap();
        assert!(spares.take(&a, false).is_none(), "handed out once");
        // The job's root is the spare's directory, removed after the job, never back.
        let store = Store::open(&t.path().join("store"), 1 << 20).unwrap();
        let root = JobRoot::create_in(s, &[], &store, None).unwrap();
        std::fs::write(root.root.join("tmp/left-by-the-job"), b"").unwrap();
        let used = root.root.clone();
        root.remove().unwrap();
        spares.replenish(&a, false);
        let fresh = spares.take(&a, false).unwrap();
        assert_ne!(
            fresh.path(),
            used,
            "a spare is never a used root's directory"
        );
        assert!(!used.exists());
        assert!(
            listing(fresh.path())
                .keys()
                .all(|p| !p.ends_with("left-by-the-job"))
        );
        fresh.remove().unwrap();
        assert!(entries(&jobs).is_empty());
    }

    #[test]
    fn the_pool_is_bounded_and_closing_it_removes_every_spare() {
        let t = tempfile::tempdir().unwrap();
        let jobs = t.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        let tcs: Vec<Arc<Toolchain>> = (0..3)
            .map(|i| Arc::new(toolchain(&t.path().join(format!("t{i}")), "/usr/bin/cc")))
            .collect();
        let spares = Spares::new(jobs.clone(), 2, 3);
        for tc in &tcs {
            spares.replenish(tc, false);
            spares.replenish(tc, false);
        }
        assert_eq!(spares.ready(), 3, "at most 3 in all");
        assert_eq!(entries(&jobs).len(), 3, "the evicted ones are removed");
        assert!(spares.take(&tcs[2], false).is_some(), "the newest stay");
        assert_eq!(entries(&jobs).len(), 2, "a spare dropped unused is removed");
        spares.close();
        assert!(entries(&jobs).is_empty(), "{:?}", entries(&jobs));
        spares.replenish(&tcs[0], false);
        assert!(entries(&jobs).is_empty(), "none made once closed");
        assert!(spares.take(&tcs[0], false).is_none());
        // Dropping the pool removes what it holds.
        let again = Spares::new(jobs.clone(), 1, 1);
        again.replenish(&tcs[1], false);
        assert_eq!(entries(&jobs).len(), 1);
        drop(again);
        assert!(entries(&jobs).is_empty());
        // None at all when there are no slots to make them for.
        let none = Spares::new(jobs.clone(), 0, 0);
        none.replenish(&tcs[1], false);
        assert!(entries(&jobs).is_empty());
    }
}
