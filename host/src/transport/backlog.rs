//! How far the pipeline is behind the appends: what ingest's backpressure looks at.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::{Offset, Partition};
use crate::tenant::TenantId;

/// The pipeline's backlog, as one tenant's write sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Records appended but not yet processed, in the partition furthest behind.
    pub partition: u64,
    /// The tenant's own records appended but not yet processed, where the transport can
    /// tell (the embedded log can; Kafka can't cheaply: its partitions mix tenants'
    /// records, and other processes append and consume them).
    pub tenant: Option<u64>,
}

/// Unprocessed records per partition and per tenant, kept by a transport that sees its
/// appends, its reads and the pipeline's progress (the embedded log).
pub(crate) struct Unread {
    inner: Mutex<Inner>,
}

struct Inner {
    partitions: Vec<PartitionUnread>,
    /// Each tenant's unprocessed records, over all partitions.
    tenants: HashMap<TenantId, u64>,
}

struct PartitionUnread {
    /// The next offset to be appended.
    end: Offset,
    /// The next offset to be read.
    read: Offset,
    /// Each tenant's records appended since the log opened and not yet processed, in
    /// offset order. (Records found at open count for their partition until read.)
    unprocessed: HashMap<TenantId, VecDeque<Offset>>,
}

impl PartitionUnread {
    /// The first record not yet processed: the pipeline is behind from there.
    fn behind_from(&self) -> Offset {
        self.unprocessed
            .values()
            .filter_map(|offsets| offsets.front().copied())
            .fold(self.read, Offset::min)
    }
}

impl Unread {
    /// Partitions with `(read, end)` positions as found at open.
    pub(crate) fn new(positions: impl IntoIterator<Item = (Offset, Offset)>) -> Self {
        let partitions = positions
            .into_iter()
            .map(|(read, end)| PartitionUnread {
                end,
                read,
                unprocessed: HashMap::new(),
            })
            .collect();
        Self {
            inner: Mutex::new(Inner {
                partitions,
                tenants: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records of `tenant` were appended to `partition` at offsets `from..to`.
    pub(crate) fn appended(
        &self,
        partition: Partition,
        tenant: &TenantId,
        from: Offset,
        to: Offset,
    ) {
        let mut inner = self.lock();
        let Some(p) = inner.partitions.get_mut(partition as usize) else {
            return;
        };
        p.end = p.end.max(to);
        let offsets = p.unprocessed.entry(tenant.clone()).or_default();
        let before = offsets.len();
        offsets.extend(from..to);
        let added = (offsets.len() - before) as u64;
        if added > 0 {
            *inner.tenants.entry(tenant.clone()).or_default() += added;
        }
    }

    /// Everything of `partition` before `next` has been read.
    pub(crate) fn read_to(&self, partition: Partition, next: Offset) {
        if let Some(p) = self.lock().partitions.get_mut(partition as usize) {
            p.read = p.read.max(next);
        }
    }

    /// `tenant`'s records of `partition` before `next` have been processed.
    pub(crate) fn processed(&self, partition: Partition, tenant: &TenantId, next: Offset) {
        let mut inner = self.lock();
        let Inner {
            partitions,
            tenants,
        } = &mut *inner;
        let Some(offsets) = partitions
            .get_mut(partition as usize)
            .and_then(|p| p.unprocessed.get_mut(tenant))
        else {
            return;
        };
        let before = offsets.len();
        while offsets.front().is_some_and(|o| *o < next) {
            offsets.pop_front();
        }
        let done = (before - offsets.len()) as u64;
        if let Some(n) = tenants.get_mut(tenant) {
            *n = n.saturating_sub(done);
            if *n == 0 {
                tenants.remove(tenant);
            }
        }
    }

    /// The backlog `tenant`'s write sees.
    pub(crate) fn backlog(&self, tenant: &TenantId) -> Backlog {
        let inner = self.lock();
        Backlog {
            partition: inner
                .partitions
                .iter()
                .map(|p| p.end.saturating_sub(p.behind_from()))
                .max()
                .unwrap_or(0),
            tenant: Some(inner.tenants.get(tenant).copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprocessed_records_count_per_partition_and_per_tenant() {
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        // Partition 0 opened with 5 unread records of unknown tenants.
        let unread = Unread::new([(10, 15), (0, 0)]);
        assert_eq!(
            unread.backlog(&a),
            Backlog {
                partition: 5,
                tenant: Some(0)
            }
        );
        unread.appended(0, &a, 15, 18);
        unread.appended(1, &b, 0, 2);
        unread.appended(1, &a, 2, 3);
        assert_eq!(unread.backlog(&a).partition, 8);
        assert_eq!(unread.backlog(&a).tenant, Some(4));
        assert_eq!(unread.backlog(&b).tenant, Some(2));
        // Read is not processed: a tenant's lane may be behind the partition's reader.
        unread.read_to(0, 18);
        unread.read_to(1, 3);
        assert_eq!(unread.backlog(&a).tenant, Some(4));
        assert_eq!(
            unread.backlog(&a).partition,
            3,
            "a's records of partition 0"
        );
        unread.processed(1, &b, 2);
        unread.processed(0, &a, 16);
        assert_eq!(unread.backlog(&a).tenant, Some(3));
        assert_eq!(unread.backlog(&b).tenant, Some(0));
        // Progress noted again, or behind, counts nothing twice.
        unread.processed(0, &a, 12);
        unread.processed(0, &a, 16);
        unread.processed(0, &a, 18);
        unread.processed(1, &a, 3);
        assert_eq!(
            unread.backlog(&a),
            Backlog {
                partition: 0,
                tenant: Some(0)
            }
        );
    }
}
