//! Values computed at most once per key for the whole build, however many compiles ask at
//! the same time: the first caller computes, the others wait for its result.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// A map of once-computed values.
#[derive(Debug)]
pub struct OnceMap<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> OnceMap<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key`, computed by `init` if no caller has computed it yet.
    pub async fn get_or_init<F, Fut>(&self, key: K, init: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self.lock().entry(key).or_default().clone();
        cell.get_or_init(init).await.clone()
    }

    /// The value for `key`, if it has been computed.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key)?.get().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn computes_once_per_key() {
        let map: OnceMap<u32, u32> = OnceMap::default();
        let runs = AtomicUsize::new(0);
        let init = |v| {
            let runs = &runs;
            move || async move {
                runs.fetch_add(1, Ordering::Relaxed);
                v
            }
        };
        assert_eq!(map.get(&1), None);
        let (a, b) = tokio::join!(map.get_or_init(1, init(10)), map.get_or_init(1, init(11)));
        assert_eq!((a, b), (10, 10));
        assert_eq!(map.get_or_init(2, init(20)).await, 20);
        assert_eq!(map.get(&1), Some(10));
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    }
}
