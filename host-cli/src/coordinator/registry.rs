//! The workers of a build, by [`WorkerId`]: they may be added (found, or named on the
//! command line) and removed (gone) while the build runs. The scheduler holds their slots;
//! this holds how to reach them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::executor::{Executor, WorkerId};

/// The live backends.
#[derive(Debug, Default)]
pub struct Registry {
    workers: RwLock<BTreeMap<WorkerId, Arc<dyn Executor>>>,
}

impl Registry {
    /// Adds (or replaces) a backend; false if one with its id was there.
    pub fn insert(&self, exec: Arc<dyn Executor>) -> bool {
        let mut w = self.workers.write().unwrap_or_else(|p| p.into_inner());
        w.insert(exec.id().clone(), exec).is_none()
    }

    /// Removes `id`; jobs running there keep their handle until they end.
    pub fn remove(&self, id: &WorkerId) -> Option<Arc<dyn Executor>> {
        let mut w = self.workers.write().unwrap_or_else(|p| p.into_inner());
        w.remove(id)
    }

    /// The backend `id`, if it is still there.
    pub fn get(&self, id: &WorkerId) -> Option<Arc<dyn Executor>> {
        let w = self.workers.read().unwrap_or_else(|p| p.into_inner());
        w.get(id).cloned()
    }

    /// Every backend, in id order.
    pub fn all(&self) -> Vec<Arc<dyn Executor>> {
        let w = self.workers.read().unwrap_or_else(|p| p.into_inner());
        w.values().cloned().collect()
    }
}
