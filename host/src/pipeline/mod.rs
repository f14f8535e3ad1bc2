//! Pipelines: tenants' plugin stages between the transport and the store, with failed
//! batches kept as dead letters instead of lost.

mod alerting;
mod dead_letter;
mod health;
mod runner;
mod stage;
mod webhook;

pub use alerting::{AlertStage, AlertStates};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
pub use health::{PartitionHealth, PartitionStatus};
pub use runner::{
    AlertRule, GROUP, Pipelines, Progress, Runner, RunnerParts, TenantPipeline, resume_offsets,
};
pub use stage::{Stage, StageError, StageOutput};
pub use webhook::{Webhook, WebhookError};
