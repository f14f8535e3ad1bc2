//! Warm instances of one plugin version, reused across batches.
//!
//! Instantiating a component costs from ~25 µs (a small Rust filter) to milliseconds (an
//! interpreter-based Python or JavaScript component), more than the batch itself. So an
//! instance that finished a batch cleanly goes back to its version's pool and runs the next
//! one; an instance whose call failed in any way is dropped, so a failed batch leaves no
//! trace in the next, and a new version starts with an empty pool, so a swap leaves none
//! either. The WIT contract already tells plugins not to keep state in their own memory.
//!
//! Memory is bounded twice: each version keeps at most a few idle instances (one per core,
//! as more never run at once on this machine's threads), and the whole process keeps at most
//! [`RuntimeConfig::max_warm_instances`](super::RuntimeConfig) idle instances: past that an
//! instance is dropped after its call, and the next call instantiates again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::Store;

use super::bindings::alert::{Alert, AlertPre};
use super::bindings::filter::{Filter, FilterPre};
use super::bindings::transform::{Transform, TransformPre};
use super::ctx::PluginCtx;

/// A linked world whose instances can be made in a store.
pub(super) trait WorldPre {
    /// The typed instance of the world.
    type Instance;
    /// Instantiates the component in `store`.
    fn instantiate(&self, store: &mut Store<PluginCtx>) -> wasmtime::Result<Self::Instance>;
}

/// Implements [`WorldPre`] for a bindgen-generated `*Pre` type.
macro_rules! world_pre {
    ($pre:ident, $instance:ident) => {
        impl WorldPre for $pre<PluginCtx> {
            type Instance = $instance;
            fn instantiate(
                &self,
                store: &mut Store<PluginCtx>,
            ) -> wasmtime::Result<Self::Instance> {
                $pre::instantiate(self, store)
            }
        }
    };
}
world_pre!(FilterPre, Filter);
world_pre!(TransformPre, Transform);
world_pre!(AlertPre, Alert);

/// A live instance and the store that owns it.
pub(super) struct Warm<I> {
    pub(super) store: Store<PluginCtx>,
    pub(super) instance: I,
}

/// The process-wide count of idle instances, shared by every pool.
#[derive(Debug)]
pub(super) struct WarmBudget {
    left: AtomicUsize,
}

impl WarmBudget {
    pub(super) fn new(max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(max_idle),
        })
    }

    fn try_take(&self) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

/// One version's linked component and its idle instances.
pub(super) struct Pool<P: WorldPre> {
    pub(super) pre: P,
    idle: Mutex<Vec<Warm<P::Instance>>>,
    max_idle: usize,
    budget: Arc<WarmBudget>,
}

impl<P: WorldPre> Pool<P> {
    pub(super) fn new(pre: P, max_idle: usize, budget: Arc<WarmBudget>) -> Self {
        Self {
            pre,
            idle: Mutex::new(Vec::new()),
            max_idle,
            budget,
        }
    }

    /// An idle instance, if there is one.
    pub(super) fn take(&self) -> Option<Warm<P::Instance>> {
        let warm = self.lock().pop();
        if warm.is_some() {
            self.budget.give(1);
        }
        warm
    }

    /// Keeps an instance whose call succeeded for the next call, unless this version or the
    /// process already holds enough idle ones (then it is dropped).
    pub(super) fn give_back(&self, warm: Warm<P::Instance>) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle && self.budget.try_take() {
            idle.push(warm);
        }
    }

    /// Idle instances now.
    pub(super) fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm<P::Instance>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: WorldPre> Drop for Pool<P> {
    fn drop(&mut self) {
        self.budget.give(self.lock().len());
    }
}
