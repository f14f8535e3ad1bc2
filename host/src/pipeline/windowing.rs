//! A partition's windows: its tenants' window state and alert states, fed the points the
//! partition stores and advanced after each group of records (and by the heartbeat while
//! idle). What they emit goes to each rule's sink: rows of a rollup tier, late data, or an
//! alert plugin. The whole is exported and imported as the partition's checkpoint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Backoff;
use super::RETRY_PAUSE;
use super::alerting::AlertStates;
use super::dead_letter::{DeadLetter, DeadLetterLog};
use super::pipelines::{AlertRule, Pipelines, RuleSink, StageStates};
use crate::columns::Points;
use crate::format::{self, Checkpoint};
use crate::point::Nanos;
use crate::point::WindowResult;
use crate::store::{LateRecord, Rollup, SeriesKey, Store, StoreError, Tier};
use crate::telemetry::{Metrics, RuleLabels, TenantLabels};
use crate::tenant::TenantId;
use crate::time::now_ns;
use crate::transport::{Outbox, Outlet, Partition};
use crate::window::{Emit, LatePoint, Output, TenantWindows, WindowRow};

/// Where emitted windows go, and what delivering them needs.
pub struct Delivery<'a> {
    /// Tenants' rules and sinks.
    pub pipelines: &'a Pipelines,
    /// Where rollups, late data and alerts are stored.
    pub store: &'a dyn Store,
    /// Where what can't be stored is kept.
    pub dead_letters: &'a DeadLetterLog,
    /// Service metrics.
    pub metrics: &'a Metrics,
    /// Set when the runner stops: retries give up.
    pub stop: &'a AtomicBool,
    /// Where the partition's watermarks are published.
    pub watermarks: &'a Watermarks,
    /// The partition.
    pub partition: Partition,
    /// Where alerts and late data are published too (Kafka topics), if anywhere.
    pub outbox: Option<&'a dyn Outbox>,
}

/// The watermark of each tenant's windows on each partition, published for queries: a
/// window that ended before every partition's watermark (less grace) is final.
#[derive(Debug, Default)]
pub struct Watermarks {
    by: Mutex<HashMap<(TenantId, Partition), Nanos>>,
}

impl Watermarks {
    fn set(&self, tenant: &TenantId, partition: Partition, watermark: Nanos) {
        let mut by = self
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by.insert((tenant.clone(), partition), watermark);
    }

    /// Forgets `partition`'s watermarks: it is another member's now.
    pub fn forget(&self, partition: Partition) {
        let mut by = self
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by.retain(|(_, p), _| *p != partition);
    }

    /// The lowest watermark of `tenant`'s windows over the partitions that have them;
    /// none before any has.
    pub fn lowest(&self, tenant: &TenantId) -> Option<Nanos> {
        let by = self
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by.iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, w)| *w)
            .min()
    }
}

impl Delivery<'_> {
    /// Publishes `tenant`'s `messages` to `outlet` when there is an outbox, retrying
    /// until the brokers confirm them (or a stop).
    fn publish(&self, outlet: Outlet, tenant: &TenantId, messages: Vec<Vec<u8>>) {
        let Some(outbox) = self.outbox else {
            return;
        };
        let keyed: Vec<(&[u8], &[u8])> = messages
            .iter()
            .map(|m| (tenant.as_str().as_bytes(), m.as_slice()))
            .collect();
        while let Err(error) = outbox.publish(outlet, &keyed) {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            tracing::error!(%error, ?outlet, "Could not publish; retrying.");
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Runs `write` until it succeeds, retrying while its failure is retryable; a failure
    /// that is not (or a stop) keeps `letter` as a dead letter instead.
    fn store(
        &self,
        what: &str,
        mut write: impl FnMut() -> Result<(), StoreError>,
        letter: impl FnOnce(&StoreError) -> DeadLetter,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let Err(error) = write() else {
                return;
            };
            if !error.is_retryable() || self.stop.load(Ordering::Acquire) {
                self.dead_letters.keep(&[letter(&error)], self.stop);
                return;
            }
            tracing::error!(%error, what, pause = ?backoff.next(), "Could not store; retrying.");
            backoff.pause();
        }
    }
}

/// One tenant's windows and alert states on the partition.
struct TenantState {
    windows: TenantWindows,
    alerts: AlertStates,
}

/// The windows of every tenant on one partition.
#[derive(Default)]
pub struct PartitionWindows {
    tenants: HashMap<TenantId, TenantState>,
}

