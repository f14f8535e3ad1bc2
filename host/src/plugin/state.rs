//! Host-owned key-value state of a pipeline stage, behind the WIT `state` import.
//!
//! Plugins keep nothing between batches in their own memory (each batch may run on a fresh
//! instance of a new version), so what must outlive a batch lives here. Writes of a call go
//! to an overlay that is committed only when the call succeeds: a dead-lettered batch leaves
//! the state exactly as it was, so replaying it gives the same result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Bounds on one stage's state.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Most keys a stage may hold.
    pub max_keys: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        // Sized for per-series samples of a large tenant (100k series × a few fields) while
        // keeping a misbehaving plugin well under a gigabyte.
        Self {
            max_keys: 1_000_000,
            max_value_bytes: 4096,
        }
    }
}

/// The committed state of one stage.
#[derive(Debug, Default)]
pub struct StageState {
    entries: Mutex<HashMap<String, Vec<u8>>>,
    limits: StateLimits,
}

impl StageState {
    /// An empty state with `limits`.
    pub fn new(limits: StateLimits) -> Self {
        Self {
            entries: Mutex::default(),
            limits,
        }
    }

    /// The committed entries as bytes, for a checkpoint ([`StageState::import`]).
    pub fn export(&self) -> Vec<u8> {
        let entries = self.lock();
        let mut sorted: Vec<(&String, &Vec<u8>)> = entries.iter().collect();
        sorted.sort_unstable();
        postcard::to_stdvec(&sorted).unwrap_or_default()
    }

    /// A state holding the entries `bytes` saved by [`StageState::export`], with `limits`.
    ///
    /// # Errors
    /// When `bytes` are not saved entries.
    pub fn import(bytes: &[u8], limits: StateLimits) -> Result<Self, postcard::Error> {
        let entries: Vec<(String, Vec<u8>)> = postcard::from_bytes(bytes)?;
        Ok(Self {
            entries: Mutex::new(entries.into_iter().collect()),
            limits,
        })
    }

    /// The limits.
    pub fn limits(&self) -> StateLimits {
        self.limits
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The committed value of `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // A panic while holding the lock can't leave the map half-updated (every update is a
        // single insert/remove), so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The uncommitted writes of one call.
#[derive(Debug)]
pub struct StateOverlay {
    base: Arc<StageState>,
    writes: HashMap<String, Option<Vec<u8>>>,
}

impl StateOverlay {
    /// Starts a call's overlay over `base`.
    pub fn new(base: Arc<StageState>) -> Self {
        Self {
            base,
            writes: HashMap::new(),
        }
    }

    /// The value as this call sees it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(pending) => pending.clone(),
            None => self.base.get(key),
        }
    }

    /// Records a write, refusing it when it breaks the stage's limits.
    ///
    /// # Errors
    /// A message for the guest naming the limit.
    pub fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let limits = self.base.limits;
        if value.len() > limits.max_value_bytes {
            return Err(format!(
                "state value for `{key}` is {} bytes, over the limit of {}",
                value.len(),
                limits.max_value_bytes
            ));
        }
        if !self.writes.contains_key(&key) {
            let new_keys = self.writes.values().filter(|v| v.is_some()).count();
            if self.base.len() + new_keys >= limits.max_keys && self.base.get(&key).is_none() {
                return Err(format!(
                    "state is full: {} keys is the limit of this stage",
                    limits.max_keys
                ));
            }
        }
        self.writes.insert(key, Some(value));
        Ok(())
    }

    /// Records a removal.
    pub fn remove(&mut self, key: String) {
        self.writes.insert(key, None);
    }

    /// Applies the writes to the stage state (the call succeeded).
    pub fn commit(self) {
        if self.writes.is_empty() {
            return;
        }
        let mut entries = self.base.lock();
        for (key, value) in self.writes {
            match value {
                Some(v) => entries.insert(key, v),
                None => entries.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_seen_by_the_call_and_applied_only_on_commit() {
        let base = Arc::new(StageState::default());
        let mut call = StateOverlay::new(base.clone());
        call.set("a".into(), vec![1]).expect("set");
        assert_eq!(call.get("a"), Some(vec![1]));
        assert_eq!(base.get("a"), None, "not visible before commit");
        call.commit();
        assert_eq!(base.get("a"), Some(vec![1]));

        let mut failed = StateOverlay::new(base.clone());
        failed.remove("a".into());
        assert_eq!(failed.get("a"), None);
        drop(failed); // the call failed: nothing committed
        assert_eq!(base.get("a"), Some(vec![1]));
    }

    #[test]
    fn exported_entries_import_back() {
        let base = Arc::new(StageState::default());
        let mut call = StateOverlay::new(base.clone());
        call.set("b".into(), vec![2, 3]).expect("set");
        call.set("a".into(), vec![]).expect("set");
        call.commit();
        let back = StageState::import(&base.export(), StateLimits::default()).expect("import");
        assert_eq!(back.get("a"), Some(vec![]));
        assert_eq!(back.get("b"), Some(vec![2, 3]));
        assert_eq!(back.len(), 2);
        assert!(StageState::import(b"\xff\xff", StateLimits::default()).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let base = Arc::new(StageState::new(StateLimits {
            max_keys: 2,
            max_value_bytes: 3,
        }));
        let mut call = StateOverlay::new(base);
        assert!(call.set("big".into(), vec![0; 4]).is_err());
        call.set("a".into(), vec![1]).expect("first key");
        call.set("b".into(), vec![1]).expect("second key");
        call.set("a".into(), vec![2])
            .expect("overwrite is not a new key");
        let err = call.set("c".into(), vec![1]).expect_err("third key");
        assert!(err.contains("full"), "{err}");
    }
}
