//! Each tenant's pipeline: its plugin stages, in order, and its window rules with where
//! each rule's windows go.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use super::alerting::AlertStage;
use super::dead_letter::DeadLetterError;
use super::stage::Stage;
use super::webhook::Webhook;
use crate::columns::Columns;
use crate::format::Checkpoint;
use crate::plugin::{StageState, StateLimits};
use crate::point::Point;
use crate::store::Retention;
use crate::telemetry::{Metrics, StageLabels};
use crate::tenant::TenantId;
use crate::window::WindowSettings;

/// An alert rule's sink: the alert stage evaluating its final windows, and an optional
/// webhook besides the log and the store.
pub struct AlertRule {
    /// The alert plugin stage.
    pub stage: AlertStage,
    /// Where alerts are also posted.
    pub webhook: Option<Webhook>,
}

/// Where the windows of one rule go.
pub enum RuleSink {
    /// Windows are stored as rows of a rollup tier.
    Tier {
        /// The tier.
        name: String,
        /// How long it keeps its windows.
        retention: Retention,
    },
    /// Final windows are evaluated by an alert plugin.
    Alert(Box<AlertRule>),
}

/// A tenant's point stages, in order, and window rules.
#[derive(Default)]
pub struct TenantPipeline {
    /// Filter and transform stages.
    pub stages: Vec<Stage>,
    /// The window rules over the stored points (none: no windows).
    pub windows: Option<WindowSettings>,
    /// Where each rule's windows go, in the order of `windows.rules`.
    pub sinks: Vec<RuleSink>,
    /// How long the tenant keeps its raw points (with its alerts and late data).
    pub retention: Retention,
}

/// Every tenant's pipelines as of now: the registry replaces them whole, and each lane
/// takes the new ones up between groups of records.
#[derive(Default)]
pub struct PipelinesCell(RwLock<Arc<Pipelines>>);

impl PipelinesCell {
    /// The pipelines as of now.
    pub fn current(&self) -> Arc<Pipelines> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the pipelines.
    pub fn replace(&self, pipelines: Arc<Pipelines>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = pipelines;
    }
}

/// Every tenant's pipeline.
#[derive(Default)]
pub struct Pipelines {
    by_tenant: HashMap<TenantId, TenantPipeline>,
}

impl Pipelines {
    /// Sets `tenant`'s pipeline.
    pub fn insert(&mut self, tenant: TenantId, pipeline: TenantPipeline) {
        self.by_tenant.insert(tenant, pipeline);
    }

    /// How long `tenant` keeps its raw points: forever for a tenant without a pipeline.
    pub fn retention(&self, tenant: &TenantId) -> Retention {
        self.get(tenant).map_or(Retention::Forever, |p| p.retention)
    }

    /// `tenant`'s pipeline.
    pub fn get(&self, tenant: &TenantId) -> Option<&TenantPipeline> {
        self.by_tenant.get(tenant)
    }

    /// Runs `points` of `tenant` through its stages, timing each, with the stages' state
    /// of the partition in `states`; a dead-lettered batch yields nothing. `columns` are
    /// the points' own, when the record came with them.
    ///
    /// # Errors
    /// When a failed batch could not be kept as a dead letter.
    pub fn run(
        &self,
        tenant: &TenantId,
        mut points: Vec<Point>,
        mut columns: Option<Columns>,
        states: &mut StageStates,
        metrics: &Metrics,
    ) -> Result<(Vec<Point>, Option<Columns>), DeadLetterError> {
        let _span = tracing::debug_span!("pipeline", %tenant).entered();
        for stage in self
            .by_tenant
            .get(tenant)
            .into_iter()
            .flat_map(|p| &p.stages)
        {
            let started = Instant::now();
            let state = states.of(stage);
            let output = stage.process_with(points, columns.take(), &state)?;
            metrics
                .stage_seconds
                .get_or_create(&StageLabels {
                    tenant: tenant.to_string(),
                    stage: stage.name().to_owned(),
                })
                .observe(started.elapsed().as_secs_f64());
            match output.points {
                Some(out) => (points, columns) = (out, output.columns),
                None => return Ok((Vec::new(), None)),
            }
        }
        Ok((points, columns))
    }
}

/// The plugin state of every stage on one partition, by stage name (`tenant/stage`): a
/// series stays in one partition, so the state a stage keeps for it does too, and is
/// checkpointed with the partition's offsets.
#[derive(Default)]
pub struct StageStates {
    by_stage: HashMap<String, Arc<StageState>>,
}

impl StageStates {
    /// `stage`'s state here, empty at first.
    fn of(&mut self, stage: &Stage) -> Arc<StageState> {
        self.named(stage.name(), || stage.new_state())
    }

    /// The state of the stage (filter, transform or alert) called `name` here; `new` at
    /// first.
    pub(super) fn named(
        &mut self,
        name: &str,
        new: impl FnOnce() -> StageState,
    ) -> Arc<StageState> {
        // A lookup per batch and stage: no key is built unless the stage is new here.
        if let Some(state) = self.by_stage.get(name) {
            return state.clone();
        }
        let state = Arc::new(new());
        self.by_stage.insert(name.to_owned(), state.clone());
        state
    }

    /// Whether no stage holds state here.
    pub fn is_empty(&self) -> bool {
        self.by_stage.values().all(|s| s.is_empty())
    }

    /// Puts every stage's state in `checkpoint`, under its tenant.
    pub fn export(&self, checkpoint: &mut Checkpoint) {
        let mut names: Vec<&String> = self.by_stage.keys().collect();
        names.sort_unstable();
        for name in names {
            let Some((tenant, _)) = name.split_once('/') else {
                continue;
            };
            let state = &self.by_stage[name];
            if !state.is_empty() {
                let bytes = state.export();
                checkpoint
                    .tenant_mut(tenant)
                    .stages
                    .push((name.clone(), bytes));
            }
        }
    }

    /// The stage states of `checkpoint`, for the stages `pipelines` still has; a state that
    /// can't be read starts empty, and is logged.
    pub fn import(pipelines: &Pipelines, checkpoint: &Checkpoint) -> Self {
        // Every stage's limits, by name: filters and transforms, and alert plugins.
        let limits: HashMap<&str, StateLimits> = pipelines
            .by_tenant
            .values()
            .flat_map(|p| {
                let stages = p.stages.iter().map(|s| (s.name(), s.new_state().limits()));
                let alerts = p.sinks.iter().filter_map(|sink| match sink {
                    RuleSink::Alert(alert) => {
                        Some((alert.stage.name(), alert.stage.new_state().limits()))
                    }
                    RuleSink::Tier { .. } => None,
                });
                stages.chain(alerts)
            })
            .collect();
        let mut out = Self::default();
        for (name, bytes) in checkpoint.tenants.iter().flat_map(|t| &t.stages) {
            let Some(limits) = limits.get(name.as_str()) else {
                tracing::warn!(stage = %name, "State of a stage no longer configured dropped.");
                continue;
            };
            match StageState::import(bytes, *limits) {
                Ok(state) => {
                    out.by_stage.insert(name.clone(), Arc::new(state));
                }
                Err(error) => {
                    tracing::error!(stage = %name, %error, "Stage state unreadable; it starts empty.");
                }
            }
        }
        out
    }
}