impl PartitionWindows {
    /// Adds stored points to their tenants' windows; values late beyond grace are stored
    /// as late data.
    /// Points in columns only are made first.
    pub fn observe(&mut self, d: &Delivery<'_>, batches: &mut [(TenantId, Points)]) {
        for (tenant, points) in batches {
            let Some(settings) = d.pipelines.get(tenant).and_then(|p| p.windows.as_ref()) else {
                continue;
            };
            let points = match points.make() {
                Ok(points) => &*points,
                Err(error) => {
                    // Columns only are Sluice's own or checked whole (`Points::in_columns`):
                    // not expected.
                    tracing::error!(%tenant, %error, "Stored points don't make for the windows; passed over.");
                    continue;
                }
            };
            let state = self
                .tenants
                .entry(tenant.clone())
                .or_insert_with(|| TenantState {
                    windows: TenantWindows::new(settings.clone()),
                    alerts: AlertStates::default(),
                });
            let w = &mut state.windows;
            let future_before = w.counts().future;
            let now = now_ns();
            let mut out = Output::default();
            for point in points {
                w.record(point, now, &mut out);
            }
            if w.counts().future > future_before {
                d.metrics
                    .window_future_points
                    .get_or_create(&TenantLabels {
                        tenant: tenant.to_string(),
                    })
                    .inc_by(w.counts().future - future_before);
            }
            if !out.late.is_empty() {
                store_late(d, tenant, w, &out.late);
            }
        }
    }

    /// Advances every tenant's windows (by the wall clock too, when the partition is
    /// `idle`) and delivers what they emit; whether anything changed (a window emitted, a
    /// watermark moved).
    pub fn advance(&mut self, d: &Delivery<'_>, idle: bool, plugins: &mut StageStates) -> bool {
        let now = now_ns();
        let mut changed = false;
        for (tenant, state) in &mut self.tenants {
            let mut out = Output::default();
            let before = state.windows.watermark();
            state.windows.advance(now, idle, &mut out);
            let watermark = state.windows.watermark();
            d.watermarks.set(tenant, d.partition, watermark);
            changed |= watermark != before || !out.windows.is_empty();
            let Some(pipeline) = d.pipelines.get(tenant) else {
                continue;
            };
            // Rows come rule by rule: one delivery per rule.
            let mut rows = out.windows.into_iter().peekable();
            while let Some(first) = rows.next() {
                let index = first.rule;
                let mut batch = vec![first];
                while let Some(row) = rows.next_if(|r| r.rule == index) {
                    batch.push(row);
                }
                let (Some(sink), Some(rule)) =
                    (pipeline.sinks.get(index), state.windows.rules().get(index))
                else {
                    continue;
                };
                let _span = tracing::debug_span!("windows", %tenant, rule = %rule.name).entered();
                match sink {
                    RuleSink::Tier { name, retention } => {
                        let tier = Tier {
                            name,
                            retention: *retention,
                        };
                        store_rollups(d, tenant, tier, &rule.name, &batch);
                    }
                    RuleSink::Alert(alert) => {
                        let plugin_state =
                            plugins.named(alert.stage.name(), || alert.stage.new_state());
                        let states = (&state.alerts, &plugin_state);
                        deliver_alerts(d, tenant, &rule.name, alert, states, &batch);
                    }
                }
            }
        }
        changed
    }

    /// Whether no tenant has window state here.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Puts every tenant's windows and alert states in `checkpoint`.
    pub fn export(&self, checkpoint: &mut Checkpoint) {
        for (tenant, state) in &self.tenants {
            let entry = checkpoint.tenant_mut(tenant.as_str());
            entry.windows = state.windows.export().unwrap_or_default();
            entry.alerts = state.alerts.export();
        }
    }

    /// The windows of `checkpoint`. What can't be taken back (a tenant gone, a rule
    /// changed, an unreadable part) starts empty, and is logged.
    pub fn import(pipelines: &Pipelines, checkpoint: &Checkpoint) -> Self {
        let mut out = Self::default();
        for entry in checkpoint.tenants.iter().filter(|t| !t.windows.is_empty()) {
            let (windows, alerts) = (&entry.windows, &entry.alerts);
            let tenant = TenantId::new(&entry.tenant);
            let Some(settings) = pipelines.get(&tenant).and_then(|p| p.windows.clone()) else {
                tracing::warn!(%tenant, "Window state of a tenant without rules dropped.");
                continue;
            };
            let windows = match TenantWindows::import(settings.clone(), windows) {
                Ok((windows, reset)) => {
                    for rule in reset {
                        tracing::warn!(%tenant, rule, "Rule changed since the checkpoint; its windows start empty.");
                    }
                    windows
                }
                Err(error) => {
                    tracing::error!(%tenant, %error, "Window state unreadable; windows start empty.");
                    TenantWindows::new(settings)
                }
            };
            let alerts = AlertStates::import(alerts).unwrap_or_else(|error| {
                tracing::error!(%tenant, %error, "Alert states unreadable; every alert starts ok.");
                AlertStates::default()
            });
            out.tenants.insert(tenant, TenantState { windows, alerts });
        }
        out
    }
}

