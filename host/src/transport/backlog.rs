//! How far the pipeline is behind the appends: what ingest's backpressure looks at.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::{Offset, Partition};
use crate::tenant::TenantId;

/// The pipeline's backlog, as one tenant's write sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Records appended but not yet read, in the partition furthest behind.
    pub partition: u64,
    /// The tenant's own records appended but not yet read, where the transport can tell
    /// (the embedded log can; Kafka can't cheaply: its partitions mix tenants' records).
    pub tenant: Option<u64>,
}

/// Unread records per partition and per tenant, kept by a transport that sees both its
/// appends and its reads (the embedded log).
pub(crate) struct Unread {
    inner: Mutex<Inner>,
}

struct Inner {
    partitions: Vec<PartitionUnread>,
    tenants: HashMap<TenantId, u64>,
}

struct PartitionUnread {
    /// The next offset to be appended.
    end: Offset,
    /// The next offset to be read.
    read: Offset,
    /// The tenant of each unread record appended since the log opened, in offset order.
    /// (Records found unread at open count for their partition only.)
    records: VecDeque<(Offset, TenantId)>,
}

impl Unread {
    /// Partitions with `(read, end)` positions as found at open.
    pub(crate) fn new(positions: impl IntoIterator<Item = (Offset, Offset)>) -> Self {
        let partitions = positions
            .into_iter()
            .map(|(read, end)| PartitionUnread {
                end,
                read,
                records: VecDeque::new(),
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
        let fresh = (from.max(p.read)..to).map(|o| (o, tenant.clone()));
        let before = p.records.len();
        p.records.extend(fresh);
        let added = (p.records.len() - before) as u64;
        if added > 0 {
            *inner.tenants.entry(tenant.clone()).or_default() += added;
        }
    }

    /// Everything of `partition` before `next` has been read.
    pub(crate) fn read_to(&self, partition: Partition, next: Offset) {
        let mut inner = self.lock();
        let Inner {
            partitions,
            tenants,
        } = &mut *inner;
        let Some(p) = partitions.get_mut(partition as usize) else {
            return;
        };
        if next <= p.read {
            return;
        }
        p.read = next;
        while p.records.front().is_some_and(|(o, _)| *o < next) {
            let Some((_, tenant)) = p.records.pop_front() else {
                break;
            };
            if let Some(n) = tenants.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    tenants.remove(&tenant);
                }
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
                .map(|p| p.end.saturating_sub(p.read))
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
    fn unread_records_count_per_partition_and_per_tenant() {
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
        unread.read_to(0, 16);
        unread.read_to(1, 2);
        assert_eq!(unread.backlog(&a).tenant, Some(3));
        assert_eq!(unread.backlog(&b).tenant, Some(0));
        // A rewind reads old records again: nothing is counted twice.
        unread.read_to(0, 12);
        unread.read_to(0, 18);
        unread.read_to(1, 3);
        assert_eq!(
            unread.backlog(&a),
            Backlog {
                partition: 0,
                tenant: Some(0)
            }
        );
    }
}
