//! Each tenant's pipeline: its plugin stages, in order, and its window rules with where
//! each rule's windows go.

use std::collections::HashMap;
use std::time::Instant;

use super::alerting::AlertStage;
use super::dead_letter::DeadLetterError;
use super::stage::Stage;
use super::webhook::Webhook;
use crate::point::Point;
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
    Tier(String),
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

    /// `tenant`'s pipeline.
    pub fn get(&self, tenant: &TenantId) -> Option<&TenantPipeline> {
        self.by_tenant.get(tenant)
    }

    /// Runs `points` of `tenant` through its stages, timing each; a dead-lettered batch
    /// yields nothing.
    ///
    /// # Errors
    /// When a failed batch could not be kept as a dead letter.
    pub fn run(
        &self,
        tenant: &TenantId,
        mut points: Vec<Point>,
        metrics: &Metrics,
    ) -> Result<Vec<Point>, DeadLetterError> {
        let _span = tracing::debug_span!("pipeline", %tenant).entered();
        for stage in self
            .by_tenant
            .get(tenant)
            .into_iter()
            .flat_map(|p| &p.stages)
        {
            let started = Instant::now();
            let output = stage.process(points)?;
            metrics
                .stage_seconds
                .get_or_create(&StageLabels {
                    tenant: tenant.to_string(),
                    stage: stage.name().to_owned(),
                })
                .observe(started.elapsed().as_secs_f64());
            match output.points {
                Some(out) => points = out,
                None => return Ok(Vec::new()),
            }
        }
        Ok(points)
    }
}
