//! The cores this process may run on, read once: `available_parallelism` reads the cgroup's
//! CPU quota from three files on every call, and the callers here ask per query and per
//! plugin run.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

/// The cores this process may run on (its cgroup's quota, else the machine's); 1 when
/// that can't be read.
pub fn cores() -> NonZeroUsize {
    static CORES: OnceLock<NonZeroUsize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
}
