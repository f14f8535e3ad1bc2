//! Pipelines: tenants' plugin stages between the transport and the store, with failed
//! batches kept as dead letters instead of lost.

mod alerting;
mod checkpoint;
mod dead_letter;
mod health;
mod pipelines;
mod runner;
mod stage;
mod webhook;
mod windowing;
mod worker;

/// Pause before retrying a failed store or dead-letter write (disk full, say).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

pub use alerting::{AlertStage, AlertStates};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
pub use health::{PartitionHealth, PartitionStatus};
pub use pipelines::{AlertRule, Pipelines, RuleSink, TenantPipeline};
pub use runner::{Runner, RunnerParts};
pub use stage::{Stage, StageError, StageOutput};
pub use webhook::{Webhook, WebhookError};
pub use windowing::{Delivery, PartitionWindows, Watermarks};
