//! Pipelines: tenants' plugin stages between the transport and the store, with failed
//! batches kept as dead letters instead of lost.

mod alerting;
mod dead_letter;
mod runner;
mod stage;

pub use alerting::{AlertStage, AlertStates};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
pub use runner::{GROUP, Pipelines, Progress, Runner, RunnerParts};
pub use stage::{Stage, StageError, StageOutput};
