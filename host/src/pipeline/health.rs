//! Health of the partition workers. A panic while processing records is caught, counted
//! and shown (log, `/metrics`, `/health`), never silent: the partition goes on, and the
//! record that caused it is kept as a dead letter.

use std::sync::{Mutex, PoisonError};

use crate::time::now_ns;
use crate::transport::Partition;

/// What went wrong on one partition since the process started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: Partition,
    /// Panics caught while processing its records.
    pub panics: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// When it happened, nanoseconds since the epoch.
    pub last_panic_at_ns: Option<i64>,
}

/// Every partition worker's status.
pub struct PartitionHealth {
    partitions: Vec<Mutex<PartitionStatus>>,
}

impl PartitionHealth {
    /// `partitions` healthy partitions.
    pub fn new(partitions: u32) -> Self {
        Self {
            partitions: (0..partitions)
                .map(|partition| {
                    Mutex::new(PartitionStatus {
                        partition,
                        ..PartitionStatus::default()
                    })
                })
                .collect(),
        }
    }

    /// Notes a panic on `partition`.
    pub fn record_panic(&self, partition: Partition, message: &str) {
        if let Some(status) = self.partitions.get(partition as usize) {
            let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
            status.panics += 1;
            status.last_panic = Some(message.to_owned());
            status.last_panic_at_ns = Some(now_ns());
        }
    }

    /// The partitions that had a panic: the service is degraded while there are any (a bug
    /// to look at: the dead letters hold the records it happened on).
    pub fn troubled(&self) -> Vec<PartitionStatus> {
        self.partitions
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .filter(|s| s.panics > 0)
            .collect()
    }
}

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