/// Stores late values as late data, and counts them.
fn store_late(d: &Delivery<'_>, tenant: &TenantId, w: &TenantWindows, late: &[LatePoint]) {
    let records: Vec<LateRecord> = late
        .iter()
        .filter_map(|l| {
            Some(LateRecord {
                rule: w.rules().get(l.rule)?.name.clone(),
                series: SeriesKey {
                    measurement: l.measurement.clone(),
                    field: l.field.clone(),
                    tags: l.tags.clone(),
                },
                timestamp: l.timestamp,
                value: l.value,
            })
        })
        .collect();
    for r in &records {
        d.metrics
            .window_late_points
            .get_or_create(&RuleLabels {
                tenant: tenant.to_string(),
                rule: r.rule.clone(),
            })
            .inc();
    }
    d.publish(
        Outlet::Late,
        tenant,
        records
            .iter()
            .map(|r| format::late_json(tenant, r))
            .collect(),
    );
    d.store(
        "late data",
        || {
            let retention = d.pipelines.retention(tenant);
            d.store.write_late(tenant, retention, &records)
        },
        |error| {
            DeadLetter::refused(
                Some(tenant),
                "late",
                &format!("late data not stored: {error}"),
                records
                    .iter()
                    .map(|r| format!("{} {}={} {}", r.rule, r.series.field, r.value, r.timestamp))
                    .collect(),
            )
            .derived()
        },
    );
}

/// Upserts a rule's emitted windows into its tier (a retraction deletes its row).
fn store_rollups(
    d: &Delivery<'_>,
    tenant: &TenantId,
    tier: Tier<'_>,
    rule: &str,
    rows: &[WindowRow],
) {
    let series = |r: &WindowRow| SeriesKey {
        measurement: r.group.measurement.clone(),
        field: r.group.field.clone(),
        tags: r.group.tags.clone(),
    };
    let retracted: Vec<_> = rows
        .iter()
        .filter(|r| r.emit == Emit::Retracted)
        .map(|r| (series(r), r.start))
        .collect();
    let upserts: Vec<_> = rows
        .iter()
        .filter(|r| r.emit != Emit::Retracted)
        .map(|r| Rollup {
            series: series(r),
            start: r.start,
            end: r.end,
            values: r.values.clone(),
        })
        .collect();
    d.metrics
        .window_rows
        .get_or_create(&RuleLabels {
            tenant: tenant.to_string(),
            rule: rule.to_owned(),
        })
        .inc_by(rows.len() as u64);
    d.store(
        "rollups",
        || d.store.write_rollups(tenant, tier, &upserts, &retracted),
        |error| {
            DeadLetter::refused(
                Some(tenant),
                &format!("rollups/{rule}"),
                &format!("rollup rows not stored: {error}"),
                rows.iter()
                    .map(|r| {
                        format!(
                            "{}.{} [{}, {})",
                            r.group.measurement, r.group.field, r.start, r.end
                        )
                    })
                    .collect(),
            )
            .derived()
        },
    );
}

/// Evaluates a rule's final windows with its alert plugin and delivers the alerts: log,
/// store, webhook.
fn deliver_alerts(
    d: &Delivery<'_>,
    tenant: &TenantId,
    rule: &str,
    alert: &AlertRule,
    (states, plugin_state): (&AlertStates, &std::sync::Arc<crate::plugin::StageState>),
    rows: &[WindowRow],
) {
    let closed: Vec<_> = rows
        .iter()
        .filter(|r| r.emit == Emit::Final)
        .map(|r| window_result(rule, r))
        .collect();
    if closed.is_empty() {
        return;
    }
    let alerts = match alert.stage.process(states, closed, plugin_state) {
        Ok(alerts) => alerts,
        Err(error) => {
            tracing::error!(%error, %tenant, rule, "Closed windows lost: dead letter not kept.");
            return;
        }
    };
    if alerts.is_empty() {
        return;
    }
    for a in &alerts {
        tracing::warn!(%tenant, rule = %a.rule, series = %a.series, state = %a.state, value = a.value, "{}", a.message);
    }
    d.store(
        "alerts",
        || {
            let retention = d.pipelines.retention(tenant);
            d.store.write_alerts(tenant, retention, &alerts)
        },
        |error| {
            DeadLetter::refused(
                Some(tenant),
                &format!("alerts/{rule}"),
                &format!("alerts not stored: {error}"),
                alerts.iter().map(|a| a.message.clone()).collect(),
            )
            .derived()
        },
    );
    d.publish(
        Outlet::Alerts,
        tenant,
        alerts.iter().map(format::encode_alert).collect(),
    );
    if let Some(webhook) = &alert.webhook {
        webhook.send(tenant, &alerts);
    }
}

/// A window row as the WIT type alert plugins take (the plugin boundary).
fn window_result(rule: &str, row: &WindowRow) -> WindowResult {
    use crate::point::{Aggregate, AlertState, Series, Tag};
    WindowResult {
        rule: rule.to_owned(),
        series: Series {
            measurement: row.group.measurement.as_str().into(),
            tags: row
                .group
                .tags
                .iter()
                .map(|(key, value)| Tag {
                    key: key.as_str().into(),
                    value: value.as_str().into(),
                })
                .collect(),
        },
        field: row.group.field.clone(),
        window_start: row.start,
        window_end: row.end,
        aggregates: row
            .values
            .iter()
            .map(|(f, value)| Aggregate {
                name: f.to_string(),
                value: *value,
            })
            .collect(),
        state: AlertState::Ok,
    }
}
