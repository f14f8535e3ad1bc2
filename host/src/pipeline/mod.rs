//! Pipeline stages: a plugin slot applied to batches, with failed batches kept as dead
//! letters instead of lost.

mod alerting;
mod dead_letter;
mod stage;

pub use alerting::{AlertStage, AlertStates};
pub use dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
pub use stage::{Stage, StageError, StageOutput};
