//! Pipelines: tenants' plugin stages between the transport and the store, with failed
//! batches kept as dead letters instead of lost.

mod alerting;
mod checkpoint;
mod dead_letter;
mod health;
mod lane;
mod partition;
mod pipelines;
mod runner;
mod stage;
mod webhook;
mod windowing;
mod worker;

use std::time::Duration;

/// Pause before retrying a failed dead-letter write, read or seek (disk full, say).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Pauses between retries of a failing store write: from 100 ms, doubling to at most 2 s,
/// so a database outage isn't hammered while a short blip costs little (and a stop is
/// still seen within 2 s).
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    /// The next pause.
    fn next(&self) -> Duration {
        self.0
    }

    /// Sleeps the next pause, and doubles the one after.
    fn pause(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

pub use alerting::{AlertStage, AlertStates};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog, DeadLetterPage};
pub use health::{PartitionHealth, PartitionStatus};
pub use pipelines::{AlertRule, Pipelines, PipelinesCell, RuleSink, TenantPipeline};
pub use runner::{Runner, RunnerParts};
pub use stage::{Stage, StageError, StageOutput};
pub use webhook::{Webhook, WebhookError};
pub use windowing::{Delivery, PartitionWindows, Watermarks};
